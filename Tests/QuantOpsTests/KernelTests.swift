import QuantOps
import XCTest

/// Each kernel against a plain loop that follows the definition.
final class KernelTests: XCTestCase {
    typealias SplitMix = TestRandom

    static func referenceConv(_ x: Tensor, _ conv: Conv2D) -> Tensor {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (o, cg, kh, kw) = (conv.weight.shape[0], conv.weight.shape[1], conv.weight.shape[2], conv.weight.shape[3])
        let og = o / conv.groups
        let oh = (h + 2 * conv.padding.0 - conv.dilation.0 * (kh - 1) - 1) / conv.stride.0 + 1
        let ow = (w + 2 * conv.padding.1 - conv.dilation.1 * (kw - 1) - 1) / conv.stride.1 + 1
        var y = Tensor(zeros: [n, o, oh, ow])
        for b in 0..<n { for oc in 0..<o { for oy in 0..<oh { for ox in 0..<ow {
            var sum = Double(conv.bias?.data[oc] ?? 0)
            let group = oc / og
            for ic in 0..<cg { for ky in 0..<kh { for kx in 0..<kw {
                let iy = oy * conv.stride.0 - conv.padding.0 + ky * conv.dilation.0
                let ix = ox * conv.stride.1 - conv.padding.1 + kx * conv.dilation.1
                guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                let input = x.data[((b * c + group * cg + ic) * h + iy) * w + ix]
                sum += Double(input) * Double(conv.weight.data[((oc * cg + ic) * kh + ky) * kw + kx])
            } } }
            y.data[((b * o + oc) * oh + oy) * ow + ox] = Float(sum)
        } } } }
        return y
    }

