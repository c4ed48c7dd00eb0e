// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "SwiftViT",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "Tensors", targets: ["Tensors"]),
        .library(name: "NN", targets: ["NN"]),
        .library(name: "Checkpoints", targets: ["Checkpoints"]),
        .library(name: "ViT", targets: ["ViT"]),
        .library(name: "Images", targets: ["Images"]),
        .library(name: "Inference", targets: ["Inference"]),
        .library(name: "Plots", targets: ["Plots"]),
        .library(name: "Datasets", targets: ["Datasets"]),
        .library(name: "Training", targets: ["Training"]),
        .library(name: "CLIP", targets: ["CLIP"]),
        .library(name: "Detection", targets: ["Detection"]),
        .library(name: "Hub", targets: ["Hub"]),
        .library(name: "Generation", targets: ["Generation"]),
        .library(name: "Parallel", targets: ["Parallel"]),
        .library(name: "Serving", targets: ["Serving"]),
        .library(name: "Export", targets: ["Export"]),
        .executable(name: "vit", targets: ["vit"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/vapor/multipart-kit", from: "4.7.1"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0")
    ],
    targets: [
        // oneDNN's C API, from Debian's libdnnl-dev (scripts/bootstrap installs it).
        .systemLibrary(
            name: "CDNNL", path: "Sources/CDNNL", pkgConfig: nil,
            providers: [.apt(["libdnnl-dev"])]),
        // libjpeg-turbo and libpng behind setjmp-safe C wrappers (scripts/bootstrap installs the -dev packages).
        .target(name: "CImageCodecs", linkerSettings: [.linkedLibrary("jpeg"), .linkedLibrary("png16")]),
        // zlib: gzip (.tar.gz image folders, gzipped IDX files), raw deflate and CRC-32 (the zips of .pth and .npz).
        .target(name: "CCompression", linkerSettings: [.linkedLibrary("z")]),
        // The elementwise passes of dynamic int8 quantisation, compiled per ISA (see its header).
        .target(name: "CQuantization"),
        // Tensors, the autograd tape and every op; the math runs on oneDNN.
        .target(name: "Tensors", dependencies: ["CDNNL", "CQuantization"]),
        // Modules with named parameters, layers, initialisers, optimisers, schedules.
        .target(name: "NN", dependencies: ["Tensors"]),
        // Checkpoint file formats: safetensors, npz and .pth reading (a bounded zip reader of our own), atomic writing.
        .target(name: "Checkpoints", dependencies: ["Tensors", "CCompression"]),
        // Images: decoding, PNG encoding, PIL-exact resizing, timm's evaluation transform.
        .target(name: "Images", dependencies: ["CImageCodecs", "Tensors"]),
        // ViT/DeiT: configuration and presets, the model, position embeddings, loading published checkpoints (the
        // key maps of timm, Hugging Face and JAX layouts live beside the loader).
        .target(name: "ViT", dependencies: ["Tensors", "NN", "Checkpoints"]),
        // Plots: a small canvas, bitmap font and colour map; the figures of vit inspect.
        .target(name: "Plots", dependencies: ["Images"]),
        // Datasets: image folders (directories or .tar.gz), CIFAR binary, IDX; in memory; stratified splits.
        .target(name: "Datasets", dependencies: ["CCompression", "Images", "Tensors"]),
        // Training: the trainers (supervised, masked pre-training, contrastive; schedule, EMA, checkpoints, exact resume),
        // evaluation and its metrics.
        .target(
            name: "Training",
            dependencies: [
                "Tensors", "NN", "Checkpoints", "ViT", "Images", "Datasets", "Plots", "CLIP", "Detection", "Generation", "Parallel"
            ]),
        // CLIP: the tokenizer, the model (image and text towers), zero-shot classification, the contrastive loss.
        // OpenAI's BPE merges (MIT) ship with it, for CLIP folders that carry no tokenizer files.
        .target(
            name: "CLIP", dependencies: ["Datasets", "Tensors", "NN", "ViT", "Checkpoints", "Images"],
            resources: [.copy("Resources/bpe_simple_vocab_16e6.txt.gz")]),
        // Detection: DETR (the model with Hugging Face's names, facebookresearch/detr's mapped), its Hungarian matcher
        // and losses, post-processing.
        .target(name: "Detection", dependencies: ["Tensors", "NN", "Checkpoints", "ViT", "Images", "Plots", "Datasets"]),
        // Hub: published weights by name, into and out of the Hugging Face cache (huggingface_hub's layout); downloads
        // with async-http-client, verified with swift-crypto's SHA-256.
        .target(
            name: "Hub",
            dependencies: [
                "Tensors", .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio")
            ]),
        // Inference: Classifier (load once, classify many), the background batch loader, ImageNet's class names.
        .target(name: "Inference", dependencies: ["ViT", "NN", "Images", "Tensors", "Datasets"]),
        // Parallel: the ranks of an MPI job and their collectives, on Open MPI's library opened at run time (no build
        // dependency: a machine without Open MPI builds and runs single-process).
        .target(name: "Parallel"),
        // Serving: vit serve's HTTP server (the Open Inference Protocol over REST, on Hummingbird 2) and its dynamic
        // batcher.
        .target(
            name: "Serving",
            dependencies: [
                "Inference", "Images", "Tensors", "CLIP", .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"), .product(name: "MultipartKit", package: "multipart-kit")
            ]),
        // Export: ViT/DeiT classifiers and CLIP's image tower as ONNX graphs (the ONNX messages generated once from
        // onnx.proto by scripts/generate-onnx-swift, committed).
        .target(
            name: "Export",
            dependencies: ["ViT", "CLIP", "NN", "Tensors", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            exclude: ["Generated/onnx.proto"]),
        // The Image Transformer: images generated one sub-pixel at a time.
        .target(name: "Generation", dependencies: ["Tensors", "NN", "Checkpoints"]),
        // The command-line tool.
        .executableTarget(
            name: "vit",
            dependencies: [
                "CDNNL", "Tensors", "NN", "Checkpoints", "ViT", "Images", "Inference", "Plots", "Datasets", "Training", "CLIP", "Detection",
                "Hub", "Parallel", "Serving", "Export",
                .product(name: "ArgumentParser", package: "swift-argument-parser")
            ], resources: [.copy("Resources/cifar10-vit")]),
        // Shared test helpers: finite-difference gradient checks, temporary folders, the fixtures (Tests/<Target>/Fixtures,
        // read in place by every target).
        .target(name: "TestSupport", dependencies: ["Tensors"], path: "Tests/TestSupport"),
        // ONNX export: each graph run by a reference interpreter against the model's forward pass.
        .testTarget(name: "ExportTests", dependencies: ["Export", "ViT", "CLIP", "NN", "Images", "Tensors", "TestSupport"]),
        .testTarget(name: "TensorsTests", dependencies: ["Tensors", "TestSupport"]),
        // The file formats on their own: safetensors, npy (each model's loading of them is in ViTTests).
        .testTarget(name: "CheckpointsTests", dependencies: ["Checkpoints", "Tensors", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(
            name: "NNTests", dependencies: ["NN", "Tensors", "Checkpoints", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(
            name: "ImagesTests", dependencies: ["Images", "Tensors", "Checkpoints", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "InferenceTests", dependencies: ["Inference", "ViT", "Images", "Tensors", "Checkpoints", "TestSupport"]),
        .testTarget(name: "DatasetsTests", dependencies: ["Datasets", "Images", "Tensors", "TestSupport"]),
        .testTarget(
            name: "TrainingTests",
            dependencies: ["Training", "Datasets", "ViT", "NN", "Images", "Tensors", "Checkpoints", "CLIP", "Detection", "TestSupport"],
            exclude: ["Fixtures"]),
        .testTarget(name: "PlotsTests", dependencies: ["Plots", "Images"]),
        .testTarget(
            name: "GenerationTests", dependencies: ["Generation", "NN", "Tensors", "Checkpoints", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(
            name: "CLIPTests", dependencies: ["CLIP", "Checkpoints", "Tensors", "Images", "ViT", "TestSupport"], exclude: ["Fixtures"]),
        // Runs the built vit executable as a user would (exit statuses, option names, whole commands).
        .testTarget(name: "CLITests", dependencies: ["vit", "Images", "Checkpoints", "Hub", "Tensors", "TestSupport"]),
        // The hub client against a loopback server that answers as the Hugging Face Hub does (no test reaches a real hub).
        .testTarget(
            name: "HubTests",
            dependencies: [
                "Hub", "Tensors", "TestSupport", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto")
            ]),
        .testTarget(
            name: "DetectionTests", dependencies: ["Detection", "ViT", "Tensors", "Checkpoints", "Images", "TestSupport"],
            exclude: ["Fixtures"]),
        .testTarget(
            name: "ViTTests", dependencies: ["ViT", "NN", "Tensors", "Checkpoints", "TestSupport"], exclude: ["Fixtures"])
    ],
    swiftLanguageModes: [.v5]
)
