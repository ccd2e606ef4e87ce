#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
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
    public var jitterTolerance = 0.6
    /// Floor of that cutoff, seconds.
    public var minDispersionCutoffSeconds = 1.0
    /// Half-width of the band around the median interval, as a fraction of it, that the `interval_band`
    /// part counts intervals in: designed jitter of up to ±50% keeps every interval inside.
    public var jitterBand = 0.6
    /// Size dispersion cutoff, bytes (RITA: 32), or this fraction of the median size when larger (a
    /// poll whose size varies by a few percent is still regular).
    public var sizeDispersionCutoffBytes = 32.0
    public var sizeTolerance = 0.25
    /// Bowley skewness is used only when Q3 − Q1 reaches this (seconds for intervals, bytes for sizes).
    public var skewMinIQRSeconds = 10.0
    public var skewMinIQRBytes = 10.0
    /// Intervals at which the confidence factor reaches 1 − 1/e: the score is the weighted mean of the
    /// parts times 1 − exp(−intervals / this), so three intervals can never look like a sure beacon.
    public var confidenceIntervals = 3.0
    /// Most bins of the connections-per-bin histogram and of the consistency check.
    public var maxBins = 24
    /// Weights of the parts in the final score (a weighted mean, 0…1).
    public var weights = BeaconWeights()
    public init() {}
}

public struct BeaconWeights: Sendable, Equatable {
    public var intervalSkew = 1.0
    public var intervalDispersion = 2.0
    public var intervalBand = 1.5
    public var sizeSkew = 0.25
    public var sizeDispersion = 0.5
    public var histogram = 1.0
    public var duration = 1.0
    public init() {}
    var total: Double { intervalSkew + intervalDispersion + intervalBand + sizeSkew + sizeDispersion + histogram + duration }
}

/// One pair's beacon score and the statistics behind it.
public struct BeaconScore: Sendable, Equatable {
    public var score: Double
    public var intervalSkew: Double
    public var intervalDispersion: Double
    public var intervalBand: Double
    public var sizeSkew: Double
    public var sizeDispersion: Double
    public var histogram: Double
    public var duration: Double
    /// 1 − exp(−intervals / `confidenceIntervals`): what the weighted mean was multiplied by.
    public var confidence: Double
    public var distinctStarts: Int
    public var connections: Int
    public var medianIntervalSeconds: Double
    public var intervalMADSeconds: Double
    public var medianSizeBytes: Double
    public var sizeMADBytes: Double
    /// Timestamps had whole-second resolution (dispersion floored at half a second).
    public var wholeSecondTimestamps: Bool
}

/// RITA's beacon statistics over one pair's connection starts and sizes, computed on demand, made robust
/// to designed jitter and honest about small samples.
///
/// Parts, each 0…1 (1 = beacon-like):
/// - interval skew: 1 − |Bowley skewness| of the intervals between distinct starts; the skewness is
///   taken as 0 (symmetric) unless Q3 − Q1 ≥ `skewMinIQRSeconds` and Q2 differs from Q1 and Q3,
///   where Bowley's measure is unreliable;
/// - interval dispersion: 1 − MAD/cutoff, the median absolute deviation of the intervals against a
///   cutoff of `jitterTolerance` × median;
/// - interval band: the share of intervals within ±`jitterBand` × median of the median. Uniform jitter
///   of ±50% keeps (nearly) every interval in the band, memoryless (human, random) timing about 45%:
///   the part that holds a deliberately jittered beacon up where the dispersion alone falls;
/// - size skew and size dispersion: the same for the bytes each connection's originator sent (MAD
///   cutoff: RITA's 32 bytes or `sizeTolerance` × median, the larger), weighted low: a C2 that pads or
///   posts results varies its sizes;
/// - histogram: 1 − (standard deviation of distinct starts per bin − that of the most even split of
///   them) / mean, over the pair's active span (bursts and gaps score low);
/// - duration: the larger of coverage (the pair's span over its observation span) and consistency
///   (the share of that span's bins with a start). The observation span is the pair's own — from when
///   its source was first seen (within the window) to now — never the whole input's, so unrelated
///   traffic merged into a replay cannot change a pair's score.
/// The score is their weighted mean times the confidence factor 1 − exp(−(n − 1) / `confidenceIntervals`)
/// of the n − 1 intervals: with 3 intervals at most 0.63, with 9 at most 0.95. Starts closer than
/// `mergeWindowSeconds` merge (parallel connections, retries), and timestamps of whole-second
/// resolution (every start on a second boundary) merge starts up to 1 s apart and floor the interval MAD
/// at 0.5 s, so rounding cannot fake periodicity.
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
        let band = max(p.minDispersionCutoffSeconds, p.jitterBand * iq2)
        let inBand = intervals.reduce(0) { abs($1 - iq2) <= band ? $0 + 1 : $0 }
        let intervalBand = Double(inBand) / Double(intervals.count)

        let sz = sizes.map(Double.init).sorted()
        var sizeSkew = 0.0, sizeMAD = 0.0, sq2 = 0.0
        if !sz.isEmpty {
            let (q1, q2, q3) = quartiles(sz)
            sq2 = q2
            sizeSkew = bowley(q1, q2, q3, minIQR: p.skewMinIQRBytes)
            sizeMAD = mad(sz, median: q2)
        }
        let sizeDispersion = max(0, 1 - sizeMAD / max(p.sizeDispersionCutoffBytes, p.sizeTolerance * sq2))

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
        // Whole starts cannot split evenly into bins: the most even split's spread is no irregularity.
        let low = Double(n / bins), high = n % bins
        let evenVariance = (Double(high) * (low + 1 - mean) * (low + 1 - mean) + Double(bins - high) * (low - mean) * (low - mean)) / Double(bins)
        let histogram = max(0, 1 - max(0, variance.squareRoot() - evenVariance.squareRoot()) / mean)

        // How long and how consistently the pair was seen within its observation span, which runs from
        // the earlier of `observedFrom` and the first start to `observedTo` (at least 1 ns).
        let origin = min(observedFrom, first)
        let window = Double(max(1, observedTo > origin ? gap(origin, observedTo) : 0))
        let coverage = min(1, Double(gap(first, last)) / window)
        let wbins = max(1, min(p.maxBins, n))
        var seen = [Bool](repeating: false, count: wbins)
        for s in distinct { seen[bin(s >= origin ? Double(gap(origin, s)) / window : 0, of: wbins)] = true }
        let consistency = Double(seen.filter { $0 }.count) / Double(wbins)
        let duration = max(coverage, consistency)
        let confidence = 1 - exp(-Double(n - 1) / max(p.confidenceIntervals, 0.001))

        let w = p.weights
        let total = w.total > 0 ? w.total : 1
        let mean01 = (w.intervalSkew * (1 - abs(intervalSkew)) + w.intervalDispersion * intervalDispersion
                      + w.intervalBand * intervalBand + w.sizeSkew * (1 - abs(sizeSkew)) + w.sizeDispersion * sizeDispersion
                      + w.histogram * histogram + w.duration * duration) / total
        return BeaconScore(score: mean01 * confidence, intervalSkew: 1 - abs(intervalSkew), intervalDispersion: intervalDispersion,
                           intervalBand: intervalBand, sizeSkew: 1 - abs(sizeSkew), sizeDispersion: sizeDispersion,
                           histogram: histogram, duration: duration, confidence: confidence, distinctStarts: n,
                           connections: starts.count, medianIntervalSeconds: iq2, intervalMADSeconds: intervalMAD,
                           medianSizeBytes: sq2, sizeMADBytes: sizeMAD, wholeSecondTimestamps: wholeSeconds)
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
