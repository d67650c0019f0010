import Foundation
import XCTest
@testable import QuantOps

/// Emits protocol-2 pickle opcodes, to build small legacy torch files by hand
/// (CheckpointResourceLimitTests uses it too).
struct PickleWriter {
    var bytes: [UInt8] = [0x80, 0x02]

    mutating func opcode(_ character: Character) { bytes.append(character.asciiValue ?? 0) }
    mutating func raw(_ values: [UInt8]) { bytes += values }
    mutating func string(_ text: String) {
        opcode("X")
        bytes += withUnsafeBytes(of: UInt32(text.utf8.count).littleEndian) { Array($0) } + Array(text.utf8)
    }
    mutating func int(_ value: Int32) {
        opcode("J")
        bytes += withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }
    /// BININT when it fits, else LONG1 with eight bytes.
    mutating func int(wide value: Int) {
        guard let narrow = Int32(exactly: value) else {
            return raw([0x8A, 8] + withUnsafeBytes(of: Int64(value).littleEndian) { Array($0) })
        }
        int(narrow)
    }
    mutating func global(_ module: String, _ name: String) {
        opcode("c")
        bytes += Array("\(module)\n\(name)\n".utf8)
    }
    mutating func tuple(_ values: [Int32]) {
        opcode("(")
        values.forEach { int($0) }
        opcode("t")
    }
    mutating func stop() { opcode(".") }
}

/// One tensor of a hand-built legacy file: a view onto storage `storageKey`.
struct LegacyTensor {
    var name: String
    var storageKey = "0"
    var storageType = "FloatStorage"
    var storageCount: Int
    var offset: Int32 = 0
    var shape: [Int32]
    var strides: [Int32]
}

/// A legacy (pre-1.6) torch file. With `optimizer` tensors the top level is
/// {'state_dict': ..., 'optimizer': ..., 'epoch': 7}, else the bare state dict.
func legacyFile(
    _ tensors: [LegacyTensor], optimizer: [LegacyTensor] = [], storages: [(key: String, count: Int, bytes: [UInt8])]
) -> [UInt8] {
    var magic = PickleWriter()
    magic.raw([0x8A, 0x0A] + LegacyTorchReader.magicNumber)
    magic.stop()
    var version = PickleWriter()
    version.int(1001)
    version.stop()
    var info = PickleWriter()
    info.opcode("}")
    info.string("little_endian")
    info.raw([0x88])
    info.opcode("s")
    info.stop()

    var main = PickleWriter()
    func dictionary(_ tensors: [LegacyTensor]) {
        main.opcode("}")
        for tensor in tensors {
            main.string(tensor.name)
            main.global("torch._utils", "_rebuild_tensor_v2")
            main.opcode("(")
            main.opcode("(")
            main.string("storage")
            main.global("torch", tensor.storageType)
            main.string(tensor.storageKey)
            main.string("cpu")
            main.int(wide: tensor.storageCount)
            main.opcode("N")
            main.opcode("t")
            main.opcode("Q")
            main.int(tensor.offset)
            main.tuple(tensor.shape)
            main.tuple(tensor.strides)
            main.raw([0x89])
            main.global("collections", "OrderedDict")
            main.opcode(")")
            main.opcode("R")
            main.opcode("t")
            main.opcode("R")
            main.opcode("s")
        }
    }
    if optimizer.isEmpty {
        dictionary(tensors)
    } else {
        main.opcode("}")
        main.string("epoch")
        main.int(7)
        main.opcode("s")
        main.string("optimizer")
        dictionary(optimizer)
        main.opcode("s")
        main.string("state_dict")
        dictionary(tensors)
        main.opcode("s")
    }
    main.stop()

    var keys = PickleWriter()
    keys.opcode("]")
    for storage in storages {
        keys.string(storage.key)
        keys.opcode("a")
    }
    keys.stop()

    var data: [UInt8] = []
    for storage in storages {
        data += withUnsafeBytes(of: Int64(storage.count).littleEndian) { Array($0) } + storage.bytes
    }
    return magic.bytes + version.bytes + info.bytes + main.bytes + keys.bytes + data
}

