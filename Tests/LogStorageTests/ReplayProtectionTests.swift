import LogFormat
import LogIO
import LogSimulation
@testable import LogStorage
import XCTest

/// A partition of a raw or flip topic on the simulated disk, with the store's real
/// producer registry, driven one append at a time.
final class ReplayFixture {
    let disk = SimulatedDisk(seed: 21)
    let executor = ManualExecutor()
    let clock = SimulatedClock()
    let topic: TopicConfiguration
    let partitionIndex: Int
    var configuration = smallConfiguration()
    var registry: ProducerRegistry
    var log: PartitionLog

    init(kind: TopicKind, partitionCount: Int = 1, partition: Int = 0, configure: (inout StorageConfiguration) -> Void = { _ in }) throws {
        try disk.makeDirectory("/d")
        try disk.makeDirectory("/d/t")
        topic = TopicConfiguration(name: "t", partitionCount: partitionCount, kind: kind, createdAt: 0)
        partitionIndex = partition
        configure(&configuration)
        registry = try ProducerRegistry.open(directory: "/d", fileIO: disk, logger: quietLogger)
        let environment = StorageEnvironment(fileIO: disk, configuration: configuration, clock: clock, executor: executor, logger: quietLogger)
        log = try PartitionLog.open(directory: "/d/t/\(partition)", topic: topic, partition: partition, environment: environment, registry: registry)
    }

    var environment: StorageEnvironment {
        StorageEnvironment(fileIO: disk, configuration: configuration, clock: clock, executor: executor, logger: quietLogger)
    }

    func producer(_ name: String? = nil) throws -> ProducerIdentity { try registry.initialize(name: name) }

    func raw(_ producer: ProducerIdentity?, seq: Int32, _ values: [String]) -> [UInt8] {
        RecordBatch.make(
            values: values.map { (Array("k".utf8), Array($0.utf8)) }, timestamp: 0,
            producerId: producer?.producerId ?? -1, producerEpoch: producer?.epoch ?? -1, baseSequence: producer == nil ? -1 : seq).encoded()
    }

    func flip(_ producer: ProducerIdentity?, seq: Int32, _ events: [FlipEvent]) -> [UInt8] {
        RecordBatch.make(
            values: events.map { ($0.key, $0.encodedValue()) }, timestamp: 0,
            producerId: producer?.producerId ?? -1, producerEpoch: producer?.epoch ?? -1, baseSequence: producer == nil ? -1 : seq).encoded()
    }

    func send(_ batch: [UInt8], ackMode: AckMode = .durable) throws -> AppendOutcome { try outcomeOf(log, executor, batch, ackMode: ackMode) }

    /// Kills the process (or the machine), reopens registry and partition.
    func restart(_ kind: SimulatedDisk.CrashKind = .process) throws {
        disk.crash(kind)
        executor.dropAll()
        registry = try ProducerRegistry.open(directory: "/d", fileIO: disk, logger: quietLogger)
        log = try PartitionLog.open(directory: "/d/t/\(partitionIndex)", topic: topic, partition: partitionIndex, environment: environment, registry: registry)
    }

    func values() throws -> [String] {
        var values: [String] = []
        var offset = log.offsets.start
        while offset < log.offsets.durableEnd {
            let read = try log.read(from: offset, maxBytes: 1 << 20)
            var position = 0
            while position < read.bytes.count {
                let header = try RecordBatchHeader.read(bytes: Array(read.bytes[position...]))
                let batch = try RecordBatch.decode(Array(read.bytes[position..<(position + header.totalSize)]), allowingControl: true)
                if !header.attributes.isControl {
                    values += batch.records.map { record in
                        if topic.kind == .flip, let event = try? FlipEvent.decode(key: record.key, value: record.value) { return "\(event.resource)@\(event.epoch).\(event.seq)" }
                        return String(decoding: record.value ?? [], as: UTF8.self)
                    }
                }
                position += header.totalSize
            }
            offset = read.nextOffset
        }
        return values
    }
}

func event(_ resource: String, epoch: Int64, seq: Int64, to: String = "on") -> FlipEvent {
    FlipEvent(resource: resource, to: to, epoch: epoch, seq: seq, time: 1000 + seq)
}

