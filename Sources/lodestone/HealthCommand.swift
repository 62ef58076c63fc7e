import ArgumentParser
import LogFormat
import WireProtocol

struct HealthCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "health", abstract: "The server's status and counters, as one JSON line.")
    @OptionGroup var server: ServerOptions

    func run() async throws {
        try await reporting("health") {
            let connection = try await server.connect()
            defer { Task { await connection.close() } }
            guard case .health(let health) = try await connection.send(.health) else { throw CommandFailure("unexpected reply") }
            print(jsonLine([("status", .string(health.status)), ("counters", .object(health.counters.map { (key: $0.name, value: .integer($0.value)) }))]))
        }
    }
}
