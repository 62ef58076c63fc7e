import ArgumentParser
import Foundation
import LogFormat
import LogIO
import LogStorage
import Logging

/// Writes a demo data directory through the storage engine: a `demo/flips` topic of three
/// partitions holding flip-like JSON events keyed by resource, appended with durable acks,
/// then closed cleanly. Tools/serve runs `lodestone check` on it until the server exists.
@main
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "lodestone-demo", abstract: "Write a demo Lodestone data directory.")

    @Option(help: "The data directory to create or add to.")
    var data: String = "./lodestone-data"

    @Option(help: "Events to append.")
    var events: Int = 1000

    func run() async throws {
        var logger = Logger(label: "lodestone.demo")
        logger.logLevel = .warning
        let pool = IOThreadPool(threadCount: 2)
        defer { pool.shutdown() }
        let store = try LogStore.open(
            directory: data, environment: StorageEnvironment(fileIO: PosixFileIO(), configuration: StorageConfiguration(), clock: SystemWallClock(), executor: pool, logger: logger))
        let topicName = "demo/flips"
        let topic = try store.topic(topicName)?.configuration ?? store.createTopic(name: topicName, partitionCount: 3, kind: .raw)
        let states = ["node-a", "node-b", "node-c"]
        for index in 0..<events {
            let resource = "prod/eu-1/service-\(index % 7)/leader"
            let value = "{\"resource\":\"\(resource)\",\"to\":\"\(states[index % 3])\",\"seq\":\(index)}"
            let batch = RecordBatch.make(values: [(Array(resource.utf8), Array(value.utf8))], timestamp: Int64(Date().timeIntervalSince1970 * 1000)).encoded()
            let partition = try store.partition(topic: topicName, index: topic.partition(forKey: Array(resource.utf8)))
            _ = try await partition.append(batch)
        }
        try await store.close()
        print("wrote \(events) events to topic \(topicName) in \(data)")
    }
}
