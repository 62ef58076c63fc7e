import ArgumentParser
import Foundation
import LogFormat
import WireProtocol

struct TopicCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topic",
        abstract: "Create, list and describe topics (JSON lines out).",
        subcommands: [Create.self, List.self, Describe.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a topic.",
            discussion: """
                A flip topic's polarity map (a JSON object of state name to -1, 0 or 1) and \
                its storm parameters (defaults 60s, 5, 2; the server checks X < E) are fixed at creation.
                """)

        @OptionGroup var server: ServerOptions
        @Argument(help: "The topic's name.") var name: String
        @Option(help: "Number of partitions.") var partitions: Int
        @Option(help: "raw or flip.") var kind: String
        @Option(name: .customLong("polarity-map"), help: "JSON file: state name to -1, 0 or 1 (flip topics).") var polarityMap: String?
        @Option(name: .customLong("storm-interval"), help: "Storm interval S, a duration (default 60s).") var stormInterval: String?
        @Option(name: .customLong("storm-enter"), help: "Storm enter threshold E (default 5).") var stormEnter: Int?
        @Option(name: .customLong("storm-exit"), help: "Storm exit threshold X < E (default 2).") var stormExit: Int?

        func run() async throws {
            try await reporting("topic create") {
                guard let kindValue = ["raw": TopicInfo.Kind.raw, "flip": .flip][kind] else { throw CommandFailure("--kind must be raw or flip, got \"\(kind)\"", status: 2) }
                guard (1...Limits.topicPartitionCountMax).contains(partitions) else { throw CommandFailure("--partitions must be 1 to \(Limits.topicPartitionCountMax)", status: 2) }
                var info = TopicInfo(name: name, partitionCount: UInt32(partitions), kind: kindValue, polarityMap: try polarityMap.map(readPolarityMap))
                if let stormInterval { info.stormIntervalMilliseconds = try parseDuration(stormInterval, option: "--storm-interval") }
                if let stormEnter {
                    guard stormEnter >= 0 else { throw CommandFailure("--storm-enter must be 0 or more", status: 2) }
                    info.stormEnter = UInt32(clamping: stormEnter)
                }
                if let stormExit {
                    guard stormExit >= 0 else { throw CommandFailure("--storm-exit must be 0 or more", status: 2) }
                    info.stormExit = UInt32(clamping: stormExit)
                }
                let connection = try await server.connect()
                defer { Task { await connection.close() } }
                guard case .topic(let created) = try await connection.send(.createTopic(info)) else { throw CommandFailure("unexpected reply") }
                print(topicLine(created))
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the topics the token may consume or administer.")
        @OptionGroup var server: ServerOptions

        func run() async throws {
            try await reporting("topic list") {
                let connection = try await server.connect()
                defer { Task { await connection.close() } }
                guard case .topics(let topics) = try await connection.send(.listTopics) else { throw CommandFailure("unexpected reply") }
                for topic in topics { print(topicLine(topic)) }
            }
        }
    }

    struct Describe: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Describe a topic, with its partitions' offsets.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "The topic's name.") var name: String

        func run() async throws {
            try await reporting("topic describe") {
                let connection = try await server.connect()
                defer { Task { await connection.close() } }
                guard case .topic(let topic) = try await connection.send(.describeTopic(name)) else { throw CommandFailure("unexpected reply") }
                print(topicLine(topic))
            }
        }
    }
}

func readPolarityMap(_ path: String) throws -> [(state: String, polarity: Int8)] {
    guard let data = FileManager.default.contents(atPath: path) else { throw CommandFailure("cannot read the polarity map \(path)", status: 2) }
    let value: JSONValue
    do {
        value = try StrictJSON.parse(Array(data))
    } catch {
        throw CommandFailure("the polarity map \(path) is not JSON: \(error)", status: 2)
    }
    guard case .object(let pairs) = value else { throw CommandFailure("the polarity map \(path) must be a JSON object of state name to -1, 0 or 1", status: 2) }
    return try pairs.map { pair in
        guard let polarity = pair.value.integer, (-1...1).contains(polarity) else {
            throw CommandFailure("polarity map \(path): state \"\(pair.key)\" must map to -1, 0 or 1", status: 2)
        }
        return (pair.key, Int8(polarity))
    }
}

func topicLine(_ topic: TopicInfo) -> String {
    var pairs: [(String, JSONValue)] = [
        ("name", .string(topic.name)), ("partitions", .integer(topic.partitionCount)),
        ("kind", .string(topic.kind == .flip ? "flip" : "raw")), ("created_at", .integer(topic.createdAt)),
    ]
    if let map = topic.polarityMap { pairs.append(("polarity_map", .object(map.map { (key: $0.state, value: .integer($0.polarity)) }))) }
    pairs += [("storm_interval_ms", .integer(topic.stormIntervalMilliseconds)), ("storm_enter", .integer(topic.stormEnter)), ("storm_exit", .integer(topic.stormExit))]
    if !topic.partitions.isEmpty {
        pairs.append(("partition_offsets", .array(topic.partitions.enumerated().map { index, offsets in
            .object([(key: "partition", value: .integer(index)), (key: "start", value: .integer(offsets.start)), (key: "end", value: .integer(offsets.end))])
        })))
    }
    return jsonLine(pairs)
}
