import QuantOps

/// The per-layer error of a quantized model against its float weights, as `analyze` reports it;
/// `plot analysis` draws the last one.
public struct LayerErrorReport: Sendable {
    public var rows: [(layer: String, rmse: Double, sqnrDB: Double)]

    public init(rows: [(layer: String, rmse: Double, sqnrDB: Double)]) {
        self.rows = rows
    }

    /// The rows of an `analyze` result, in model order.
    public init(_ analysis: LayerErrorAnalysis) {
        rows = analysis.rows.map { (layer: $0.name, rmse: $0.rmse, sqnrDB: $0.sqnr) }
    }
}
