import Foundation

/// How much memory this process can still have: what readers of untrusted files check a declared size against
/// before allocating it, and what the memory estimates of training and inference are compared with.
public enum SystemMemory {
    /// The memory the kernel says can be had now (`MemAvailable` in /proc/meminfo), or nil where it cannot tell.
    public static func availableBytes() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
            let parts = line.split(separator: " ")
            if parts.count >= 2, let kib = Int(parts[1]), kib < Int.max / 1024 { return kib * 1024 }
        }
        return nil
    }

    /// `availableBytes`, or half the physical memory where the kernel does not say.
    public static var available: Int { availableBytes() ?? Int(ProcessInfo.processInfo.physicalMemory / 2) }

    /// "1.5 GiB".
    public static func describe(_ bytes: Int) -> String {
        bytes < 1 << 20
            ? "\(bytes) bytes"
            : String(format: "%.1f %@", Double(bytes) / Double(bytes < 1 << 30 ? 1 << 20 : 1 << 30), bytes < 1 << 30 ? "MiB" : "GiB")
    }
}
