import CCrypto
import Foundation

/// Hex digests through OpenSSL's EVP interface, streaming files in chunks so large data sets are
/// never held whole.
public enum Checksum {
    public enum Algorithm: String, Sendable {
        case sha256 = "SHA-256"
        case md5 = "MD5"
    }

    public static func sha256(of url: URL) throws -> String { try digest(.sha256, of: url) }
    public static func sha256(_ bytes: Data) -> String { digest(.sha256, of: bytes) }
    public static func md5(of url: URL) throws -> String { try digest(.md5, of: url) }

    public static func digest(_ algorithm: Algorithm, of bytes: Data) -> String {
        let hasher = Hasher(algorithm)
        hasher.update(bytes)
        return hasher.finish()
    }

    public static func digest(_ algorithm: Algorithm, of url: URL) throws -> String {
        let handle: FileHandle
        do {
            handle = try FileHandle(forReadingFrom: url)
        } catch {
            throw ResourceError.unreadable(path: url.path, reason: error.localizedDescription)
        }
        defer { try? handle.close() }
        let hasher = Hasher(algorithm)
        while true {
            let chunk: Data?
            do {
                chunk = try handle.read(upToCount: 1 << 20)
            } catch {
                throw ResourceError.unreadable(path: url.path, reason: error.localizedDescription)
            }
            guard let chunk, !chunk.isEmpty else { break }
            hasher.update(chunk)
        }
        return hasher.finish()
    }

    /// An incremental digest, for hashing a download as it arrives.
    final class Hasher {
        private let context: OpaquePointer?
        private var finished = false

        init(_ algorithm: Algorithm) {
            context = EVP_MD_CTX_new()
            EVP_DigestInit_ex(context, algorithm == .sha256 ? EVP_sha256() : EVP_md5(), nil)
        }

        deinit { EVP_MD_CTX_free(context) }

        func update(_ bytes: Data) {
            guard !finished else { return }
            bytes.withUnsafeBytes { raw in
                _ = EVP_DigestUpdate(context, raw.baseAddress, raw.count)
            }
        }

        /// The lowercase hex digest of everything passed to `update`.
        func finish() -> String {
            var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
            var length: UInt32 = 0
            if !finished { EVP_DigestFinal_ex(context, &digest, &length) }
            finished = true
            return digest.prefix(Int(length)).map { String(format: "%02x", $0) }.joined()
        }
    }
}
