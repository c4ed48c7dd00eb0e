import Foundation
import Images

/// The figures of `vit inspect`, each a PNG-ready image.
public enum Figures {
    /// Values rescaled to [0, 1] by their own minimum and maximum (all 0 when constant).
    static func normalised(_ values: [Float]) -> [Float] {
        guard let lo = values.min(), let hi = values.max(), hi > lo else { return values.map { _ in 0 } }
        return values.map { ($0 - lo) / (hi - lo) }
    }

    /// A grid x grid map upsampled bilinearly (sample centres aligned) to size x size.
    static func upsample(_ values: [Float], grid: Int, size: Int) -> [Float] {
        var out = [Float](repeating: 0, count: size * size)
        let scale = Float(grid) / Float(size)
        for y in 0..<size {
            let fy = min(max((Float(y) + 0.5) * scale - 0.5, 0), Float(grid - 1))
            let y0 = Int(fy), y1 = min(y0 + 1, grid - 1), ty = fy - Float(y0)
            for x in 0..<size {
                let fx = min(max((Float(x) + 0.5) * scale - 0.5, 0), Float(grid - 1))
                let x0 = Int(fx), x1 = min(x0 + 1, grid - 1), tx = fx - Float(x0)
                let top = values[y0 * grid + x0] * (1 - tx) + values[y0 * grid + x1] * tx
                let bottom = values[y1 * grid + x0] * (1 - tx) + values[y1 * grid + x1] * tx
                out[y * size + x] = top * (1 - ty) + bottom * ty
            }
        }
        return out
    }

    /// `image` (square) with a grid x grid heat map blended over it (viridis, 55% opacity).
    public static func overlay(_ image: RGBImage, heat: [Float], grid: Int) -> RGBImage {
        precondition(image.width == image.height && heat.count == grid * grid, "overlay needs a square image and grid² values")
        let map = upsample(normalised(heat), grid: grid, size: image.width)
        var pixels = image.pixels
        for i in 0..<map.count {
            let c = Colormap.viridis(map[i])
            for (j, v) in [c.r, c.g, c.b].enumerated() {
                pixels[i * 3 + j] = UInt8(0.45 * Float(pixels[i * 3 + j]) + 0.55 * Float(v))
            }
        }
        return RGBImage(width: image.width, height: image.height, pixels: pixels)
    }

    /// Panels laid out in rows of `columns`, each with a caption above it (no caption row when none has one); the
    /// canvas widens to fit the title.
    public static func grid(_ panels: [(caption: String, image: RGBImage)], columns: Int, title: String? = nil) -> RGBImage {
        precondition(!panels.isEmpty, "a grid of no panels")
        let w = panels[0].image.width, h = panels[0].image.height
        let gap = 8, top = title == nil ? 0 : 24
        let caption = panels.allSatisfy { $0.caption.isEmpty } ? 0 : 16
        let rows = (panels.count + columns - 1) / columns
        let cols = min(columns, panels.count)
        let panelsWidth = cols * (w + gap) + gap
        let width = max(panelsWidth, title.map { Canvas.textWidth($0, scale: 2) + 2 * gap } ?? 0)
        var canvas = Canvas(width: width, height: top + rows * (h + caption + gap) + gap)
        if let title { canvas.text(title, x: gap, y: 6, scale: 2) }
        let left = (width - panelsWidth) / 2  // the panels centred under a wider title
        for (i, panel) in panels.enumerated() {
            let x = left + gap + (i % columns) * (w + gap), y = top + gap + (i / columns) * (h + caption + gap)
            canvas.text(panel.caption, x: x, y: y, scale: 2)
            canvas.draw(panel.image, x: x, y: y + caption)
        }
        return canvas.image
    }

    /// A vertical colour bar of the viridis scale, `high` at the top and `low` at the bottom, with `caption`
    /// written up its side: the key to a heat map.
    public static func colorBar(height: Int, low: String, high: String, caption: String) -> RGBImage {
        let barWidth = 16, labelWidth = max(Canvas.textWidth(low), Canvas.textWidth(high))
        var canvas = Canvas(width: barWidth + 8 + labelWidth + 8 + 12 + 4, height: height)
        let top = 6, bottom = height - 6
        for y in top..<bottom {
            let value = Float(bottom - 1 - y) / Float(max(bottom - top - 1, 1))
            canvas.fill(x: 0, y: y, width: barWidth, height: 1, Colormap.viridis(value))
        }
        canvas.text(high, x: barWidth + 6, y: top)
        canvas.text(low, x: barWidth + 6, y: bottom - 10)
        let captionX = barWidth + 8 + labelWidth + 8
        canvas.verticalText(caption, x: captionX, y: (height + Canvas.textWidth(caption)) / 2)
        return canvas.image
    }

    /// `figure` with a colour bar to its right, as tall as the figure's body below `top` pixels.
    public static func withColorBar(_ figure: RGBImage, top: Int = 0, low: String, high: String, caption: String) -> RGBImage {
        let bar = colorBar(height: max(figure.height - top - 8, 60), low: low, high: high, caption: caption)
        var canvas = Canvas(width: figure.width + bar.width + 12, height: max(figure.height, top + bar.height))
        canvas.draw(figure, x: 0, y: 0)
        canvas.draw(bar, x: figure.width + 4, y: top)
        return canvas.image
    }

