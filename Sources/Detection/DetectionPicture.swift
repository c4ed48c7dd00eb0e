import Foundation
import Images
import Plots

/// An image with its detections drawn for a person to read: each box outlined in its class's colour with the class
/// name and score above it, a title naming the image and the threshold, and a legend of the classes found.
public enum DetectionPicture {
    /// Tableau's ten categorical colours, then the same again darker (classes past 20 reuse them).
    static let palette: [Canvas.Color] = [
        (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75), (227, 119, 194),
        (127, 127, 127), (188, 189, 34), (23, 190, 207)
    ]

    public static func colour(_ label: Int) -> Canvas.Color {
        let c = palette[label % palette.count]
        if (label / palette.count) % 2 == 0 { return c }
        return (UInt8(Int(c.0) * 3 / 5), UInt8(Int(c.1) * 3 / 5), UInt8(Int(c.2) * 3 / 5))
    }

    /// `image` with `detections` (boxes in its pixels) drawn, scaled up by a whole factor when small so that labels
    /// stay readable.
    public static func draw(_ image: RGBImage, detections: [Detection], classNames: [String], title: String) -> RGBImage {
        let scale = max(1, min(8, 480 / max(image.width, image.height, 1)))
        let (w, h) = (image.width * scale, image.height * scale)
        let found = Array(Set(detections.map(\.label))).sorted()
        // Legend columns as wide as the longest name found, as many as fit the picture's width.
        let names = detections.map(\.label)
        let columnWidth =
            30
            + (Set(names).map { Canvas.textWidth(classNames.indices.contains($0) ? classNames[$0] : "class \($0)", scale: 2) }.max() ?? 0)
        let columns = max(1, min(3, (max(w, 360) + 10) / columnWidth))
        let legendRows = max((found.count + columns - 1) / columns, 1)
        let (top, bottom) = (28, 12 + 22 * legendRows)
        var canvas = Canvas(width: max(w, 360) + 20, height: h + top + bottom)
        canvas.text(title, x: 10, y: 8, scale: 2)
        canvas.draw(image, x: 10, y: top, scale: scale)
        func name(_ label: Int) -> String { classNames.indices.contains(label) ? classNames[label] : "class \(label)" }
        for d in detections {
            let colour = Self.colour(d.label)
            func px(_ v: Float, _ limit: Int) -> Int { min(max(Int((v * Float(scale)).rounded()), 0), limit - 1) }
            let (x0, y0, x1, y1) = (px(d.box.x0, w) + 10, px(d.box.y0, h) + top, px(d.box.x1, w) + 10, px(d.box.y1, h) + top)
            for t in 0..<2 {  // a 2-pixel outline
                canvas.line(from: (x0 + t, y0 + t), to: (x1 - t, y0 + t), colour)
                canvas.line(from: (x0 + t, y1 - t), to: (x1 - t, y1 - t), colour)
                canvas.line(from: (x0 + t, y0 + t), to: (x0 + t, y1 - t), colour)
                canvas.line(from: (x1 - t, y0 + t), to: (x1 - t, y1 - t), colour)
            }
            let label = "\(name(d.label)) \(String(format: "%.2f", d.score))"
            let labelY = max(y0 - 15, top)
            canvas.fill(x: x0, y: labelY, width: Canvas.textWidth(label, scale: 2) + 4, height: 14, colour)
            canvas.text(label, x: x0 + 2, y: labelY + 2, scale: 2, Canvas.white)
        }
        // Legend: a swatch and the class name for each class found.
        let legendTop = top + h + 8
        if found.isEmpty { canvas.text("no detections above the threshold", x: 10, y: legendTop, scale: 2, Canvas.gray) }
        for (i, label) in found.enumerated() {
            let (x, y) = (10 + (i % columns) * columnWidth, legendTop + (i / columns) * 22)
            canvas.fill(x: x, y: y, width: 14, height: 14, Self.colour(label))
            canvas.text(name(label), x: x + 20, y: y + 1, scale: 2)
        }
        return canvas.image
    }
}