final class IdempotentProducerTests: XCTestCase {
    func testNextSequenceIsCommittedAndARetryIsADuplicateWithItsOriginalOffsets() throws {
        let fixture = try ReplayFixture(kind: .raw)
        let producer = try fixture.producer()
        let first = try fixture.send(fixture.raw(producer, seq: 0, ["a", "b"])).committed()
        let second = try fixture.send(fixture.raw(producer, seq: 2, ["c"])).committed()
        XCTAssertEqual(try fixture.send(fixture.raw(producer, seq: 0, ["a", "b"])), .duplicate(first))
        XCTAssertEqual(try fixture.send(fixture.raw(producer, seq: 2, ["c"])), .duplicate(second))
        XCTAssertEqual(try fixture.values(), ["a", "b", "c"], "a retry is never stored twice")
        XCTAssertEqual(fixture.log.statistics.duplicateCount, 2)
    }

    func testOnlyTheLastFiveBatchesAreAnsweredAsDuplicates() throws {
        let fixture = try ReplayFixture(kind: .raw)
        let producer = try fixture.producer()
        var results: [AppendResult] = []
        for seq in 0..<7 { results.append(try fixture.send(fixture.raw(producer, seq: Int32(seq), ["v\(seq)"])).committed()) }
        XCTAssertEqual(try fixture.send(fixture.raw(producer, seq: 2, ["v2"])), .duplicate(results[2]), "the fifth from last")
        guard case .outOfOrder = try fixture.send(fixture.raw(producer, seq: 1, ["v1"])) else {
            return XCTFail("an old batch outside the window is out of order")
        }
        XCTAssertEqual(fixture.log.offsets.next, 7)
    }

    func testAGapIsOutOfOrderAndNothingIsWritten() throws {
        let fixture = try ReplayFixture(kind: .raw)
        let producer = try fixture.producer()
        _ = try fixture.send(fixture.raw(producer, seq: 0, ["a"])).committed()
        guard case .outOfOrder(let message) = try fixture.send(fixture.raw(producer, seq: 5, ["x"])) else { return XCTFail("a gap is out of order") }
        XCTAssertTrue(message.contains("expected sequence 1, got 5"), message)
        XCTAssertEqual(fixture.log.offsets.next, 1)
        _ = try fixture.send(fixture.raw(producer, seq: 1, ["b"])).committed()
        XCTAssertEqual(fixture.log.statistics.outOfOrderCount, 1)
    }

    func testAnOlderEpochIsFencedAndANewEpochStartsAtZero() throws {
        let fixture = try ReplayFixture(kind: .raw)
        let old = try fixture.producer("sensor")
        _ = try fixture.send(fixture.raw(old, seq: 0, ["old 0"])).committed()
        let new = try fixture.producer("sensor")
        XCTAssertEqual(new.producerId, old.producerId, "a name keeps its id")
        XCTAssertEqual(new.epoch, old.epoch + 1)
        guard case .fenced = try fixture.send(fixture.raw(old, seq: 1, ["old 1"])) else { return XCTFail("the old epoch is fenced") }
        guard case .outOfOrder = try fixture.send(fixture.raw(new, seq: 3, ["new 3"])) else { return XCTFail("a new epoch starts at 0") }
        _ = try fixture.send(fixture.raw(new, seq: 0, ["new 0"])).committed()
        XCTAssertEqual(try fixture.values(), ["old 0", "new 0"])
    }

    /// Found by the model-based simulation (seed 221): with batches of two epochs queued,
    /// a new epoch's batch with the same sequence numbers as an old epoch's queued one was
    /// answered as its duplicate.
    func testANewEpochsBatchIsNeverADuplicateOfAnOldEpochsQueuedOne() throws {
        let fixture = try ReplayFixture(kind: .raw)
        let old = try fixture.producer("p")
        let boxes = (0..<4).map { _ in ResultBox() }
        fixture.log.append(fixture.raw(old, seq: 0, ["old 0"])) { boxes[0].set($0) }
        fixture.log.append(fixture.raw(old, seq: 1, ["old 1"])) { boxes[1].set($0) }
        let new = try fixture.producer("p")
        fixture.log.append(fixture.raw(new, seq: 0, ["new 0"])) { boxes[2].set($0) }
        fixture.log.append(fixture.raw(new, seq: 1, ["new 1"])) { boxes[3].set($0) }
        fixture.executor.runAll()
        let offsets = try boxes.map { try XCTUnwrap($0.value).get().committed().baseOffset }
        XCTAssertEqual(offsets, [0, 1, 2, 3], "four distinct batches, each stored once")
        XCTAssertEqual(try fixture.values(), ["old 0", "old 1", "new 0", "new 1"])
    }

