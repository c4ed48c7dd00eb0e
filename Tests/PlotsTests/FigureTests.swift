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

    @Test func patchGridHasOnePanelPerPatch() throws {
        let figure = try roundTrip(Figures.patches(photo(32), patchSize: 8, scale: 2))
        #expect(figure.width == 4 * (16 + 8) + 8 && figure.height == figure.width)
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
        #expect(scatter.width == 640 && scatter.height == 440 && distinctColours(scatter) > 4)
        let similarity = (0..<16).map { i in (0..<16).map { j in i == j ? Float(1) : Float(0) } }
        let grid = try roundTrip(Figures.similarityGrid(similarity, grid: 4, cell: 3))
        #expect(grid.width == 4 * (12 + 2) + 2 && distinctColours(grid) >= 3)
        let panels = try roundTrip(Figures.grid([("A", photo(20)), ("B", photo(20)), ("C", photo(20))], columns: 2, title: "X"))
        #expect(panels.width == 2 * 28 + 8 && panels.height == 24 + 2 * (20 + 16 + 8) + 8)
    }

    @Test func trainingCurvesAndConfusionMatrix() throws {
        let curves = try roundTrip(TrainingFigures.curves(
            epochs: [1, 2, 3], loss: [("train", [2.0, 1.2, 0.9]), ("validation", [1.8, 1.1, .nan])],
            accuracy: [("train", [0.3, 0.6, 0.7]), ("validation", [0.35, 0.62, .nan])]))
        #expect(curves.width == 960 && curves.height == 380 && distinctColours(curves) >= 4)
        // The two series are drawn in their own colours (blue train, orange validation).
        var colours = Set<[UInt8]>()
        for i in stride(from: 0, to: curves.pixels.count, by: 3) { colours.insert(Array(curves.pixels[i..<(i + 3)])) }
        #expect(colours.contains([31, 119, 180]) && colours.contains([255, 127, 14]))
        let matrix = try roundTrip(TrainingFigures.confusionMatrix([[5, 1], [0, 7]], classNames: ["cat", "dog"]))
        #expect(matrix.height == 64 + 2 * 56 + 40 && distinctColours(matrix) >= 4)
    }
}
