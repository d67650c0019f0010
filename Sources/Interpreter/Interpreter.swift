import CShims
import Foundation
import QLang
import QuantOps

/// Runs recipes: substitutes variables, checks each command against the registry, then runs it.
///
/// In a script the first error stops the run; the REPL catches the error and goes on. With
/// `checkOnly`, commands are checked but not run: that is `qsh check`.
public final class Interpreter {
    public let session: Session
    public let checkOnly: Bool

    public init(session: Session, checkOnly: Bool = false) {
        self.session = session
        self.checkOnly = checkOnly
    }

    /// Parses and runs a source text; statements that succeed at top level go into the history.
    public func run(_ source: SourceFile) throws(Diagnostic) {
        let program = try Parser.parse(source)
        try run(program)
    }

    public func run(_ program: Program) throws(Diagnostic) {
        for statement in program.statements {
            try execute(statement)
            if !checkOnly { session.history.append(Printer.print(statement)) }
        }
    }

    public func execute(_ statement: Statement) throws(Diagnostic) {
        if !checkOnly && qsh_interrupt_requested() != 0 {
            qsh_clear_interrupt()
            throw Diagnostic("interrupted", at: statement.location, hint: "the recipe stopped before this statement")
        }
        switch statement {
        case .assignment(let assignment):
            if session.pinnedVariables.contains(assignment.name) { return }
            session.variables[assignment.name] = try evaluate(assignment.value)
        case .loop(let loop):
            try runLoop(loop)
        case .expectation(let expectation):
            try check(expectation)
        case .command(let command):
            try runCommand(command)
        }
    }

    // MARK: Values

    func evaluate(_ value: Value) throws(Diagnostic) -> RuntimeValue {
        try evaluate(value.syntax, at: value.location)
    }

    func evaluate(_ syntax: ValueSyntax, at location: SourceLocation) throws(Diagnostic) -> RuntimeValue {
        switch syntax {
        case .integer(let v): return .integer(v)
        case .decimal(let v): return .number(v)
        // Quoted strings take `$name` and `${name}` from variables and results, so that a loop
        // can name its files and data sets ("sweep-$bits.svg").
        case .string(let v): return .string(SessionCommands.interpolate(v, session: session))
        case .identifier(let v): return .word(v)
        case .boolean(let v): return .boolean(v)
        case .variable(let name): return try lookup(name, at: location)
        case .range(let lower, let upper):
            return .range(lower: try lower.map { s throws(Diagnostic) in try rangeEnd(s, at: location) },
                          upper: try upper.map { s throws(Diagnostic) in try rangeEnd(s, at: location) })
        case .list(let items):
            var values: [RuntimeValue] = []
            for item in items {
                // A variable holding a list splices into the surrounding list.
                let value = try evaluate(item, at: location)
                if case .list(let inner) = value { values += inner } else { values.append(value) }
            }
            return .list(values)
        }
    }

    private func rangeEnd(_ syntax: ValueSyntax, at location: SourceLocation) throws(Diagnostic) -> Int {
        let value = try evaluate(syntax, at: location)
        // Integers are taken as they are: through Double, those near Int.max would not fit.
        if case .integer(let integer) = value { return integer }
        guard let number = value.numericValue, number == number.rounded(), let integer = Int(exactly: number) else {
            throw Diagnostic("a range bound must be an integer, got \(value.kindName) '\(value)'", at: location,
                             hint: "ranges count layers or bits, e.g. 2..8")
        }
        return integer
    }

    func lookup(_ name: String, at location: SourceLocation) throws(Diagnostic) -> RuntimeValue {
        if let value = session.variables[name] { return value }
        if let value = session.values[name] { return .number(value) }
        let known = Array(session.variables.keys) + Array(session.values.keys)
        let hint = Suggestion.closest(to: name, among: known).map { "did you mean '$\($0)'?" }
            ?? "define it first with 'let \(name) = ...' or pass --set \(name)=..."
        throw Diagnostic("undefined variable '$\(name)'", at: location, length: name.count + 1, hint: hint)
    }

    // MARK: Statements

