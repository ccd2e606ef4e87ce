import PacketCore

/// Distinct servers seen per port (a 64-bit linear-counting sketch each), as the non-standard-port rule
/// reads it: as of the host stage's last tick, plus the judged session's own server.
///
/// Why not as of the previous session: with several workers each expires its flows in its own order, so
/// sessions ending within the same second reach the stage in an order a one-worker run does not share,
/// and a figure read after every earlier session would differ from one run to the other. Sessions learn
/// into `learning`, which reaches `seen` at the next tick; ports changed since are listed so a tick
/// copies only those (all 512 KiB once more than `foldAll` changed).
final class PortPopularity {
    static let ports = 65536
    static let foldAll = 4096

    /// As of the last tick.
    private let seen: UnsafeMutablePointer<UInt64>
    /// `seen` plus the sessions learned since.
    private let learning: UnsafeMutablePointer<UInt64>
    private var changed: [UInt16] = []
    private var changedAll = false

    init() {
        seen = .allocate(capacity: Self.ports)
        seen.initialize(repeating: 0, count: Self.ports)
        learning = .allocate(capacity: Self.ports)
        learning.initialize(repeating: 0, count: Self.ports)
        changed.reserveCapacity(Self.foldAll)
    }

    deinit {
        seen.deallocate()
        learning.deallocate()
    }

    func learn(port: UInt16, server: IPAddress) {
        let p = Int(port), b = ServiceBaseline.sketchBit(server)
        guard learning[p] & b == 0 else { return }
        learning[p] |= b
        if changed.count < Self.foldAll { changed.append(port) } else { changedAll = true }
    }

    /// Distinct servers on `port` as of the last tick, `server` counted.
    func servers(port: UInt16, including server: IPAddress) -> Int {
        (seen[Int(port)] | ServiceBaseline.sketchBit(server)).nonzeroBitCount
    }

    func tick() {
        if changedAll {
            seen.update(from: learning, count: Self.ports)
        } else {
            for p in changed { seen[Int(p)] = learning[Int(p)] }
        }
        changed.removeAll(keepingCapacity: true)
        changedAll = false
    }

    /// The sketches of every port with a server seen (what a checkpoint keeps: learning included).
    var sketches: [(port: UInt16, servers: UInt64)] {
        var out: [(port: UInt16, servers: UInt64)] = []
        for p in 0..<Self.ports where learning[p] != 0 { out.append((UInt16(p), learning[p])) }
        return out
    }

    /// Replaces every sketch (restoring a checkpoint): seen and learning alike.
    func restore(_ sketches: [(port: UInt16, servers: UInt64)]) {
        seen.update(repeating: 0, count: Self.ports)
        learning.update(repeating: 0, count: Self.ports)
        for s in sketches {
            seen[Int(s.port)] = s.servers
            learning[Int(s.port)] = s.servers
        }
        changed.removeAll(keepingCapacity: true)
        changedAll = false
    }
}