    /// Images of any sizes side by side, each with a caption above, under a title.
    public static func row(_ panels: [(caption: String, image: RGBImage)], title: String) -> RGBImage {
        let gap = 12, caption = 18, top = 28
        func slot(_ panel: (caption: String, image: RGBImage)) -> Int { max(panel.image.width, Canvas.textWidth(panel.caption)) }
        let width = panels.reduce(gap) { $0 + slot($1) + gap }
        let height = top + caption + (panels.map(\.image.height).max() ?? 0) + gap
        var canvas = Canvas(width: max(width, Canvas.textWidth(title) + 2 * gap), height: height)
        canvas.text(title, x: gap, y: 8)
        var x = gap
        for panel in panels {
            canvas.text(panel.caption, x: x, y: top)
            canvas.draw(panel.image, x: x, y: top + caption)
            x += slot(panel) + gap
        }
        return canvas.image
    }

    /// The image cut into its P x P patches, drawn apart with gaps and numbered in sequence order (row-major,
    /// the order the tokens take after the class token).
    public static func patches(_ image: RGBImage, patchSize: Int, scale: Int = 2) -> RGBImage {
        let grid = image.width / patchSize
        let side = patchSize * scale
        let gap = max(4, side / 4)
        var canvas = Canvas(width: grid * (side + gap) + gap, height: grid * (side + gap) + gap)
        for py in 0..<grid {
            for px in 0..<grid {
                let patch = image.cropped(left: px * patchSize, top: py * patchSize, width: patchSize, height: patchSize)
                let x = gap + px * (side + gap), y = gap + py * (side + gap)
                canvas.draw(patch, x: x, y: y, scale: scale)
                let label = String(py * grid + px + 1)
                let textScale = max(1, min(scale, side / 24))
                canvas.fill(
                    x: x, y: y, width: Canvas.textWidth(label, scale: textScale) + 2 * textScale, height: 7 * textScale, Canvas.white)
                canvas.text(label, x: x + textScale, y: y + textScale, scale: textScale)
            }
        }
        return canvas.image
    }

    /// A scatter plot of one dot per (layer, head) value, layers on x, values on y, with axes, ticks and labels.
    /// Each head has its colour, named in a legend on the right.
    public static func scatter(_ layers: [[Float]], xLabel: String, yLabel: String, title: String) -> RGBImage {
        let heads = layers.map(\.count).max() ?? 0
        let legendWidth = Canvas.textWidth("HEAD \(max(heads - 1, 0))") + 36
        let width = 640 + legendWidth, height = max(440, 64 + 18 * heads + 80), left = 70, right = 20 + legendWidth, top = 64, bottom = 60
        var canvas = Canvas(width: width, height: height)
        let maxValue = max(layers.flatMap { $0 }.max() ?? 1, 1e-6)
        let yTop = niceCeiling(maxValue)
        let plotW = width - left - right, plotH = height - top - bottom
        func px(_ layer: Int) -> Int { left + (2 * layer + 1) * plotW / (2 * layers.count) }
        func py(_ v: Float) -> Int { top + plotH - Int(v / yTop * Float(plotH)) }
        canvas.line(from: (left, top), to: (left, top + plotH), Canvas.black)
        canvas.line(from: (left, top + plotH), to: (left + plotW, top + plotH), Canvas.black)
        for tick in 0...4 {
            let v = yTop * Float(tick) / 4, y = py(v)
            canvas.line(from: (left - 5, y), to: (left, y), Canvas.black)
            canvas.line(from: (left + 1, y), to: (left + plotW, y), (230, 230, 230))
            let label = v >= 10 ? String(Int(v.rounded())) : String(format: "%.1f", v)
            canvas.text(label, x: left - 8 - Canvas.textWidth(label), y: y - 5)
        }
        for layer in layers.indices {
            let x = px(layer)
            canvas.line(from: (x, top + plotH), to: (x, top + plotH + 5), Canvas.black)
            let label = String(layer)
            canvas.text(label, x: x - Canvas.textWidth(label) / 2, y: top + plotH + 10)
            for (head, value) in layers[layer].enumerated() {
                let c = Colormap.viridis(layers[layer].count > 1 ? Float(head) / Float(layers[layer].count - 1) : 0.5)
                canvas.dot(x, py(value), radius: 4, c)
            }
        }
        canvas.text(title, x: left, y: 12, scale: 2)
        canvas.text(xLabel, x: left + plotW / 2 - Canvas.textWidth(xLabel) / 2, y: height - 24)
        canvas.text(yLabel, x: 6, y: top - 22)
        let legendX = left + plotW + 16
        canvas.text("HEADS", x: legendX, y: top)
        for head in 0..<heads {
            let y = top + 22 + 18 * head
            canvas.dot(legendX + 5, y + 4, radius: 4, Colormap.viridis(heads > 1 ? Float(head) / Float(heads - 1) : 0.5))
            canvas.text("HEAD \(head)", x: legendX + 16, y: y)
        }
        return canvas.image
    }

