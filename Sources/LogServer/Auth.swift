import Foundation

/// What a token may do on topics whose names start with a prefix (design, "Auth").
public enum Right: String, Codable, Sendable {
    case produce
    case consume
    /// Implies every right.
    case admin
}

/// Who a connection is, once its hello was accepted.
public struct Principal: Sendable, Equatable {
    public struct Scope: Codable, Sendable, Equatable {
        public var prefix: String
        public var rights: [Right]
    }

    public var name: String
    public var scopes: [Scope]

    /// A connection on a server without a token file may do everything.
    public static let open = Principal(name: "anonymous", scopes: [Scope(prefix: "", rights: [.admin])])

    /// True when a scope whose prefix starts `topic` grants `right` (or admin).
    public func allows(_ right: Right, on topic: String) -> Bool {
        scopes.contains { topic.hasPrefix($0.prefix) && ($0.rights.contains(right) || $0.rights.contains(.admin)) }
    }

    /// True when some scope grants `right` (or admin) on some topic.
    public func allowsAnywhere(_ right: Right) -> Bool {
        scopes.contains { $0.rights.contains(right) || $0.rights.contains(.admin) }
    }
}

/// The token file: `{"tokens": [{"name", "token", "scopes": [{"prefix", "rights"}]}]}`.
/// Tokens are compared in constant time, against every token, so neither the time nor the
/// path taken says how much of a guess was right.
public struct TokenFile: Sendable {
    struct Entry: Codable, Sendable {
        var name: String
        var token: String
        var scopes: [Principal.Scope]
    }

    struct Document: Codable {
        var tokens: [Entry]
    }

    let entries: [Entry]

    public static func load(path: String) throws -> TokenFile {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw AuthFileError("cannot read the token file \(path): \(error.localizedDescription)")
        }
        if data.count > 1 << 20 { throw AuthFileError("the token file \(path) is larger than 1 MiB") }
        let document: Document
        do {
            document = try JSONDecoder().decode(Document.self, from: data)
        } catch {
            throw AuthFileError("the token file \(path) is not {\"tokens\": [{\"name\", \"token\", \"scopes\": [{\"prefix\", \"rights\"}]}]}: \(error)")
        }
        for entry in document.tokens where entry.token.utf8.count < 16 {
            throw AuthFileError("token \"\(entry.name)\" in \(path) is shorter than 16 bytes")
        }
        if Set(document.tokens.map(\.token)).count != document.tokens.count {
            throw AuthFileError("the token file \(path) lists a token twice")
        }
        return TokenFile(entries: document.tokens)
    }

    init(entries: [Entry]) { self.entries = entries }

    /// The principal a token stands for; nil when it is none of them.
    public func principal(for token: String) -> Principal? {
        let offered = Array(token.utf8)
        var found: Entry?
        for entry in entries where Self.constantTimeEqual(offered, Array(entry.token.utf8)) {
            found = entry
        }
        return found.map { Principal(name: $0.name, scopes: $0.scopes) }
    }

    /// Compares all bytes whatever differs first; the length difference is folded in too.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(truncatingIfNeeded: a.count ^ b.count)
        let count = max(a.count, b.count)
        for index in 0..<count {
            let x = index < a.count ? a[index] : 0
            let y = index < b.count ? b[index] : 0
            difference |= x ^ y
        }
        return difference == 0
    }
}

public struct AuthFileError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// True for addresses only this machine can reach: 127.0.0.0/8, ::1, localhost.
public func isLoopback(_ host: String) -> Bool {
    if host == "localhost" || host == "::1" || host == "[::1]" { return true }
    let parts = host.split(separator: ".")
    return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
}
