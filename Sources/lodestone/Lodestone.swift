import ArgumentParser

/// `lodestone`: the one command-line binary. It wires the modules together and holds no
/// logic of its own (../shared/design.md, "The command line").
@main
struct Lodestone: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lodestone",
        abstract: "A durable event log for state-flip telemetry.",
        subcommands: [CheckCommand.self, InspectCommand.self])
}