    private func runLoop(_ loop: ForStatement) throws(Diagnostic) {
        // A range runs over its integers, also inside a list ('for s in 1, 3..6'). Ranges stay
        // ranges until iterated, so 'for i in 0..1000000000' costs nothing to check.
        func pieces(_ value: RuntimeValue) throws(Diagnostic) -> [LoopPiece] {
            switch value {
            case .range(let lower?, let upper?):
                return lower <= upper ? [.range(lower...upper)] : []
            case .range:
                throw Diagnostic("a loop range needs both ends", at: loop.values.location,
                                 hint: "write e.g. 'for b in 2..8 { ... }'")
            default:
                return [.value(value)]
            }
        }
        var values: [LoopPiece] = []
        switch try evaluate(loop.values) {
        case .list(let items):
            for item in items { values += try pieces(item) }
        case let single:
            values = try pieces(single)
        }
        let saved = session.variables[loop.variable]
        defer {
            if checkOnly { session.variables[loop.variable] = saved }
        }
        if checkOnly || loop.kind == .sequential {
            // Checking binds the body once: every iteration has the same shape.
            try forEach(values) { value throws(Diagnostic) in
                session.variables[loop.variable] = value
                for statement in loop.body { try execute(statement) }
                return !checkOnly
            }
            return
        }
        try runSweep(loop, values: values)
    }

    /// Calls `body` with each value, expanding ranges one integer at a time, until it returns false.
    private func forEach(_ pieces: [LoopPiece], _ body: (RuntimeValue) throws(Diagnostic) -> Bool) throws(Diagnostic) {
        for piece in pieces {
            switch piece {
            case .value(let value):
                if try !body(value) { return }
            case .range(let range):
                for number in range {
                    if try !body(.integer(number)) { return }
                }
            }
        }
    }

    private enum LoopPiece {
        case value(RuntimeValue)
        case range(ClosedRange<Int>)
    }

    /// Each item starts from the state before the sweep and leaves only its evaluations behind.
    /// A failing item is reported and recorded, and the others still run; the sweep then fails
    /// as a whole, naming the failed items.
    private func runSweep(_ loop: ForStatement, values: [LoopPiece]) throws(Diagnostic) {
        let before = session.captureItemState()
        var failed: [String] = []
        try forEach(values) { value throws(Diagnostic) in
            let item = session.sweep.itemsStarted
            session.sweep.itemsStarted += 1
            guard session.sweep.runsHere(item: item) else { return true }
            let label = "\(loop.variable)=\(value)"
            if let shard = session.sweep.shard {
                session.output.line("sweep item \(item) (\(label)) in shard \(shard)")
            }
            session.variables[loop.variable] = value
            session.sweep.currentItem = item
            var itemError: String?
            do throws(Diagnostic) {
                for statement in loop.body { try execute(statement) }
            } catch {
                // Ctrl-C stops the recipe, not just the item.
                if error.message == "interrupted" {
                    session.sweep.currentItem = nil
                    session.restore(before)
                    throw error
                }
                itemError = render(error, session: session)
                session.errors.line(itemError!)
                failed.append("\(item) (\(label))")
            }
            session.sweep.items.append(SweepState.Item(index: item, variables: [loop.variable: value.description], error: itemError))
            session.sweep.currentItem = nil
            session.restore(before)
            return true
        }
        guard failed.isEmpty else {
            throw Diagnostic("sweep: \(failed.count) item\(failed.count == 1 ? "" : "s") failed: \(failed.joined(separator: ", "))",
                             at: loop.location, length: loop.kind.rawValue.count,
                             hint: "each item's error is printed above; the other items ran and their results are kept")
        }
    }

