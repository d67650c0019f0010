/// The per-layer error of a quantized model against its float weights, as `analyze` reports it;
/// `plot analysis` draws the last one.
public struct LayerErrorReport: Sendable {
    public var rows: [(layer: String, rmse: Double, sqnrDB: Double)]

    public init(rows: [(layer: String, rmse: Double, sqnrDB: Double)]) {
        self.rows = rows
    }
}