    func testProducerIdMinusOneIsAPlainAppend() throws {
        let fixture = try ReplayFixture(kind: .raw)
        let first = try fixture.send(fixture.raw(nil, seq: -1, ["same"])).committed()
        let second = try fixture.send(fixture.raw(nil, seq: -1, ["same"])).committed()
        XCTAssertNotEqual(first.baseOffset, second.baseOffset, "without a producer id nothing is deduplicated")
    }

    func testIdsTheStoreNeverHandedOutAndExpiredStateAreUnknownProducers() throws {
        let fixture = try ReplayFixture(kind: .raw) { $0.producerExpirationMilliseconds = 60_000 }
        guard case .unknownProducer = try fixture.send(fixture.raw(ProducerIdentity(producerId: 999, epoch: 0), seq: 0, ["x"])) else {
            return XCTFail("an id never handed out is unknown")
        }
        let producer = try fixture.producer()
        guard case .unknownProducer = try fixture.send(fixture.raw(producer, seq: 4, ["x"])) else {
            return XCTFail("no state here and not starting at 0: unknown")
        }
        _ = try fixture.send(fixture.raw(producer, seq: 0, ["a"])).committed()
        fixture.clock.advance(by: 61_000)
        guard case .unknownProducer = try fixture.send(fixture.raw(producer, seq: 1, ["b"])) else {
            return XCTFail("an idle producer's state expires")
        }
        _ = try fixture.send(fixture.raw(producer, seq: 0, ["again"])).committed()
        XCTAssertEqual(fixture.log.statistics.unknownProducerCount, 3)
    }

    func testExpiryIsCountedWhenASnapshotIsTaken() throws {
        let fixture = try ReplayFixture(kind: .raw) { $0.producerExpirationMilliseconds = 60_000 }
        let producer = try fixture.producer()
        _ = try fixture.send(fixture.raw(producer, seq: 0, ["a"])).committed()
        fixture.clock.advance(by: 61_000)
        let box = VoidBox()
        fixture.log.close { box.result = $0 }
        fixture.executor.runAll()
        XCTAssertEqual(fixture.log.statistics.producersExpiredCount, 1)
    }

    /// Pipelined batches are judged against the queued ones, as if those had landed.
    func testPipelinedBatchesAreJudgedAsIfEarlierOnesLanded() throws {
        let fixture = try ReplayFixture(kind: .raw)
        let producer = try fixture.producer()
        let boxes = (0..<5).map { _ in ResultBox() }
        for (seq, box) in boxes.enumerated() {
            fixture.log.append(fixture.raw(producer, seq: Int32(seq), ["p\(seq)"])) { box.set($0) }
        }
        fixture.executor.runAll()
        for box in boxes { XCTAssertNoThrow(try XCTUnwrap(box.value).get().committed()) }
        XCTAssertEqual(try fixture.values(), ["p0", "p1", "p2", "p3", "p4"])
    }

    func testARetryOfAQueuedBatchWaitsForItsOutcomeFailureIncluded() throws {
        let fixture = try ReplayFixture(kind: .raw)
        let producer = try fixture.producer()
        let original = ResultBox()
        let retry = ResultBox()
        fixture.log.append(fixture.raw(producer, seq: 0, ["once"])) { original.set($0) }
        fixture.log.append(fixture.raw(producer, seq: 0, ["once"])) { retry.set($0) }
        XCTAssertNil(retry.value, "the retry waits while the original is queued")
        fixture.executor.runAll()
        let committed = try XCTUnwrap(original.value).get().committed()
        XCTAssertEqual(try XCTUnwrap(retry.value).get(), .duplicate(committed))

        let failing = ResultBox()
        let failingRetry = ResultBox()
        fixture.log.append(fixture.raw(producer, seq: 1, ["doomed"])) { failing.set($0) }
        fixture.log.append(fixture.raw(producer, seq: 1, ["doomed"])) { failingRetry.set($0) }
        fixture.disk.inject(.syncFails)
        fixture.executor.runAll()
        guard case .failure(let error)? = failingRetry.value else { return XCTFail("the retry shares the original's failure") }
        XCTAssertEqual(error.code, .readOnly)
        XCTAssertEqual(failingRetry.completions, 1)
    }