    private func check(_ expectation: ExpectStatement) throws(Diagnostic) {
        let subjectName: String
        switch expectation.subject.syntax {
        case .identifier(let name): subjectName = name
        case .variable(let name): subjectName = "$" + name
        default:
            throw Diagnostic("expect needs a named result or a variable on the left", at: expectation.subject.location,
                             hint: "e.g. 'expect top1 >= 90'")
        }
        let expected = try number(of: expectation.expected, role: "the expected value")
        let tolerance = try expectation.tolerance.map { v throws(Diagnostic) in try number(of: v, role: "the tolerance") } ?? 0
        if checkOnly { return }

        let actual: Double
        switch expectation.subject.syntax {
        case .identifier(let name):
            guard let value = session.values[name] else {
                let known = Array(session.values.keys).sorted()
                let hint = Suggestion.closest(to: name, among: known).map { "did you mean '\($0)'?" }
                    ?? (known.isEmpty ? "no results yet: run 'eval' first" : "known results: " + known.joined(separator: ", "))
                throw Diagnostic("no result named '\(name)'", at: expectation.subject.location, length: name.count, hint: hint)
            }
            actual = value
        default:
            actual = try number(of: expectation.subject, role: "the subject")
        }

        let holds: Bool
        switch expectation.comparison {
        case .less: holds = actual < expected - tolerance
        case .lessOrEqual: holds = actual <= expected + tolerance
        case .equal: holds = abs(actual - expected) <= tolerance
        case .notEqual: holds = abs(actual - expected) > tolerance
        case .greaterOrEqual: holds = actual >= expected - tolerance
        case .greater: holds = actual > expected + tolerance
        }
        let claim = "\(subjectName) \(expectation.comparison.rawValue) \(RuntimeValue.format(expected))"
            + (expectation.tolerance == nil ? "" : " +- \(RuntimeValue.format(tolerance))")
        let shown = Self.formatResult(actual)
        guard holds else {
            throw Diagnostic("expectation failed: \(subjectName) is \(shown), expected \(claim)", at: expectation.location,
                             length: 6, hint: "the recipe's numbers changed; check the steps above or update the expectation")
        }
        session.output.line("expect \(claim): ok (\(subjectName) = \(shown))")
    }

    static func formatResult(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(format: "%.4g", value)
    }

    private func number(of value: Value, role: String) throws(Diagnostic) -> Double {
        let evaluated = try evaluate(value)
        guard let number = evaluated.numericValue else {
            throw Diagnostic("\(role) must be a number, got \(evaluated.kindName) '\(evaluated)'", at: value.location)
        }
        return number
    }

    /// The statement as it ran, with variables replaced by their values: model states and
    /// reports then say `lambda1=0.4`, not `lambda1=$lam`.
    static func substitutedText(_ command: CommandStatement, positionals: [PlacedValue],
                                options: [(key: String, keyLocation: SourceLocation, value: PlacedValue)]) -> String {
        var arguments = positionals.map { Argument.positional(Value($0.value.syntax, at: $0.location)) }
        arguments += options.map { .option(key: $0.key, keyLocation: $0.keyLocation, value: Value($0.value.value.syntax, at: $0.value.location)) }
        return Printer.print(Statement.command(CommandStatement(name: command.name, location: command.location, arguments: arguments)))
    }

    private func runCommand(_ command: CommandStatement) throws(Diagnostic) {
        var positionals: [PlacedValue] = []
        var options: [(key: String, keyLocation: SourceLocation, value: PlacedValue)] = []
        for argument in command.arguments {
            switch argument {
            case .positional(let value):
                positionals.append(PlacedValue(value: try evaluate(value), location: value.location))
            case .option(let key, let keyLocation, let value):
                options.append((key, keyLocation, PlacedValue(value: try evaluate(value), location: value.location)))
            }
        }
        var leadingWords: [String] = []
        var wordLocations: [SourceLocation] = []
        for placed in positionals {
            guard case .word(let word) = placed.value else { break }
            leadingWords.append(word)
            wordLocations.append(placed.location)
        }
        let (spec, consumed) = try session.registry.resolve(command.name, positionalWords: leadingWords,
                                                            at: command.location, wordLocations: wordLocations)
        let binder = ArgumentBinder(spec: spec, statementLocation: command.location)
        let invocation = try binder.bind(positionals: Array(positionals.dropFirst(consumed)), options: options,
                                         text: Self.substitutedText(command, positionals: positionals, options: options))
        if checkOnly { return }
        do {
            try spec.run(invocation, session)
        } catch let diagnostic as Diagnostic {
            throw diagnostic
        } catch let error as CommandError {
            throw Diagnostic(error.message, at: command.location, length: command.name.count, hint: error.hint)
        } catch is Interrupted {
            qsh_clear_interrupt()
            throw Diagnostic("interrupted", at: command.location, length: command.name.count,
                             hint: "the command stopped; the model is as it was before it")
        } catch {
            var message = String(describing: error)
            if let unmet = (error as? any PrerequisiteFailure)?.unmet {
                message += "; " + unmet.remedy(for: spec.words.joined(separator: " "))
            }
            throw Diagnostic(message, at: command.location, length: command.name.count)
        }
    }
}
