import QuantOps

/// The model a session works on and how it got there: the current state, the state as loaded,
/// the states `undo` returns to (at most `undoDepth`) and named snapshots. Every change goes
/// through these methods, so that the undo limit and the history hold for every command.
public struct ModelHistory: Sendable {
    /// How many earlier states `undo` can return to.
    public static let undoDepth = 64

    public private(set) var current: ModelState?
    public private(set) var loaded: ModelState?
    /// Earlier states, oldest first; `nil` where there was no model yet.
    public private(set) var undoStack: [ModelState?] = []
    public private(set) var snapshots: [String: ModelState] = [:]
    /// How many models have been loaded: names the current load, so that what belongs to one
    /// load (`QuantizationContext`) can tell a new load from a change within it.
    public private(set) var loadNumber = 0

    public init() {}

    /// A freshly loaded model: current and loaded, with an empty undo history. Snapshots stay.
    public mutating func install(_ state: ModelState) {
        current = state
        loaded = state
        undoStack.removeAll()
        loadNumber += 1
    }

    /// Replaces the current model after a command changed it, recording the step.
    /// Without a current model there is nothing to change.
    public mutating func commit(_ model: Model, step: String) {
        guard var state = current else { return }
        state.model = model
        state.steps.append(step)
        move(to: state)
    }

    /// Makes `state` current; `undo` returns to the state before.
    public mutating func move(to state: ModelState) {
        undoStack.append(current)
        if undoStack.count > Self.undoDepth { undoStack.removeFirst(undoStack.count - Self.undoDepth) }
        current = state
    }

    /// Steps back over the last `steps` changes, or changes nothing and says why.
    public mutating func undo(_ steps: Int) throws {
        guard steps >= 1 else { return }
        guard undoStack.count >= steps else {
            throw CommandError(undoStack.isEmpty ? "nothing to undo" : "only \(undoStack.count) changes can be undone",
                               hint: current == nil ? "there is no model; load one first, e.g. 'load resnet20'" : "'reset' returns to the loaded model")
        }
        for _ in 0..<steps { current = undoStack.removeLast() }
    }

    /// Remembers the current model under `name` and returns it.
    public mutating func takeSnapshot(named name: String) throws -> ModelState {
        guard let current else {
            throw CommandError("'snapshot' needs a model", hint: "load one first, e.g. 'load resnet20'")
        }
        snapshots[name] = current
        return current
    }
}
