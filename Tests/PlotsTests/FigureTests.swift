import Foundation
import Images
import Plots
import Testing

/// The figures are real images: they encode as PNG, decode back at the expected size, and are not blank.
@Suite struct FigureTests {
    func roundTrip(_ image: RGBImage) throws -> RGBImage {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("swiftvit-figure-\(UUID().uuidString).png")
        defer { try? FileManager.default.removeItem(at: url) }
        try PNG.write(image, to: url)
        return try RGBImage(contentsOf: url)
    }

    func distinctColours(_ image: RGBImage) -> Int {
        var colours = Set<Int>()
        for i in stride(from: 0, to: image.pixels.count, by: 3) {
            let r = Int(image.pixels[i]), g = Int(image.pixels[i + 1]), b = Int(image.pixels[i + 2])
            colours.insert(r << 16 | g << 8 | b)
        }
        return colours.count
    }

    func photo(_ size: Int) -> RGBImage {
        RGBImage(width: size, height: size, pixels: (0..<(size * size * 3)).map { UInt8(($0 * 7 + $0 / 97) % 256) })
    }

    /// The colours of the pixels right of `fromX` (in `rows`, if given).
    func colours(_ image: RGBImage, fromX x0: Int, rows: Range<Int>? = nil) -> Set<[UInt8]> {
        var found = Set<[UInt8]>()
        for y in rows ?? 0..<image.height {
            for x in x0..<image.width {
                let i = (y * image.width + x) * 3
                found.insert(Array(image.pixels[i..<(i + 3)]))
            }
        }
        return found
    }

    @Test func patchGridHasOnePanelPerPatch() throws {
        let figure = try roundTrip(Figures.patches(photo(32), patchSize: 8, scale: 2))
        #expect(figure.width == 4 * (16 + 4) + 4 && figure.height == figure.width)
        #expect(distinctColours(figure) > 50)
    }

    @Test func overlayKeepsTheImageSizeAndShowsTheHeat() throws {
        let base = RGBImage(width: 64, height: 64, pixels: [UInt8](repeating: 128, count: 64 * 64 * 3))
        let heat: [Float] = (0..<16).map { Float($0) }
        let figure = try roundTrip(Figures.overlay(base, heat: heat, grid: 4))
        #expect(figure.width == 64 && figure.height == 64)
        // Low heat at the top left, high at the bottom right: different colours there.
        #expect(figure.pixels[0..<3] != figure.pixels[(64 * 64 - 1) * 3..<(64 * 64 * 3)])
    }

    @Test func scatterAndGridsAreDrawn() throws {
        let scatter = try roundTrip(Figures.scatter([[10, 20, 30], [50, 60, 70]], xLabel: "LAYER", yLabel: "PX", title: "T"))
        #expect(scatter.width > 640 && scatter.height == 440 && distinctColours(scatter) > 4)
        // The legend, right of the plot, shows each head's colour.
        let legend = colours(scatter, fromX: 640)
        for head in 0..<3 {
            let c = Colormap.viridis(Float(head) / 2)
            #expect(legend.contains([c.r, c.g, c.b]), "legend colour of head \(head)")
        }
        let similarity = (0..<16).map { i in (0..<16).map { j in i == j ? Float(1) : Float(0) } }
        let grid = try roundTrip(Figures.similarityGrid(similarity, grid: 4, cell: 3))
        // One fixed scale from -1 to 1: similarity 1 is the top of viridis, 0 its middle; the colour bar shows -1 too.
        let drawn = colours(grid, fromX: 0)
        for value: Float in [1, 0.5, 0] {
            let c = Colormap.viridis(value)
            #expect(drawn.contains([c.r, c.g, c.b]), "viridis(\(value)) in the grid or its colour bar")
        }
        let panels = try roundTrip(Figures.grid([("A", photo(20)), ("B", photo(20)), ("C", photo(20))], columns: 2, title: "X"))
        #expect(panels.width == 2 * 28 + 8 && panels.height == 24 + 2 * (20 + 16 + 8) + 8)
    }

    @Test func trainingCurvesAndConfusionMatrix() throws {
        let curves = try roundTrip(
            TrainingFigures.curves(
                epochs: [1, 2, 3], loss: [("train", [2.0, 1.2, 0.9]), ("validation", [1.8, 1.1, .nan])],
                accuracy: [("train", [0.3, 0.6, 0.7]), ("validation", [0.35, 0.62, .nan])]))
        #expect(curves.width == 960 && curves.height == 380 && distinctColours(curves) >= 4)
        // The two series are drawn in their own colours (blue train, orange validation).
        let series = colours(curves, fromX: 0)
        #expect(series.contains([31, 119, 180]) && series.contains([255, 127, 14]))
        let matrix = try roundTrip(TrainingFigures.confusionMatrix([[5, 1], [0, 7]], classNames: ["cat", "dog"]))
        // Room above the cells for the class names written up each column.
        #expect(matrix.height == 40 + Canvas.textWidth("dog") + 28 + 2 * 56 + 16 && distinctColours(matrix) >= 4)
        let top = colours(matrix, fromX: 0, rows: 40..<(40 + Canvas.textWidth("dog") + 20))
        #expect(top.contains([0, 0, 0]), "column names above the matrix")
    }
}