    func assertClose(_ a: Tensor, _ b: Tensor, tolerance: Float = 1e-5, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.shape, b.shape, file: file, line: line)
        let worst = zip(a.data, b.data).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
        XCTAssertLessThan(worst, tolerance, file: file, line: line)
    }

    func checkConv(input: [Int], weight: [Int], stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                   dilation: (Int, Int) = (1, 1), groups: Int = 1, bias: Bool = false, threads: [Int] = [1, 2, 3],
                   file: StaticString = #filePath, line: UInt = #line) throws {
        var random = SplitMix(state: UInt64(input.reduce(7, *) + weight.reduce(3, *)))
        let x = random.tensor(input)
        let conv = Conv2D(weight: random.tensor(weight), bias: bias ? random.tensor([weight[0]]) : nil, stride: stride,
                          padding: padding, dilation: dilation, groups: groups)
        let expected = Self.referenceConv(x, conv)
        let saved = EngineSettings.threads
        defer { EngineSettings.threads = saved }
        for count in threads {
            EngineSettings.threads = count
            assertClose(try Kernels.conv2d(x, conv), expected, file: file, line: line)
        }
    }

    func testConvolutionStridePaddingDilation() throws {
        try checkConv(input: [3, 4, 9, 9], weight: [6, 4, 3, 3], padding: (1, 1))
        try checkConv(input: [2, 3, 10, 9], weight: [5, 3, 3, 3], stride: (2, 2), padding: (1, 1), bias: true)
        try checkConv(input: [2, 2, 11, 12], weight: [4, 2, 3, 3], stride: (1, 2), padding: (2, 0), dilation: (2, 3))
        try checkConv(input: [1, 3, 7, 8], weight: [2, 3, 2, 4], stride: (3, 1), padding: (1, 2))
        try checkConv(input: [2, 3, 5, 5], weight: [4, 3, 5, 5], padding: (0, 0))
    }

    func testPointwiseConvolutions() throws {
        try checkConv(input: [3, 8, 6, 6], weight: [5, 8, 1, 1], bias: true)
        try checkConv(input: [2, 8, 8, 8], weight: [16, 8, 1, 1], stride: (2, 2))
    }

    func testGroupedAndDepthwiseConvolutions() throws {
        try checkConv(input: [2, 6, 7, 7], weight: [4, 3, 3, 3], padding: (1, 1), groups: 2)
        try checkConv(input: [3, 6, 9, 9], weight: [6, 1, 3, 3], stride: (2, 2), padding: (1, 1), groups: 6, bias: true)
        try checkConv(input: [1, 4, 8, 8], weight: [4, 1, 3, 3], padding: (2, 2), dilation: (2, 2), groups: 4)
        // Channel multiplier 2: grouped but not depthwise.
        try checkConv(input: [2, 3, 6, 6], weight: [6, 1, 3, 3], padding: (1, 1), groups: 3)
    }

    func testConvolutionEpilogueAppliesScaleShiftAndClamp() throws {
        var random = SplitMix(state: 11)
        let x = random.tensor([2, 3, 6, 6])
        let conv = Conv2D(weight: random.tensor([4, 3, 3, 3]), bias: random.tensor([4]), padding: (1, 1))
        let epilogue = ChannelEpilogue(scale: [2, -1, 0.5, 3], shift: [0.1, 0.2, -0.3, 0], lower: 0, upper: 6)
        var expected = Self.referenceConv(x, conv)
        let plane = 36
        for i in expected.data.indices {
            let c = (i / plane) % 4
            expected.data[i] = min(max(expected.data[i] * epilogue.scale[c] + epilogue.shift[c], 0), 6)
        }
        assertClose(try Kernels.conv2d(x, conv, epilogue: epilogue), expected)
    }

    func testConvolutionShapeErrorsNameTheProblem() {
        let conv = Conv2D(weight: Tensor(zeros: [4, 3, 3, 3]))
        XCTAssertThrowsError(try ForwardPass.evaluate(Node(name: "layer1.0.conv1", operation: .conv(conv), inputs: [0]),
                                                      inputs: [Tensor(zeros: [1, 5, 8, 8])])) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("layer1.0.conv1") && text.contains("5 channels"), text)
        }
        XCTAssertThrowsError(try Kernels.conv2d(Tensor(zeros: [1, 3, 2, 2]), Conv2D(weight: Tensor(zeros: [4, 3, 5, 5]))))
    }

    func testPooling() throws {
        var random = SplitMix(state: 5)
        let x = random.tensor([2, 3, 7, 7])
        for pooling in [Pooling(kernel: 2, stride: 2), Pooling(kernel: 3, stride: 2, padding: 1), Pooling(kernel: 3, stride: 1)] {
            let out = (7 + 2 * pooling.padding - pooling.kernel) / pooling.stride + 1
            var maxExpected = Tensor(zeros: [2, 3, out, out]), avgExpected = Tensor(zeros: [2, 3, out, out])
            for plane in 0..<6 { for oy in 0..<out { for ox in 0..<out {
                var best = -Float.infinity, sum: Float = 0
                for ky in 0..<pooling.kernel { for kx in 0..<pooling.kernel {
                    let iy = oy * pooling.stride - pooling.padding + ky, ix = ox * pooling.stride - pooling.padding + kx
                    guard iy >= 0, iy < 7, ix >= 0, ix < 7 else { continue }
                    let v = x.data[(plane * 7 + iy) * 7 + ix]
                    best = max(best, v)
                    sum += v
                } }
                maxExpected.data[(plane * out + oy) * out + ox] = best
                avgExpected.data[(plane * out + oy) * out + ox] = sum / Float(pooling.kernel * pooling.kernel)
            } } }
            assertClose(try Kernels.maxPool(x, pooling), maxExpected)
            assertClose(try Kernels.averagePool(x, pooling), avgExpected)
        }
        let global = try Kernels.globalAveragePool(x)
        XCTAssertEqual(global.shape, [2, 3, 1, 1])
        XCTAssertEqual(global.data[4], x.data[(4 * 49)..<(5 * 49)].reduce(0, +) / 49, accuracy: 1e-6)
    }

    func testOptionAShortcutSubsamplesAndPadsChannels() throws {
        let x = Tensor(shape: [1, 2, 4, 4], data: (0..<32).map(Float.init))
        let y = try Kernels.shortcutA(x, stride: 2, padChannels: 1)
        XCTAssertEqual(y.shape, [1, 4, 2, 2])
        XCTAssertEqual(y.data, [0, 0, 0, 0, 0, 2, 8, 10, 16, 18, 24, 26, 0, 0, 0, 0])
    }

    func testBatchNormLinearAndActivations() throws {
        let x = Tensor(shape: [1, 2, 1, 2], data: [1, 2, 3, 4])
        let norm = BatchNorm(gamma: Tensor(shape: [2], data: [2, 1]), beta: Tensor(shape: [2], data: [0, 1]),
                             runningMean: Tensor(shape: [2], data: [1, 3]), runningVar: Tensor(shape: [2], data: [4, 1]), epsilon: 0)
        XCTAssertEqual(try Kernels.batchNorm(x, norm).data, [0, 1, 1, 2])
        let layer = Linear(weight: Tensor(shape: [2, 3], data: [1, 0, -1, 2, 1, 0]), bias: Tensor(shape: [2], data: [0.5, -1]))
        let out = try Kernels.linear(Tensor(shape: [2, 3], data: [1, 2, 3, -1, 0, 1]), layer)
        XCTAssertEqual(out.data, [-1.5, 3, -1.5, -3])
        XCTAssertEqual(Kernels.relu6(Tensor(shape: [4], data: [-1, 3, 6, 9])).data, [0, 3, 6, 6])
        XCTAssertEqual(try Kernels.add(Tensor(shape: [2], data: [1, -3]), Tensor(shape: [2], data: [2, 1])).data, [3, -2])
        XCTAssertThrowsError(try Kernels.add(Tensor(zeros: [2]), Tensor(zeros: [3])))
    }
}
