import Foundation
import TestSupport
import XCTest

/// The lateral-movement detector and its analysers against the real captures in ../shared/data/pcaps
/// (each lateral capture raises what its MANIFEST line describes; benign ones raise nothing), and the
/// analysers' extraction against the real tshark.
final class LateralMovementCaptureTests: XCTestCase {
    func replay(_ path: String) throws -> [[String: Any]] {
        let r = try TestSupport.sensor(["replay", path])
        XCTAssertEqual(r.status, 0, r.stderr)
        return try TestSupport.events(r)
    }

    func lateralAlerts(_ events: [[String: Any]]) -> [[String: Any]] {
        events.filter { TestSupport.value($0, "rule.category") as? String == "lateral_movement" }
    }

    func techniques(_ alert: [String: Any]) -> [String] { TestSupport.techniqueIDs(alert) ?? [] }

    /// capture → rule ids that must fire (with a technique each must carry), from the MANIFEST descriptions.
    let expected: [String: [(rule: String, technique: String)]] = [
        "20171220_smb_at_schedule.pcap": [("lateral_movement.remote_at_job", "T1053.002")],
        "20171220_smb_mimikatz_copy_to_host.pcap": [("lateral_movement.admin_share", "T1021.002")],
        "20171220_smb_psexec_add_user.pcap": [("lateral_movement.tool_transfer_execution", "T1570")],
        "CA_kerbrute_passwordspray_kerberos_AS-REQ.pcapng": [("lateral_movement.password_spray", "T1110.003")],
        "Discovery_dcerp_srvsvc_NetShareEnum.pcapng": [("lateral_movement.share_enumeration", "T1135")],
        "LM_WMI_ProcessCallCreate.pcapng": [("lateral_movement.wmi_exec", "T1047")],
        "LM_dcom_mmc20.application_dcerpc.pcapng": [("lateral_movement.dcom_exec", "T1021.003")],
        "LM_psexec_smb_dcerpc_epm_svcctl.pcapng": [("lateral_movement.tool_transfer_execution", "T1569.002")],
        // One RDP client to one server: without a baseline (replay) an ordinary admin session looks the
        // same, so these are quiet by default; `testRDPEdgesWhenEachEdgeIsReported` replays them with
        // single RDP edges accepted.
        "LM_rdp_sharprdp.pcapng": [],
        "LM_smbexec_smb_dcerpc_svcctl_epm.pcapng": [("lateral_movement.remote_service", "T1569.002"), ("lateral_movement.admin_share", "T1021.002")],
        "atexec_.pcap": [("lateral_movement.remote_scheduled_task", "T1053.005"), ("lateral_movement.admin_share", "T1021.002")],
        "rdp-to-ssl.pcap": [],
        "smbexec.pcap": [("lateral_movement.remote_service", "T1569.002"), ("lateral_movement.admin_share", "T1021.002")],
        "winrm_psremote_05-16.pcap": [("lateral_movement.new_winrm_edge", "T1021.006")],
        "wmiexec.pcap": [("lateral_movement.wmi_exec", "T1047"), ("lateral_movement.admin_share", "T1021.002")],
    ]

    func testEveryLateralCaptureRaisesItsAlerts() throws {
        let captures = TestSupport.captures("lateral")
        XCTAssertEqual(captures.count, expected.count, "a lateral capture without expectations (or a missing one)")
        for path in captures {
            let name = (path as NSString).lastPathComponent
            let alerts = lateralAlerts(try replay(path))
            guard let want = expected[name] else { XCTFail("no expectation for \(name)"); continue }
            for (rule, technique) in want {
                let matching = alerts.filter { TestSupport.value($0, "rule.id") as? String == rule }
                XCTAssertFalse(matching.isEmpty, "\(name): no \(rule) alert; got \(alerts.map { TestSupport.value($0, "rule.id") ?? "" })")
                XCTAssertTrue(matching.contains { techniques($0).contains(technique) }, "\(name): \(rule) lacks \(technique)")
            }
            for a in alerts {
                XCTAssertEqual(TestSupport.value(a, "event.kind") as? String, "alert")
                XCTAssertNotNil(TestSupport.value(a, "source.ip"), "\(name): alert without source")
                XCTAssertFalse((TestSupport.value(a, "related.ip") as? [String] ?? []).isEmpty)
            }
        }
    }

    func testRDPEdgesWhenEachEdgeIsReported() throws {
        let dir = try TestSupport.temporaryDirectory("lateral-rdp-rules")
        defer { try? FileManager.default.removeItem(at: dir) }
        try "first_seen_edges:\n  without_baseline:\n    services: [rdp, winrm]\n"
            .write(to: dir.appendingPathComponent("lateral-movement.yaml"), atomically: true, encoding: .utf8)
        for name in ["LM_rdp_sharprdp.pcapng", "rdp-to-ssl.pcap"] {
            let quiet = lateralAlerts(try replay(TestSupport.data("pcaps/lateral/\(name)")))
            XCTAssertTrue(quiet.isEmpty, "\(name) by default: \(quiet.map { TestSupport.value($0, "rule.id") ?? "" })")
            let r = try TestSupport.sensor(["replay", TestSupport.data("pcaps/lateral/\(name)"), "--rules", dir.path])
            XCTAssertEqual(r.status, 0, r.stderr)
            let alerts = lateralAlerts(try TestSupport.events(r))
            XCTAssertEqual(alerts.compactMap { TestSupport.value($0, "rule.id") as? String }, ["lateral_movement.new_rdp_edge"], name)
            XCTAssertTrue(alerts.allSatisfy { techniques($0).contains("T1021.001") }, name)
        }
    }

