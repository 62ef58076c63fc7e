import ArgumentParser
import Foundation
import LogFormat
import LogIO
import LogStorage

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Dump a segment (.log), an index (.index, .timeindex) or a small Lodestone file as JSON lines.",
        discussion: """
            A .log file prints one line per batch (position, offsets, records, append time, \
            compression, producer fields), then a line saying whether the file ends cleanly \
            or where and why the first invalid batch is. --records adds the records.
            """)

    @Argument(help: "The file to dump.")
    var file: String

    @Flag(help: "For a .log file, print every record too.")
    var records = false

    func run() throws {
        let name = String(file.split(separator: "/").last ?? "")
        guard let parsed = SegmentFileName.parse(name) else {
            printError("lodestone inspect: \(file) is not a segment, index or time index file (20 digits, then .log, .index, .timeindex or .summary)")
            throw ExitCode(2)
        }
        do {
            switch parsed.kind {
            case .log: try inspectLog()
            case .index: try inspectIndex(time: false)
            case .timeIndex: try inspectIndex(time: true)
            case .summary: try inspectSummary()
            }
        } catch let error as StorageError {
            printError("lodestone inspect: \(error.message)")
            throw ExitCode(1)
        }
    }

    func inspectLog() throws {
        let result = try SegmentInspector.inspect(path: file, fileIO: PosixFileIO(), withRecords: records)
        for batch in result.batches {
            let header = batch.header
            var pairs: [(String, JSONValue)] = [
                ("position", .integer(batch.position)), ("baseOffset", .integer(header.baseOffset)),
                ("lastOffset", .integer(header.lastOffset)), ("records", .integer(Int64(header.recordCount))),
                ("bytes", .integer(Int64(header.totalSize))), ("appendTime", .integer(header.maxTimestamp)),
                ("compression", .string(header.attributes.compression.map { "\($0)" } ?? "code \(header.attributes.compressionCode)")),
                ("producerId", .integer(header.producerId)), ("producerEpoch", .integer(Int64(header.producerEpoch))),
                ("baseSequence", .integer(Int64(header.baseSequence))), ("crc", .string(String(header.crc, radix: 16))),
                ("control", .bool(header.attributes.isControl)),
            ]
            if let records = batch.records {
                pairs.append(("recordList", .array(records.map { record in
                    .object([
                        ("offset", .integer(header.baseOffset + Int64(record.offsetDelta))),
                        ("timestampDelta", .integer(record.timestampDelta)),
                        ("key", bytesValue(record.key)), ("value", bytesValue(record.value)),
                        ("headers", .object(record.headers.map { ($0.key, bytesValue($0.value)) })),
                    ])
                })))
            }
            print(jsonLine(pairs))
        }
        if let invalid = result.invalid {
            print(jsonLine([("end", .string("invalid")), ("position", .integer(invalid.position)), ("reason", .string(invalid.reason)), ("fileSize", .integer(result.fileSize))]))
        } else {
            print(jsonLine([("end", .string("clean")), ("batches", .integer(Int64(result.batches.count))), ("fileSize", .integer(result.fileSize))]))
        }
    }

    /// A flip segment's summary: one JSON line.
    func inspectSummary() throws {
        let summary: SegmentSummary
        do {
            summary = try SegmentSummary.decode(try PosixFileIO().readWholeFile(file, bytesMax: SegmentSummary.fileBytesMax))
        } catch let error as FormatError {
            throw StorageError(.corruption, "\(file): \(error.message)")
        } catch {
            throw StorageError(.notFound, "\(file): \(error)")
        }
        var pairs: [(String, JSONValue)] = [
            ("events", .integer(summary.eventCount)), ("eventTimeMin", .integer(summary.eventTimeMin)),
            ("eventTimeMax", .integer(summary.eventTimeMax)), ("resourceCount", .integer(Int64(summary.resourceCount))),
        ]
        if let resources = summary.resources {
            pairs.append(("resources", .array(resources.map(JSONValue.string))))
        } else {
            pairs.append(("resources", .string("bloom filter")))
        }
        print(jsonLine(pairs))
    }

    func inspectIndex(time: Bool) throws {
        let bytes: [UInt8]
        do {
            bytes = try PosixFileIO().readWholeFile(file, bytesMax: Limits.segmentBytesMax)
        } catch {
            throw StorageError(.io, "\(error)")
        }
        do {
            let coverage: IndexCoverage
            var lines: [String] = []
            if time {
                let decoded = try IndexFile.decodeTimeIndex(bytes)
                coverage = decoded.coverage
                lines = decoded.entries.map { jsonLine([("timestamp", .integer($0.timestamp)), ("offset", .integer(coverage.baseOffset + Int64($0.relativeOffset)))]) }
            } else {
                let decoded = try IndexFile.decodeOffsetIndex(bytes)
                coverage = decoded.coverage
                lines = decoded.entries.map { jsonLine([("offset", .integer(coverage.baseOffset + Int64($0.relativeOffset))), ("position", .integer(Int64($0.position)))]) }
            }
            print(jsonLine([
                ("baseOffset", .integer(coverage.baseOffset)), ("coveredBytes", .integer(coverage.coveredBytes)),
                ("nextOffset", .integer(coverage.nextOffset)), ("maxTimestamp", .integer(coverage.maxTimestamp)),
                ("lastBatchPosition", .integer(coverage.lastBatchPosition)), ("entries", .integer(Int64(lines.count))),
            ]))
            for line in lines { print(line) }
        } catch {
            throw StorageError(.corruption, "\(file): \(error)")
        }
    }

    func bytesValue(_ bytes: [UInt8]?) -> JSONValue {
        guard let bytes else { return .null }
        if let text = String(validating: bytes, as: UTF8.self) { return .string(text) }
        return .object([("base64", .string(Data(bytes).base64EncodedString()))])
    }
}
