import Foundation
import XCTest
@_spi(Fuzzing) @testable import QuantOps

/// A stored (uncompressed) zip built by hand, so an entry can claim sizes its data does not
/// have. `claimedSize` replaces the real size in both headers.
private struct ZipWriter {
    struct Item { var path: String; var data: [UInt8]; var claimedSize: UInt32? = nil }

    static func archive(_ items: [Item]) -> [UInt8] {
        var file: [UInt8] = []
        var directory: [UInt8] = []
        func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
        for item in items {
            let name = Array(item.path.utf8)
            let crc = crc32(item.data)
            let compressed = UInt32(item.data.count)
            let size = item.claimedSize ?? compressed
            let common = le(UInt16(20)) + le(UInt16(0)) + le(UInt16(0)) + le(UInt16(0)) + le(UInt16(0x21))
                + le(crc) + le(compressed) + le(size) + le(UInt16(name.count)) + le(UInt16(0))
            let offset = UInt32(file.count)
            file += le(UInt32(0x0403_4B50)) + common + name + item.data
            directory += le(UInt32(0x0201_4B50)) + le(UInt16(0x0314)) + common + le(UInt16(0)) + le(UInt16(0))
                + le(UInt16(0)) + le(UInt32(0o100644) << 16) + le(offset) + name
        }
        let directoryOffset = UInt32(file.count)
        file += directory
        file += le(UInt32(0x0605_4B50)) + le(UInt16(0)) + le(UInt16(0)) + le(UInt16(items.count)) + le(UInt16(items.count))
            + le(UInt32(directory.count)) + le(directoryOffset) + le(UInt16(0))
        return file
    }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }
}

/// The data.pkl of a torch zip: {'w': tensor viewing storage '0' of `count` elements}.
private func zipPickle(storageType: String = "FloatStorage", count: Int, shape: [Int32], strides: [Int32]) -> [UInt8] {
    var main = PickleWriter()
    main.opcode("}")
    main.string("w")
    main.global("torch._utils", "_rebuild_tensor_v2")
    main.opcode("(")
    main.opcode("(")
    main.string("storage")
    main.global("torch", storageType)
    main.string("0")
    main.string("cpu")
    main.int(wide: count)
    main.opcode("t")
    main.opcode("Q")
    main.int(0)
    main.tuple(shape)
    main.tuple(strides)
    main.raw([0x89])
    main.global("collections", "OrderedDict")
    main.opcode(")")
    main.opcode("R")
    main.opcode("t")
    main.opcode("R")
    main.opcode("s")
    main.stop()
    return main.bytes
}

private func safeTensors(header: String, data: [UInt8]) -> [UInt8] {
    let json = Array(header.utf8)
    return withUnsafeBytes(of: UInt64(json.count).littleEndian) { Array($0) } + json + data
}

