import Foundation
import TestSupport

/// Real DNS payloads from the shared captures, extracted with the real tshark.
enum TestSupportProbe {
    static let hasTshark = TestSupport.hasTool("tshark")

    static func udpPayloads(_ capture: String) throws -> [[UInt8]] {
        let r = try TestSupport.run("tshark", ["-r", TestSupport.data("pcaps/\(capture)"), "-Y", "dns && udp", "-T", "fields", "-e", "udp.payload"])
        return r.lines.compactMap { hex -> [UInt8]? in
            let h = hex.replacingOccurrences(of: ":", with: "")
            guard h.count % 2 == 0, !h.isEmpty else { return nil }
            var out: [UInt8] = []
            var i = h.startIndex
            while i < h.endIndex {
                let j = h.index(i, offsetBy: 2)
                guard let b = UInt8(h[i..<j], radix: 16) else { return nil }
                out.append(b)
                i = j
            }
            return out
        }
    }
}