    func testTooManyBatchesInFlightAreRefusedNamingTheLimit() throws {
        let fixture = try ReplayFixture(kind: .raw)
        let producer = try fixture.producer()
        let boxes = (0..<6).map { _ in ResultBox() }
        for (seq, box) in boxes.enumerated() { fixture.log.append(fixture.raw(producer, seq: Int32(seq), ["v"])) { box.set($0) } }
        guard case .success(.refused(let refusals))? = boxes[5].value else { return XCTFail("the sixth batch in flight is refused") }
        XCTAssertTrue(refusals[0].message.contains("at most 5 batches in flight"), refusals[0].message)
        XCTAssertEqual(Set(refusals.map(\.reason)), [.wait], "a limit that clears: nothing used up, send it again later")
        fixture.executor.runAll()
        _ = try fixture.send(fixture.raw(producer, seq: 5, ["after"])).committed()
    }

    func testAckNoneTakesNoProducerId() throws {
        let fixture = try ReplayFixture(kind: .raw)
        let producer = try fixture.producer()
        XCTAssertThrowsError(try fixture.send(fixture.raw(producer, seq: 0, ["x"]), ackMode: .none)) { error in
            XCTAssertEqual((error as? StorageError)?.code, .invalidBatch)
        }
    }

    /// After any crash and reopen, a retry is a duplicate with its original offsets if and
    /// only if the batch was committed before the crash.
    func testARetryAfterACrashIsADuplicateExactlyWhenItWasCommitted() throws {
        let fixture = try ReplayFixture(kind: .raw)
        let producer = try fixture.producer("p")
        let committed = try fixture.send(fixture.raw(producer, seq: 0, ["durable"])).committed()
        let lost = ResultBox()
        fixture.log.append(fixture.raw(producer, seq: 1, ["never synced"])) { lost.set($0) }
        fixture.disk.inject(.freeze(afterOperations: 0))
        fixture.executor.runAll()
        try fixture.restart(.powerLoss)
        XCTAssertEqual(try fixture.send(fixture.raw(producer, seq: 0, ["durable"])), .duplicate(committed))
        let retried = try fixture.send(fixture.raw(producer, seq: 1, ["never synced"])).committed()
        XCTAssertEqual(retried.baseOffset, committed.lastOffset + 1, "not committed before: stored now, once")
        XCTAssertEqual(try fixture.values(), ["durable", "never synced"])
    }
}

final class ResourceFencingTests: XCTestCase {
    func testInvalidRecordsRefuseTheWholeBatchNamingRecordAndField() throws {
        let fixture = try ReplayFixture(kind: .flip)
        var bad = event("r1", epoch: 1, seq: 2)
        bad.to = ""
        let outcome = try fixture.send(fixture.flip(nil, seq: -1, [event("r1", epoch: 1, seq: 1), bad]))
        guard case .refused(let refusals) = outcome else { return XCTFail("the batch is refused") }
        XCTAssertEqual(refusals, [RecordRefusal(index: 1, reason: .invalid, message: "to must be 1 to 64 bytes, got 0")])
        XCTAssertEqual(fixture.log.offsets.next, 0, "nothing of a refused batch is stored")
    }

    func testARecordForAnotherPartitionIsInvalid() throws {
        let fixture = try ReplayFixture(kind: .flip, partitionCount: 12, partition: 3)
        // murmur2("1") % 12 = 3 (Kafka's rule); murmur2("12") % 12 = 10.
        _ = try fixture.send(fixture.flip(nil, seq: -1, [event("1", epoch: 1, seq: 1)])).committed()
        guard case .refused(let refusals) = try fixture.send(fixture.flip(nil, seq: -1, [event("12", epoch: 1, seq: 1)])) else {
            return XCTFail("a record of another partition is refused")
        }
        XCTAssertEqual(refusals.first?.message, "resource 12 belongs to partition 10, not 3")
    }

