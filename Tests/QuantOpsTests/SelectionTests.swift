import XCTest
@testable import QuantOps

final class SelectionTests: XCTestCase {
    /// The 22 weight-layer names of a ResNet-20 with 1x1 downsample convs in the first blocks of
    /// stages 2 and 3, with parameter-free nodes between them.
    private static let layerNames: [String] = {
        var names = ["conv1"]
        for stage in 1...3 {
            for block in 0..<3 {
                names += ["layer\(stage).\(block).conv1", "layer\(stage).\(block).conv2"]
                if stage > 1, block == 0 { names.append("layer\(stage).0.downsample.0") }
            }
        }
        return names + ["linear"]
    }()

    /// Layer numbers (from 1) of the names that satisfy `matches`, worked out independently of globbing.
    private func numbers(where matches: (String) -> Bool) -> [Int] {
        Self.layerNames.indices.filter { matches(Self.layerNames[$0]) }.map { $0 + 1 }
    }

    private let resnet20: Model = {
        let names = layerNames
        var nodes = [Node(name: "input", operation: .input, inputs: [])]
        for name in names {
            let weight = Tensor(zeros: [1, 1, 1, 1])
            let operation: QuantOps.Operation = name == "linear" ? .linear(Linear(weight: Tensor(zeros: [1, 1])))
                : .conv(Conv2D(weight: weight))
            nodes.append(Node(name: name, operation: operation, inputs: [nodes.count - 1]))
            nodes.append(Node(name: name + ".relu", operation: .relu, inputs: [nodes.count - 1]))
        }
        return Model(name: "resnet20", nodes: nodes, normalization: Normalization(mean: [0], std: [1]))
    }()

    func testSelectorsHitExactlyTheLayersTheyName() throws {
        XCTAssertEqual(resnet20.weightLayerNodes.count, 22)
        XCTAssertEqual(try LayerSelector.range(lower: 3, upper: nil).resolve(in: resnet20), Array(3...22))
        XCTAssertEqual(try LayerSelector.range(lower: nil, upper: 5).resolve(in: resnet20), Array(1...5))
        XCTAssertEqual(try LayerSelector.range(lower: 2, upper: 7).resolve(in: resnet20), Array(2...7))
        XCTAssertEqual(try LayerSelector.index(22).resolve(in: resnet20), [22])
        XCTAssertEqual(try LayerSelector.all.resolve(in: resnet20), Array(1...22))
        XCTAssertEqual(try LayerSelector.list([.index(9), .index(1), .range(lower: 4, upper: 6), .index(5)])
            .resolve(in: resnet20), [1, 4, 5, 6, 9])
        XCTAssertEqual(try LayerSelector.pattern("layer2.*").resolve(in: resnet20), Array(8...14))
        XCTAssertEqual(try LayerSelector.pattern("layer2.*").resolve(in: resnet20), numbers { $0.hasPrefix("layer2.") })
        XCTAssertEqual(try LayerSelector.pattern("layer?.0.conv1").resolve(in: resnet20), [2, 8, 15])
        XCTAssertEqual(try LayerSelector.pattern("*conv2").resolve(in: resnet20), numbers { $0.hasSuffix("conv2") })
        XCTAssertEqual(try LayerSelector.pattern("*.downsample.?").resolve(in: resnet20), [10, 17])
        XCTAssertEqual(try LayerSelector.pattern("linear").resolve(in: resnet20), [22])
        XCTAssertEqual(try LayerSelector.list([.pattern("conv1"), .index(22)]).resolve(in: resnet20), [1, 22])
    }

    func testGlobMatchesWholeNames() {
        XCTAssertTrue(LayerSelector.glob("layer1.*", matches: "layer1.0.conv1"))
        XCTAssertFalse(LayerSelector.glob("layer1.*", matches: "layer10.0.conv1"))
        XCTAssertFalse(LayerSelector.glob("conv1", matches: "layer1.0.conv1"))
        XCTAssertTrue(LayerSelector.glob("*", matches: ""))
        XCTAssertTrue(LayerSelector.glob("a*b*c", matches: "aXbYbZc"))
        XCTAssertFalse(LayerSelector.glob("a?c", matches: "ac"))
    }

    func testBadSelectorsSayWhatIsWrong() {
        func message(_ selector: LayerSelector) -> String {
            do {
                _ = try selector.resolve(in: resnet20)
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        XCTAssertTrue(message(.index(0)).contains("counted from 1"), message(.index(0)))
        XCTAssertTrue(message(.index(23)).contains("22 layers"), message(.index(23)))
        XCTAssertTrue(message(.range(lower: 20, upper: 30)).contains("22 layers"))
        XCTAssertTrue(message(.range(lower: 7, upper: 3)).contains("empty"))
        XCTAssertTrue(message(.range(lower: 23, upper: nil)).contains("22 layers"))
        XCTAssertTrue(message(.range(lower: 0, upper: 4)).contains("counted from 1"))
        let unknown = message(.pattern("layer4.*"))
        XCTAssertTrue(unknown.contains("no layer name matches"), unknown)
        XCTAssertTrue(unknown.contains("layer"), unknown)
        let typo = message(.pattern("linaer"))
        XCTAssertTrue(typo.contains("closest names: linear"), typo)
    }
}
