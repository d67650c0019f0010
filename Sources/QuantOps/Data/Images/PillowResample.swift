import Foundation

/// An 8-bit RGB image, row-major, 3 bytes a pixel.
public struct RGBImage: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * 3, "an RGB image of \(width)x\(height) has \(width * height * 3) bytes")
        self.width = width
        self.height = height
        self.pixels = pixels
    }
}

/// The resampling filters of Pillow's `Image.resize` that torchvision's `Resize` offers.
public enum ResampleFilter: String, Sendable, CaseIterable {
    case nearest, bilinear, bicubic

    /// Pillow's filter support: the kernel's half width at scale 1.
    var support: Double {
        switch self {
        case .nearest: return 0
        case .bilinear: return 1
        case .bicubic: return 2
        }
    }

    /// Pillow's kernels (Resample.c), bicubic with a = -0.5.
    func weight(_ x: Double) -> Double {
        let x = abs(x)
        switch self {
        case .nearest: return 0
        case .bilinear: return x < 1 ? 1 - x : 0
        case .bicubic:
            let a = -0.5
            if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
            if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0
        }
    }
}

/// Pillow's resize of 8-bit images, reproduced bit for bit, so that a network sees exactly the
/// pixels it saw when evaluated in PyTorch (PIL + torchvision).
///
/// Bilinear and bicubic are Pillow's `ImagingResample`: a separable convolution, the
/// horizontal pass first, with antialiasing (the kernel widens by the downscaling factor),
/// weights computed in double and normalized per output pixel, then rounded to fixed point
/// with 22 fractional bits; each pass rounds and clips to 0...255. Nearest is Pillow's affine
/// nearest-neighbour scaling.
///
/// Output pixels are independent, so `window` limits the work to the part a center crop keeps.
public enum PillowResample {
    /// Pillow's PRECISION_BITS: 32 - 8 (bits of a sample) - 2 (headroom for negative lobes).
    static let precisionBits = 22

    /// One axis's weights: output position `i` reads `lengths[i]` input samples from
    /// `starts[i]`, weighted by `weights[i * width ..< i * width + lengths[i]]`.
    struct AxisWeights {
        var starts: [Int]
        var lengths: [Int]
        var weights: [Int32]
        var width: Int
    }