    func testLowerEpochIsFencedAndSameEpochOlderSeqIsReplayed() throws {
        let fixture = try ReplayFixture(kind: .flip)
        _ = try fixture.send(fixture.flip(nil, seq: -1, [event("r", epoch: 5, seq: 10)])).committed()
        let outcome = try fixture.send(fixture.flip(nil, seq: -1, [event("r", epoch: 4, seq: 99), event("r", epoch: 5, seq: 10), event("r", epoch: 5, seq: 11)]))
        guard case .refused(let refusals) = outcome else { return XCTFail("refused") }
        XCTAssertEqual(refusals.map(\.index), [0, 1], "every offending record is listed, the valid one is not")
        XCTAssertEqual(refusals.map(\.reason), [.fenced, .replayed])
        _ = try fixture.send(fixture.flip(nil, seq: -1, [event("r", epoch: 5, seq: 11)])).committed()
        XCTAssertEqual(try fixture.values(), ["r@5.10", "r@5.11"])
    }

    func testEarlierRecordsOfTheSameBatchCount() throws {
        let fixture = try ReplayFixture(kind: .flip)
        let outcome = try fixture.send(fixture.flip(nil, seq: -1, [event("r", epoch: 1, seq: 5), event("r", epoch: 1, seq: 5)]))
        guard case .refused(let refusals) = outcome else { return XCTFail("refused") }
        XCTAssertEqual(refusals.map(\.index), [1])
        XCTAssertEqual(refusals.map(\.reason), [.replayed])
    }

    /// A refused batch uses up its sequence numbers, is answered the same on retry, also
    /// after a restart, and the producer's next batch follows it.
    func testARefusedBatchUsesUpItsSequenceNumbersDurably() throws {
        let fixture = try ReplayFixture(kind: .flip)
        let producer = try fixture.producer("emitter")
        _ = try fixture.send(fixture.flip(producer, seq: 0, [event("r", epoch: 2, seq: 1)])).committed()
        let replay = fixture.flip(producer, seq: 1, [event("r", epoch: 2, seq: 1), event("s", epoch: 1, seq: 1)])
        guard case .refused(let refusals) = try fixture.send(replay) else { return XCTFail("refused") }
        XCTAssertEqual(refusals.map(\.index), [0])
        XCTAssertEqual(try fixture.send(replay), .refused(refusals), "a retry gets the same answer")
        try fixture.restart(.powerLoss)
        XCTAssertEqual(try fixture.send(replay), .refused(refusals), "the refusal was durable")
        _ = try fixture.send(fixture.flip(producer, seq: 3, [event("s", epoch: 1, seq: 1)])).committed()
        XCTAssertEqual(try fixture.values(), ["r@2.1", "s@1.1"])
    }

    func testTheProducerCheckComesFirst() throws {
        let fixture = try ReplayFixture(kind: .flip)
        let producer = try fixture.producer()
        let batch = fixture.flip(producer, seq: 0, [event("r", epoch: 1, seq: 1)])
        let committed = try fixture.send(batch).committed()
        XCTAssertEqual(try fixture.send(batch), .duplicate(committed), "a retry of a committed batch is a duplicate, never replayed")
    }

    func testFlipTopicsAllowOneBatchInFlightPerProducer() throws {
        let fixture = try ReplayFixture(kind: .flip)
        let producer = try fixture.producer()
        let first = ResultBox()
        let second = ResultBox()
        fixture.log.append(fixture.flip(producer, seq: 0, [event("r", epoch: 1, seq: 1)])) { first.set($0) }
        fixture.log.append(fixture.flip(producer, seq: 1, [event("r", epoch: 1, seq: 2)])) { second.set($0) }
        guard case .success(.refused(let refusals))? = second.value else { return XCTFail("a second flip batch in flight is refused") }
        XCTAssertTrue(refusals[0].message.contains("at most 1 batches in flight"), refusals[0].message)
        XCTAssertEqual(Set(refusals.map(\.reason)), [.wait])
        fixture.executor.runAll()
        XCTAssertNoThrow(try XCTUnwrap(first.value).get().committed())
    }

