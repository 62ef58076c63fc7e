import LogFormat
import LogIO

/// Reads a segment file batch by batch for `lodestone inspect`, with the same checks as
/// recovery, stopping at the first invalid batch and saying why.
public enum SegmentInspector {
    public struct Batch: Sendable {
        public var position: Int64
        public var header: RecordBatchHeader
        /// The decoded records, when asked for.
        public var records: [Record]?
    }

    public struct Result: Sendable {
        public var batches: [Batch]
        public var fileSize: Int64
        /// Where reading stopped early, and why (nil when the whole file is valid).
        public var invalid: (position: Int64, reason: String)?
    }

    public static func inspect(path: String, fileIO: any FileIO, withRecords: Bool, batchCountMax: Int = Int.max) throws(StorageError) -> Result {
        guard let parsed = SegmentFileName.parse(String(path.split(separator: "/").last ?? "")), parsed.kind == .log else {
            throw StorageError(.invalidArgument, "\(path) is not named like a segment (20 digits and .log)")
        }
        let file: any StorageFile
        let size: Int64
        do {
            file = try fileIO.open(path, mode: .readOnly)
            size = try file.size()
        } catch {
            throw StorageError.io(error, "opening \(path)")
        }
        defer { try? file.close() }
        var scanner = BatchScanner(file: file, from: 0, offset: parsed.baseOffset, endPosition: size)
        var result = Result(batches: [], fileSize: size, invalid: nil)
        while result.batches.count < batchCountMax {
            let step: BatchScanner.Step
            do { step = try scanner.next() } catch { throw StorageError.io(error, "reading \(path)") }
            switch step {
            case .end:
                return result
            case .invalid(let position, let reason):
                result.invalid = (position, reason)
                return result
            case .batch(let batch):
                var records: [Record]?
                if withRecords {
                    records = try? RecordBatch.decode(scanner.bytes(of: batch), allowingControl: true).records
                }
                result.batches.append(Batch(position: batch.position, header: batch.header, records: records))
            }
        }
        return result
    }
}
