import Foundation
import LogStorageSimulation
import XCTest

/// The seeded crash-and-fault simulation of one partition (LogStorageSimulation). CI runs
/// the seeds below; `Tools/simulate` runs thousands. A failure prints its seed, and
/// `swift run lodestone-simulate --seed N` replays it exactly.
final class SimulationTests: XCTestCase {
    /// How many seeds this run tries: LODESTONE_SIMULATION_SEEDS, or 300.
    var seedCount: UInt64 {
        UInt64(ProcessInfo.processInfo.environment["LODESTONE_SIMULATION_SEEDS"] ?? "") ?? 300
    }

    func testSeededCrashesAndFaultsNeverLoseAcknowledgedBatches() {
        var total = PartitionSimulation.Summary()
        for seed in 1...seedCount {
            do {
                total.add(try PartitionSimulation.run(seed: seed))
            } catch {
                XCTFail("\(error)")
                return
            }
        }
        // The runs must actually exercise what they claim to check.
        XCTAssertGreaterThan(total.durableAcks, 0)
        XCTAssertGreaterThan(total.writtenAcks, 0)
        XCTAssertGreaterThan(total.processCrashes, 0)
        XCTAssertGreaterThan(total.powerLosses, 0)
        XCTAssertGreaterThan(total.tornTailsTruncated, 0)
        XCTAssertGreaterThan(total.bitFlipsDetected, 0)
        XCTAssertGreaterThan(total.readOnlyTransitions, 0)
        XCTAssertGreaterThan(total.indexRebuilds, 0)
        print("simulation: \(seedCount) seeds, \(total)")
    }

    func testTheSameSeedReplaysExactly() throws {
        let first = try PartitionSimulation.run(seed: 4242)
        let second = try PartitionSimulation.run(seed: 4242)
        XCTAssertEqual(first, second)
    }
}
