import Foundation

/// torchvision's evaluation transform for PIL images: `Resize(resize)` (the shorter side to
/// `resize`, the longer in proportion), then `CenterCrop(crop)`. Normalization is the model's
/// and comes after (`LabeledImages.batch`).
public struct ImagePreprocessing: Sendable, Equatable, CustomStringConvertible {
    public var resize: Int
    public var crop: Int
    public var filter: ResampleFilter

    public init(resize: Int = 256, crop: Int = 224, filter: ResampleFilter = .bilinear) {
        self.resize = resize
        self.crop = crop
        self.filter = filter
    }

    public var description: String { "resize=\(resize) crop=\(crop) interpolation=\(filter.rawValue)" }

    /// torchvision's rule for an int size: the shorter side becomes `resize`, the longer
    /// `int(resize * long / short)` (true division, then truncation).
    public func resizedSize(width: Int, height: Int) -> (width: Int, height: Int) {
        let (short, long) = width <= height ? (width, height) : (height, width)
        let newLong = Int(Double(resize * long) / Double(short))
        return width <= height ? (resize, newLong) : (newLong, resize)
    }

    /// Where a `crop`-sized window starts on an axis of `size` samples, and how much of it is
    /// padding: torchvision pads a too-small image with zeros ((crop - size) // 2 before,
    /// the rest after), then takes int(round((padded - crop) / 2)) with Python's
    /// round-half-to-even. The result is the source index of the window's first sample.
    static func cropStart(size: Int, crop: Int) -> Int {
        if crop > size { return -((crop - size) / 2) }
        return Int((Double(size - crop) / 2).rounded(.toNearestOrEven))
    }

    public static func cropStartForTesting(size: Int, crop: Int) -> Int { cropStart(size: size, crop: crop) }

    /// The `crop` x `crop` RGB bytes (HWC) the network sees, before normalization.
    public func apply(_ image: RGBImage) -> RGBImage {
        let (width, height) = resizedSize(width: image.width, height: image.height)
        let left = Self.cropStart(size: width, crop: crop), top = Self.cropStart(size: height, crop: crop)
        let columns = max(left, 0)..<min(left + crop, width), rows = max(top, 0)..<min(top + crop, height)
        let resized = PillowResample.resize(image, width: width, height: height, filter: filter, columns: columns, rows: rows)
        var output = [UInt8](repeating: 0, count: crop * crop * 3)
        for y in rows {
            let from = (y * width + columns.lowerBound) * 3
            let to = ((y - top) * crop + (columns.lowerBound - left)) * 3
            for i in 0..<(columns.count * 3) { output[to + i] = resized.pixels[from + i] }
        }
        return RGBImage(width: crop, height: crop, pixels: output)
    }
}
