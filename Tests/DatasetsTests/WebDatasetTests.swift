import Foundation
import Tensors
import TestSupport
import Testing

@testable import Datasets

/// WebDataset shards: shard lists, keys, reproducible writing, reading back, and damaged shards.
@Suite struct WebDatasetTests {
    @Test func shardListsExpandAsBraceexpand() throws {
        #expect(try WebDataset.expand("d/train-{000..002}.tar") == ["d/train-000.tar", "d/train-001.tar", "d/train-002.tar"])
        #expect(try WebDataset.expand("{a,b}-{1..2}.tar") == ["a-1.tar", "a-2.tar", "b-1.tar", "b-2.tar"])
        #expect(try WebDataset.expand("x.tar::y-{8..10}.tar") == ["x.tar", "y-8.tar", "y-9.tar", "y-10.tar"])
        #expect(throws: (any Error).self) { try WebDataset.expand("a-{1..3.tar") }
        #expect(throws: (any Error).self) { try WebDataset.expand("a-{5..3}.tar") }
    }

    @Test func keysAreThePathUpToTheBaseNamesFirstDot() {
        #expect(WebDataset.keyAndExtension("set.v1/img.seg.JPG")! == ("set.v1/img", "seg.jpg"))
        #expect(WebDataset.keyAndExtension("00000001.cls")! == ("00000001", "cls"))
        #expect(WebDataset.keyAndExtension("README") == nil)
        #expect(WebDataset.keyAndExtension("dir/.hidden") == nil)
    }

    @Test func writtenShardsReadBackAndAreReproducible() throws {
        let folder = try temporaryFolder("swiftvit-wds")
        defer { try? FileManager.default.removeItem(at: folder) }
        func write(_ out: URL) throws -> [(name: String, count: Int)] {
            var writer = try ShardWriter(folder: out, prefix: "train", maxCount: 2)
            for i in 0..<5 {
                try writer.write(
                    key: String(format: "%08d", i),
                    members: [("png", Data(repeating: UInt8(i), count: 700 + i)), ("cls", Data("\(i % 3)".utf8))])
            }
            let sizes = try writer.finish()
            try ShardWriter.writeIndex(in: out, sizes: sizes, classNames: ["a", "b", "c"])
            return sizes
        }
        let sizes = try write(folder.appendingPathComponent("one"))
        #expect(sizes.map(\.count) == [2, 2, 1])
        _ = try write(folder.appendingPathComponent("two"))
        for size in sizes {
            let a = try Data(contentsOf: folder.appendingPathComponent("one/\(size.name)"))
            #expect(a == (try Data(contentsOf: folder.appendingPathComponent("two/\(size.name)"))), "\(size.name) is not reproducible")
        }
        let shards = try WebDataset.expand(folder.appendingPathComponent("one").path + "/train-{000000..000002}.tar").map(
            URL.init(fileURLWithPath:))
        let samples = try shards.flatMap { try WebDataset.samples(in: $0) }
        #expect(samples.map(\.key) == (0..<5).map { String(format: "%08d", $0) })
        #expect(try samples.map { try $0.label() } == [0, 1, 2, 0, 1])
        #expect(samples.allSatisfy { $0.image?.ext == "png" } && samples[3].image?.data == Data(repeating: 3, count: 703))
        #expect(WebDataset.sampleCount(in: folder.appendingPathComponent("one"), shards: shards) == 5)
    }

    @Test func damagedShardsNameTheShardAndMember() throws {
        let folder = try temporaryFolder("swiftvit-wds-bad")
        defer { try? FileManager.default.removeItem(at: folder) }
        var writer = try ShardWriter(folder: folder, prefix: "s", maxCount: 10)
        try writer.write(key: "k1", members: [("jpg", Data(count: 2000)), ("cls", Data("seven".utf8))])
        _ = try writer.finish()
        let shard = folder.appendingPathComponent("s-000000.tar")
        let sample = try #require(try WebDataset.samples(in: shard).first)
        #expect { try sample.label() } throws: { "\($0)".contains(shard.path) && "\($0)".contains("k1.cls") && "\($0)".contains("seven") }
        let bytes = try Data(contentsOf: shard)
        let cut = folder.appendingPathComponent("cut.tar")
        try bytes.prefix(1200).write(to: cut)
        #expect { try WebDataset.samples(in: cut) } throws: { "\($0)".contains(cut.path) && "\($0)".contains("truncated") }
        #expect { try WebDataset.samples(in: folder.appendingPathComponent("missing.tar")) } throws: { "\($0)".contains("missing.tar") }
        let empty = folder.appendingPathComponent("empty.tar")
        try Data(count: 1024).write(to: empty)
        #expect(try WebDataset.samples(in: empty).isEmpty)
    }
}
