import Foundation

/// The stored size of a JPEG or PNG, read from its header without decoding the pixels: enough to tell whether a
/// folder of images shares one size before deciding how to load it. EXIF orientation is not applied (a rotation
/// swaps width and height, which leaves the question "are these all the same square size?" unchanged).
public enum ImageHeader {
    public static func size(of data: Data) -> (width: Int, height: Int)? {
        data.withUnsafeBytes { raw -> (width: Int, height: Int)? in
            let bytes = raw.bindMemory(to: UInt8.self)
            func be16(_ i: Int) -> Int { Int(bytes[i]) << 8 | Int(bytes[i + 1]) }
            func be32(_ i: Int) -> Int { be16(i) << 16 | be16(i + 2) }
            // PNG: 8-byte signature, then the IHDR chunk (length, "IHDR", width, height).
            if bytes.count >= 24, bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]) {
                let (w, h) = (be32(16), be32(20))
                return w > 0 && h > 0 ? (w, h) : nil
            }
            // JPEG: walk the marker segments to the first start-of-frame (SOF0-SOF15 but DHT, JPG and DAC).
            guard bytes.count >= 4, bytes[0] == 0xFF, bytes[1] == 0xD8 else { return nil }
            var i = 2
            while i + 9 < bytes.count {
                guard bytes[i] == 0xFF else { return nil }
                let marker = bytes[i + 1]
                if marker == 0xFF { i += 1; continue }  // fill byte
                if marker == 0xD8 || (0xD0...0xD7).contains(marker) { i += 2; continue }  // no length
                let length = be16(i + 2)
                if (0xC0...0xCF).contains(marker), ![0xC4, 0xC8, 0xCC].contains(marker) {
                    let (h, w) = (be16(i + 5), be16(i + 7))
                    return w > 0 && h > 0 ? (w, h) : nil
                }
                guard length >= 2 else { return nil }
                i += 2 + length
            }
            return nil
        }
    }
}
