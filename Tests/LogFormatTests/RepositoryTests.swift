import Foundation
import XCTest

/// The repository stands alone: its code, tests, tools and documentation name no file
/// outside it, and the documentation's links between its own pages lead somewhere.
final class RepositoryTests: XCTestCase {
    private let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Every text file under the folders that ship, with its path relative to the root.
    private func shippedFiles() throws -> [(path: String, text: String)] {
        var files: [(String, String)] = []
        for top in ["Sources", "Tests", "Tools", "Benchmarks", "Docs", ".ci"] {
            let base = root.appendingPathComponent(top)
            guard let walker = FileManager.default.enumerator(at: base, includingPropertiesForKeys: [.isRegularFileKey]) else { continue }
            for case let url as URL in walker where (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true {
                guard let text = try? String(contentsOf: url, encoding: .utf8) else { continue }
                files.append((top + url.path.dropFirst(base.path.count), text))
            }
        }
        for name in ["README.md", "Package.swift"] {
            files.append((name, try String(contentsOf: root.appendingPathComponent(name), encoding: .utf8)))
        }
        return files
    }

    func testNothingPointsOutsideTheRepository() throws {
        let files = try shippedFiles()
        XCTAssertGreaterThan(files.count, 50)
        // Spelled in parts so that this file does not match itself.
        let outside = ["../" + "shared", "shared" + "/design.md", "shared" + "/spec", "shared" + "/notes", "../../" + "shared"]
        for (path, text) in files {
            for needle in outside where text.contains(needle) {
                XCTFail("\(path) names \(needle), a path outside the repository")
            }
        }
    }

    func testTheDesignAndTheSpecAreInTheRepository() throws {
        let design = try String(contentsOf: root.appendingPathComponent("Docs/design.md"), encoding: .utf8)
        let spec = try String(contentsOf: root.appendingPathComponent("Docs/spec/pauli-z.md"), encoding: .utf8)
        XCTAssertTrue(design.contains("## Decisions"))
        XCTAssertTrue(design.contains("### The `produce` / `consume` contract"))
        XCTAssertTrue(spec.contains("z_mean"))
    }

    /// Relative Markdown links in Docs/ and the README lead to files that exist.
    func testDocumentationLinksResolve() throws {
        let link = try NSRegularExpression(pattern: #"\]\(([^)#:\s]+)(#[^)]*)?\)"#)
        var checked = 0
        for (path, text) in try shippedFiles() where path.hasSuffix(".md") {
            let folder = root.appendingPathComponent(path).deletingLastPathComponent()
            for match in link.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                let target = String(text[Range(match.range(at: 1), in: text)!])
                checked += 1
                XCTAssertTrue(FileManager.default.fileExists(atPath: folder.appendingPathComponent(target).path), "\(path) links to \(target), which does not exist")
            }
        }
        XCTAssertGreaterThan(checked, 5)
    }
}
