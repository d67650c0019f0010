// swift-tools-version:6.0
import PackageDescription

/// Hot numeric code is compiled for speed in release builds only; debug builds stay checkable.
let releaseSpeed: [SwiftSetting] = [
    .unsafeFlags(["-Ounchecked", "-cross-module-optimization"], .when(configuration: .release)),
]

let package = Package(
    name: "qsh",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "qsh", targets: ["qsh"]),
        .library(name: "QLang", targets: ["QLang"]),
        .library(name: "QuantOps", targets: ["QuantOps"]),
        .library(name: "Interpreter", targets: ["Interpreter"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.19"),
    ],
    targets: [
        // System libraries, each behind a tiny module map.
        .systemLibrary(name: "CReadline", path: "Sources/CReadline"),
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL"),
        .systemLibrary(name: "CCrypto", path: "Sources/CCrypto"),
        // Small C helpers: readline globals and signal handling, runtime CPU dispatch.
        .target(name: "CShims", path: "Sources/CShims"),
        .target(name: "CLineEditor", dependencies: ["CShims", "CReadline"], path: "Sources/CLineEditor",
                linkerSettings: [.linkedLibrary("readline")]),

        .target(name: "QLang", swiftSettings: releaseSpeed),
        .target(
            name: "QuantOps",
            dependencies: [
                "CBLAS", "CDNNL", "CCrypto", "CShims",
                .product(name: "ZIPFoundation", package: "ZIPFoundation"),
            ],
            swiftSettings: releaseSpeed),
        .target(name: "Interpreter", dependencies: ["QLang", "QuantOps", "CShims"], swiftSettings: releaseSpeed),
        .executableTarget(
            name: "qsh",
            dependencies: [
                "Interpreter", "QLang", "CShims", "CLineEditor", "CReadline",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: releaseSpeed),
        // Engine throughput and accuracy through the public API; Benchmarks/eval-throughput.sh runs it.
        .executableTarget(name: "EngineBenchmark", dependencies: ["QuantOps"], path: "Benchmarks/EngineBenchmark",
                          swiftSettings: releaseSpeed),

        // Fuzz targets (docs/fuzzing.md): scripts/fuzz.sh builds them with libFuzzer and -DQSH_LIBFUZZER;
        // a plain build makes them replay saved inputs, so they are always compiled.
        .executableTarget(name: "FuzzQLang", dependencies: ["QLang", "Interpreter"], path: "Fuzz/FuzzQLang"),
        .executableTarget(name: "FuzzCheckpoints", dependencies: ["QuantOps"], path: "Fuzz/FuzzCheckpoints"),

        .testTarget(name: "QLangTests", dependencies: ["QLang"]),
        .testTarget(name: "QuantOpsTests", dependencies: ["QuantOps"]),
        .testTarget(name: "InterpreterTests", dependencies: ["Interpreter", "QLang", "QuantOps"]),
        .testTarget(name: "QshTests", dependencies: ["qsh"]),
    ],
    swiftLanguageModes: [.v6]
)
