import ArgumentParser

/// `lodestone`: the one command-line binary. It wires the modules together and holds no
/// logic of its own (Docs/design.md, "The command line").
///
/// Exit statuses: 0 success, 1 failure (the message says what failed), 2 a usage problem
/// (an unknown option, a missing argument, a value out of range, or `serve` asked to
/// listen beyond loopback without auth).
@main
struct Lodestone: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lodestone",
        abstract: "A durable event log for state-flip telemetry.",
        subcommands: [
            ServeCommand.self, TopicCommand.self, ProduceCommand.self, ConsumeCommand.self, OffsetsCommand.self,
            HealthCommand.self, PaulizCommand.self, CheckCommand.self, InspectCommand.self,
        ])

    /// ArgumentParser's own main, except that usage errors exit with status 2 (not 64),
    /// the same status our commands give a bad value.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asynchronous = command as? AsyncParsableCommand {
                try await asynchronous.run()
            } else {
                try command.run()
            }
        } catch {
            if exitCode(for: error) == .validationFailure {
                printError(fullMessage(for: error))
                exit(withError: ExitCode(2))
            }
            exit(withError: error)
        }
    }
}
