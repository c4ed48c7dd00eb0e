import Foundation

/// The test fixtures, reached one way by every test target: each target's files stay in `Tests/<Target>/Fixtures` in
/// the source tree (a README.txt there says where they came from), and any target may read another's, in place,
/// without copies.
public enum Fixtures {
    /// `Tests/`.
    public static let tests = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    /// The repository's root (for what ships: `Sources/vit/Resources`, `README.md`).
    public static let repository = tests.deletingLastPathComponent()

    /// `Tests/<target>/Fixtures/<path>`.
    public static func url(_ target: String, _ path: String = "") -> URL {
        let folder = tests.appendingPathComponent(target).appendingPathComponent("Fixtures")
        return path.isEmpty ? folder : folder.appendingPathComponent(path)
    }
}