/// Files that declare far more than they hold must fail with a `CheckpointError` before
/// anything of the declared size is allocated (the limits are in `CheckpointLimits` and
/// docs/fuzzing.md). A failure here would show as a crash or an out-of-memory kill.
final class CheckpointResourceLimitTests: XCTestCase {
    private func assertRefused(_ bytes: [UInt8], format: Checkpoint.Format, kind: CheckpointError.Kind, mentioning text: String,
                               file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try CheckpointReader.readCheckpoint(bytes: bytes, fileName: "bomb", format: format), file: file, line: line) { error in
            guard let error = error as? CheckpointError else { return XCTFail("\(error) is not a CheckpointError", file: file, line: line) }
            XCTAssertEqual(error.kind, kind, error.description, file: file, line: line)
            XCTAssertTrue(error.description.hasPrefix("bomb: "), error.description, file: file, line: line)
            XCTAssertTrue(error.description.contains(text), error.description, file: file, line: line)
        }
    }

    func testSafeTensorsDeclaringATrillionElementsFailBeforeAllocating() {
        let trillion = safeTensors(header: #"{"w":{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,4000000000000]}}"#,
                                   data: [0, 0, 0x80, 0x3F])
        assertRefused(trillion, format: .safetensors, kind: .truncated, mentioning: "tensor `w` needs bytes up to")
        // A header length of 2^40 bytes, and one just under the 100 MB cap in a 20-byte file.
        var huge = safeTensors(header: "{}", data: [])
        huge.replaceSubrange(0..<8, with: withUnsafeBytes(of: (UInt64(1) << 40).littleEndian) { Array($0) })
        assertRefused(huge, format: .safetensors, kind: .corrupt, mentioning: "100 MB")
        var short = safeTensors(header: "{}", data: [])
        short.replaceSubrange(0..<8, with: withUnsafeBytes(of: UInt64(99_000_000).littleEndian) { Array($0) })
        assertRefused(short, format: .safetensors, kind: .truncated, mentioning: "JSON header")
        // Shapes whose product overflows.
        let overflow = safeTensors(header: #"{"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}}"#,
                                   data: [0, 0, 0, 0])
        assertRefused(overflow, format: .safetensors, kind: .corrupt, mentioning: "impossible shape")
    }

    func testSafeTensorsEntriesMayNotShareBytes() throws {
        // A thousand header entries naming the same 4 KB would decode 4 MB from a 60 KB file.
        let entries = (0..<1000).map { #""t\#($0)":{"dtype":"F32","shape":[1024],"data_offsets":[0,4096]}"# }
        assertRefused(safeTensors(header: "{" + entries.joined(separator: ",") + "}", data: [UInt8](repeating: 0, count: 4096)),
                      format: .safetensors, kind: .corrupt, mentioning: "overlap")
        // Empty tensors take no bytes, so they may sit at any offset, including inside another.
        let empty = safeTensors(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"z":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}"#,
                                data: [0, 0, 0x80, 0x3F])
        let checkpoint = try CheckpointReader.readCheckpoint(bytes: empty, fileName: "empty", format: .safetensors)
        XCTAssertEqual(checkpoint.stateDict["a"]?.tensor.data, [1])
        XCTAssertEqual(checkpoint.stateDict["z"]?.tensor.shape, [0])
    }

    func testLegacyTensorOfATrillionElementsFailsBeforeAllocating() {
        // The pickle declares a 10^6 x 10^6 tensor on a storage of 10^12 floats; the file has 4 bytes.
        let file = legacyFile([LegacyTensor(name: "w", storageCount: 1_000_000_000_000, shape: [1_000_000, 1_000_000], strides: [1_000_000, 1])],
                              storages: [("0", 1_000_000_000_000, [0, 0, 0x80, 0x3F])])
        assertRefused(file, format: .legacyPickle, kind: .truncated, mentioning: "storage 0 needs 1000000000000 x 4 bytes")
    }

    func testZipDeclaringHugeSizesFailsBeforeAllocating() {
        let pickle = zipPickle(count: 1_000_000_000_000, shape: [1_000_000, 1_000_000], strides: [1_000_000, 1])
        // A trillion-element storage whose entry holds four bytes.
        let trillion = ZipWriter.archive([.init(path: "archive/data.pkl", data: pickle), .init(path: "archive/data/0", data: [0, 0, 0x80, 0x3F])])
        assertRefused(trillion, format: .torchZip, kind: .truncated, mentioning: "storage 0 needs 1000000000000 x 4 bytes")
        // An entry that claims 4 GB from 16 stored bytes: more than DEFLATE could expand them to.
        // (0xFFFFFFFF itself would mean "see the ZIP64 field".)
        let fourGB = UInt32.max - 1
        let bytePickle = zipPickle(storageType: "ByteStorage", count: Int(fourGB), shape: [Int32.max], strides: [1])
        let claimed = ZipWriter.archive([.init(path: "archive/data.pkl", data: bytePickle),
                                         .init(path: "archive/data/0", data: [UInt8](repeating: 7, count: 16), claimedSize: fourGB)])
        assertRefused(claimed, format: .torchZip, kind: .corrupt, mentioning: "claims 4294967294 bytes")
        // The pickle itself claiming 4 GB.
        let bigPickle = ZipWriter.archive([.init(path: "archive/data.pkl", data: pickle, claimedSize: fourGB)])
        assertRefused(bigPickle, format: .torchZip, kind: .corrupt, mentioning: "archive/data.pkl claims 4294967294 bytes")
    }

    func testPickleNestedAMillionDeepEndsWithoutRecursion() throws {
        let depth = 1_000_000
        // A million nested one-element tuples, then a million nested lists under a million MARKs.
        var tuples = PickleWriter()
        tuples.opcode(")")
        tuples.raw([UInt8](repeating: 0x85, count: depth))
        tuples.stop()
        var lists = PickleWriter()
        lists.raw([UInt8](repeating: UInt8(ascii: "("), count: depth) + [UInt8(ascii: "N")] + [UInt8](repeating: UInt8(ascii: "l"), count: depth))
        lists.stop()
        for pickle in [tuples.bytes, lists.bytes] {
            let inspection = try PickleInspection.inspect(pickle)
            XCTAssertEqual(inspection.objectCount, depth + (pickle == tuples.bytes ? 1 : 0))
            XCTAssertEqual(inspection.danglingReferences, 0)
            XCTAssertNil(inspection.stateDictTensorNames, "a tuple or list is no state dict")
            var unpickler = Unpickler(bytes: pickle, fileName: "deep.pt")
            let root = try unpickler.load()
            XCTAssertThrowsError(try TorchStateDictAssembler.locateStateDict(root, in: unpickler, fileName: "deep.pt"))
        }
        // The same depth as a whole legacy checkpoint: refused as no state dict, without a crash.
        var magic = PickleWriter()
        magic.raw([0x8A, 0x0A] + LegacyTorchReader.magicNumber)
        magic.stop()
        var version = PickleWriter()
        version.int(1001)
        version.stop()
        var info = PickleWriter()
        info.opcode("}")
        info.stop()
        assertRefused(magic.bytes + version.bytes + info.bytes + tuples.bytes, format: .legacyPickle, kind: .unsupported, mentioning: "tuple")
    }

    func testTensorsAliasingOneStorageCannotInflateAFile() throws {
        // 2,000 tensors each viewing all of one 1,024-float storage would decode 2 million floats
        // from a 300 KB file; the limit is 4 x 1,024 + 2^20 elements.
        let aliases = (0..<2000).map { LegacyTensor(name: "w\($0)", storageCount: 1024, shape: [1024], strides: [1]) }
        let file = legacyFile(aliases, storages: [("0", 1024, [UInt8](repeating: 0, count: 4096))])
        assertRefused(file, format: .legacyPickle, kind: .unsupported, mentioning: "over 4 times")
        // Tied weights, a few tensors sharing a storage, still load.
        let tied = legacyFile((0..<3).map { LegacyTensor(name: "w\($0)", storageCount: 1024, shape: [32, 32], strides: [32, 1]) },
                              storages: [("0", 1024, [UInt8](repeating: 0, count: 4096))])
        XCTAssertEqual(try CheckpointReader.readCheckpoint(bytes: tied, fileName: "tied", format: .legacyPickle).stateDict.count, 3)
        XCTAssertEqual(CheckpointLimits.maximumDecodedElements(storedElements: Int.max / 2), Int.max)
    }

    /// Found by the torch-zip fuzz target: offsets past the end of the data made ZIPFoundation's
    /// in-memory archive trap (Fuzz/corpus/torch-zip/regression-memory-archive.pt).
    func testZipWithOffsetsPastTheEndIsAnError() {
        let bytes = [UInt8](Data(base64Encoded: "UEsDBBQAAAAIAINefl0sAcm7IAEAAJEBAAAPAAAAcmVzbmV0L2RhdGEucGtsPY87T8MwFIXzKIS6PAuU93tJlwr6GxCLkVDDki1KHKuOCDEnuSkrSwf+NW7dIkt3sO537nd+PCF0WUpBha4a9lbnspb5cyGIwRlGcMO45ziO0NVs9C2LqSJ4gnQt1ChpqSgbltQya4syT0hWja6T2ZjBD8M4MFhjNtOpRMci7KXUKb3bT4aN2DU7j9iM/cWJrxYB7xO2JtwJucdd7nOf0A151zyfuwT2qxZSPQ0AAAAAAAAAWnvtKnNWdZSNfcKeCrhH2Ddx3JvjgLtz9G3AIeEowvHS0QRkRdpgsMbVCjyZGAXDnC7GmQXPCRcRLuOBBav2M8lSEko2CdWp+JA5rmzOqvGrrqb/ha+XZmPcmAOmza0xGw5t8B3hPsJDO/oDUEsDBBQAAAAIAINeAACAAd0BAAByZXNuZXQvZGF0YS8xUEsBAhQDFAAAAAgAg15+XXDW528FAAAACAAAAA0AAAAAAAAAAAAAAIABEgIAAHJlc25ldC9kYXRhLzJQSwECFAMUAAAACACDXn5d0Z5nVQQAAAACAAAADgAAAAAAAAAAAAAAgAFCAgAAcmVzbmV0L3ZlcnNpb25QSwUGAAAAAAYABgBoAQAAcgIAAAAA")!)
        XCTAssertThrowsError(try CheckpointReader.readCheckpoint(bytes: bytes, fileName: "bomb", format: .torchZip)) { error in
            XCTAssertTrue(error is CheckpointError, "\(error)")
        }
    }

    /// A deflated entry whose stream runs to the end of the file without ending: ZIPFoundation's
    /// inflate loop never returned on it (docs/fuzzing.md); the entry is now read within its
    /// compressed size and refused. Fuzz/corpus/torch-zip/regression-inflate-past-the-end.pt.
    func testDeflatedEntryThatEndsEarlyIsAnErrorNotAHang() {
        let bytes = [UInt8](Data(base64Encoded: "UEsDBBQAAAAIAINefl0sAcm7IAEAAJEBAAAPAAAAcmVzbmV0L2RhdGEucGtsPY87T8MwFIXzKIS6PAuU93tJlwr6GxCLkVDDki1KHKuOCDEnuSkrSwf+NW7dIkt3sO537nd+PCF0WUpBha4a9lbnspb5cyGIwRlGcMO45ziO0NVs9C2LqSJ4gnQt1ChpqSgbltQya4syT0hWja6T2ZjBD8M4MFhjNtOpRMci7KXUKb3bT4aN2DU7j9iM/cWJrxYB7xO2JtwJucdd7nGf0A151zyfuwT2qxZSPcJ2hJ24a7CsWnvtKnNWdZSNfcKeCrhH2Ddx3JvjgLtz9G3AIeEowvHS0QRkRdpgsMbVCjyZGAXDnC7GmQXPCRcRLuODBat2M8lSEko2CdWp+JA5rmzOqvGrrqb/ha+XZmPcmAOmza0xGw5t8OE+O0Md+sIDUEsDBBQAAAAIAINefl2FPeMZCAAAAAYAAAAQAAAAcmVzbmV0L2J5dGVvcmRlcsvJLCnJSQUAUEsDBBQAAAAIAINefl24X8CFLwAAAEgAAAANAAAAcmVzbmV0L2RhdGEvMBXKUQ0AIAzE0ErBCZOClElAAhJwwKTRXfI+LilEwRCqBylab/pVIuwUWkptHd34UEsDBBQAAAAIAINefl0GYQGiCgAAAAgAAAANAAAAcmVzbmV0L2RhdGEvMWNgaLBnYGiwAwBQSwMEFAAAAAgAg15+XXDW528FAAAACAAAAA0AAAByZXNuZXQvZGF0YS8yY2eAAABQSwMEFAAAAAgAg15+XdGeZ1UEAAAAAgAAAA4AAAByZXNuZXQvdmVyc2lvbjPmAgBQSwECFAMUAAiDAAAAXn5dLAHJuyABAACRAQAADwAAAAAAAAAAAAAAgAEAAAAAcmVzbmV0L2RhdGEucGtsUEsBAhQDFAAAAAgAg15+XYU94xkIAAAAAAAGABAAAAAAAAAAAAAAAIABTQEAAHJlc25ldC9ieXRlb3JkZXJQSwECFHMUAAD/////////AF+AhS8AAABIAAAADQAAAAAAAAAAAAAAgAGDAQAAcmVzbmV0L2RhdGEvMFBLAQIUAxQAAD0IAINefl0GYQGiCgAAAAgAAAANAAAAAAAAAAAAAACAAd0BAAByZXNuZXQvZGF0YS8xUEsBAhQDFAAAAAgAg15+XXDW528FAAAACAAAAA0AAAAAAAAAAAAAAIABEgIAAHJlc25ldC9kYXRhLzNQSwECFP7///8DFAAAAAgAg15+XdGeZ1UEAAAAAACAAUICAABynYyRmnQvdmVyc2lvblBLBQYAAAAABgAGAGgBAAByAgAAAAA=")!)
        XCTAssertThrowsError(try CheckpointReader.readCheckpoint(bytes: bytes, fileName: "cut.pt", format: .torchZip)) { error in
            XCTAssertTrue("\(error)".hasPrefix("cut.pt: zip entry "), "\(error)")
        }
    }

    /// A re-zipped checkpoint with deflated entries (torch.save itself stores them) reads the
    /// same tensors as the stored original: the fuzz seeds `deflated.pt` and `conv.pt`.
    func testDeflatedCheckpointReadsLikeTheStoredOne() throws {
        let seeds = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Fuzz/corpus/torch-zip")
        let deflated = try CheckpointReader.read(contentsOf: seeds.appendingPathComponent("deflated.pt"))
        let stored = try CheckpointReader.read(contentsOf: seeds.appendingPathComponent("conv.pt"))
        XCTAssertFalse(deflated.keys.isEmpty)
        XCTAssertEqual(deflated, stored)
    }
}