/// A file with the single tensor `w` viewing one storage "0".
private func legacyFile(
    storageType: String, storage: [UInt8], elementCount: Int,
    offset: Int32, shape: [Int32], strides: [Int32]
) -> [UInt8] {
    legacyFile([LegacyTensor(name: "w", storageType: storageType, storageCount: elementCount, offset: offset, shape: shape, strides: strides)],
               storages: [("0", elementCount, storage)])
}

@discardableResult
private func unpickle(_ bytes: [UInt8], fileName: String) throws -> PickleValue {
    var unpickler = Unpickler(bytes: bytes, fileName: fileName)
    return try unpickler.load()
}

func littleEndianBytes<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
    values.flatMap { value in withUnsafeBytes(of: value.littleEndian) { Array($0) } }
}

/// The library's seeded generator (SplitMix64), so every run mutates the same bytes.
private extension SeededGenerator {
    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(max(bound, 1))) }
}

final class CheckpointHostileInputTests: XCTestCase {
    func testStridedOffsetViewIsCopiedContiguously() throws {
        // Storage 0...6; a transposed 3x2 view starting at element 1: (i, j) -> 1 + i + 3j.
        let file = legacyFile(storageType: "FloatStorage", storage: littleEndianBytes((0..<7).map { Float($0).bitPattern }),
                              elementCount: 7, offset: 1, shape: [3, 2], strides: [1, 3])
        let checkpoint = try LegacyTorchReader.read(file, fileName: "view.pt")
        XCTAssertEqual(checkpoint.stateDict["w"]?.tensor, Tensor(shape: [3, 2], data: [1, 4, 2, 5, 3, 6]))
    }

    func testDoubleAndIntegerStoragesConvertAndKeepTheirType() throws {
        let doubles = legacyFile(storageType: "DoubleStorage", storage: littleEndianBytes([0.25, -3.5, 1e300].map { $0.bitPattern }),
                                 elementCount: 3, offset: 0, shape: [2], strides: [1])
        let entry = try XCTUnwrap(LegacyTorchReader.read(doubles, fileName: "f64.pt").stateDict["w"])
        XCTAssertEqual(entry.elementType, .float64)
        XCTAssertEqual(entry.tensor.data, [0.25, -3.5])
        let longs = legacyFile(storageType: "LongStorage", storage: littleEndianBytes([Int64(-7), 1 << 40]),
                               elementCount: 2, offset: 1, shape: [], strides: [])
        let scalar = try XCTUnwrap(LegacyTorchReader.read(longs, fileName: "i64.pt").stateDict["w"])
        XCTAssertEqual(scalar.elementType, .int64)
        XCTAssertEqual(scalar.tensor, Tensor(shape: [], data: [Float(1 << 40)]))
    }

    func testStateDictIsFoundBesideOptimizerStateAndOtherStoragesAreSkipped() throws {
        let file = legacyFile(
            [LegacyTensor(name: "module.w", storageKey: "a", storageCount: 2, shape: [2], strides: [1]),
             LegacyTensor(name: "module.b", storageKey: "a", storageCount: 2, offset: 1, shape: [], strides: [])],
            optimizer: [LegacyTensor(name: "momentum", storageKey: "m", storageType: "HalfStorage", storageCount: 3, shape: [3], strides: [1])],
            storages: [("m", 3, [UInt8](repeating: 0x3C, count: 6)), ("a", 2, littleEndianBytes([Float(1.5).bitPattern, Float(-2).bitPattern]))])
        let directory = try CheckpointTestFiles.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("with-optimizer.pth.tar")
        try Data(file).write(to: url)
        let checkpoint = try CheckpointReader.readCheckpoint(contentsOf: url)
        XCTAssertEqual(checkpoint.stateDict.keys, ["w", "b"])
        XCTAssertEqual(checkpoint.stateDict["w"]?.tensor.data, [1.5, -2])
        XCTAssertEqual(checkpoint.stateDict["b"]?.tensor, Tensor(shape: [], data: [-2]), "two tensors share one storage")
        XCTAssertEqual(checkpoint.metadata, ["epoch": "7"])
    }

