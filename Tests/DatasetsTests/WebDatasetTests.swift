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

/// Shards read as streams: one member at a time, shuffled per epoch as webdataset shuffles, resumable mid-epoch, and
/// damaged shards counted and passed.
@Suite struct WebDatasetStreamTests {
    /// 4 shards of 5 samples (keys 00000000...00000019), each a .png of its index and a .cls.
    func shards(in folder: URL) throws -> [URL] {
        var writer = try ShardWriter(folder: folder, prefix: "train", maxCount: 5)
        for i in 0..<20 {
            try writer.write(
                key: String(format: "%08d", i),
                members: [("png", Data(repeating: UInt8(i), count: 600 + i)), ("cls", Data("\(i % 4)".utf8))])
        }
        return try writer.finish().map { folder.appendingPathComponent($0.name) }
    }

    func keys(_ stream: WebDataset.ShuffledStream) -> [String] {
        var keys: [String] = []
        while let sample = stream.next() { keys.append(sample.key) }
        return keys
    }

    @Test func streamedSamplesEqualTheWholeShardReading() throws {
        let folder = try temporaryFolder("swiftvit-wds-stream")
        defer { try? FileManager.default.removeItem(at: folder) }
        for shard in try shards(in: folder) {
            let reader = try WebDataset.SampleReader(shard)
            var streamed: [WebDataset.Sample] = []
            while let sample = try reader.next() { streamed.append(sample) }
            #expect(streamed == (try WebDataset.samples(in: shard)))
        }
    }

    @Test func shuffledPerEpochDeterministicAndResumable() throws {
        let folder = try temporaryFolder("swiftvit-wds-shuffle")
        defer { try? FileManager.default.removeItem(at: folder) }
        let shards = try shards(in: folder)
        func epoch(_ e: Int, seed: UInt64 = 7, skip: Int = 0) -> [String] {
            keys(WebDataset.ShuffledStream(shards: shards, seed: seed, epoch: e, bufferSize: 6, initialFill: 3, skip: skip))
        }
        let first = epoch(0)
        #expect(first.count == 20 && Set(first).count == 20)
        #expect(first != (0..<20).map { String(format: "%08d", $0) }, "not shuffled")
        #expect(epoch(0) == first)
        #expect(epoch(1) != first && Set(epoch(1)) == Set(first))
        #expect(epoch(0, seed: 8) != first)
        // Resumed after 7 samples: the rest of the same sequence.
        #expect(epoch(0, skip: 7) == Array(first.dropFirst(7)))
        // A buffer of one is no shuffle within shards: each shard's samples stay in order.
        let ordered = keys(WebDataset.ShuffledStream(shards: shards, seed: 7, epoch: 0, bufferSize: 1, initialFill: 1))
        #expect(stride(from: 0, to: 20, by: 5).allSatisfy { ordered[$0..<($0 + 5)] == ordered[$0..<($0 + 5)].sorted()[...] })
    }

    @Test func damagedShardsAreCountedAndPassed() throws {
        let folder = try temporaryFolder("swiftvit-wds-damaged")
        defer { try? FileManager.default.removeItem(at: folder) }
        var shards = try shards(in: folder)
        // Shard 1 cut inside its third sample's image; shard 2 not a tar; a shard that is not there.
        let cut = try Data(contentsOf: shards[1])
        try cut.prefix(2 * 2560 + 512 + 100).write(to: shards[1])  // a sample: 512 + 1024 (png), 512 + 512 (cls)
        try Data(repeating: 0x41, count: 2048).write(to: shards[2])
        shards.append(folder.appendingPathComponent("missing.tar"))
        let stream = WebDataset.ShuffledStream(shards: shards, seed: 1, epoch: 0)
        let got = keys(stream)
        #expect(got.count == 5 + 2 + 5, "\(got)")
        #expect(stream.problems.count == 3, "\(stream.problems)")
        #expect(stream.problems.contains { $0.contains("train-000001.tar") && $0.contains("truncated") })
        #expect(stream.problems.contains { $0.contains("train-000002.tar") && $0.contains("not a tar archive") })
        #expect(stream.problems.contains { $0.contains("missing.tar") && $0.contains("no such file") })
        // A header that claims more than a member may have is refused, not allocated.
        var header = [UInt8](repeating: 0, count: 512)
        for (i, c) in "huge.jpg".utf8.enumerated() { header[i] = c }
        for (i, c) in "77777777777".utf8.enumerated() { header[124 + i] = c }
        let huge = folder.appendingPathComponent("huge.tar")
        try Data(header).write(to: huge)
        let reader = try TarReader(huge, memberLimit: 1 << 20)
        #expect(throws: FileError.self) { try reader.next() }
    }
}
