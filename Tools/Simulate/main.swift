import ArgumentParser
import Foundation
import LogStorageSimulation

/// Runs the storage simulation over many seeds, or replays one. Every run of a seed is the
/// same run, in any process, so a failure printed here reproduces with `--seed N`.
@main
struct SimulateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lodestone-simulate",
        abstract: "Seeded crash, fault and corruption simulation of Lodestone's partition log.")

    @Option(help: "Replay this one seed and print its summary.")
    var seed: UInt64?

    @Option(help: "First seed of the range.")
    var from: UInt64 = 1

    @Option(help: "Number of seeds to run.")
    var count: UInt64 = 10_000

    @Option(help: "Steps per seed (default 300, or 200 with --producers).")
    var steps: Int?

    @Flag(help: "Run the model-based replay-protection simulation (idempotent producers, fencing) instead of the partition one.")
    var producers = false

    /// One seed of the chosen simulation; the summary as text.
    func runOne(_ seed: UInt64) throws -> String {
        if producers { return "\(try ProducerSimulation.run(seed: seed, steps: steps ?? 200))" }
        return "\(try PartitionSimulation.run(seed: seed, steps: steps ?? 300))"
    }

    func run() throws {
        if let seed {
            print("seed \(seed) passed: \(try runOne(seed))")
            return
        }
        let started = Date()
        var total = PartitionSimulation.Summary()
        var producerTotal = ProducerSimulation.Summary()
        var failures: [String] = []
        let interactive = isatty(STDERR_FILENO) != 0
        for seed in from..<(from + count) {
            do {
                if producers {
                    producerTotal.add(try ProducerSimulation.run(seed: seed, steps: steps ?? 200))
                } else {
                    total.add(try PartitionSimulation.run(seed: seed, steps: steps ?? 300))
                }
            } catch {
                failures.append("\(error)")
                FileHandle.standardError.write(Data("\(error)\n".utf8))
            }
            let done = seed - from + 1
            if done % 100 == 0 || done == count {
                let line = "\(done)/\(count) seeds, \(failures.count) failed, \(Int(Date().timeIntervalSince(started))) s"
                FileHandle.standardError.write(Data((interactive ? "\r" + line : line + "\n").utf8))
            }
        }
        if interactive { FileHandle.standardError.write(Data("\n".utf8)) }
        let seconds = Date().timeIntervalSince(started)
        print("\(producers ? "producer" : "partition") simulation, seeds \(from)..<\(from + count), \(steps ?? (producers ? 200 : 300)) steps each: \(count - UInt64(failures.count)) passed, \(failures.count) failed in \(String(format: "%.1f", seconds)) s")
        print("totals: \(producers ? "\(producerTotal)" : "\(total)")")
        if !failures.isEmpty { throw ExitCode(1) }
    }
}