    func testViewReachingPastItsStorageIsRejected() throws {
        let file = legacyFile(storageType: "FloatStorage", storage: [UInt8](repeating: 0, count: 16),
                              elementCount: 4, offset: 1, shape: [2, 2], strides: [2, 1])
        XCTAssertThrowsError(try LegacyTorchReader.read(file, fileName: "overrun.pt")) { error in
            XCTAssertEqual((error as? CheckpointError)?.kind, .corrupt)
            XCTAssertTrue("\(error)".contains("`w`"), "\(error)")
        }
    }

    func testExpandedViewCannotInflateATinyFile() throws {
        // Stride 0 over one element would otherwise describe a billion floats.
        let file = legacyFile(storageType: "FloatStorage", storage: [0, 0, 0x80, 0x3F], elementCount: 1,
                              offset: 0, shape: [1_000_000_000], strides: [0])
        XCTAssertThrowsError(try LegacyTorchReader.read(file, fileName: "expanded.pt")) { error in
            XCTAssertEqual((error as? CheckpointError)?.kind, .unsupported)
            XCTAssertTrue("\(error)".contains("contiguous"), "\(error)")
        }
    }

    func testGlobalOutsideTheAllowListIsRefusedByName() throws {
        var pickle = PickleWriter()
        pickle.global("os", "system")
        pickle.string("echo owned")
        pickle.raw([0x85])
        pickle.opcode("R")
        pickle.stop()
        XCTAssertThrowsError(try unpickle(pickle.bytes, fileName: "evil.pt")) { error in
            let checkpointError = error as? CheckpointError
            XCTAssertEqual(checkpointError?.kind, .refused)
            XCTAssertTrue("\(error)".hasPrefix("evil.pt: refusing to load"), "\(error)")
            XCTAssertTrue("\(error)".contains("`os.system`"), "\(error)")
        }
        // The same through STACK_GLOBAL (protocol 4) and inside a whole legacy file.
        var stacked = PickleWriter()
        stacked.string("builtins")
        stacked.string("eval")
        stacked.raw([0x93])
        stacked.stop()
        XCTAssertThrowsError(try unpickle(stacked.bytes, fileName: "evil.pt")) { error in
            XCTAssertTrue("\(error)".contains("`builtins.eval`"), "\(error)")
        }
        var file = legacyFile(storageType: "FloatStorage", storage: [0, 0, 0, 0], elementCount: 1, offset: 0, shape: [], strides: [])
        let target = Array("collections\nOrderedDict\n".utf8)
        let replacement = Array("posix\nsystem\n\n\n\n\n\n\n\n\n\n\n".utf8)
        let start = try XCTUnwrap((0...(file.count - target.count)).first { Array(file[$0..<($0 + target.count)]) == target })
        file.replaceSubrange(start..<(start + target.count), with: replacement)
        XCTAssertThrowsError(try LegacyTorchReader.read(file, fileName: "evil.pt")) { error in
            XCTAssertTrue("\(error)".contains("`posix.system`"), "\(error)")
        }
    }

    func testDeepNestingAndCyclesEndInErrors() throws {
        // 200,000 nested one-element tuples, then a list that contains itself.
        var deep = PickleWriter()
        deep.opcode(")")
        deep.raw([UInt8](repeating: 0x85, count: 200_000))
        deep.stop()
        var unpickler = Unpickler(bytes: deep.bytes, fileName: "deep.pt")
        let root = try unpickler.load()
        XCTAssertThrowsError(try TorchStateDictAssembler.locateStateDict(root, in: unpickler, fileName: "deep.pt"))

        var cycle = PickleWriter()
        cycle.opcode("]")
        cycle.raw([UInt8(ascii: "q"), 0, UInt8(ascii: "h"), 0, UInt8(ascii: "a")])
        cycle.stop()
        var cyclic = Unpickler(bytes: cycle.bytes, fileName: "cycle.pt")
        let list = try cyclic.load()
        guard case .list(let items)? = cyclic.object(list) else { return XCTFail("expected a list") }
        XCTAssertEqual(items, [list])

        // Popping past a MARK, or reading memo entries never written, is corrupt input.
        for bytes: [UInt8] in [[0x80, 2, 0x28, 0x2E], [0x80, 2, 0x68, 9, 0x2E], [0x80, 2, 0x74], [0x80, 2, 0x75, 0x2E], [0x80, 2]] {
            XCTAssertThrowsError(try unpickle(bytes, fileName: "x.pt")) { error in
                XCTAssertTrue(error is CheckpointError, "\(bytes): \(error)")
            }
        }
    }

