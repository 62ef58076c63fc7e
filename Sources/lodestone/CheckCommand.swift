import ArgumentParser
import Foundation
import LogIO
import LogStorage

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Verify every batch checksum, offset continuity, index and configuration of a data directory.",
        discussion: """
            Reads every segment of every partition. A torn tail that the next open will \
            truncate (after an unclean stop) is reported but is not a fault; a fault for \
            which the next open will refuse the partition says so, as the open decides. Exit status: \
            0 when there is no fault, 1 on any fault (corruption, inconsistency), 2 when \
            the directory cannot be checked (missing, or in use by a running server).
            """)

    @Option(help: "The data directory.")
    var data: String = "./lodestone-data"

    func run() throws {
        let report: StoreChecker.Report
        do {
            report = try StoreChecker.check(directory: data, fileIO: PosixFileIO())
        } catch {
            printError("lodestone check: \(error.message)")
            throw ExitCode(2)
        }
        for topic in report.topics {
            print("topic \(topic.name): \(topic.kind.rawValue), \(topic.partitionCount) partition\(topic.partitionCount == 1 ? "" : "s")")
            for partition in report.partitions where partition.topic == topic.name {
                let offsets = partition.nextOffset > partition.startOffset ? "offsets \(partition.startOffset) to \(partition.nextOffset - 1)" : "empty"
                print("  partition \(partition.partition): \(partition.segmentCount) segment\(partition.segmentCount == 1 ? "" : "s"), \(partition.batchCount) batches, \(partition.recordCount) records, \(offsets), \(partition.bytes) bytes, \(partition.cleanShutdown ? "clean shutdown" : "unclean stop")")
            }
        }
        for finding in report.findings { print(finding.description) }
        let partitionCount = report.partitions.count
        print("check: \(report.topics.count) topic\(report.topics.count == 1 ? "" : "s"), \(partitionCount) partition\(partitionCount == 1 ? "" : "s"), \(report.faultCount) fault\(report.faultCount == 1 ? "" : "s"), \(report.findings.count - report.faultCount) note\(report.findings.count - report.faultCount == 1 ? "" : "s")")
        if report.faultCount > 0 { throw ExitCode(1) }
    }
}
