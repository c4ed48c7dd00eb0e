import Checkpoints
import Foundation
import Testing

/// numpy's .npy header (what every npz member is): shapes parsed strictly, and each malformed one an error naming
/// the file.
@Suite struct NpyTests {
    static func npy(shape: String, descr: String = "<f4", data: [UInt8] = []) -> Data {
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': (\(shape)), }"
        while (10 + header.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        return Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.count & 0xFF), UInt8(header.count >> 8)] + Array(header.utf8) + data)
    }

    @Test func npyShapesAreParsedStrictly() throws {
        #expect(try Npy.parse(Self.npy(shape: "", data: [0, 0, 128, 63]), name: "scalar.npy").shape == [])
        #expect(try Npy.parse(Self.npy(shape: "1L, 1L", data: [0, 0, 128, 63]), name: "py2.npy").shape == [1, 1])
        #expect(try Npy.parse(Self.npy(shape: "0,"), name: "empty.npy").shape == [0])
        for (shape, reason) in [
            ("1e3,", "not a non-negative integer"), ("-1,", "not a non-negative integer"), ("2, x", "not a non-negative integer"),
            ("4294967295, 4294967295, 4294967295", "more elements than any array"), ("1000,", "truncated"),
            ("1, 1, 1, 1, 1, 1, 1", "rank 7, above the engine's limit of 6")
        ] {
            #expect {
                try Npy.parse(Self.npy(shape: shape), name: "bad.npy")
            } throws: { error in
                "\(error)".contains("bad.npy") && "\(error)".contains(reason)
            }
        }
    }
}
