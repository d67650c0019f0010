import Foundation

/// A one-line progress bar, drawn only on a terminal so that piped output stays clean.
final class ProgressBar {
    private let sink: OutputSink
    private let label: String
    private let enabled: Bool
    private var lastDrawn = Date.distantPast
    private var drewSomething = false

    init(_ label: String, sink: OutputSink, enabled: Bool) {
        self.label = label
        self.sink = sink
        self.enabled = enabled && sink.isTerminal
    }

    func update(done: Int, total: Int) {
        guard enabled, total > 0 else { return }
        let now = Date()
        guard done == total || now.timeIntervalSince(lastDrawn) > 0.1 else { return }
        lastDrawn = now
        let width = 30
        let filled = min(width, done * width / total)
        sink.write("\r\(label) [" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
                   + "] \(done)/\(total)")
        drewSomething = true
    }

    func finish() {
        guard drewSomething else { return }
        sink.write("\r\u{1B}[2K")
    }
}
