import Foundation
import TestSupport
import XCTest

/// scripts/package-deb.sh: the .deb builds from the test build's binary, installs with dpkg into a
/// throwaway root (`--root` with `--force-script-chrootless`: the maintainer scripts run on this machine
/// with `$DPKG_ROOT` and change only files under it), creates the `sensor` user and its private
/// directories, passes `systemd-analyze verify`, renders its man pages, and purges without a trace.
///
/// The package holds the debug build here: a release build costs CI far more than the whole test run
/// (README "Packaging"); scripts/package-deb.sh without `--binary` builds the release one.
final class PackageTests: XCTestCase {
    var work: URL!
    var root: URL!

    override func setUpWithError() throws {
        guard getuid() == 0 else { throw XCTSkip("dpkg --root with maintainer scripts needs root (CI runs as root)") }
        for tool in ["dpkg-deb", "dpkg-shlibdeps", "useradd", "systemd-analyze", "man"] where !TestSupport.hasTool(tool) {
            throw XCTSkip("\(tool) not installed (scripts/install-deps.sh test)")
        }
        work = try TestSupport.temporaryDirectory("deb")
        root = work.appendingPathComponent("root")
        // The least a dpkg database and the user tools need: root's accounts, login.defs for uid ranges.
        for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/log", "etc"] {
            try FileManager.default.createDirectory(at: root.appendingPathComponent(d), withIntermediateDirectories: true)
        }
        let files = [
            "var/lib/dpkg/status": "", "var/lib/dpkg/available": "",
            "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n", "etc/group": "root:x:0:\n",
            "etc/shadow": "root:*:20000:0:99999:7:::\n", "etc/gshadow": "root:*::\n",
        ]
        for (path, text) in files { try text.write(to: root.appendingPathComponent(path), atomically: true, encoding: .utf8) }
        if FileManager.default.fileExists(atPath: "/etc/login.defs") {
            try FileManager.default.copyItem(atPath: "/etc/login.defs", toPath: root.appendingPathComponent("etc/login.defs").path)
        }
    }

    override func tearDown() {
        if let work { try? FileManager.default.removeItem(at: work) }
    }

    /// dpkg on the throwaway root. Depends are not in its empty database; man pages are kept even where a
    /// slim image's dpkg.cfg.d excludes them.
    func dpkg(_ arguments: [String]) throws -> TestSupport.ProcessResult {
        try TestSupport.run("dpkg", ["--root=\(root.path)", "--force-script-chrootless", "--force-depends", "--log=/dev/null",
                                     "--path-include=/usr/share/man/*"] + arguments)
    }

    /// Every path under the throwaway root, except dpkg's own database and the account files the user adds to.
    func tree() -> Set<String> {
        let skip = ["var/lib/dpkg/", "etc/passwd", "etc/group", "etc/shadow", "etc/gshadow", "etc/subuid", "etc/subgid"]
        let all = FileManager.default.enumerator(atPath: root.path)?.compactMap { $0 as? String } ?? []
        return Set(all.filter { p in !skip.contains { p.hasPrefix($0) } })
    }

    func owner(_ path: String) throws -> (uid: Int, gid: Int, mode: Int) {
        let a = try FileManager.default.attributesOfItem(atPath: root.appendingPathComponent(path).path)
        return ((a[.ownerAccountID] as! NSNumber).intValue, (a[.groupOwnerAccountID] as! NSNumber).intValue,
                (a[.posixPermissions] as! NSNumber).intValue)
    }

    func testDebInstallsIntoAThrowawayRootVerifiesRendersAndPurgesCleanly() throws {
        let started = Date()
        let script = TestSupport.repositoryRoot.appendingPathComponent("scripts/package-deb.sh").path
        let build = try TestSupport.run(script, ["--binary", TestSupport.sensorBinary, "--output", work.path, "--fast"])
        XCTAssertEqual(build.status, 0, build.stderr)
        let deb = build.lines.last ?? ""
        print("package-deb.sh (debug binary, gzip -1): \(String(format: "%.1f", Date().timeIntervalSince(started))) s, \((try? FileManager.default.attributesOfItem(atPath: deb)[.size] as? Int) ?? 0) bytes")
        XCTAssertTrue(deb.hasSuffix(".deb"), build.stdoutText)

        let info = try TestSupport.run("dpkg-deb", ["--info", deb])
        XCTAssertTrue(info.stdoutText.contains("Package: sensor"), info.stdoutText)
        XCTAssertTrue(info.stdoutText.contains("libpcap0.8"), "Depends from dpkg-shlibdeps: \(info.stdoutText)")
        XCTAssertTrue(info.stdoutText.contains("librdkafka1"), info.stdoutText)
        let conffiles = try TestSupport.run("dpkg-deb", ["--info", deb, "conffiles"]).lines
        XCTAssertTrue(conffiles.contains("/etc/sensor/sensor.yaml"), "\(conffiles)")
        XCTAssertTrue(conffiles.contains("/etc/sensor/rules/c2.yaml"), "\(conffiles)")
        XCTAssertTrue(conffiles.contains("/etc/logrotate.d/sensor"), "\(conffiles)")
        XCTAssertTrue(conffiles.allSatisfy { $0.hasPrefix("/etc/sensor/") || $0 == "/etc/logrotate.d/sensor" }, "\(conffiles)")

        let before = tree()
        let install = try dpkg(["-i", deb])
        XCTAssertEqual(install.status, 0, install.stderr + install.stdoutText)
        XCTAssertTrue(try dpkg(["-s", "sensor"]).stdoutText.contains("Status: install ok installed"))

        // The binary, with its build and library versions.
        let binary = root.appendingPathComponent("usr/bin/sensor").path
        let version = try TestSupport.run(binary, ["--version"])
        XCTAssertEqual(version.status, 0, version.stderr)
        XCTAssertTrue(version.lines.first?.hasPrefix("sensor ") == true, version.stdoutText)
        for field in ["commit: ", "built: ", "libpcap: libpcap version", "librdkafka: ", "libmaxminddb: "] {
            XCTAssertTrue(version.stdoutText.contains(field), "\(field) in \(version.stdoutText)")
        }

        // The system user and what it owns; the configuration readable by its group only.
        let passwd = try String(contentsOf: root.appendingPathComponent("etc/passwd"), encoding: .utf8)
        let entry = passwd.split(separator: "\n").first { $0.hasPrefix("sensor:") }.map { $0.split(separator: ":", omittingEmptySubsequences: false) }
        let uid = Int(entry?[2] ?? "") ?? -1, gid = Int(entry?[3] ?? "") ?? -1
        XCTAssertTrue((1..<1000).contains(uid), "a system uid: \(passwd)")
        XCTAssertEqual(entry?[5], "/var/lib/sensor")
        XCTAssertEqual(entry?[6], "/usr/sbin/nologin")
        XCTAssertTrue(try String(contentsOf: root.appendingPathComponent("etc/group"), encoding: .utf8).contains("sensor:x:\(gid):"))
        for d in ["var/lib/sensor", "var/log/sensor"] {
            let o = try owner(d)
            XCTAssertEqual([o.uid, o.gid, o.mode], [uid, gid, 0o750], d)
        }
        let config = try owner("etc/sensor/sensor.yaml")
        XCTAssertEqual([config.uid, config.gid, config.mode], [0, gid, 0o640])
        XCTAssertEqual(try owner("usr/bin/sensor").mode, 0o755)

        // The unit as installed: its ExecStart names the package's binary, and systemd accepts it, man pages included.
        let unit = root.appendingPathComponent("usr/lib/systemd/system/sensor.service")
        let unitText = try String(contentsOf: unit, encoding: .utf8)
        XCTAssertTrue(unitText.contains("ExecStart=/usr/bin/sensor run --config /etc/sensor/sensor.yaml"))
        XCTAssertTrue(unitText.contains("Type=notify") && unitText.contains("WatchdogSec="))
        // `verify --root` would want a whole system under the root (sysinit.target, /bin/kill): the installed
        // unit is checked as Deploy/check-unit.sh checks the source one, its binary path pointed into the root,
        // and here with the Documentation= man pages looked up among the installed ones.
        let checked = work.appendingPathComponent("sensor.service")
        try unitText.replacingOccurrences(of: "/usr/bin/sensor", with: binary).write(to: checked, atomically: true, encoding: .utf8)
        let verify = try TestSupport.run("systemd-analyze", ["verify", checked.path],
                                         environment: ["MANPATH": root.appendingPathComponent("usr/share/man").path])
        XCTAssertEqual(verify.status, 0, verify.stderr + verify.stdoutText)

        // Man pages render, looked up by name as `man sensor-replay` finds them once installed.
        let man = try TestSupport.run("man", ["--warnings", "sensor-replay"],
                                      environment: ["MANPATH": root.appendingPathComponent("usr/share/man").path, "MANWIDTH": "100"])
        XCTAssertEqual(man.status, 0, man.stderr)
        XCTAssertEqual(man.stderr, "", "groff warnings")
        XCTAssertTrue(man.stdoutText.contains("sensor-replay"), man.stdoutText)
        XCTAssertTrue(man.stdoutText.contains("--output"), man.stdoutText)
        let pages = try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("usr/share/man/man1").path)
        XCTAssertTrue(Set(pages).isSuperset(of: ["sensor.1.gz", "sensor-run.1.gz", "sensor-check-config.1.gz", "sensor-custody-verify.1.gz"]), "\(pages)")
        let local = try TestSupport.run("man", ["-l", root.appendingPathComponent("usr/share/man/man1/sensor-run.1.gz").path])
        XCTAssertTrue(local.stdoutText.contains("--interface"), local.stdoutText)

        // Completions: bash registers one for `sensor`; zsh and fish files are there.
        let bash = try TestSupport.run("bash", ["-c", "source \(root.path)/usr/share/bash-completion/completions/sensor && complete -p sensor"])
        XCTAssertEqual(bash.status, 0, bash.stderr)
        XCTAssertTrue(bash.stdoutText.contains("sensor"), bash.stdoutText)
        for f in ["usr/share/zsh/vendor-completions/_sensor", "usr/share/fish/vendor_completions.d/sensor.fish"] {
            XCTAssertTrue(try String(contentsOf: root.appendingPathComponent(f), encoding: .utf8).contains("replay"), f)
        }

        // Remove: everything but the conffiles goes. Purge: those, the logs and the empty state directory
        // too; the user stays (Debian practice).
        let remove = try dpkg(["-r", "sensor"])
        XCTAssertEqual(remove.status, 0, remove.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: binary))
        XCTAssertFalse(FileManager.default.fileExists(atPath: unit.path))
        XCTAssertTrue(FileManager.default.fileExists(atPath: root.appendingPathComponent("etc/sensor/sensor.yaml").path))
        let purge = try dpkg(["-P", "sensor"])
        XCTAssertEqual(purge.status, 0, purge.stderr)
        XCTAssertEqual(tree().subtracting(before), [], "left behind after purge")
        XCTAssertFalse(try dpkg(["-s", "sensor"]).stdoutText.contains("Status: install"))
        XCTAssertTrue(try String(contentsOf: root.appendingPathComponent("etc/passwd"), encoding: .utf8).contains("sensor:x:\(uid):"))

        // Reinstalled over the kept user, then purged with evidence in the state directory: that is kept.
        XCTAssertEqual(try dpkg(["-i", deb]).status, 0)
        XCTAssertEqual(try String(contentsOf: root.appendingPathComponent("etc/passwd"), encoding: .utf8).components(separatedBy: "\nsensor:").count, 2)
        try Data("x".utf8).write(to: root.appendingPathComponent("var/lib/sensor/evidence.age"))
        let purgeKept = try dpkg(["-P", "sensor"])
        XCTAssertEqual(purgeKept.status, 0, purgeKept.stderr)
        XCTAssertTrue(purgeKept.stderr.contains("is not empty (evidence, spool, state): kept"), purgeKept.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: root.appendingPathComponent("var/lib/sensor/evidence.age").path))
    }
}
