import CImageCodecs
import Foundation

/// Why an image file could not be used.
public struct ImageDecodingError: Error, CustomStringConvertible, Equatable {
    public var path: String
    public var reason: String

    public var description: String { "\(path): \(reason)" }
}

/// JPEG and PNG files as 8-bit RGB, converted as Pillow's `convert("RGB")` converts them (see
/// CImageCodecs): the C decoders return errors for damaged files instead of crashing.
public enum ImageDecoding {
    /// Images with more pixels are refused before their pixels are allocated.
    public static let maximumPixels = Int(QSH_IMAGE_MAX_PIXELS)

    /// The file's width and height, from its header alone.
    public static func size(of path: String) throws -> (width: Int, height: Int) {
        try decode(path, headerOnly: true) { image in (Int(image.width), Int(image.height)) }
    }

    /// The whole image.
    public static func rgb(_ path: String) throws -> RGBImage {
        try decode(path, headerOnly: false) { image in
            let width = Int(image.width), height = Int(image.height)
            return RGBImage(width: width, height: height,
                            pixels: Array(UnsafeBufferPointer(start: image.pixels, count: width * height * 3)))
        }
    }

    private static func decode<Result>(_ path: String, headerOnly: Bool, _ body: (qsh_image) -> Result) throws -> Result {
        var image = qsh_image()
        var message = [CChar](repeating: 0, count: 512)
        let code = qsh_image_decode(path, headerOnly ? 1 : 0, &image, &message, message.count)
        defer { qsh_image_free(&image) }
        guard code == QSH_IMAGE_OK else {
            let reason = message.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            throw ImageDecodingError(path: path, reason: reason)
        }
        return body(image)
    }
}
