import PacketCore

/// Parameters of beacon scoring (the statistical part of `Rules/beaconing.yaml`).
public struct BeaconScoring: Sendable, Equatable {
    /// Fewer distinct starts than this are not scored at all.
    public var minStarts = 4
    /// Starts closer than this to the previous one are the same start (parallel connections, bursts).
    public var mergeWindowSeconds = 1.0
    /// A median interval below this is not a beacon (sub-second chatter, timer-resolution artefacts).
    public var minIntervalSeconds = 2.0
    /// Interval dispersion cutoff as a fraction of the median interval (RITA uses a fixed 30 s; a relative
    /// cutoff judges a 10-second and a 1-hour beacon with the same jitter alike).
    public var jitterTolerance = 0.5
    /// Floor of that cutoff, seconds.
    public var minDispersionCutoffSeconds = 1.0
    /// Size dispersion cutoff, bytes (RITA: 32).
    public var sizeDispersionCutoffBytes = 32.0
    /// Bowley skewness is used only when Q3 − Q1 reaches this (seconds for intervals, bytes for sizes).
    public var skewMinIQRSeconds = 10.0
    public var skewMinIQRBytes = 10.0
    /// Distinct starts that give the full connection-count part.
    public var countFull = 24.0
    /// Most bins of the connections-per-bin histogram and of the consistency check.
    public var maxBins = 24
    /// Weights of the parts in the final score (a weighted mean, 0…1).
    public var weights = BeaconWeights()
    public init() {}
}

public struct BeaconWeights: Sendable, Equatable {
    public var intervalSkew = 1.0
    public var intervalDispersion = 2.0
    public var sizeSkew = 0.5
    public var sizeDispersion = 1.0
    public var histogram = 1.5
    public var duration = 1.0
    public var count = 0.5
    public init() {}
    var total: Double { intervalSkew + intervalDispersion + sizeSkew + sizeDispersion + histogram + duration + count }
}

/// One pair's beacon score and the statistics behind it.
public struct BeaconScore: Sendable, Equatable {
    public var score: Double
    public var intervalSkew: Double
    public var intervalDispersion: Double
    public var sizeSkew: Double
    public var sizeDispersion: Double
    public var histogram: Double
    public var duration: Double
    public var count: Double
    public var distinctStarts: Int
    public var connections: Int
    public var medianIntervalSeconds: Double
    public var intervalMADSeconds: Double
    public var medianSizeBytes: Double
    public var sizeMADBytes: Double
    /// Timestamps had whole-second resolution (dispersion floored at half a second).
    public var wholeSecondTimestamps: Bool
}