    func testAlertsNameWhatWasSeen() throws {
        // PsExec: one high alert naming the share, the written service binary, the pipe and the RPC call.
        let alerts = lateralAlerts(try replay(TestSupport.data("pcaps/lateral/LM_psexec_smb_dcerpc_epm_svcctl.pcapng")))
        let combined = alerts.filter { TestSupport.value($0, "rule.id") as? String == "lateral_movement.tool_transfer_execution" }
        XCTAssertEqual(combined.count, 1)
        guard let a = combined.first else { return }
        XCTAssertEqual(TestSupport.value(a, "event.severity") as? Int, 3)
        XCTAssertEqual(TestSupport.value(a, "source.ip") as? String, "172.16.66.1")
        XCTAssertEqual(TestSupport.value(a, "destination.ip") as? String, "172.16.66.36")
        XCTAssertTrue((TestSupport.value(a, "spanwatch.lateral_movement.shares") as? [String] ?? []).contains("ADMIN$"))
        XCTAssertTrue((TestSupport.value(a, "spanwatch.lateral_movement.written_files") as? [String] ?? []).contains { $0.uppercased().contains("PSEXESVC.EXE") })
        XCTAssertTrue((TestSupport.value(a, "spanwatch.lateral_movement.rpc_calls") as? [String] ?? []).contains { $0.hasPrefix("svcctl.") })
        // The admin-share write was folded into the combined alert, not raised again on its own.
        XCTAssertFalse(alerts.contains { TestSupport.value($0, "rule.id") as? String == "lateral_movement.admin_share" })

        // Kerberos spraying names the accounts.
        let spray = lateralAlerts(try replay(TestSupport.data("pcaps/lateral/CA_kerbrute_passwordspray_kerberos_AS-REQ.pcapng")))
        let users = spray.flatMap { TestSupport.value($0, "related.user") as? [String] ?? [] }
        XCTAssertGreaterThanOrEqual(Set(users).count, 5, "\(users)")
    }

    func testBenignCapturesRaiseNoLateralMovement() throws {
        for path in TestSupport.captures("benign") {
            let alerts = lateralAlerts(try replay(path))
            XCTAssertTrue(alerts.isEmpty, "\((path as NSString).lastPathComponent): \(alerts.map { TestSupport.value($0, "message") ?? "" })")
        }
    }

    /// Tree paths, NTLM user names, bind UUIDs and opnums agree with real tshark on every capture with SMB or DCE-RPC.
    func testExtractionAgreesWithTshark() throws {
        guard TestSupport.hasTool("tshark") else { throw XCTSkip("tshark not installed (scripts/install-deps.sh)") }
        let captures = TestSupport.captures("lateral") + ["normal_share_traversal.pcap", "smb2-peter.pcap", "smb2readwrite.pcap"].map { TestSupport.data("pcaps/benign/\($0)") }
        var compared = 0
        for path in captures {
            let name = (path as NSString).lastPathComponent
            let t = try TestSupport.run("tshark", ["-n", "-r", path, "-Y", "smb || smb2 || dcerpc", "-T", "fields", "-E", "separator=|", "-E", "aggregator=,",
                                                   "-e", "smb2.tree", "-e", "smb.path", "-e", "ntlmssp.auth.username",
                                                   "-e", "dcerpc.cn_bind_to_uuid", "-e", "dcerpc.opnum"])
            XCTAssertEqual(t.status, 0, t.stderr)
            var trees = Set<String>(), users = Set<String>(), uuids = Set<String>(), opnums = Set<Int>()
            for line in t.lines {
                let cols = line.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
                guard cols.count >= 5 else { continue }
                func values(_ s: String) -> [String] { s.split(separator: ",").map(String.init).filter { !$0.isEmpty } }
                for v in values(cols[0]) + values(cols[1]) { trees.insert(v.lowercased()) }
                for v in values(cols[2]) where v != "NULL" { users.insert(v.lowercased()) }
                for v in values(cols[3]) { uuids.insert(v.lowercased()) }
                for v in values(cols[4]) { if let n = Int(v) { opnums.insert(n) } }
            }
            var oTrees = Set<String>(), oUsers = Set<String>(), oUUIDs = Set<String>(), oOpnums = Set<Int>()
            for e in try replay(path) where TestSupport.value(e, "event.dataset") as? String == "spanwatch.flow" {
                for v in TestSupport.value(e, "spanwatch.smb.trees") as? [String] ?? [] { oTrees.insert(v.lowercased()) }
                for v in (TestSupport.value(e, "spanwatch.smb.users") as? [String] ?? []) + (TestSupport.value(e, "spanwatch.dce_rpc.users") as? [String] ?? []) { oUsers.insert(v.lowercased()) }
                for v in TestSupport.value(e, "spanwatch.dce_rpc.bind_uuids") as? [String] ?? [] { oUUIDs.insert(v.lowercased()) }
                for v in TestSupport.value(e, "spanwatch.dce_rpc.opnums") as? [Int] ?? [] { oOpnums.insert(v) }
            }
            XCTAssertEqual(oTrees, trees, "\(name): tree paths")
            XCTAssertEqual(oUsers, users, "\(name): NTLM user names")
            XCTAssertEqual(oUUIDs, uuids, "\(name): bind UUIDs")
            XCTAssertEqual(oOpnums, opnums, "\(name): opnums")
            if !trees.isEmpty || !uuids.isEmpty { compared += 1 }
        }
        XCTAssertGreaterThanOrEqual(compared, 12)
    }
}
