import NN
import Tensors
import Testing

@Suite struct RegularizationTests {
    @Test func dropPathDropsWholeSamplesInTrainingOnly() {
        GlobalRandom.seed(5)
        let dropPath = DropPath(0.5)
        let x = Tensor.ones([64, 3, 4])
        let y = dropPath(x).toArray()
        var kept = 0
        for b in 0..<64 {
            let sample = Array(y[(b * 12)..<(b * 12 + 12)])
            #expect(sample.allSatisfy { $0 == 0 } || sample.allSatisfy { $0 == 2 }, "sample \(b) partly dropped")
            if sample[0] == 2 { kept += 1 }
        }
        #expect(kept > 16 && kept < 48, "\(kept) of 64 samples kept at p = 0.5")
        dropPath.eval()
        #expect(dropPath(x).toArray() == x.toArray())
    }

    @Test func dropoutModuleFollowsTheMode() {
        GlobalRandom.seed(6)
        let dropout = Dropout(0.5)
        let x = Tensor.ones([1000])
        #expect(dropout(x).toArray().contains(0))
        dropout.eval()
        #expect(dropout(x) === x)
    }
}
