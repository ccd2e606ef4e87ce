import Crypto
import XCTest
@testable import Analyzers
import Events
import PacketCore

/// SMB2 file data hashed in file-offset order whatever order the reads complete in, within bounds.
final class SMBFileTransferTests: XCTestCase {
    struct Session {
        let sink = DNSEventSink()
        let hashing: FileHashing
        let smb: SMBAnalyzer
        let h = StreamHarness()
        var message: UInt64 = 10

        init() {
            hashing = FileHashing(emitter: EventEmitter(observer: ObserverInfo(name: "t", hostname: "t"), sinks: [sink]))
            smb = SMBAnalyzer(files: hashing)
            let connect = Build.netbios(Build.treeConnect("\\\\srv\\data", message: 3))
            XCTAssertTrue(h.start(smb, first: connect))
            h.feed(smb, connect)
            h.feed(smb, Build.netbios(Build.treeConnectResponse(tree: 7, message: 3)), fromClient: false)
            h.feed(smb, Build.netbios(Build.create("report.docx", tree: 7, message: 4)))
            h.feed(smb, Build.netbios(Build.createResponse(file: 42, tree: 7, message: 4)), fromClient: false)
        }

        /// Reads at `offsets` (requests first, as a client with several in flight), answered in `order`.
        mutating func reads(_ file: [UInt8], chunk: Int, offsets: [Int], order: [Int]) {
            var ids: [UInt64] = []
            for o in offsets {
                message += 1
                ids.append(message)
                h.feed(smb, Build.netbios(Build.read(file: 42, tree: 7, message: message, offset: UInt64(o), length: chunk)))
            }
            for i in order {
                let o = offsets[i]
                let data = Array(file[o..<min(file.count, o + chunk)])
                h.feed(smb, Build.netbios(Build.readResponse(tree: 7, message: ids[i], data: data)), fromClient: false)
            }
        }

        mutating func close() -> [String: Any]? {
            message += 1
            h.feed(smb, Build.netbios(Build.close(file: 42, tree: 7, message: message)))
            return sink.events.last { sink.value($0, "event.dataset") as? String == "spanwatch.file" }
        }
    }

    /// Bytes that differ at every offset (a misplaced part changes the hash).
    static func file(_ n: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n)
        var x: UInt32 = 2_463_534_242
        for i in 0..<n { x ^= x << 13; x ^= x >> 17; x ^= x << 5; out[i] = UInt8(truncatingIfNeeded: x) }
        return out
    }

    static func sha256(_ b: some Sequence<UInt8>) -> String { SHA256.hash(data: Array(b)).map { String(format: "%02x", $0) }.joined() }

    func testReadsCompletedOutOfOrderHashAsTheFile() throws {
        // Small reads within one message, and 64 KiB reads that stream past the assembled prefix.
        for chunk in [1000, 65536] {
            let file = Self.file(chunk * 4 - 17)
            var s = Session()
            s.reads(file, chunk: chunk, offsets: [0, chunk, 2 * chunk, 3 * chunk], order: [2, 0, 3, 1])
            let e = try XCTUnwrap(s.close(), "chunk \(chunk)")
            XCTAssertEqual(s.sink.value(e, "file.hash.sha256") as? String, Self.sha256(file), "chunk \(chunk)")
            XCTAssertEqual(s.sink.value(e, "file.size") as? Int, file.count)
            XCTAssertNil(s.sink.value(e, "spanwatch.file.incomplete"), "chunk \(chunk): \(e)")
            XCTAssertEqual(s.hashing.counters.incomplete, 0)
            XCTAssertGreaterThan(s.hashing.counters.heldChunks, 0)
        }
    }

    func testWritesOutOfOrderAndReReadsHashOnce() throws {
        let file = Self.file(3000)
        var s = Session()
        for (i, o) in [2000, 0, 1000].enumerated() {
            s.h.feed(s.smb, Build.netbios(Build.write(file: 42, tree: 7, message: UInt64(20 + i), data: Array(file[o..<o + 1000]), offset: UInt64(o))))
        }
        // The same bytes read back twice: one file read, hashed once.
        s.reads(file, chunk: 1500, offsets: [0, 1500, 0], order: [0, 2, 1])
        s.message += 1
        s.h.feed(s.smb, Build.netbios(Build.close(file: 42, tree: 7, message: s.message)))
        let files = s.sink.events.filter { s.sink.value($0, "event.dataset") as? String == "spanwatch.file" }
        XCTAssertEqual(files.count, 2)
        for e in files {
            XCTAssertEqual(s.sink.value(e, "file.hash.sha256") as? String, Self.sha256(file), "\(e)")
            XCTAssertNil(s.sink.value(e, "spanwatch.file.incomplete"))
        }
    }

    func testAHoleThatNeverFillsIsMarkedAndWhatWasSeenHashed() throws {
        let file = Self.file(4000)
        var s = Session()
        s.reads(file, chunk: 1000, offsets: [3000, 0, 2000], order: [0, 1, 2])
        let e = try XCTUnwrap(s.close())
        XCTAssertEqual(s.sink.value(e, "file.hash.sha256") as? String, Self.sha256(file[0..<1000] + file[2000..<4000]))
        XCTAssertEqual(s.sink.value(e, "spanwatch.file.incomplete") as? Bool, true, "\(e)")
        XCTAssertEqual(s.sink.value(e, "file.size") as? Int, 3000)
    }

    /// Data beyond a hole that never fills is held only up to its bound (4 MiB per file direction), then
    /// the hole is given up on, counted, and hashing goes on; the held memory goes back to the budget.
    func testHeldDataIsBoundedAndReleased() throws {
        let chunk = 65536, n = 80  // 5 MiB after an 8-byte hole
        let file = Self.file(8 + chunk * n)
        var s = Session()
        let base = s.smb.budget.used
        var peak = 0
        for i in 0..<n {
            s.reads(file, chunk: chunk, offsets: [8 + i * chunk], order: [0])
            peak = max(peak, s.smb.budget.used - base)
        }
        XCTAssertEqual(s.hashing.counters.holesGivenUp, 1)
        XCTAssertLessThanOrEqual(peak, 2 * SMBAnalyzer.heldPerStream + 64 << 10)
        let e = try XCTUnwrap(s.close())
        XCTAssertEqual(s.sink.value(e, "file.hash.sha256") as? String, Self.sha256(file[8...]))
        XCTAssertEqual(s.sink.value(e, "spanwatch.file.incomplete") as? Bool, true)
        XCTAssertEqual(s.smb.budget.used, base, "held data and the transfer's charge are returned at close")
    }
}
