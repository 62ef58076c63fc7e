import PauliZ

/// The one place that knows the order of a Pauli-Z row's figures on the wire (the pauliz
/// answer in Docs/protocol.md): the server packs rows with it, the client unpacks them.
extension PaulizReply.Row {
    /// A result row for the wire, named `resource`.
    public init(resource: String, _ row: PauliZRow) {
        self.init(resource: resource, windowStart: row.windowStart, figures: [
            row.events, row.flips, row.up, row.down, row.covered, row.chainBreaks, row.seqGaps, row.epochChanges,
            row.clockRegressions, row.knownMilliseconds, row.integral, row.stormMilliseconds,
        ])
    }

    /// The row's figures as a `PauliZRow` whose resource is `key` in the caller's table.
    public func pauliZRow(key: Int32) -> PauliZRow {
        precondition(figures.count == Self.figureCount, "a Pauli-Z row carries \(Self.figureCount) figures")
        var row = PauliZRow(windowStart: windowStart, key: key)
        (row.events, row.flips, row.up, row.down, row.covered, row.chainBreaks) = (figures[0], figures[1], figures[2], figures[3], figures[4], figures[5])
        (row.seqGaps, row.epochChanges, row.clockRegressions, row.knownMilliseconds, row.integral, row.stormMilliseconds) = (figures[6], figures[7], figures[8], figures[9], figures[10], figures[11])
        return row
    }
}
