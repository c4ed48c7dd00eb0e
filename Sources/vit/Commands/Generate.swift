import ArgumentParser
import Foundation
import Generation
import Images
import Plots
import Tensors

/// Samples from an Image Transformer.
struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw images from an Image Transformer (vit train --task generation), one sub-pixel at a time, as a grid PNG.",
        discussion:
            "Each sub-pixel is drawn from softmax(logits / --temperature) given all drawn before it, with each layer's keys and values cached (one pass over the new position per sub-pixel; --no-cache runs the whole sequence again each time). The same --seed draws the same images. Prints the samples per second."
    )

    @Option(help: "An Image Transformer folder (vit train --task generation writes one).") var model: String
    @Option(name: .customShort("n"), help: "Images to draw.") var count = 16
    @Option(name: .customLong("class"), help: "For a class-conditional model: the class to draw (its name or index).") var className:
        String?
    @Option(help: "Divides the logits before each draw: below 1 sharper, above 1 more varied.") var temperature: Float = 1
    @Option(help: "Seeds the draws.") var seed: UInt64 = 0
    @Flag(inversion: .prefixedNo, help: "Cache each layer's keys and values while decoding.") var cache = true
    @Option(help: "Images per row of the grid (default: about the square root of -n).") var columns: Int?
    @Option(help: "Each sample is drawn this many times larger.") var scale = 3
    @Option(
        help:
            "Compute precision (default: fp32: decoding one position at a time, the products are too small for bf16's casts to pay, measured in the README)."
    )
    var precision: Precision?
    @Option(name: .shortAndLong, help: "The grid PNG to write.") var output = "samples.png"

    func validate() throws {
        try Precision.refuseInt8(precision, in: "generation")
        if count < 1 { throw ValidationError("-n must be at least 1") }
        if !(temperature > 0 && temperature.isFinite) { throw ValidationError("--temperature must be a positive number") }
        if let columns, columns < 1 { throw ValidationError("--columns must be at least 1") }
        if !(1...16).contains(scale) { throw ValidationError("--scale must be in 1...16") }
    }

    func run() throws {
        let folder = try BuiltInModel.resolve(model)
        guard ImageTransformerCheckpoint.holdsModel(folder) else {
            throw CommandFailure("\(folder.path) is not an Image Transformer folder (vit train --task generation writes one)")
        }
        let network = try ImageTransformerCheckpoint.load(folder)
        let c = network.config
        var label: Int?
        if let className {
            guard c.classCount > 0 else { throw CommandFailure("--class: \(model) is not class-conditional") }
            let names = c.labels ?? (0..<c.classCount).map(String.init)
            guard let index = names.firstIndex(of: className) ?? Int(className).flatMap({ names.indices.contains($0) ? $0 : nil }) else {
                throw CommandFailure("--class \(className): the model's classes are \(names.joined(separator: ", "))")
            }
            label = index
        } else if c.classCount > 0 {
            throw CommandFailure("\(model) is class-conditional: give --class (one of \((c.labels ?? []).joined(separator: ", ")))")
        }
        var sampler = ImageSampler(model: network)
        (sampler.temperature, sampler.cached) = (temperature, cache)
        let (chosen, why) = Precision.decide(asked: precision, default: .fp32)
        printError("precision: \(chosen) (\(why))")
        sampler.precision = chosen.dtype
        let bar = ProgressBar(total: c.sequenceLength, unit: "sub-pixel")
        var done = 0
        let started = Date()
        let drawn = try sampler.sample(count: count, label: label, seed: seed) { position in
            bar.advance(by: position - done)
            done = position
        }
        let seconds = Date().timeIntervalSince(started)
        let size = c.imageSize, length = c.sequenceLength
        let panels = (0..<count).map { n -> (caption: String, image: RGBImage) in
            var pixels = [UInt8](repeating: 0, count: size * size * 3)
            for i in 0..<(size * size) {
                for k in 0..<3 { pixels[i * 3 + k] = drawn[n * length + i * c.channels + min(k, c.channels - 1)] }
            }
            return ("", Figures.enlarged(RGBImage(width: size, height: size, pixels: pixels), scale: scale))
        }
        let what = label.map { "class \((c.labels ?? [])[safe: $0] ?? String($0))" } ?? "unconditional"
        let title = "Image Transformer samples, \(what), temperature \(temperature), seed \(seed)"
        let grid = Figures.grid(panels, columns: columns ?? max(1, Int(Double(count).squareRoot().rounded(.up))), title: title)
        try PNG.write(grid, to: URL(fileURLWithPath: output))
        print(
            String(
                format: "%d samples of %dx%dx%d in %.1f s: %.3f samples/s (%@); wrote %@", count, size, size, c.channels, seconds,
                Double(count) / max(seconds, 1e-9),
                sampler.usesCache ? "cached keys and values" : "no cache", output))
    }
}

extension Array {
    subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}
