import Foundation
import QLang

/// Exit codes of `qsh`: scripts rely on them.
public enum ExitStatus: Int32, Sendable {
    case success = 0
    /// A recipe error or a failed `expect`.
    case recipeFailed = 1
    /// Bad command-line use.
    case usage = 2
}

/// Runs recipe text non-interactively: the first error stops the run.
public struct RecipeRunner {
    public let session: Session

    public init(session: Session) {
        self.session = session
    }

    /// Applies `--set name=value` overrides; a bad one is a usage error.
    public func applyOverrides(_ assignments: [String]) throws -> Void {
        for assignment in assignments {
            guard let equals = assignment.firstIndex(of: "="), equals != assignment.startIndex else {
                throw CommandError("--set expects name=value, got '\(assignment)'", hint: "e.g. --set lam=0.5")
            }
            let name = String(assignment[..<equals])
            let valueText = String(assignment[assignment.index(after: equals)...])
            let source = SourceFile(name: "--set", text: "let \(name) = \(valueText)")
            let program: Program
            do {
                program = try Parser.parse(source)
            } catch {
                throw CommandError("--set \(assignment): not a valid name and value", hint: "quote strings for the shell, e.g. --set 'path=\"a b.th\"'")
            }
            guard program.statements.count == 1, case .assignment(let assignment) = program.statements[0] else {
                throw CommandError("--set \(assignment): not a single value", hint: "e.g. --set lam=0.5")
            }
            session.variables[name] = try Interpreter(session: session).evaluate(assignment.value)
            session.pinnedVariables.insert(name)
        }
    }

    /// Whether a recipe's kernels are float inference only, as far as its text says: no
    /// `engine=` option other than a literal `float` (a variable could hold `int8`), no training
    /// (`distill`, `finetune`), and no `source` of another file. Text that does not parse says
    /// no: it will not run anyway.
    public static func runsOnlyFloatInference(_ text: String) -> Bool {
        guard let program = try? Parser.parse(SourceFile(name: "", text: text)) else { return false }
        let otherKernels: Set<String> = ["source", "distill", "finetune"]
        func floatInference(_ statements: [Statement]) -> Bool {
            statements.allSatisfy { statement in
                switch statement {
                case .command(let command):
                    if otherKernels.contains(command.name) { return false }
                    return command.arguments.allSatisfy { argument in
                        guard case .option(let key, _, let value) = argument, key == "engine" else { return true }
                        switch value.syntax {
                        case .identifier("float"), .string("float"): return true
                        default: return false
                        }
                    }
                case .loop(let loop): return floatInference(loop.body)
                case .assignment, .expectation: return true
                }
            }
        }
        return floatInference(program.statements)
    }

    /// Runs (or only checks) a recipe and reports errors on the session's error stream.
    @discardableResult
    public func run(text: String, fileName: String, checkOnly: Bool = false) -> ExitStatus {
        let source = SourceFile(name: fileName, text: text)
        let program: Program
        do {
            program = try Parser.parse(source)
        } catch {
            remember(source)
            session.errors.line(render(error, session: session))
            return .recipeFailed
        }
        return run(program, parsedFrom: source, checkOnly: checkOnly)
    }

    /// Runs (or only checks) a recipe already parsed from `source`, as `run(text:fileName:checkOnly:)`
    /// does after parsing it.
    @discardableResult
    public func run(_ program: Program, parsedFrom source: SourceFile, checkOnly: Bool = false) -> ExitStatus {
        remember(source)
        do {
            try Interpreter(session: session, checkOnly: checkOnly).run(program)
            return .success
        } catch {
            session.errors.line(render(error, session: session))
            return .recipeFailed
        }
    }

    /// Errors show lines of the source; the first recipe is the one reports name.
    private func remember(_ source: SourceFile) {
        session.sources[source.name] = source
        if session.mainRecipe == nil { session.mainRecipe = source.name }
    }
}
