import Foundation
import Images

/// An RGB drawing surface for the PNG figures: rectangles, lines, dots, images, heat maps and a small bitmap font.
public struct Canvas {
    public let width: Int
    public let height: Int
    public private(set) var pixels: [UInt8]

    public typealias Color = (r: UInt8, g: UInt8, b: UInt8)
    public static let white: Color = (255, 255, 255)
    public static let black: Color = (0, 0, 0)
    public static let gray: Color = (160, 160, 160)

    public init(width: Int, height: Int, background: Color = Canvas.white) {
        precondition(width > 0 && height > 0, "canvas \(width)x\(height)")
        self.width = width
        self.height = height
        pixels = [UInt8](repeating: 0, count: width * height * 3)
        fill(x: 0, y: 0, width: width, height: height, background)
    }

    public var image: RGBImage { RGBImage(width: width, height: height, pixels: pixels) }

    public mutating func set(_ x: Int, _ y: Int, _ c: Color) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        let i = (y * width + x) * 3
        pixels[i] = c.r; pixels[i + 1] = c.g; pixels[i + 2] = c.b
    }

    /// A rectangle, clipped to the canvas (nothing when it lies wholly outside).
    public mutating func fill(x: Int, y: Int, width w: Int, height h: Int, _ c: Color) {
        let (x0, x1, y0, y1) = (max(x, 0), min(x + w, width), max(y, 0), min(y + h, height))
        guard x0 < x1, y0 < y1 else { return }
        for yy in y0..<y1 { for xx in x0..<x1 { set(xx, yy, c) } }
    }

    public mutating func line(from a: (Int, Int), to b: (Int, Int), _ c: Color) {
        var (x0, y0) = a
        let (x1, y1) = b
        let dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1
        var err = dx + dy
        while true {
            set(x0, y0, c)
            if x0 == x1 && y0 == y1 { break }
            let e2 = 2 * err
            if e2 >= dy { err += dy; x0 += sx }
            if e2 <= dx { err += dx; y0 += sy }
        }
    }

    public mutating func dot(_ x: Int, _ y: Int, radius: Int, _ c: Color) {
        for yy in -radius...radius { for xx in -radius...radius where xx * xx + yy * yy <= radius * radius { set(x + xx, y + yy, c) } }
    }

    /// Draws `image` with its top-left corner at (x, y), scaled by an integer factor (nearest neighbour).
    public mutating func draw(_ image: RGBImage, x: Int, y: Int, scale: Int = 1) {
        for yy in 0..<(image.height * scale) {
            for xx in 0..<(image.width * scale) {
                let i = ((yy / scale) * image.width + xx / scale) * 3
                set(x + xx, y + yy, (image.pixels[i], image.pixels[i + 1], image.pixels[i + 2]))
            }
        }
    }

    /// Text in a small bitmap font (5 rows), `scale` pixels per font pixel. Lower case is drawn as upper case.
    public mutating func text(_ string: String, x: Int, y: Int, scale: Int = 2, _ c: Color = Canvas.black) {
        var cursor = x
        for ch in string.uppercased() {
            let rows = Font.glyphs[ch] ?? ["...", "...", "...", "...", "..."]
            for (row, bits) in rows.enumerated() {
                for (column, bit) in bits.enumerated() where bit == "#" {
                    fill(x: cursor + column * scale, y: y + row * scale, width: scale, height: scale, c)
                }
            }
            cursor += (rows[0].count + 1) * scale
        }
    }

    /// Text turned a quarter to the left (read bottom to top), starting at (x, y) and running up: for labels of
    /// columns and of vertical axes. It takes 5·scale pixels across and `textWidth` up.
    public mutating func verticalText(_ string: String, x: Int, y: Int, scale: Int = 2, _ c: Color = Canvas.black) {
        var cursor = 0
        for ch in string.uppercased() {
            let rows = Font.glyphs[ch] ?? ["...", "...", "...", "...", "..."]
            for (row, bits) in rows.enumerated() {
                for (column, bit) in bits.enumerated() where bit == "#" {
                    fill(x: x + row * scale, y: y - (cursor + column + 1) * scale, width: scale, height: scale, c)
                }
            }
            cursor += rows[0].count + 1
        }
    }

    public static func textWidth(_ string: String, scale: Int = 2) -> Int {
        string.uppercased().reduce(0) { $0 + ((Font.glyphs[$1]?[0].count ?? 3) + 1) * scale } - scale
    }
}

