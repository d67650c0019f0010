/// The limits that keep a damaged or hostile checkpoint from costing more memory or time than
/// its size justifies. Every declared size is checked against them, and against the bytes the
/// file really has, before anything of that size is allocated; docs/fuzzing.md lists them.
public enum CheckpointLimits {
    /// DEFLATE cannot expand data by more than about 1032 times; a zip entry that claims more
    /// (plus 1 KiB of slack for tiny entries) is a zip bomb and is refused before extraction.
    public static let maximumZipExpansion: UInt64 = 1032
    /// A torch zip's `data.pkl` may decompress to at most 1 GiB.
    public static let maximumPickleBytes: UInt64 = 1 << 30
    /// At most this much is reserved up front for a zip entry; larger entries grow as they
    /// really decompress, so a false size claim costs nothing.
    public static let maximumZipReservation = 64 << 20
    /// The safetensors specification caps the JSON header at 100 MB.
    public static let maximumSafeTensorsHeaderBytes = 100_000_000
    /// Tensors may share storages (tied weights, views), but all of a checkpoint's tensors
    /// together decode to at most this many times the elements of the storages they read...
    public static let sharedStorageFactor = 4
    /// ... plus this many elements, so that small files with a few shared storages still load.
    public static let decodedElementAllowance = 1 << 20

    /// The most elements a checkpoint whose storages hold `storedElements` may decode to.
    public static func maximumDecodedElements(storedElements: Int) -> Int {
        let (scaled, overflow) = storedElements.multipliedReportingOverflow(by: sharedStorageFactor)
        return overflow ? Int.max : scaled.addingReportingOverflow(decodedElementAllowance).partialValue
    }
}