    /// Pillow's `precompute_coeffs` followed by `normalize_coeffs_8bpc`, for the whole axis.
    static func axisWeights(inSize: Int, outSize: Int, filter: ResampleFilter) -> AxisWeights {
        // Pillow computes the box width in float (box[2] - box[0]); integers this small are exact.
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1)
        let support = filter.support * filterScale
        let width = Int(support.rounded(.up)) * 2 + 1
        var starts = [Int](repeating: 0, count: outSize)
        var lengths = [Int](repeating: 0, count: outSize)
        var weights = [Int32](repeating: 0, count: outSize * width)
        var kernel = [Double](repeating: 0, count: width)
        let inverseScale = 1.0 / filterScale
        let one = Double(1 << precisionBits)
        for out in 0..<outSize {
            let center = (Double(out) + 0.5) * scale
            // C's (int) conversion truncates toward zero, as Int(_: Double) does.
            let first = max(Int(center - support + 0.5), 0)
            let length = max(min(Int(center + support + 0.5), inSize) - first, 0)
            var total = 0.0
            for k in 0..<length {
                let w = filter.weight((Double(k + first) - center + 0.5) * inverseScale)
                kernel[k] = w
                total += w
            }
            for k in 0..<length {
                let w = total != 0 ? kernel[k] / total : kernel[k]
                weights[out * width + k] = Int32(w < 0 ? -0.5 + w * one : 0.5 + w * one)
            }
            starts[out] = first
            lengths[out] = length
        }
        return AxisWeights(starts: starts, lengths: lengths, weights: weights, width: width)
    }

    /// Pillow's clip8: the fixed-point sum shifted down (rounding was added up front), clipped.
    @inline(__always)
    static func clip8(_ sum: Int) -> UInt8 {
        let value = sum >> precisionBits
        return UInt8(truncatingIfNeeded: value < 0 ? 0 : (value > 255 ? 255 : value))
    }

    /// `image` resized to `width` x `height`, computing only output columns `columns` and rows
    /// `rows` (the rest of the result is zero). Identical, inside the window, to Pillow's
    /// `Image.resize((width, height), filter)` on an RGB image.
    public static func resize(_ image: RGBImage, width: Int, height: Int, filter: ResampleFilter,
                              columns: Range<Int>? = nil, rows: Range<Int>? = nil) -> RGBImage {
        let columns = columns ?? 0..<width
        let rows = rows ?? 0..<height
        if width == image.width && height == image.height { return image }
        if filter == .nearest {
            return nearest(image, width: width, height: height)
        }
        let needHorizontal = width != image.width
        let needVertical = height != image.height
        var output = [UInt8](repeating: 0, count: width * height * 3)
        let half = 1 << (precisionBits - 1)
        if needHorizontal && !needVertical {
            horizontal(image, into: &output, outWidth: width, rowsIn: rows, rowOffset: 0, columns: columns,
                       weights: axisWeights(inSize: image.width, outSize: width, filter: filter), half: half)
            return RGBImage(width: width, height: height, pixels: output)
        }
        let vertical = axisWeights(inSize: image.height, outSize: height, filter: filter)
        var source = image
        var rowOffset = 0
        if needHorizontal {
            // The input rows the kept output rows read: Pillow's ybox_first ..< ybox_last,
            // narrowed to the window.
            guard !rows.isEmpty, !columns.isEmpty else { return RGBImage(width: width, height: height, pixels: output) }
            let firstRow = rows.map { vertical.starts[$0] }.min()!
            let lastRow = rows.map { vertical.starts[$0] + vertical.lengths[$0] }.max()!
            var temporary = [UInt8](repeating: 0, count: width * (lastRow - firstRow) * 3)
            horizontal(image, into: &temporary, outWidth: width, rowsIn: firstRow..<lastRow, rowOffset: firstRow,
                       columns: columns, weights: axisWeights(inSize: image.width, outSize: width, filter: filter), half: half)
            source = RGBImage(width: width, height: lastRow - firstRow, pixels: temporary)
            rowOffset = firstRow
        }
        source.pixels.withUnsafeBufferPointer { input in
            output.withUnsafeMutableBufferPointer { out in
                vertical.weights.withUnsafeBufferPointer { k in
                    for y in rows {
                        let start = vertical.starts[y] - rowOffset, length = vertical.lengths[y]
                        let base = y * vertical.width
                        for x in columns {
                            var r = half, g = half, b = half
                            for t in 0..<length {
                                let weight = Int(k[base + t])
                                let p = ((start + t) * source.width + x) * 3
                                r += Int(input[p]) * weight
                                g += Int(input[p + 1]) * weight
                                b += Int(input[p + 2]) * weight
                            }
                            let o = (y * width + x) * 3
                            out[o] = clip8(r)
                            out[o + 1] = clip8(g)
                            out[o + 2] = clip8(b)
                        }
                    }
                }
            }
        }
        return RGBImage(width: width, height: height, pixels: output)
    }

    /// Pillow's horizontal pass over input rows `rowsIn`, written to rows counted from `rowOffset`.
    private static func horizontal(_ image: RGBImage, into output: inout [UInt8], outWidth: Int, rowsIn: Range<Int>,
                                   rowOffset: Int, columns: Range<Int>, weights: AxisWeights, half: Int) {
        image.pixels.withUnsafeBufferPointer { input in
            output.withUnsafeMutableBufferPointer { out in
                weights.weights.withUnsafeBufferPointer { k in
                    for y in rowsIn {
                        let rowStart = y * image.width * 3
                        for x in columns {
                            let start = weights.starts[x], length = weights.lengths[x]
                            let base = x * weights.width
                            var r = half, g = half, b = half
                            for t in 0..<length {
                                let weight = Int(k[base + t])
                                let p = rowStart + (start + t) * 3
                                r += Int(input[p]) * weight
                                g += Int(input[p + 1]) * weight
                                b += Int(input[p + 2]) * weight
                            }
                            let o = ((y - rowOffset) * outWidth + x) * 3
                            out[o] = clip8(r)
                            out[o + 1] = clip8(g)
                            out[o + 2] = clip8(b)
                        }
                    }
                }
            }
        }
    }

    /// Pillow's `ImagingScaleAffine`: source coordinates accumulated in double from the pixel
    /// centers, truncated (negative ones are outside).
    static func nearest(_ image: RGBImage, width: Int, height: Int) -> RGBImage {
        let stepX = Double(image.width) / Double(width), stepY = Double(image.height) / Double(height)
        func coordinate(_ v: Double) -> Int { v < 0 ? -1 : Int(v) }
        var sourceColumns = [Int](repeating: -1, count: width)
        var xo = stepX * 0.5
        for x in 0..<width {
            let xin = coordinate(xo)
            if xin >= 0 && xin < image.width { sourceColumns[x] = xin }
            xo += stepX
        }
        var output = [UInt8](repeating: 0, count: width * height * 3)
        var yo = stepY * 0.5
        for y in 0..<height {
            let yin = coordinate(yo)
            if yin >= 0 && yin < image.height {
                for x in 0..<width where sourceColumns[x] >= 0 {
                    let from = (yin * image.width + sourceColumns[x]) * 3, to = (y * width + x) * 3
                    output[to] = image.pixels[from]
                    output[to + 1] = image.pixels[from + 1]
                    output[to + 2] = image.pixels[from + 2]
                }
            }
            yo += stepY
        }
        return RGBImage(width: width, height: height, pixels: output)
    }
}