/// A 5-row pixel font, 3 columns wide (5 for M, N, W): digits, letters and a little punctuation.
enum Font {
    static let glyphs: [Character: [String]] = [
        "0": ["###", "#.#", "#.#", "#.#", "###"], "1": [".#.", "##.", ".#.", ".#.", "###"],
        "2": ["###", "..#", "###", "#..", "###"], "3": ["###", "..#", "###", "..#", "###"],
        "4": ["#.#", "#.#", "###", "..#", "..#"], "5": ["###", "#..", "###", "..#", "###"],
        "6": ["###", "#..", "###", "#.#", "###"], "7": ["###", "..#", ".#.", ".#.", ".#."],
        "8": ["###", "#.#", "###", "#.#", "###"], "9": ["###", "#.#", "###", "..#", "###"],
        "A": [".#.", "#.#", "###", "#.#", "#.#"], "B": ["##.", "#.#", "##.", "#.#", "##."],
        "C": [".##", "#..", "#..", "#..", ".##"], "D": ["##.", "#.#", "#.#", "#.#", "##."],
        "E": ["###", "#..", "##.", "#..", "###"], "F": ["###", "#..", "##.", "#..", "#.."],
        "G": [".##", "#..", "#.#", "#.#", ".##"], "H": ["#.#", "#.#", "###", "#.#", "#.#"],
        "I": ["###", ".#.", ".#.", ".#.", "###"], "J": ["..#", "..#", "..#", "#.#", ".#."],
        "K": ["#.#", "#.#", "##.", "#.#", "#.#"], "L": ["#..", "#..", "#..", "#..", "###"],
        "M": ["#...#", "##.##", "#.#.#", "#...#", "#...#"], "N": ["#...#", "##..#", "#.#.#", "#..##", "#...#"],
        "O": [".#.", "#.#", "#.#", "#.#", ".#."], "P": ["##.", "#.#", "##.", "#..", "#.."],
        "Q": [".#.", "#.#", "#.#", "##.", ".##"], "R": ["##.", "#.#", "##.", "#.#", "#.#"],
        "S": [".##", "#..", ".#.", "..#", "##."], "T": ["###", ".#.", ".#.", ".#.", ".#."],
        "U": ["#.#", "#.#", "#.#", "#.#", "###"], "V": ["#.#", "#.#", "#.#", "#.#", ".#."],
        "W": ["#...#", "#...#", "#.#.#", "##.##", "#...#"], "X": ["#.#", "#.#", ".#.", "#.#", "#.#"],
        "Y": ["#.#", "#.#", ".#.", ".#.", ".#."], "Z": ["###", "..#", ".#.", "#..", "###"],
        ".": ["...", "...", "...", "...", ".#."], "-": ["...", "...", "###", "...", "..."],
        ":": ["...", ".#.", "...", ".#.", "..."], "(": [".#.", "#..", "#..", "#..", ".#."],
        ")": [".#.", "..#", "..#", "..#", ".#."], "/": ["..#", "..#", ".#.", "#..", "#.."],
        "%": ["#.#", "..#", ".#.", "#..", "#.#"], "_": ["...", "...", "...", "...", "###"],
        "=": ["...", "###", "...", "###", "..."], ",": ["...", "...", "...", ".#.", "#.."]
    ]
}

/// Colour maps for heat maps.
public enum Colormap {
    /// matplotlib's viridis, interpolated between five of its colours. `value` in [0, 1].
    public static func viridis(_ value: Float) -> Canvas.Color {
        let anchors: [(Float, Float, Float)] = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]
        let v = min(max(value.isFinite ? value : 0, 0), 1) * Float(anchors.count - 1)
        let i = min(Int(v), anchors.count - 2), t = v - Float(i)
        let (a, b) = (anchors[i], anchors[i + 1])
        return (UInt8(a.0 + (b.0 - a.0) * t), UInt8(a.1 + (b.1 - a.1) * t), UInt8(a.2 + (b.2 - a.2) * t))
    }
}
