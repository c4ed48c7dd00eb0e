import Foundation

/// A new, empty folder under the temporary directory, named `prefix-UUID`: each test's own place to write (the test
/// removes it). One definition for every test target.
public func temporaryFolder(_ prefix: String = "swiftvit") throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
