import ArgumentParser
import LogFormat
import WireProtocol

struct OffsetsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "offsets",
        abstract: "One JSON line per partition: {\"partition\",\"start\",\"end\"}, or with --time {\"partition\",\"offset\"}.",
        discussion: "end is the offset the next record will get; with --time, offset is the first at or after that append time (null if none).")

    @OptionGroup var server: ServerOptions
    @Option(help: "The topic.") var topic: String
    @Option(help: "An append time: milliseconds since the epoch or RFC 3339.") var time: String?

    func run() async throws {
        try await reporting("offsets") {
            let at = try time.map { try parseTime($0, option: "--time") }
            let connection = try await server.connect()
            defer { Task { await connection.close() } }
            guard case .topic(let info) = try await connection.send(.describeTopic(topic)) else { throw CommandFailure("unexpected reply") }
            guard let at else {
                // Describe already gave every partition's start and end.
                for (partition, offsets) in info.partitions.enumerated() {
                    print(jsonLine([("partition", .integer(partition)), ("start", .integer(offsets.start)), ("end", .integer(offsets.end))]))
                }
                return
            }
            for partition in 0..<Int(info.partitionCount) {
                let request = ListOffsetsRequest(topic: topic, partition: UInt32(partition), mode: .time, time: at)
                guard case .listOffsets(let reply) = try await connection.send(.listOffsets(request)) else { throw CommandFailure("unexpected reply") }
                print(jsonLine([("partition", .integer(partition)), ("offset", reply.offset < 0 ? .null : .integer(reply.offset))]))
            }
        }
    }
}
