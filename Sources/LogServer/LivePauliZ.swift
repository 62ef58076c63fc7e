import LogFormat
import LogStorage
import Logging
import PauliZ
import PauliZReplay
import Synchronization

/// The server's live Pauli-Z state: one `PauliZLive` per flip topic, fed every durable
/// batch by its partitions' writers. Built at start from the durable log (before the
/// server accepts connections), and for each topic created since.
final class LivePauliZ: Sendable {
    private let states = Mutex<[String: PauliZLive]>([:])
    let rowsMax: Int

    init(rowsMax: Int = PauliZLive.rowsMaxDefault) {
        self.rowsMax = rowsMax
    }

    func state(_ topic: String) -> PauliZLive? { states.withLock { $0[topic] } }

    /// Builds the state of every flip topic from its durable data, then follows appends.
    func start(store: LogStore, logger: Logger) {
        for configuration in store.topicConfigurations where configuration.kind == .flip {
            guard let topic = store.topic(configuration.name) else { continue }
            follow(topic, replaying: true, logger: logger)
        }
    }

    /// Follows a topic's appends from now on; `replaying` first feeds it the durable log.
    /// If anything was appended that the state did not see (an append between reading
    /// and following), the state is dropped: replays answer that topic instead.
    func follow(_ topic: LogStore.Topic, replaying: Bool, logger: Logger) {
        let configuration = topic.configuration
        let storm = configuration.storm
        let live: PauliZLive
        do {
            live = try PauliZLive(
                storm: StormParameters(intervalMilliseconds: storm.intervalMilliseconds, enter: storm.enter, exit: storm.exit),
                polarityMap: configuration.polarityMap ?? [:], rowsMax: rowsMax)
        } catch {
            logger.warning("no live Pauli-Z state", metadata: ["topic": "\(configuration.name)", "error": "\(error)"])
            return
        }
        var seen: [Int64] = []
        do {
            for partition in topic.partitions {
                let offsets = partition.offsets
                guard offsets.next == offsets.durableEnd else {
                    logger.warning("no live Pauli-Z state: appends were under way", metadata: ["topic": "\(configuration.name)"])
                    return
                }
                if replaying {
                    try PauliZServerReplay.forEachBatch(of: partition, from: offsets.start, to: offsets.durableEnd) { header, batch in
                        live.ingest(batch: batch, header: header)
                    }
                }
                seen.append(offsets.next)
            }
        } catch {
            logger.warning("no live Pauli-Z state: the log could not be read", metadata: ["topic": "\(configuration.name)", "error": "\(error)"])
            return
        }
        for partition in topic.partitions {
            partition.observeDurableBatches { bytes in
                bytes.withUnsafeBytes { raw in
                    guard let header = try? RecordBatchHeader.read(raw) else { return }
                    live.ingest(batch: raw, header: header)
                }
            }
        }
        // Appends that slipped in before the observers: the state missed them.
        if zip(topic.partitions, seen).contains(where: { $0.offsets.next != $1 }) {
            for partition in topic.partitions { partition.observeDurableBatches(nil) }
            logger.warning("no live Pauli-Z state: appends arrived while it was being built", metadata: ["topic": "\(configuration.name)"])
            return
        }
        states.withLock { $0[configuration.name] = live }
    }
}