    func testNewResourcesPastTheLimitAreRefusedAndKnownOnesStillLand() throws {
        let fixture = try ReplayFixture(kind: .flip) { $0.resourcesTrackedMax = 2 }
        _ = try fixture.send(fixture.flip(nil, seq: -1, [event("a", epoch: 1, seq: 1), event("b", epoch: 1, seq: 1)])).committed()
        guard case .refused(let refusals) = try fixture.send(fixture.flip(nil, seq: -1, [event("c", epoch: 1, seq: 1)])) else {
            return XCTFail("a third resource is refused")
        }
        XCTAssertEqual(refusals.map(\.reason), [.refused])
        XCTAssertTrue(refusals[0].message.contains("partitionResourcesTrackedMax"), refusals[0].message)
        _ = try fixture.send(fixture.flip(nil, seq: -1, [event("a", epoch: 1, seq: 2)])).committed()
    }

    /// A zombie (the old incarnation) keeps sending after a new one started: none of its
    /// batches lands, on this partition or on one the new incarnation never wrote to.
    /// The fencing check comes before the retry check: an old incarnation's retry of a
    /// batch it committed is answered fenced, not duplicate (Docs/protocol.md).
    func testAFencedIncarnationsRetryIsFencedEvenWhenItsFirstAttemptLanded() throws {
        let fixture = try ReplayFixture(kind: .raw)
        let old = try fixture.producer("writer")
        _ = try fixture.send(fixture.raw(old, seq: 0, ["once"])).committed()
        guard case .duplicate = try fixture.send(fixture.raw(old, seq: 0, ["once"])) else { return XCTFail("a retry of the current incarnation is a duplicate") }
        _ = try fixture.producer("writer")
        guard case .fenced = try fixture.send(fixture.raw(old, seq: 0, ["once"])) else { return XCTFail("the old incarnation's retry must be fenced") }
        XCTAssertEqual(try fixture.values(), ["once"])
    }

    func testAZombieProducerNeverLands() throws {
        let fixture = try ReplayFixture(kind: .flip)
        let zombie = try fixture.producer("controller")
        _ = try fixture.send(fixture.flip(zombie, seq: 0, [event("leader", epoch: 1, seq: 1)])).committed()
        let successor = try fixture.producer("controller")
        var zombieSeq: Int32 = 1
        for index in 0..<5 {
            guard case .fenced = try fixture.send(fixture.flip(zombie, seq: zombieSeq, [event("leader", epoch: 1, seq: Int64(2 + index))])) else {
                return XCTFail("zombie batch \(index) must be fenced")
            }
            zombieSeq += 1
        }
        _ = try fixture.send(fixture.flip(successor, seq: 0, [event("leader", epoch: 2, seq: 1)])).committed()
        guard case .fenced = try fixture.send(fixture.flip(zombie, seq: zombieSeq, [event("leader", epoch: 3, seq: 1)])) else {
            return XCTFail("still fenced after the successor wrote")
        }
        try fixture.restart()
        guard case .fenced = try fixture.send(fixture.flip(zombie, seq: zombieSeq, [event("leader", epoch: 3, seq: 1)])) else {
            return XCTFail("still fenced after a restart")
        }
        XCTAssertEqual(try fixture.values(), ["leader@1.1", "leader@2.1"])
    }
}

final class ProducerRegistryTests: XCTestCase {
    func testNamesKeepTheirIdWithHigherEpochsAndAnonymousIdsAreNew() throws {
        let disk = SimulatedDisk(seed: 1)
        try disk.makeDirectory("/d")
        var registry = try ProducerRegistry.open(directory: "/d", fileIO: disk, logger: quietLogger)
        let a0 = try registry.initialize(name: "a")
        let anonymous = try registry.initialize(name: nil)
        let a1 = try registry.initialize(name: "a")
        let b0 = try registry.initialize(name: "b")
        XCTAssertEqual(a0, ProducerIdentity(producerId: 1, epoch: 0))
        XCTAssertEqual(anonymous, ProducerIdentity(producerId: 2, epoch: 0))
        XCTAssertEqual(a1, ProducerIdentity(producerId: 1, epoch: 1))
        XCTAssertEqual(b0, ProducerIdentity(producerId: 3, epoch: 0))
        XCTAssertEqual(registry.status(of: 1), .named(epoch: 1))
        XCTAssertEqual(registry.status(of: 2), .anonymous)
        XCTAssertEqual(registry.status(of: 4), .unknown)
        disk.crash(.powerLoss)
        registry = try ProducerRegistry.open(directory: "/d", fileIO: disk, logger: quietLogger)
        XCTAssertEqual(registry.status(of: 1), .named(epoch: 1), "an init is durable before it is answered")
        XCTAssertEqual(try registry.initialize(name: nil).producerId, 4, "ids are never reused")
    }

