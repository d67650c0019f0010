import Foundation

/// A file the toolkit can find locally or fetch: its name inside a search directory (it may
/// include a subfolder), where to download it, and the digest that proves a download intact.
public struct RemoteFile: Sendable, Equatable {
    public var fileName: String
    /// Nil when no public download is known; the file must then be put in place by hand.
    public var url: URL?
    public var sha256: String?
    /// Some publishers (the CIFAR-10 archive) state only an MD5.
    public var md5: String?
    public var byteCount: Int64?

    public init(fileName: String, url: URL? = nil, sha256: String? = nil, md5: String? = nil, byteCount: Int64? = nil) {
        self.fileName = fileName
        self.url = url
        self.sha256 = sha256
        self.md5 = md5
        self.byteCount = byteCount
    }

    /// The digest to check a download against, preferring SHA-256.
    var expectedDigest: (algorithm: Checksum.Algorithm, hex: String)? {
        if let sha256 { return (.sha256, sha256.lowercased()) }
        if let md5 { return (.md5, md5.lowercased()) }
        return nil
    }
}

/// The published checkpoints and data the toolkit knows, with their digests.
public enum KnownFiles {
    static let akamasterBase = "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/"

    private static func akamaster(_ fileName: String, _ sha256: String, _ byteCount: Int64) -> RemoteFile {
        RemoteFile(fileName: fileName, url: URL(string: akamasterBase + fileName), sha256: sha256, byteCount: byteCount)
    }

    public static let resnet20 = akamaster(
        "resnet20-12fca82f.th", "12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8", 1_099_231)
    public static let resnet32 = akamaster(
        "resnet32-d509ac18.th", "d509ac1820d7f25398913559d7e81a13229b1e7adc5648e3bfa5e22dc137f850", 1_890_043)
    public static let resnet44 = akamaster(
        "resnet44-014dd654.th", "014dd6541728a1c700b1642ab640e211dc6eb8ed507d70697458dc8f8a0ae2e4", 2_680_855)
    public static let resnet56 = akamaster(
        "resnet56-4bfd9763.th", "4bfd97631478d6b638d2764fd2baff3edb1d7d82252d54439343b6596b9b5367", 3_471_733)
    /// Published, but not among the shared files, so its digest is not known here.
    public static let resnet110 = RemoteFile(fileName: "resnet110-1d1ed7c2.th", url: URL(string: akamasterBase + "resnet110-1d1ed7c2.th"))
    /// The Neuron-Merging ResNet-56 has no public download we know of.
    public static let neuronMergingResNet56 = RemoteFile(
        fileName: "nm-resnet56.pth.tar", sha256: "8cca1ae3647475d814da681e271cfebb35db884899495329d889279331452002",
        byteCount: 3_501_979)
    /// ResNet-20 re-saved in today's zip format and as safetensors; derived locally, not published.
    public static let resnet20ZipFormat = RemoteFile(
        fileName: "resnet20-zipformat.pt", sha256: "f85af90989c1c0576e32e9b6e661126bb341b3bbd7d56ce5c85adbbf74e81d76",
        byteCount: 1_114_541)
    public static let resnet20SafeTensors = RemoteFile(
        fileName: "resnet20.safetensors", sha256: "02926273efb1deadb6dc654c7087baea932ef2026d9f854680d6858146d85838",
        byteCount: 1_092_520)

    public static let models: [RemoteFile] = [
        resnet20, resnet32, resnet44, resnet56, neuronMergingResNet56, resnet20ZipFormat, resnet20SafeTensors,
    ]

    /// The official CIFAR-10 binary archive; it unpacks to `cifar-10-batches-bin/`.
    public static let cifar10Archive = RemoteFile(
        fileName: "cifar-10-binary.tar.gz", url: URL(string: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"),
        md5: "c32a1d4ab5d03f1284b67883e8d87530", byteCount: 170_052_171)
    public static let cifar10Folder = "cifar-10-batches-bin"
    /// The official CIFAR-100 binary archive (MD5 as the CIFAR page states it; no byte count is
    /// published); it unpacks to `cifar-100-binary/` with `train.bin` and `test.bin`.
    public static let cifar100Archive = RemoteFile(
        fileName: "cifar-100-binary.tar.gz", url: URL(string: "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"),
        md5: "03b5dce01913d631647c71ecec9e9cb8")
    public static let cifar100Folder = "cifar-100-binary"
    /// Files of the official archive, byte for byte what it unpacks to.
    public static let cifar10TestBatch = RemoteFile(
        fileName: cifar10Folder + "/test_batch.bin",
        sha256: "8e2eb146ae340b09e24670f29cabc6326dba54da8789dab6768acf480273f65b", byteCount: 30_730_000)
    public static let cifar10TrainingBatch1 = RemoteFile(
        fileName: cifar10Folder + "/data_batch_1.bin",
        sha256: "cee916563c9f80d84e3cc88e17fdc0941787f1244f00a67874d45b261883ada5", byteCount: 30_730_000)

    public static func model(named fileName: String) -> RemoteFile? {
        models.first { $0.fileName == fileName }
    }
}