    func testHugeDeclaredSizesFailBeforeAllocating() throws {
        // A string claiming 4 GB, a storage claiming 2^60 elements.
        var pickle = PickleWriter()
        pickle.raw([UInt8(ascii: "X"), 0xFF, 0xFF, 0xFF, 0xFF, 0x41])
        XCTAssertThrowsError(try unpickle(pickle.bytes, fileName: "big.pt")) { error in
            XCTAssertEqual((error as? CheckpointError)?.kind, .truncated)
        }
        var file = legacyFile(storageType: "FloatStorage", storage: [0, 0, 0, 0], elementCount: 1, offset: 0, shape: [], strides: [])
        file.replaceSubrange((file.count - 12)..<(file.count - 4), with: littleEndianBytes([Int64(1) << 60]))
        XCTAssertThrowsError(try LegacyTorchReader.read(file, fileName: "big.pt")) { error in
            XCTAssertEqual((error as? CheckpointError)?.kind, .truncated)
            XCTAssertTrue("\(error)".hasPrefix("big.pt: truncated: storage 0"), "\(error)")
        }
    }

    /// Truncations and byte mutations of the real files either load or throw `CheckpointError`;
    /// a crash would end the test run.
    func testTruncatedAndMutatedRealFilesNeverCrash() throws {
        let directory = try CheckpointTestFiles.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var random = SeededGenerator(seed: 20_241_126)
        var outcomes = (loaded: 0, rejected: 0)
        // Zip reads verify CRCs, which is slow in debug builds, so the zip gets fewer variants.
        // QSH_CHECKPOINT_FUZZ_SCALE multiplies the counts for a longer run in a release build.
        let scale = max(1, Int(ProcessInfo.processInfo.environment["QSH_CHECKPOINT_FUZZ_SCALE"] ?? "") ?? 1)
        let plans = [("resnet20-12fca82f.th", 50 * scale, 110 * scale), ("resnet20-zipformat.pt", 10 * scale, 20 * scale),
                     ("resnet20.safetensors", 30 * scale, 70 * scale)]
        for (name, truncations, mutations) in plans {
            let original = [UInt8](try Data(contentsOf: try CheckpointTestFiles.model(name)))
            // Structure sits at the start (headers, pickles) and, in zips, the end (central
            // directory), so most mutations go there; the rest land anywhere.
            func offset() -> Int {
                switch random.below(4) {
                case 0, 1: random.below(min(original.count, 12_000))
                case 2: original.count - 1 - random.below(min(original.count, 12_000))
                default: random.below(original.count)
                }
            }
            let url = directory.appendingPathComponent(name)
            // One variant at a time: the long release run makes thousands of megabyte copies.
            for index in 0..<(truncations + mutations) {
                var variant: [UInt8]
                if index < truncations {
                    variant = Array(original.prefix(offset()))
                } else {
                    variant = original
                    for _ in 0..<(1 + random.below(3)) {
                        let at = offset()
                        switch random.below(3) {
                        case 0: variant[at] = UInt8(truncatingIfNeeded: random.next())
                        case 1: variant[at] ^= 1 << UInt8(random.below(8))
                        default: variant[at] = [0x00, 0xFF, 0x7F, 0x80][random.below(4)]
                        }
                    }
                }
                try Data(variant).write(to: url)
                do {
                    _ = try CheckpointReader.read(contentsOf: url)
                    outcomes.loaded += 1
                } catch let error as CheckpointError {
                    XCTAssertTrue(error.description.hasPrefix("\(name): "), error.description)
                    outcomes.rejected += 1
                } catch {
                    XCTFail("\(name): \(error) is not a CheckpointError")
                }
            }
        }
        XCTAssertEqual(outcomes.loaded + outcomes.rejected, plans.reduce(0) { $0 + $1.1 + $1.2 })
        XCTAssertGreaterThan(outcomes.rejected, 100, "truncations must be caught")
    }
}
