import Foundation
import LogStorageSimulation
import XCTest

/// The model-based simulation of replay protection (LogStorageSimulation). CI runs 1,000
/// seeds; `Tools/simulate --producers` runs more; `--seed N --producers` replays one.
final class ProducerSimulationTests: XCTestCase {
    var seedCount: UInt64 {
        UInt64(ProcessInfo.processInfo.environment["LODESTONE_PRODUCER_SEEDS"] ?? "") ?? 1000
    }

    func testEveryAppendGetsTheOutcomeTheModelPredicts() {
        var total = ProducerSimulation.Summary()
        for seed in 1...seedCount {
            do {
                total.add(try ProducerSimulation.run(seed: seed, steps: 200))
            } catch {
                XCTFail("\(error)")
                return
            }
        }
        XCTAssertGreaterThan(total.committed, 0)
        XCTAssertGreaterThan(total.duplicates, 0)
        XCTAssertGreaterThan(total.fenced, 0)
        XCTAssertGreaterThan(total.outOfOrder, 0)
        XCTAssertGreaterThan(total.refused, 0)
        XCTAssertGreaterThan(total.crashes, 0)
        XCTAssertGreaterThan(total.retriesAfterCrash, 0)
        print("producer simulation: \(seedCount) seeds, \(total)")
    }
}
