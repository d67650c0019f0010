import ArgumentParser
import CShims
import Foundation
import Interpreter
import QuantOps

/// `qsh`: run recipes, check them, or explore a model in the REPL.
struct Qsh: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qsh",
        abstract: "The quantization shell: quantize CNNs with recipes.",
        discussion: """
            With no file, qsh starts the REPL on a terminal and reads a recipe from standard input when piped.
            Exit status: 0 success, 1 recipe error or failed expect, 2 usage error.
            """,
        version: QshVersion.string,
        subcommands: [Run.self, Check.self, Test.self, Merge.self],
        defaultSubcommand: Run.self)
}

/// Options every mode shares.
struct SessionOptions: ParsableArguments {
    @Option(name: .customLong("set"), help: ArgumentHelp("Override a recipe variable (a `let` of the same name is ignored).", valueName: "name=value"))
    var overrides: [String] = []

    @Option(help: ArgumentHelp("Directory searched first for model checkpoints (also $QSH_MODELS).", valueName: "dir"))
    var models: String?

    @Option(help: ArgumentHelp("Directory searched first for data sets (also $QSH_DATA).", valueName: "dir"))
    var data: String?

    @Option(help: "Inference threads (default: all cores).")
    var threads: Int?

    @Option(help: ArgumentHelp("Vector instructions of the engine's kernels: auto, avx2 or avx512. auto takes AVX2 for a recipe of float inference only (no engine=int8, distill or finetune) where the CPU's 512-bit FMAs compute no more than 256-bit ones (AMD Zen 4), and AVX-512 otherwise. ONEDNN_MAX_CPU_ISA, when set, decides instead.", valueName: "isa"))
    var isa: InstructionSetChoice = .auto

    /// Chooses the instruction set before the engine's first kernel, for `recipe` (nil: the
    /// REPL, which may run anything).
    func limitInstructionSet(for recipe: String?) {
        CPUCapabilities.limitInstructionSet(isa, floatInferenceOnly: recipe.map(RecipeRunner.runsOnlyFloatInference) ?? false)
    }

    func makeSession() throws -> Session {
        let session = Session()
        try configure(session)
        return session
    }

    /// Applies the directories, threads and overrides to a session made elsewhere (e.g. by `qsh test`).
    func configure(_ session: Session) throws {
        if let models { session.settings.modelsDirectory = models }
        if let data { session.settings.dataDirectory = data }
        if let threads {
            guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
            session.settings.threads = threads
        }
        session.applySettings()
        do {
            try RecipeRunner(session: session).applyOverrides(overrides)
        } catch let error as CommandError {
            throw ValidationError(error.message + (error.hint.map { " (\($0))" } ?? ""))
        }
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Run a recipe file, inline text, standard input, or the REPL.")

    @Argument(help: "A .qs recipe to run.")
    var file: String?

    @Option(name: .customShort("c"), help: ArgumentHelp("Run this recipe text.", valueName: "recipe"))
    var command: String?

    @Option(name: .customLong("json"), help: ArgumentHelp("Write a JSON report of the run (evals, checksums, timings) to this file.", valueName: "file"))
    var jsonReport: String?

    @Option(help: ArgumentHelp("Run only shard i (from 0) of n: the sweep items k with k mod n = i, and the parts of 'eval ... shard=auto'. Merge the --json records with 'qsh merge'.", valueName: "i/n"))
    var shard: String?

    @OptionGroup var options: SessionOptions

    /// 128 + SIGTERM, as a shell reports a process SIGTERM ended.
    static let terminatedStatus: Int32 = 143

    /// Writes the report, if asked for, then exits with the recipe's status.
    private func finish(_ status: ExitStatus, session: Session) throws -> Never {
        // SIGTERM stopped the recipe between steps: no report (a half-finished run's record
        // would read as a complete one), and the status a shell gives a terminated process.
        if qsh_termination_requested() != 0 {
            session.errors.line("qsh: terminated" + (jsonReport.map { "; no report written to \($0)" } ?? ""))
            throw ExitCode(Self.terminatedStatus)
        }
        if let shard = session.sweep.shard, session.sweep.itemsStarted == 0, !session.sweep.dataSharded, status == .success {
            session.errors.line("warning: --shard \(shard): the recipe has no sweep and no 'eval ... shard=auto', so every shard did the same work")
        }
        if let jsonReport {
            do {
                try RunReport(session: session, exitStatus: status).write(to: jsonReport)
            } catch {
                session.errors.line("error: \(error)")
                throw ExitCode(ExitStatus.recipeFailed.rawValue)
            }
        }
        throw ExitCode(status.rawValue)
    }

    func run() throws {
        let session = try options.makeSession()
        qsh_install_interrupt_handler()
        if file != nil && command != nil { throw ValidationError("give either a file or -c, not both") }
        if let shard {
            do {
                try session.sweep.setShard(shard)
            } catch {
                throw ValidationError("--shard \(shard): \(error)")
            }
            if file == nil && command == nil { throw ValidationError("--shard needs a recipe: qsh FILE.qs --shard \(shard)") }
            if jsonReport == nil {
                session.errors.line("warning: --shard without --json: this shard's results are printed but not kept for 'qsh merge'")
            }
        }
        let runner = RecipeRunner(session: session)
        if let command {
            options.limitInstructionSet(for: command)
            try finish(runner.run(text: command, fileName: "<-c>"), session: session)
        }
        if let file {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ValidationError("cannot read recipe '\(file)': no such file or not UTF-8 text")
            }
            options.limitInstructionSet(for: text)
            try finish(runner.run(text: text, fileName: file), session: session)
        }
        if isatty(STDIN_FILENO) != 0 {
            options.limitInstructionSet(for: nil)
            let reader = ReadlineReader(session: session)
            session.output.line("qsh \(QshVersion.string): type 'help' for commands, Ctrl-D to leave.")
            Repl(interpreter: Interpreter(session: session), reader: reader).run()
            reader.saveHistory()
            if qsh_termination_requested() != 0 { try finish(.success, session: session) }
            if jsonReport != nil { try finish(.success, session: session) }
            return
        }
        let input = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        options.limitInstructionSet(for: input)
        try finish(runner.run(text: input, fileName: "<stdin>"), session: session)
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Parse and validate recipes without running them.")

    @Argument(help: "Recipes to check.")
    var files: [String]

    @OptionGroup var options: SessionOptions

    func run() throws {
        var status = ExitStatus.success
        for file in files {
            let session = try options.makeSession()
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ValidationError("cannot read recipe '\(file)': no such file or not UTF-8 text")
            }
            if RecipeRunner(session: session).run(text: text, fileName: file, checkOnly: true) == .success {
                session.output.line("\(file): ok")
            } else {
                status = .recipeFailed
            }
        }
        throw ExitCode(status.rawValue)
    }
}