    func testAnEpochThatWouldWrapMovesTheNameToANewId() throws {
        let disk = SimulatedDisk(seed: 1)
        try disk.makeDirectory("/d")
        // A registry whose name "busy" is at epoch 32766, as 32767 inits would leave it.
        let record = ProducerRegistry.encodeRecord(.init(kind: 1, identity: ProducerIdentity(producerId: 1, epoch: Int16.max - 1), name: "busy"))
        try disk.writeFileAtomically("/d/producers.registry", record)
        let registry = try ProducerRegistry.open(directory: "/d", fileIO: disk, logger: quietLogger)
        let identity = try registry.initialize(name: "busy")
        XCTAssertEqual(identity, ProducerIdentity(producerId: 1, epoch: Int16.max))
        let wrapped = try registry.initialize(name: "busy")
        XCTAssertEqual(wrapped, ProducerIdentity(producerId: 2, epoch: 0))
        XCTAssertEqual(registry.status(of: 1), .retired)
    }

    func testATornLastRecordIsCutAndEarlierDamageIsRefused() throws {
        let disk = SimulatedDisk(seed: 1)
        try disk.makeDirectory("/d")
        let registry = try ProducerRegistry.open(directory: "/d", fileIO: disk, logger: quietLogger)
        for name in ["a", "b", "c"] { _ = try registry.initialize(name: name) }
        let path = "/d/producers.registry"
        let size = disk.content(of: path)!.count
        let file = try disk.open(path, mode: .readWrite)
        try file.writeAll([0, 0, 0, 30, 1, 2], at: Int64(size))  // a torn fourth slot
        let reopened = try ProducerRegistry.open(directory: "/d", fileIO: disk, logger: quietLogger)
        XCTAssertEqual(disk.content(of: path)!.count, size)
        XCTAssertEqual(reopened.status(of: 3), .named(epoch: 0))
        disk.flipBit(path: path, byteOffset: 10, bit: 1)
        XCTAssertThrowsError(try ProducerRegistry.open(directory: "/d", fileIO: disk, logger: quietLogger)) { error in
            XCTAssertEqual((error as? StorageError)?.code, .corruption)
            XCTAssertTrue((error as? StorageError)?.message.contains("invalid record at byte 0") ?? false, "\(error)")
        }
    }

    func testAFailedWriteStopsFurtherInits() throws {
        let disk = SimulatedDisk(seed: 1)
        try disk.makeDirectory("/d")
        let registry = try ProducerRegistry.open(directory: "/d", fileIO: disk, logger: quietLogger)
        disk.inject(.syncFails)
        XCTAssertThrowsError(try registry.initialize(name: "x"))
        XCTAssertThrowsError(try registry.initialize(name: "y")) { XCTAssertEqual(($0 as? StorageError)?.code, .readOnly) }
    }
}

final class ReplaySnapshotTests: XCTestCase {
    func statusAfterReopen(_ fixture: ReplayFixture, _ producer: ProducerIdentity, seq: Int32) throws -> AppendOutcome {
        try fixture.send(fixture.flip(producer, seq: seq, [event("r", epoch: 9, seq: Int64(100 + seq))]))
    }

