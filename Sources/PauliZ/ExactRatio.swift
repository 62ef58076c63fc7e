/// `numerator / denominator` rounded once to the nearest 64-bit float (ties to even), for
/// the figures Docs/spec/pauli-z.md defines as exact ratios of integers (z_mean, cause_coverage,
/// flip_rate_per_min). Dividing two `Double`s is exact-then-rounded only while both
/// integers fit in 53 bits; beyond that this divides in 128-bit integers, bit by bit.
public func exactRatio(_ numerator: Int128, _ denominator: Int128) -> Double {
    precondition(denominator > 0, "a ratio needs a positive denominator")
    if numerator == 0 { return 0 }
    // Integers of at most 53 bits convert exactly; one division rounds once.
    let exactLimit: Int128 = 1 << 53
    if numerator.magnitude <= exactLimit.magnitude && denominator <= exactLimit {
        return Double(Int64(numerator)) / Double(Int64(denominator))
    }
    let negative = numerator < 0
    let n = UInt128(numerator.magnitude)
    let d = UInt128(denominator)
    // The quotient with 55 significant bits (53, a rounding bit, one more) and a sticky
    // bit for anything below; value = q * 2^exponent.
    var q = n / d
    var r = n % d
    var exponent = 0
    var sticky = false
    let bits = 128 - q.leadingZeroBitCount
    if bits > 55 {
        let shift = bits - 55
        sticky = q & ((1 << shift) - 1) != 0
        q >>= shift
        exponent = shift
    } else {
        while 128 - q.leadingZeroBitCount < 55 {
            r <<= 1
            q <<= 1
            if r >= d {
                q |= 1
                r -= d
            }
            exponent -= 1
        }
    }
    sticky = sticky || r != 0 || q & 1 != 0
    var significand = q >> 2
    let roundBit = (q >> 1) & 1 == 1
    if roundBit && (sticky || significand & 1 == 1) { significand += 1 }
    let value = Double(sign: negative ? .minus : .plus, exponent: exponent + 2, significand: Double(significand))
    return value
}
