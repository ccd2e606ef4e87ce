import Events
import PacketCore
import Synchronization

/// Why a capture closed (`close_reason` in the custody log and the event).
public enum EvidenceCloseReason: String, Sendable {
    case duration
    case sizeCap = "size_cap"
    case endOfInput = "end_of_input"
}

/// One alert's capture, shared by every worker: the coordinator decides it once, each worker writes its
/// share (an `EvidencePart`), and the last part to close merges them into the one evidence file.
///
/// What workers read on their packet path is atomic (the end, which extensions move, and whether the
/// size budget is spent), so they never take the coordinator's lock per packet. Everything else is
/// changed under the coordinator's lock only.
public final class SharedCapture: @unchecked Sendable {
    public let reservation: EvidenceStore.Reservation
    public let scope: CaptureScope
    public let trigger: EvidenceTrigger
    public let lookbackFrom: Timestamp
    /// Section header comments, also the first packet's comment (tshark shows packet comments).
    let comments: [String]
    let alertLine: String
    /// The merged file's SHB, built once at open (its bytes are claimed from the budget at open).
    let sectionHeader: [UInt8]
    /// What one IDB of this capture takes (each part claims it for every link type it writes).
    let interfaceBlockBytes: Int

    // Under the coordinator's lock.
    var alerts: [Alert]
    /// Extensions, written as a comment on the first merged packet at or after their time.
    var notes: [(at: Timestamp, text: String)] = []
    /// False once a part closed for its duration or the size cap: a later alert opens a new capture
    /// rather than extend one some worker already stopped writing.
    var extendable = true
    /// Workers whose part has not closed yet.
    var waiting: Set<Int>
    /// Workers that opened their part.
    var joined: Set<Int> = []
    var parts: [EvidencePart.Closed] = []
    var failure: String?
    var reason: EvidenceCloseReason = .endOfInput

    // Read on the packet path.
    let endNanoseconds: Atomic<Int64>
    let full = Atomic<Bool>(false)
    /// Plaintext bytes of the merged file claimed so far (blocks and comments).
    let claimed = Atomic<Int>(0)

    init(reservation: EvidenceStore.Reservation, scope: CaptureScope, trigger: EvidenceTrigger, alert: Alert,
         end: Timestamp, lookbackFrom: Timestamp, comments: [String], alertLine: String, sectionHeader: [UInt8],
         interfaceBlockBytes: Int, workers: Set<Int>) {
        self.reservation = reservation
        self.scope = scope
        self.trigger = trigger
        self.lookbackFrom = lookbackFrom
        self.comments = comments
        self.alertLine = alertLine
        self.sectionHeader = sectionHeader
        self.interfaceBlockBytes = interfaceBlockBytes
        alerts = [alert]
        waiting = workers
        endNanoseconds = Atomic(end.nanoseconds)
        _ = claim(sectionHeader.count + Self.commentBytes(comments.joined(separator: "\n")))
    }

    /// The capture's end on the packet clock (moved later by extensions).
    public var end: Timestamp { Timestamp(nanoseconds: endNanoseconds.load(ordering: .acquiring)) }
    public var isFull: Bool { full.load(ordering: .relaxed) }

    /// Claims `bytes` of the merged file's plaintext; false (and the capture is full from then on) when
    /// the encrypted file would pass the reservation. A failed claim is not given back: every later claim
    /// fails too, so no worker writes past the cap once one has found it.
    func claim(_ bytes: Int) -> Bool {
        let total = claimed.wrappingAdd(bytes, ordering: .relaxed).newValue
        guard Self.ciphertextBytes(plaintext: total) <= reservation.reservedBytes else {
            full.store(true, ordering: .releasing)
            return false
        }
        return true
    }

    /// The encrypted size of `plaintext` bytes: 16 bytes of tag per 64 KiB chunk, and the age header.
    static func ciphertextBytes(plaintext: Int) -> Int {
        plaintext + (plaintext / AgeStreamWriter.chunkSize + 1) * 16 + 512
    }

    /// What a comment option adds to a block at most (code, length, padding, end of options).
    static func commentBytes(_ c: String) -> Int { c.utf8.count + 12 }

    /// What an EPB of `frame` bytes takes (28 bytes of header and trailer, the padded frame).
    static func packetBlockBytes(_ frame: Int) -> Int { 32 + (frame + 3) & ~3 }
}
