import Foundation
import XCTest

/// What a finished run of the binary left: its exit status and everything it wrote.
struct ProcessRun {
    var status: Int32
    var output: String
    var error: String

    var lines: [String] { output.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init) }

    /// Each stdout line parsed as a JSON object.
    func objects() throws -> [[String: Any]] { try jsonObjects(in: output) }
}

/// Each line of `text` (newline-terminated JSON lines) parsed as a JSON object.
func jsonObjects(in text: String) throws -> [[String: Any]] {
    try text.split(separator: "\n").map { line in
        guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { throw CLITestError("not a JSON object: \(line)") }
        return object
    }
}

/// Writes a whole file, replacing what was there.
func writeFile(_ path: String, _ contents: Data) throws {
    try contents.write(to: URL(fileURLWithPath: path))
}

struct CLITestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The built `lodestone` binary, run as a process, the way an operator runs it.
enum Lodestone {
    /// The binary `swift build` put beside this test bundle (on Linux the bundle URL is the
    /// build directory itself; on other platforms, the .xctest bundle inside it).
    static var binary: String {
        let bundle = Bundle(for: Marker.self).bundleURL
        let candidates = [bundle.appendingPathComponent("lodestone"), bundle.deletingLastPathComponent().appendingPathComponent("lodestone")]
        return (candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[0]).path
    }

    final class Marker {}

    /// A scratch directory, removed when the test ends.
    static func temporaryDirectory(_ test: XCTestCase) throws -> String {
        let directory = NSTemporaryDirectory() + "lodestone-cli-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        test.addTeardownBlock { try? FileManager.default.removeItem(atPath: directory) }
        return directory
    }

    /// Runs the binary to its end (killed after `timeout` seconds), stdin from `input`.
    /// Output goes through files, so neither side can block the other on a full pipe.
    /// `executable` names another product built beside it (`lodestone-traffic`).
    static func run(_ arguments: [String], input: String = "", environment: [String: String] = [:], timeout: Double = 120, executable: String = "lodestone") throws -> ProcessRun {
        let scratch = NSTemporaryDirectory() + "lodestone-run-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        try writeFile(scratch + "/in", Data(input.utf8))
        try writeFile(scratch + "/out", Data())
        try writeFile(scratch + "/err", Data())
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary).deletingLastPathComponent().appendingPathComponent(executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardInput = FileHandle(forReadingAtPath: scratch + "/in")
        process.standardOutput = FileHandle(forWritingAtPath: scratch + "/out")
        process.standardError = FileHandle(forWritingAtPath: scratch + "/err")
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(5000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw CLITestError("lodestone \(arguments.joined(separator: " ")) ran longer than \(timeout) s")
        }
        process.waitUntilExit()
        return ProcessRun(
            status: process.terminationStatus,
            output: String(decoding: FileManager.default.contents(atPath: scratch + "/out") ?? Data(), as: UTF8.self),
            error: String(decoding: FileManager.default.contents(atPath: scratch + "/err") ?? Data(), as: UTF8.self))
    }
}

/// `lodestone serve` as a child process on a loopback port, on its own data directory.
final class ServerProcess {
    let data: String
    let logs: String
    private(set) var port: Int
    private(set) var process: Process?
    private var starts = 0

    /// Starts a server; port 0 lets it choose, and later restarts reuse the port it chose.
    init(data: String, port: Int = 0, arguments: [String] = []) throws {
        self.data = data
        self.logs = data + ".logs"
        self.port = port
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        try start(arguments: arguments)
    }

    var address: String { "127.0.0.1:\(port)" }

    /// Starts the server and waits for its `{"listening": ...}` line (at most 60 s).
    func start(arguments: [String] = []) throws {
        starts += 1
        let out = logs + "/out.\(starts)"
        try writeFile(out, Data())
        try writeFile(logs + "/err.\(starts)", Data())
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Lodestone.binary)
        process.arguments = ["serve", "--data", data, "--listen", "127.0.0.1:\(port)"] + arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle(forWritingAtPath: out)
        process.standardError = FileHandle(forWritingAtPath: logs + "/err.\(starts)")
        try process.run()
        self.process = process
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let text = String(decoding: FileManager.default.contents(atPath: out) ?? Data(), as: UTF8.self)
            if let line = text.split(separator: "\n").first,
               let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
               let listening = object["listening"] as? String, let chosen = Int(listening.split(separator: ":").last ?? "") {
                port = chosen
                return
            }
            if !process.isRunning { throw CLITestError("serve exited with status \(process.terminationStatus): \(errors)") }
            usleep(10_000)
        }
        kill(process.processIdentifier, SIGKILL)
        throw CLITestError("serve did not say it was listening within 60 s: \(errors)")
    }

    /// What the latest run wrote on stderr.
    var errors: String { String(decoding: FileManager.default.contents(atPath: logs + "/err.\(starts)") ?? Data(), as: UTF8.self) }

    /// SIGKILL: no shutdown work at all, as in a crash.
    func kill9() {
        guard let process else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        self.process = nil
    }

    /// SIGTERM, then the exit status (the process is killed if it takes over 30 s).
    @discardableResult
    func terminate() -> Int32 {
        guard let process else { return -1 }
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(30)
        while process.isRunning && Date() < deadline { usleep(5000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        self.process = nil
        return process.terminationStatus
    }

    deinit {
        if let process, process.isRunning { kill(process.processIdentifier, SIGKILL) }
        try? FileManager.default.removeItem(atPath: logs)
    }
}