/// RITA's beacon statistics over one pair's connection starts and sizes, computed on demand.
///
/// Parts, each 0…1 (1 = beacon-like):
/// - interval skew: 1 − |Bowley skewness| of the intervals between distinct starts; the skewness is
///   taken as 0 (symmetric) unless Q3 − Q1 ≥ `skewMinIQRSeconds` and Q2 differs from Q1 and Q3,
///   where Bowley's measure is unreliable;
/// - interval dispersion: 1 − MAD/cutoff, the median absolute deviation of the intervals against a
///   cutoff of `jitterTolerance` × median (jitter of ±20% keeps a high score, random timing does not);
/// - size skew and size dispersion: the same for the bytes each connection's originator sent
///   (RITA's 32-byte MAD cutoff);
/// - histogram: 1 − coefficient of variation of distinct starts per bin over the pair's active span
///   (bursts and gaps score low);
/// - duration: the larger of coverage (the pair's span over the observation window) and consistency
///   (the share of the window's bins with a start);
/// - count: distinct starts / `countFull`, capped at 1.
/// The score is their weighted mean. Starts closer than `mergeWindowSeconds` merge (parallel
/// connections, retries), and timestamps of whole-second resolution (every start on a second boundary)
/// merge starts up to 1 s apart and floor the interval MAD at 0.5 s, so rounding cannot fake periodicity.
public enum BeaconScorer {
    /// Scores starts (ns, any order) and the sizes of the same connections, observed over
    /// `[observedFrom, observedTo]` (ns). Nil when there are too few distinct starts.
    public static func score(starts: [Int64], sizes: [Int64], observedFrom: Int64, observedTo: Int64,
                             parameters p: BeaconScoring) -> BeaconScore? {
        guard starts.count >= p.minStarts else { return nil }
        let sorted = starts.sorted()
        let wholeSeconds = sorted.allSatisfy { $0 % 1_000_000_000 == 0 }
        let merge = UInt64(max(0, Timestamp.Duration.seconds(wholeSeconds ? max(p.mergeWindowSeconds, 1.000001) : p.mergeWindowSeconds).nanoseconds))
        var distinct: [Int64] = []
        distinct.reserveCapacity(sorted.count)
        // Chained: a start within the window of the previous connection continues that burst.
        var previous: Int64?
        for s in sorted {
            defer { previous = s }
            if let previous, gap(previous, s) < merge { continue }
            distinct.append(s)
        }
        let n = distinct.count
        guard n >= p.minStarts else { return nil }
        var intervals: [Double] = []
        intervals.reserveCapacity(n - 1)
        for i in 1..<n { intervals.append(Double(gap(distinct[i - 1], distinct[i])) / 1e9) }
        intervals.sort()
        let (iq1, iq2, iq3) = quartiles(intervals)
        let intervalSkew = bowley(iq1, iq2, iq3, minIQR: p.skewMinIQRSeconds)
        var intervalMAD = mad(intervals, median: iq2)
        if wholeSeconds { intervalMAD = max(intervalMAD, 0.5) }
        let cutoff = max(p.minDispersionCutoffSeconds, p.jitterTolerance * iq2)
        let intervalDispersion = max(0, 1 - intervalMAD / cutoff)

        let sz = sizes.map(Double.init).sorted()
        var sizeSkew = 0.0, sizeMAD = 0.0, sq2 = 0.0
        if !sz.isEmpty {
            let (q1, q2, q3) = quartiles(sz)
            sq2 = q2
            sizeSkew = bowley(q1, q2, q3, minIQR: p.skewMinIQRBytes)
            sizeMAD = mad(sz, median: q2)
        }
        let sizeDispersion = max(0, 1 - sizeMAD / p.sizeDispersionCutoffBytes)

        // Connections per bin across the pair's active span.
        let first = distinct[0], last = distinct[n - 1]
        let span = Double(max(1, gap(first, last)))
        let bins = max(4, min(p.maxBins, n / 3))
        var counts = [Double](repeating: 0, count: bins)
        for s in distinct { counts[bin(Double(gap(first, s)) / span, of: bins)] += 1 }
        let mean = Double(n) / Double(bins)
        var variance = 0.0
        for c in counts { variance += (c - mean) * (c - mean) }
        variance /= Double(bins)
        let histogram = max(0, 1 - variance.squareRoot() / mean)

        // How long and how consistently the pair was seen within the observation window.
        // The window runs from the earlier of its start and the first start to its end (at least 1 ns).
        let origin = min(observedFrom, first)
        let window = Double(max(1, observedTo > origin ? gap(origin, observedTo) : 0))
        let coverage = min(1, Double(gap(first, last)) / window)
        let wbins = max(1, min(p.maxBins, n))
        var seen = [Bool](repeating: false, count: wbins)
        for s in distinct { seen[bin(s >= origin ? Double(gap(origin, s)) / window : 0, of: wbins)] = true }
        let consistency = Double(seen.filter { $0 }.count) / Double(wbins)
        let duration = max(coverage, consistency)
        let count = min(1, Double(n) / p.countFull)

        let w = p.weights
        let total = w.total > 0 ? w.total : 1
        let score = (w.intervalSkew * (1 - abs(intervalSkew)) + w.intervalDispersion * intervalDispersion
                     + w.sizeSkew * (1 - abs(sizeSkew)) + w.sizeDispersion * sizeDispersion
                     + w.histogram * histogram + w.duration * duration + w.count * count) / total
        return BeaconScore(score: score, intervalSkew: 1 - abs(intervalSkew), intervalDispersion: intervalDispersion,
                           sizeSkew: 1 - abs(sizeSkew), sizeDispersion: sizeDispersion, histogram: histogram,
                           duration: duration, count: count, distinctStarts: n, connections: starts.count,
                           medianIntervalSeconds: iq2, intervalMADSeconds: intervalMAD, medianSizeBytes: sq2,
                           sizeMADBytes: sizeMAD, wholeSecondTimestamps: wholeSeconds)
    }

    /// `b - a` for `a <= b`, exact for any two Int64 (the difference can exceed Int64.max, never UInt64.max).
    @inline(__always) static func gap(_ a: Int64, _ b: Int64) -> UInt64 { UInt64(bitPattern: b &- a) }

    /// The bin of a position `fraction` (0…1 within the range, anything outside clamped, NaN to the first)
    /// among `bins`; clamped before converting, since `Int(x)` traps on huge or NaN values.
    @inline(__always) static func bin(_ fraction: Double, of bins: Int) -> Int {
        let x = fraction * Double(bins)
        guard x > 0 else { return 0 }
        return x >= Double(bins - 1) ? bins - 1 : Int(x)
    }

    /// RITA's quartiles: the elements at round(q·(n−1)) of the sorted values.
    static func quartiles(_ s: [Double]) -> (Double, Double, Double) {
        func at(_ q: Double) -> Double { s[Int((q * Double(s.count - 1)).rounded(.toNearestOrAwayFromZero))] }
        return (at(0.25), at(0.5), at(0.75))
    }

    /// Bowley skewness, 0 where it is unreliable (small spread, or the median on a quartile).
    static func bowley(_ q1: Double, _ q2: Double, _ q3: Double, minIQR: Double) -> Double {
        let den = q3 - q1
        guard den >= minIQR, q2 != q1, q2 != q3 else { return 0 }
        return (q1 + q3 - 2 * q2) / den
    }

    /// Median absolute deviation about `median`.
    static func mad(_ s: [Double], median: Double) -> Double {
        let devs = s.map { abs($0 - median) }.sorted()
        return devs[Int((0.5 * Double(devs.count - 1)).rounded(.toNearestOrAwayFromZero))]
    }
}
