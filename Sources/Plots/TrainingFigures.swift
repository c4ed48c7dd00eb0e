import Foundation
import Images

/// The figures of `vit train` and `vit eval`: training curves and the confusion matrix.
public enum TrainingFigures {
    static let seriesColors: [Canvas.Color] = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]

    /// Two panels side by side, loss and accuracy per epoch, one line (with dots) per named series. NaN values
    /// (a series with no value that epoch) are skipped. `accuracyLabel` names the second panel's measure (a
    /// fraction: top-1 accuracy, or a detector's COCO AP).
    public static func curves(
        epochs: [Int], loss: [(name: String, values: [Double])],
        accuracy: [(name: String, values: [Double])], accuracyLabel: String = "top-1 accuracy"
    ) -> RGBImage {
        let panelWidth = 480, height = 380
        var canvas = Canvas(width: 2 * panelWidth, height: height)
        let lossTop = loss.flatMap(\.values).filter(\.isFinite).max() ?? 1
        // Accuracy on its whole range; a detector's AP, often far below 100% early on, on the range it reaches.
        let apTop = accuracy.flatMap(\.values).filter(\.isFinite).max() ?? 1
        let accuracyTop = accuracyLabel == "top-1 accuracy" ? 1 : min(1, Double(Figures.niceCeiling(Float(max(apTop, 0.01)))))
        panel(
            &canvas, x: 0, width: panelWidth, height: height, title: "loss", yLabel: "loss", epochs: epochs,
            series: loss, yMax: Double(Figures.niceCeiling(Float(max(lossTop, 1e-3)))), percent: false)
        panel(
            &canvas, x: panelWidth, width: panelWidth, height: height,
            title: accuracyLabel == "top-1 accuracy" ? "accuracy" : accuracyLabel, yLabel: accuracyLabel,
            epochs: epochs, series: accuracy, yMax: accuracyTop, percent: true)
        return canvas.image
    }

    /// One panel of losses per epoch (pre-training has no accuracy), one line per named series.
    public static func lossCurves(epochs: [Int], series: [(name: String, values: [Double])], title: String = "loss") -> RGBImage {
        let width = 640, height = 380
        var canvas = Canvas(width: width, height: height)
        let top = series.flatMap(\.values).filter(\.isFinite).max() ?? 1
        panel(
            &canvas, x: 0, width: width, height: height, title: title, yLabel: "loss", epochs: epochs,
            series: series, yMax: Double(Figures.niceCeiling(Float(max(top, 1e-3)))), percent: false)
        return canvas.image
    }

    private static func panel(
        _ canvas: inout Canvas, x x0: Int, width: Int, height: Int, title: String, yLabel: String, epochs: [Int],
        series: [(name: String, values: [Double])], yMax: Double, percent: Bool
    ) {
        let left = x0 + 64, right = x0 + width - 16, top = 48, bottom = height - 48
        let lastEpoch = max(epochs.last ?? 1, 1)
        func px(_ epoch: Int) -> Int { left + (right - left) * epoch / lastEpoch }
        func py(_ v: Double) -> Int { bottom - Int((min(max(v, 0), yMax) / yMax * Double(bottom - top)).rounded()) }
        for tick in 0...4 {
            let v = yMax * Double(tick) / 4, y = py(v)
            canvas.line(from: (left + 1, y), to: (right, y), (230, 230, 230))
            canvas.line(from: (left - 5, y), to: (left, y), Canvas.black)
            // Whole percents on a 0-100% axis; a narrow one (a detector's AP early on) needs its decimals.
            let label =
                percent
                ? String(format: yMax >= 0.2 ? "%.0f%%" : yMax >= 0.02 ? "%.1f%%" : "%.2f%%", v * 100)
                : String(format: v >= 10 ? "%.0f" : "%.2f", v)
            canvas.text(label, x: left - 8 - Canvas.textWidth(label), y: y - 5)
        }
        canvas.line(from: (left, top), to: (left, bottom), Canvas.black)
        canvas.line(from: (left, bottom), to: (right, bottom), Canvas.black)
        let tickStep = max(1, lastEpoch / 8)
        for epoch in stride(from: 0, through: lastEpoch, by: tickStep) {
            canvas.line(from: (px(epoch), bottom), to: (px(epoch), bottom + 5), Canvas.black)
            let label = String(epoch)
            canvas.text(label, x: px(epoch) - Canvas.textWidth(label) / 2, y: bottom + 10)
        }
        canvas.text("epoch", x: (left + right) / 2 - Canvas.textWidth("epoch") / 2, y: height - 18)
        canvas.verticalText(yLabel, x: x0 + 6, y: (top + bottom) / 2 + Canvas.textWidth(yLabel) / 2)
        canvas.text(title, x: left, y: 12, scale: 3)
        // The legend beside the title when it fits there, else one entry a line in the plot's top right corner.
        let shown = series.filter { $0.values.contains(where: \.isFinite) }
        let rowWidth = shown.reduce(0) { $0 + 34 + Canvas.textWidth($1.name) }
        let inRow = left + Canvas.textWidth(title, scale: 3) + 24 + rowWidth <= right
        let columnWidth = 18 + (shown.map { Canvas.textWidth($0.name) }.max() ?? 0)
        for (s, line) in series.enumerated() {
            let color = seriesColors[s % seriesColors.count]
            var previous: (Int, Int)?
            for (epoch, value) in zip(epochs, line.values) {
                guard value.isFinite else { previous = nil; continue }
                let point = (px(epoch), py(value))
                if let previous {
                    for offset in 0...1 { canvas.line(from: (previous.0, previous.1 + offset), to: (point.0, point.1 + offset), color) }
                }
                canvas.dot(point.0, point.1, radius: 3, color)
                previous = point
            }
        }
        // A legend that does not fit beside the title goes in the right-hand corner (top or bottom) with fewer
        // points under it, on white.
        let boxHeight = 14 * shown.count + 6, boxLeft = right - columnWidth - 12
        func pointsUnder(_ y0: Int) -> Int {
            series.flatMap { line in
                zip(epochs, line.values).filter { $1.isFinite }.map { (px($0), py($1)) }
            }.filter { $0.0 >= boxLeft && $0.1 >= y0 && $0.1 <= y0 + boxHeight }.count
        }
        let boxTop = pointsUnder(top + 2) <= pointsUnder(bottom - boxHeight - 4) ? top + 2 : bottom - boxHeight - 4
        if !inRow { canvas.fill(x: boxLeft, y: boxTop, width: columnWidth + 10, height: boxHeight, (255, 255, 255)) }
        var legendX = left + Canvas.textWidth(title, scale: 3) + 24, legendRow = 0
        for (s, line) in series.enumerated() {
            let color = seriesColors[s % seriesColors.count]
            guard line.values.contains(where: \.isFinite) else { continue }
            if inRow {
                canvas.fill(x: legendX, y: 18, width: 14, height: 6, color)
                canvas.text(line.name, x: legendX + 18, y: 16)
                legendX += 18 + Canvas.textWidth(line.name) + 16
            } else {
                let y = boxTop + 4 + 14 * legendRow
                canvas.fill(x: right - columnWidth - 6, y: y + 2, width: 14, height: 6, color)
                canvas.text(line.name, x: right - columnWidth + 12, y: y)
                legendRow += 1
            }
        }
    }

    /// The confusion matrix as coloured cells (row-normalised share on viridis, the count written in each cell),
    /// true classes down and predicted classes across, both named, with each row's accuracy and a colour bar.
    public static func confusionMatrix(_ counts: [[Int]], classNames: [String]) -> RGBImage {
        let n = classNames.count
        let cell = max(28, min(56, 560 / max(n, 1)))
        let names = classNames.map { String($0.prefix(14)) }
        let nameWidth = (names.map { Canvas.textWidth($0) }.max() ?? 0)
        let left = nameWidth + 36, top = 40 + nameWidth + 28
        let title = "confusion matrix: true class (rows) vs predicted class (columns)"
        let width = max(left + n * cell + 70, Canvas.textWidth(title) + 16), height = top + n * cell + 16
        var canvas = Canvas(width: width, height: height)
        canvas.text(title, x: 8, y: 10)
        canvas.text("predicted", x: left + n * cell / 2 - Canvas.textWidth("predicted") / 2, y: 34)
        canvas.verticalText("true", x: 6, y: top + n * cell / 2 + Canvas.textWidth("true") / 2)
        for (j, name) in names.enumerated() {
            canvas.verticalText(name, x: left + j * cell + cell / 2 - 5, y: top - 8)
        }
        canvas.text("acc.", x: left + n * cell + 8, y: top - 18)
        for (i, row) in counts.enumerated() {
            let total = max(row.reduce(0, +), 1)
            canvas.text(names[i], x: left - 8 - Canvas.textWidth(names[i]), y: top + i * cell + cell / 2 - 5)
            for (j, count) in row.enumerated() {
                let share = Float(count) / Float(total)
                let color = Colormap.viridis(share)
                canvas.fill(x: left + j * cell + 1, y: top + i * cell + 1, width: cell - 2, height: cell - 2, color)
                let label = String(count)
                let ink: Canvas.Color = share > 0.55 ? Canvas.black : Canvas.white
                let scale = Canvas.textWidth(label) <= cell - 4 ? 2 : 1
                canvas.text(
                    label, x: left + j * cell + cell / 2 - Canvas.textWidth(label, scale: scale) / 2,
                    y: top + i * cell + cell / 2 - 5, scale: scale, ink)
            }
            let accuracy = "\(Int((Double(row[i]) / Double(total) * 100).rounded()))%"
            canvas.text(accuracy, x: left + n * cell + 8, y: top + i * cell + cell / 2 - 5)
        }
        return Figures.withColorBar(canvas.image, top: top, low: "0%", high: "100%", caption: "SHARE OF THE TRUE CLASS")
    }
}