struct Test: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the qsh blocks of Markdown files against their output blocks, and recipes with their expect lines.",
        discussion: "Conventions: docs/doctests.md. Exit status 0 when every file passes, 1 otherwise.")

    @Argument(help: "Markdown files (.md) and recipes (.qs) to test.")
    var files: [String]

    @OptionGroup var options: SessionOptions

    func run() throws {
        qsh_install_interrupt_handler()
        options.limitInstructionSet(for: nil)
        let runner = DocTestRunner(setup: { session in try options.configure(session) })
        throw ExitCode(runner.run(paths: files, report: StandardStream.output()).rawValue)
    }
}

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Merge the --json run records of a sharded recipe into one results table.",
        discussion: """
            The shards must come from the same recipe text, shard count and --set values. The table lists every eval of the whole run in the order a sequential run makes them; parts of a data set ('eval ... shard=auto') are added up exactly. Missing shards, failed items and unreadable files are listed by index and the exit status is then 1.
            """)

    @Argument(help: "The run records, e.g. out/*.json.")
    var files: [String]

    @Option(help: ArgumentHelp("Also draw the results as an SVG figure, as 'plot results' does.", valueName: "file.svg"))
    var plot: String?

    func run() throws {
        guard !files.isEmpty else { throw ValidationError("give the run records to merge, e.g. qsh merge out/*.json") }
        var inputs: [SweepMerge.Input] = []
        var unreadable: [String] = []
        for path in files {
            if let contents = FileManager.default.contents(atPath: path) {
                inputs.append(SweepMerge.Input(path: path, contents: contents))
            } else {
                unreadable.append("\(path): cannot be read (no such file, or not readable)")
            }
        }
        let errors = StandardStream.error()
        let merged: SweepMerge
        do {
            merged = try SweepMerge(inputs)
        } catch {
            unreadable.forEach { errors.line("error: " + $0) }
            errors.line("error: \(error.message)" + (error.hint.map { "\n  hint: \($0)" } ?? ""))
            throw ExitCode(ExitStatus.recipeFailed.rawValue)
        }
        let problems = unreadable + merged.problems
        StandardStream.output().line(merged.resultsTable)
        errors.line("merged \(merged.shardsFound.count) of \(merged.shardCount) shard\(merged.shardCount == 1 ? "" : "s") of \(merged.recipe): "
                    + "\(merged.itemCount) sweep item\(merged.itemCount == 1 ? "" : "s"), \(merged.evaluations.count) eval\(merged.evaluations.count == 1 ? "" : "s")")
        if let plot {
            do {
                try merged.plot(to: plot)
                errors.line("wrote \(plot)")
            } catch {
                errors.line("error: cannot write \(plot): \(error)")
                throw ExitCode(ExitStatus.recipeFailed.rawValue)
            }
        }
        guard problems.isEmpty else {
            errors.line("INCOMPLETE: the table above lacks what these lines name:")
            problems.forEach { errors.line("  " + $0) }
            throw ExitCode(ExitStatus.recipeFailed.rawValue)
        }
    }
}

qsh_prefer_passive_openmp_waiting(CommandLine.unsafeArgv)
// Every mode writes files (merge --plot too): a file-size limit fails the write, naming the file,
// instead of killing the process.
signal(SIGXFSZ, SIG_IGN)

// Usage errors exit with 2, as documented, instead of ArgumentParser's 64.
do {
    var command = try Qsh.parseAsRoot()
    try command.run()
} catch {
    let code = Qsh.exitCode(for: error)
    if code == .success || code.rawValue == ExitStatus.recipeFailed.rawValue {
        Qsh.exit(withError: error)
    }
    let message = Qsh.fullMessage(for: error)
    if !message.isEmpty { FileHandle.standardError.write(Data((message + "\n").utf8)) }
    exit(code == .validationFailure || code.rawValue == 64 ? ExitStatus.usage.rawValue : code.rawValue)
}

extension InstructionSetChoice: ExpressibleByArgument {}
