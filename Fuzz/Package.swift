// swift-tools-version:6.0
// libFuzzer harnesses for every reader of untrusted input (scripts/fuzz builds and runs them). A package of its own:
// its executable has no main (libFuzzer's is linked in), so it cannot live in the main package's normal build.
import PackageDescription

let package = Package(
    name: "SwiftViTFuzz",
    platforms: [.macOS(.v14)],
    dependencies: [.package(name: "SwiftViT", path: "..")],
    targets: [
        .executableTarget(
            name: "fuzz",
            dependencies: [
                .product(name: "Images", package: "SwiftViT"), .product(name: "Checkpoints", package: "SwiftViT"),
                .product(name: "ViT", package: "SwiftViT"), .product(name: "Datasets", package: "SwiftViT"),
                .product(name: "Tensors", package: "SwiftViT"), .product(name: "NN", package: "SwiftViT"),
                .product(name: "CLIP", package: "SwiftViT"), .product(name: "Training", package: "SwiftViT"),
                .product(name: "Generation", package: "SwiftViT")
            ],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])])
    ],
    swiftLanguageModes: [.v5]
)
