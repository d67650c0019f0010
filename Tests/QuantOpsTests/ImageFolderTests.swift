import Foundation
import QuantOps
import XCTest

/// Image folders: reading order and labels as torchvision's ImageFolder, unreadable files, and
/// preprocessing that matches PIL + torchvision byte for byte.
final class ImageFolderTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/imagefolder")

    static var sampleFolder: URL? {
        let data = ProcessInfo.processInfo.environment["QSH_DATA"] ?? "/work/shared/data"
        let folder = URL(fileURLWithPath: data).appendingPathComponent("imagenet-sample")
        return FileManager.default.fileExists(atPath: folder.path) ? folder : nil
    }

    static func sha256(_ bytes: [UInt8]) -> String { Checksum.sha256(Data(bytes)) }

    /// `(path, WxH, sha256)` lines; a first word `decoded` marks a full-size decode line.
    static func referenceLines(_ file: String) throws -> [[String]] {
        try String(contentsOf: fixtures.appendingPathComponent(file), encoding: .utf8)
            .split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
    }

    // MARK: Exactly as Pillow

    func testJPEGCropsMatchPillowExactly() throws {
        guard let folder = Self.sampleFolder else { throw XCTSkip("the ImageNet sample (QSH_DATA/imagenet-sample) is not here") }
        let preprocessing = ImagePreprocessing(resize: 256, crop: 224, filter: .bilinear)
        var checked = 0
        for line in try Self.referenceLines("crops.sha256.txt") {
            if line[0] == "decoded" {
                let image = try ImageDecoding.rgb(folder.appendingPathComponent(line[1]).path)
                XCTAssertEqual("\(image.width)x\(image.height)", line[2])
                XCTAssertEqual(Self.sha256(image.pixels), line[3], "decoded \(line[1])")
                continue
            }
            let image = try ImageDecoding.rgb(folder.appendingPathComponent(line[0]).path)
            let size = preprocessing.resizedSize(width: image.width, height: image.height)
            XCTAssertEqual("\(size.width)x\(size.height)", line[1], line[0])
            XCTAssertEqual(Self.sha256(preprocessing.apply(image).pixels), line[2], "crop of \(line[0])")
            checked += 1
        }
        XCTAssertEqual(checked, 25)
        // Every decode, including the images whose crop alone would not show a decoder difference.
        for line in try Self.referenceLines("decoded.sha256.txt") {
            let image = try ImageDecoding.rgb(folder.appendingPathComponent(line[0]).path)
            XCTAssertEqual("\(image.width)x\(image.height)", line[1], line[0])
            XCTAssertEqual(Self.sha256(image.pixels), line[2], "decoded \(line[0])")
        }
    }

    func testPNGCropsMatchPillowExactly() throws {
        let preprocessing = ImagePreprocessing(resize: 32, crop: 24, filter: .bilinear)
        let lines = try Self.referenceLines("png-crops.sha256.txt")
        XCTAssertEqual(lines.count, 3)
        for line in lines {
            let image = try ImageDecoding.rgb(Self.fixtures.appendingPathComponent(line[0]).path)
            let size = preprocessing.resizedSize(width: image.width, height: image.height)
            XCTAssertEqual("\(size.width)x\(size.height)", line[1], line[0])
            XCTAssertEqual(Self.sha256(preprocessing.apply(image).pixels), line[2], "crop of \(line[0])")
        }
    }

    func testCropOffsetsRoundHalfToEvenAndPadSmallImages() {
        XCTAssertEqual(ImagePreprocessing.cropStartForTesting(size: 43, crop: 24), 10)  // round(9.5) = 10
        XCTAssertEqual(ImagePreprocessing.cropStartForTesting(size: 41, crop: 24), 8)   // round(8.5) = 8
        XCTAssertEqual(ImagePreprocessing.cropStartForTesting(size: 20, crop: 24), -2)  // 2 columns of padding first
        let white = RGBImage(width: 4, height: 4, pixels: [UInt8](repeating: 255, count: 48))
        let padded = ImagePreprocessing(resize: 4, crop: 6).apply(white)
        XCTAssertEqual(padded.pixels[0], 0)
        XCTAssertEqual(padded.pixels[(1 * 6 + 1) * 3], 255)
    }

    // MARK: Reading a folder

    /// A folder of classes `b`, `a` (so sorting matters), a nested folder, a file at the top
    /// level, a non-image file and one damaged image.
    func makeFolder() throws -> URL {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("imagefolder-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: root) }
        let png = try Data(contentsOf: Self.fixtures.appendingPathComponent("rgb-40x30.png"))
        let gray = try Data(contentsOf: Self.fixtures.appendingPathComponent("la-17x23.png"))
        for folder in ["a", "b", "b/nested", "empty"] {
            try FileManager.default.createDirectory(at: root.appendingPathComponent(folder), withIntermediateDirectories: true)
        }
        try png.write(to: root.appendingPathComponent("a/2.png"))
        try gray.write(to: root.appendingPathComponent("a/1.PNG"))
        try png.write(to: root.appendingPathComponent("b/z.png"))
        try gray.write(to: root.appendingPathComponent("b/nested/y.png"))
        try png.write(to: root.appendingPathComponent("top-level.png"))
        try Data("not an image".utf8).write(to: root.appendingPathComponent("a/notes.txt"))
        try Data([0xFF, 0xD8, 0xFF, 0x00, 0x01]).write(to: root.appendingPathComponent("b/broken.jpg"))
        return root
    }

    func testReadsClassesAndFilesInTorchvisionOrderSkippingUnreadableFiles() throws {
        let root = try makeFolder()
        let folder = try ImageFolder(name: "imagefolder:test", root: root,
                                     options: ImageFolderOptions(preprocessing: ImagePreprocessing(resize: 36, crop: 32)))
        XCTAssertEqual(folder.classNames, ["a", "b", "empty"])
        // sorted(os.walk): folder "b" (broken.jpg, z.png) before "b/nested"; broken.jpg is left out.
        XCTAssertEqual(folder.files, ["a/1.PNG", "a/2.png", "b/z.png", "b/nested/y.png"])
        XCTAssertEqual(folder.labels(of: 0..<folder.count), [0, 0, 1, 1])
        XCTAssertEqual(folder.skipped.map { URL(fileURLWithPath: $0.path).lastPathComponent }, ["broken.jpg"])
        XCTAssertEqual(folder.imageShape, ImageShape(channels: 3, height: 32, width: 32))
        let batch = try folder.batch([3, 0], normalization: Normalization(mean: [0, 0, 0], std: [1, 1, 1]))
        XCTAssertEqual(batch.shape, [2, 3, 32, 32])
        XCTAssert(batch.data.allSatisfy { $0 >= 0 && $0 <= 1 })
    }

    /// Crops are kept between batches (`CropCache`), but a file that changes is decoded again:
    /// a replaced image gives its new pixels, and one damaged after it was kept is an error.
    func testKeptCropsFollowTheirFiles() throws {
        let root = try makeFolder()
        let options = ImageFolderOptions(preprocessing: ImagePreprocessing(resize: 36, crop: 32))
        let identity = Normalization(mean: [0, 0, 0], std: [1, 1, 1])
        let folder = try ImageFolder(name: "x", root: root, options: options)
        let first = try folder.batch([1, 2], normalization: identity)
        XCTAssertEqual(try folder.batch([1, 2], normalization: identity), first)
        XCTAssertEqual(try ImageFolder(name: "x", root: root, options: options).batch([1, 2], normalization: identity), first)

        let gray = try Data(contentsOf: Self.fixtures.appendingPathComponent("la-17x23.png"))
        try gray.write(to: root.appendingPathComponent("a/2.png"))
        let replaced = try folder.batch([1, 2], normalization: identity)
        XCTAssertNotEqual(Array(replaced.data.prefix(3 * 32 * 32)), Array(first.data.prefix(3 * 32 * 32)))
        XCTAssertEqual(Array(replaced.data.suffix(3 * 32 * 32)), Array(first.data.suffix(3 * 32 * 32)))
        XCTAssertEqual(try folder.batch([0], normalization: identity).data, Array(replaced.data.prefix(3 * 32 * 32)),
                       "a/2.png now holds a/1.PNG's image")

        try Data([0xFF, 0xD8, 0xFF, 0x00, 0x01]).write(to: root.appendingPathComponent("b/z.png"))
        XCTAssertThrowsError(try folder.batch([1, 2], normalization: identity)) { error in
            XCTAssert("\(error)".contains("z.png"), "\(error)")
        }
    }

    func testStrictNamesTheUnreadableFile() throws {
        let root = try makeFolder()
        XCTAssertThrowsError(try ImageFolder(name: "x", root: root, options: ImageFolderOptions(strict: true))) { error in
            XCTAssert("\(error)".contains("broken.jpg"), "\(error)")
            XCTAssert((error as? ImageFolderError)?.remedy.contains("strict") == true)
        }
    }

    func testLabelsFileListsImagesInItsOrder() throws {
        let root = try makeFolder()
        try "# path label\nb/z.png 7\n\na/1.PNG 2\n".write(to: root.appendingPathComponent("labels.txt"), atomically: true, encoding: .utf8)
        let folder = try ImageFolder(name: "x", root: root, options: ImageFolderOptions(labelsFile: "labels.txt"))
        XCTAssertEqual(folder.files, ["b/z.png", "a/1.PNG"])
        XCTAssertEqual(folder.labels(of: 0..<2), [7, 2])
        XCTAssertEqual(folder.classCount, 8)
        try "a/missing.png 1\n".write(to: root.appendingPathComponent("bad.txt"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ImageFolder(name: "x", root: root, options: ImageFolderOptions(labelsFile: "bad.txt"))) { error in
            XCTAssert("\(error)".contains("bad.txt line 1"), "\(error)")
        }
    }

    func testMissingFolderAndDamagedFilesAreErrorsNotCrashes() throws {
        XCTAssertThrowsError(try ImageFolder(name: "x", root: URL(fileURLWithPath: "/nonexistent"))) { error in
            XCTAssertEqual(error as? ImageFolderError, .notAFolder(path: "/nonexistent"))
        }
        // A PNG cut short after its header: the header reads, the data does not.
        let png = try Data(contentsOf: Self.fixtures.appendingPathComponent("rgb-40x30.png"))
        let cut = FileManager.default.temporaryDirectory.appendingPathComponent("cut-\(UUID().uuidString).png")
        try png.prefix(60).write(to: cut)
        addTeardownBlock { try? FileManager.default.removeItem(at: cut) }
        XCTAssertNoThrow(try ImageDecoding.size(of: cut.path))
        XCTAssertThrowsError(try ImageDecoding.rgb(cut.path)) { error in
            XCTAssert("\(error)".contains(cut.path), "\(error)")
        }
        // Random bytes after a JPEG signature.
        var generator = SystemRandomNumberGenerator()
        let noise = FileManager.default.temporaryDirectory.appendingPathComponent("noise-\(UUID().uuidString).jpg")
        try Data([0xFF, 0xD8, 0xFF] + (0..<4000).map { _ in UInt8.random(in: 0...255, using: &generator) }).write(to: noise)
        addTeardownBlock { try? FileManager.default.removeItem(at: noise) }
        XCTAssertThrowsError(try ImageDecoding.rgb(noise.path))
    }
}
