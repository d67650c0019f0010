extension CommandRegistry {
    /// Every command qsh offers.
    public static let standard = CommandRegistry(
        SessionCommands.all + LoadEvalCommands.all + ExploreCommands.all + QuantizationCommands.all + PTQCommands.all + DistillCommands.all + FinetuneCommands.all
        + ReportCommands.all + ExportCommands.all)
}