    /// A matrix of small heat maps: panel (i, j) holds row i·grid + j of `similarity` drawn as a grid x grid map,
    /// on one fixed scale from -1 to 1 (cosine similarity), with a title, the patch row and column of each panel
    /// on the axes, and a colour bar.
    public static func similarityGrid(_ similarity: [[Float]], grid: Int, cell: Int = 4) -> RGBImage {
        let side = grid * cell, gap = 2
        let left = 44, top = 56, body = grid * (side + gap) + gap
        let title = "POSITION EMBEDDING SIMILARITY"
        var canvas = Canvas(width: max(left + body + 8, left + Canvas.textWidth(title)), height: top + body + 40)
        canvas.text(title, x: left, y: 8)
        let xLabel = "PATCH COLUMN", yLabel = "PATCH ROW"
        canvas.text(xLabel, x: left + body / 2 - Canvas.textWidth(xLabel) / 2, y: top + body + 24)
        canvas.verticalText(yLabel, x: 4, y: top + body / 2 + Canvas.textWidth(yLabel) / 2)
        // Tick labels (1-based, as the patch numbers of `inspect patches`), thinned out when they would crowd.
        let every = max(1, (Canvas.textWidth(String(grid)) + 6 + side) / (side + gap) + (side < 20 ? 1 : 0))
        for k in stride(from: 0, to: grid, by: every) {
            let label = String(k + 1), centre = gap + k * (side + gap) + side / 2
            canvas.text(label, x: left + centre - Canvas.textWidth(label) / 2, y: top + body + 6)
            canvas.text(label, x: left - 6 - Canvas.textWidth(label), y: top + centre - 5)
        }
        // The colours span the data, not the whole -1...1 (a trained model's positions are often all alike, 0.7-1,
        // which -1...1 shows as one colour): the range of the similarities between different positions (each
        // position's own, always 1, is clipped), symmetric around 0 when they take both signs.
        let others = (0..<(grid * grid)).flatMap { i in (0..<(grid * grid)).filter { $0 != i }.map { similarity[i][$0] } }
        var (low, high) = (others.min() ?? -1, others.max() ?? 1)
        if low < 0 && high > 0 { (low, high) = (-max(-low, high), max(-low, high)) }
        if high - low < 1e-6 { (low, high) = (low - 0.5, high + 0.5) }
        for i in 0..<(grid * grid) {
            let x0 = left + gap + (i % grid) * (side + gap), y0 = top + gap + (i / grid) * (side + gap)
            for j in 0..<(grid * grid) {
                let value = min(max((similarity[i][j] - low) / (high - low), 0), 1)
                canvas.fill(x: x0 + (j % grid) * cell, y: y0 + (j / grid) * cell, width: cell, height: cell, Colormap.viridis(value))
            }
        }
        return withColorBar(
            canvas.image, top: top, low: String(format: "%.2f", low), high: String(format: "%.2f", high),
            caption: low < 0 && high > 0 ? "COSINE SIMILARITY (SCALED TO THE DATA, SYMMETRIC)" : "COSINE SIMILARITY (SCALED TO THE DATA)")
    }

    static func niceCeiling(_ value: Float) -> Float {
        let magnitude = Float(pow(10, floor(log10(Double(value)))))
        for step: Float in [1, 2, 2.5, 5, 10] where step * magnitude >= value { return step * magnitude }
        return 10 * magnitude
    }
}

extension Figures {
    /// `image` enlarged `scale` times by repeating pixels (small images stay sharp).
    public static func enlarged(_ image: RGBImage, scale: Int) -> RGBImage {
        guard scale > 1 else { return image }
        var canvas = Canvas(width: image.width * scale, height: image.height * scale)
        canvas.draw(image, x: 0, y: 0, scale: scale)
        return canvas.image
    }

    /// A grid x grid map of values as a square image of side `size`, each cell one flat viridis colour, scaled by
    /// the map's own minimum and maximum.
    public static func cellMap(_ values: [Float], grid: Int, size: Int) -> RGBImage {
        precondition(values.count == grid * grid && size >= grid, "a cell map needs grid² values and a size of at least the grid")
        let shades = normalised(values)
        var canvas = Canvas(width: size, height: size)
        for y in 0..<size {
            for x in 0..<size { canvas.set(x, y, Colormap.viridis(shades[(y * grid / size) * grid + x * grid / size])) }
        }
        return canvas.image
    }

    /// Masked-autoencoder reconstructions: one row per image, its panels (original, masked, reconstruction, and
    /// for HPM the predicted and true per-patch losses) side by side with their captions, under a title; a colour
    /// bar explains the loss maps when there are any.
    public static func reconstructions(_ rows: [[(caption: String, image: RGBImage)]], title: String, lossMaps: Bool) -> RGBImage {
        let columns = rows.first?.count ?? 1
        let figure = grid(rows.flatMap { $0 }, columns: columns, title: title)
        guard lossMaps else { return figure }
        return withColorBar(figure, top: 24, low: "low", high: "high", caption: "per-patch loss, each map to its range")
    }
}
