import Events
import Foundation
import PacketCore
import Synchronization

/// Progress of a replay or hunt on standard error: a redrawn bar with rate and ETA on a terminal, a plain
/// line every few seconds otherwise (logs, CI). Each worker counts in its own `Counter` (an analyser on its
/// thread: no lock per packet) and adds to the shared totals every 4096 packets; the worker that does so
/// after the print interval prints.
///
/// Progress is estimated from the captured bytes of the packets seen against the total size of the
/// input files (record headers counted at 16 bytes each), so it is approximate and capped below 100 %
/// until the end; without a known size (standard input, compressed files) only counts and rates show.
final class ReplayProgress: @unchecked Sendable {
    /// `hunt` or `replay`, the prefix of every line.
    let label: String
    /// 0: unknown.
    let totalBytes: Int64
    let files: Int
    let enabled: Bool
    let terminal: Bool
    let packets = Atomic<Int64>(0)
    let bytes = Atomic<Int64>(0)
    let start = ContinuousClock.now
    /// Nanoseconds since `start` of the last print (claimed with a compare-and-exchange).
    let lastPrint = Atomic<Int64>(0)

    init(label: String, totalBytes: Int64, files: Int, enabled: Bool, terminal: Bool) {
        self.label = label
        self.totalBytes = max(totalBytes, 0)
        self.files = files
        self.enabled = enabled
        self.terminal = terminal
    }

    final class Counter: PacketAnalyzer, @unchecked Sendable {
        let name = "progress"
        let progress: ReplayProgress
        var packets: Int64 = 0
        var bytes: Int64 = 0

        init(_ progress: ReplayProgress) { self.progress = progress }

        func packet(_ context: PacketContext, flows: FlowTable) {
            packets &+= 1
            bytes &+= Int64(context.packet.capturedLength) &+ 16
            guard packets & 4095 == 0 else { return }
            progress.add(packets: packets, bytes: bytes)
            packets = 0
            bytes = 0
        }

        func finish(_ now: Timestamp) { progress.add(packets: packets, bytes: bytes, mayReport: false) }
    }

    /// The bytes the progress fraction is measured against: the files' sizes, or 0 (unknown) when one is
    /// standard input, a pipe or compressed (their sizes say nothing of the packets inside). Only regular
    /// files are opened: reading a FIFO's first bytes here would take them from the replay.
    static func measurableSize(_ files: [String]) -> Int64 {
        var total: Int64 = 0
        for f in files {
            guard f != "-", (try? FileManager.default.attributesOfItem(atPath: f)[.type] as? FileAttributeType) == .typeRegular,
                  let h = FileHandle(forReadingAtPath: f) else { return 0 }
            let head = [UInt8]((try? h.read(upToCount: 4)) ?? Data())
            try? h.close()
            if head.starts(with: [0x1F, 0x8B]) || head.starts(with: [0x28, 0xB5, 0x2F, 0xFD]) || head.starts(with: [0xFD, 0x37, 0x7A, 0x58]) { return 0 }
            total += (try? FileManager.default.attributesOfItem(atPath: f)[.size] as? Int64) ?? 0
        }
        return total
    }

    func add(packets p: Int64, bytes b: Int64, mayReport: Bool = true) {
        packets.wrappingAdd(p, ordering: .relaxed)
        bytes.wrappingAdd(b, ordering: .relaxed)
        guard mayReport, enabled else { return }
        let e = ContinuousClock.now - start
        let now = e.components.seconds &* 1_000_000_000 &+ e.components.attoseconds / 1_000_000_000
        let last = lastPrint.load(ordering: .relaxed)
        guard now - last >= (terminal ? 250_000_000 : 5_000_000_000),
              lastPrint.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged else { return }
        report(final: false)
    }

    func done() {
        guard enabled else { return }
        report(final: true)
        if terminal { fputs("\n", stderr) }
    }

    func report(final: Bool) {
        let e = ContinuousClock.now - start
        let secs = max(Double(e.components.seconds) + Double(e.components.attoseconds) / 1e18, 0.001)
        let bytes = self.bytes.load(ordering: .relaxed)
        let packets = self.packets.load(ordering: .relaxed)
        let known = totalBytes > 0
        let fraction = final ? 1.0 : known ? min(Double(bytes) / Double(totalBytes), 0.999) : 0
        let rate = Double(bytes) / secs / 1_048_576
        let pps = Double(packets) / secs
        let eta = fraction > 0 && !final ? secs * (1 - fraction) / fraction : 0
        let pct = String(format: "%5.1f%%", fraction * 100)
        let tail = "\(packets) packets, \(String(format: "%.1f", rate)) MiB/s, \(String(format: "%.0f", pps)) pkt/s" +
            (final ? ", done in \(String(format: "%.1f", secs)) s" : known ? ", ETA \(Self.duration(eta))" : ", \(Self.duration(secs)) so far")
        if !known && !final {
            fputs(terminal ? "\r\u{1B}[2K\(label) \(tail)" : "\(label): progress \(tail)\n", stderr)
        } else if terminal {
            let width = 30
            let filled = Int(fraction * Double(width))
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            fputs("\r\u{1B}[2K\(label) [\(bar)] \(pct) \(tail)", stderr)
        } else {
            fputs("\(label): progress \(pct) \(tail)\n", stderr)
        }
    }

    static func duration(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? "\(t / 3600)h\(String(format: "%02d", t % 3600 / 60))m" : t >= 60 ? "\(t / 60)m\(String(format: "%02d", t % 60))s" : "\(t)s"
    }
}