    func testSnapshotsAreWrittenAtRollAndCloseAndStateSurvivesReopen() throws {
        let fixture = try ReplayFixture(kind: .flip)
        let producer = try fixture.producer("p")
        var last = AppendResult(baseOffset: 0, lastOffset: 0, appendTime: 0)
        var seq: Int32 = 0
        while fixture.log.statistics.segmentRollCount < 2 {
            last = try fixture.send(fixture.flip(producer, seq: seq, [event("r", epoch: 1, seq: Int64(seq) + 1, to: String(repeating: "x", count: 60))])).committed()
            seq += 1
        }
        XCTAssertGreaterThanOrEqual(fixture.log.statistics.snapshotCount, 2)
        let snapshots = fixture.disk.filePaths().filter { $0.hasSuffix(".snapshot") }
        XCTAssertEqual(snapshots.count, 2, "the two newest are kept: \(snapshots)")
        try fixture.restart(.powerLoss)
        XCTAssertEqual(try fixture.send(fixture.flip(producer, seq: seq - 1, [event("r", epoch: 1, seq: Int64(seq), to: String(repeating: "x", count: 60))])), .duplicate(last))
        guard case .replayed = try fixture.send(fixture.flip(nil, seq: -1, [event("r", epoch: 1, seq: 1)])).refusalReason else {
            return XCTFail("the resource's mark survived")
        }
    }

    func testMissingOrDamagedSnapshotsAreRebuiltFromTheLog() throws {
        for damage in ["remove", "flip"] {
            let fixture = try ReplayFixture(kind: .flip)
            let producer = try fixture.producer("p")
            var seq: Int32 = 0
            while fixture.log.statistics.segmentRollCount < 1 {
                _ = try fixture.send(fixture.flip(producer, seq: seq, [event("r", epoch: 1, seq: Int64(seq) + 1, to: String(repeating: "y", count: 60))])).committed()
                seq += 1
            }
            for path in fixture.disk.filePaths() where path.hasSuffix(".snapshot") {
                if damage == "remove" { try fixture.disk.remove(path) } else { fixture.disk.flipBit(path: path, byteOffset: 20, bit: 3) }
            }
            try fixture.restart()
            guard case .outOfOrder = try fixture.send(fixture.flip(producer, seq: seq + 3, [event("r", epoch: 1, seq: 999)])) else {
                return XCTFail("\(damage): the producer's sequence was rebuilt from the log")
            }
            guard case .replayed = try fixture.send(fixture.flip(nil, seq: -1, [event("r", epoch: 1, seq: 1)])).refusalReason else {
                return XCTFail("\(damage): the resource's mark was rebuilt from the log")
            }
        }
    }

    func testASnapshotPastTheLogsEndIsDiscarded() throws {
        let fixture = try ReplayFixture(kind: .flip)
        let producer = try fixture.producer("p")
        _ = try fixture.send(fixture.flip(producer, seq: 0, [event("r", epoch: 1, seq: 1)])).committed()
        let bogus = ReplaySnapshot.encode(ReplayState(producerExpirationMilliseconds: 1), offset: 500)
        try fixture.disk.writeFileAtomically("/d/t/0/" + ReplaySnapshot.fileName(offset: 500), bogus)
        try fixture.restart()
        XCTAssertFalse(fixture.disk.exists("/d/t/0/" + ReplaySnapshot.fileName(offset: 500)))
        _ = try fixture.send(fixture.flip(producer, seq: 1, [event("r", epoch: 1, seq: 2)])).committed()
    }

    func testSnapshotRoundTrip() throws {
        var state = ReplayState(producerExpirationMilliseconds: 1000)
        state.applyProducer(id: 7, batch: ProducerBatch(epoch: 3, firstSequence: 10, lastSequence: 12, outcome: .committed(AppendResult(baseOffset: 40, lastOffset: 42, appendTime: 99)), appendTime: 99))
        state.applyProducer(id: 7, batch: ProducerBatch(epoch: 3, firstSequence: 13, lastSequence: 13, outcome: .refused([RecordRefusal(index: 0, reason: .replayed, message: "m")]), appendTime: 100))
        state.resources["ü/r"] = ResourceMark(epoch: 5, seq: 6)
        var decoded = ReplayState(producerExpirationMilliseconds: 1000)
        XCTAssertEqual(try ReplaySnapshot.decode(ReplaySnapshot.encode(state, offset: 43), into: &decoded, name: "s"), 43)
        XCTAssertEqual(decoded.producers, state.producers)
        XCTAssertEqual(decoded.resources, state.resources)
    }
}

extension AppendOutcome {
    /// The reason of a one-record refusal, for short assertions.
    var refusalReason: RecordRefusal.Reason? {
        if case .refused(let refusals) = self, refusals.count == 1 { return refusals[0].reason }
        return nil
    }
}
