import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Debian's `chromium`, headless, driven over the DevTools protocol on `--remote-debugging-pipe` (fd 3
/// carries commands in, fd 4 replies and events out, each message JSON ended by a NUL byte). Opens a page,
/// records what the page did (console messages, exceptions, log entries such as CSP violations, network
/// requests) and evaluates expressions in it.
public final class HeadlessChromium {
    public struct PageLoad {
        /// Console calls of type error or assert, uncaught exceptions, and log entries of level error.
        public var errors: [String] = []
        /// Every request the page tried besides loading its own document.
        public var requests: [String] = []
    }

    public struct Failure: Error, CustomStringConvertible { public var description: String }

    /// The browser binary on PATH, or nil.
    public static var executable: String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            for name in ["chromium", "chromium-browser"] {
                let p = "\(dir)/\(name)"
                if FileManager.default.isExecutableFile(atPath: p) { return p }
            }
        }
        return nil
    }

    let pid: pid_t
    let commands: Int32
    let replies: Int32
    let profile: URL
    var nextID = 1
    var buffer: [UInt8] = []
    var events: [[String: Any]] = []
    var session: String?

    public init() throws {
        guard let exe = Self.executable else { throw Failure(description: "chromium not found on PATH") }
        profile = try TestSupport.temporaryDirectory("chromium-profile")
        var toBrowser: [Int32] = [0, 0], fromBrowser: [Int32] = [0, 0]
        guard pipe(&toBrowser) == 0, pipe(&fromBrowser) == 0 else { throw Failure(description: "pipe failed") }
        // Out of the way of 3 and 4 before the child's dup2s, so none clobbers another.
        let childIn = fcntl(toBrowser[0], F_DUPFD, 100), childOut = fcntl(fromBrowser[1], F_DUPFD, 100)
        close(toBrowser[0]); close(fromBrowser[1])
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, childIn, 3)
        posix_spawn_file_actions_adddup2(&actions, childOut, 4)
        posix_spawn_file_actions_addclose(&actions, toBrowser[1])
        posix_spawn_file_actions_addclose(&actions, fromBrowser[0])
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, profile.appendingPathComponent("stderr.log").path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
                    "--user-data-dir=\(profile.path)", "--no-first-run", "--no-default-browser-check",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars", "about:blank"]
        var argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, exe, &actions, nil, &argv, environ)
        close(childIn); close(childOut)
        guard rc == 0 else { throw Failure(description: "posix_spawn chromium: \(rc)") }
        pid = child
        commands = toBrowser[1]
        replies = fromBrowser[0]
    }

    deinit { stop() }

    var stopped = false
    public func stop() {
        guard !stopped else { return }
        stopped = true
        _ = try? send("Browser.close", [:], session: nil, timeout: 5)
        close(commands); close(replies)
        var status: Int32 = 0
        for _ in 0..<50 {
            if waitpid(pid, &status, WNOHANG) == pid { try? FileManager.default.removeItem(at: profile); return }
            usleep(100_000)
        }
        kill(pid, SIGKILL)
        waitpid(pid, &status, 0)
        try? FileManager.default.removeItem(at: profile)
    }

    /// Reads one message, waiting until `deadline`.
    func receive(until deadline: Date) throws -> [String: Any]? {
        while true {
            if let nul = buffer.firstIndex(of: 0) {
                let message = Array(buffer[..<nul])
                buffer.removeSubrange(...nul)
                return try JSONSerialization.jsonObject(with: Data(message)) as? [String: Any]
            }
            let ms = Int32(max(0, deadline.timeIntervalSinceNow * 1000))
            var p = pollfd(fd: replies, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, ms) > 0 else { return nil }
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            let n = read(replies, &chunk, chunk.count)
            guard n > 0 else { throw Failure(description: "chromium closed the pipe") }
            buffer.append(contentsOf: chunk[..<n])
        }
    }

    /// Sends a command and waits for its reply; events that arrive meanwhile are kept.
    @discardableResult
    public func send(_ method: String, _ params: [String: Any], session: String? = nil, timeout: Double = 20) throws -> [String: Any] {
        let id = nextID
        nextID += 1
        var message: [String: Any] = ["id": id, "method": method, "params": params]
        if let session { message["sessionId"] = session }
        var bytes = [UInt8](try JSONSerialization.data(withJSONObject: message))
        bytes.append(0)
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { write(commands, $0.baseAddress, $0.count) }
            guard n > 0 else { throw Failure(description: "write to chromium failed") }
            off += n
        }
        let deadline = Date().addingTimeInterval(timeout)
        while let m = try receive(until: deadline) {
            if m["id"] as? Int == id {
                if let e = m["error"] { throw Failure(description: "\(method): \(e)") }
                return m["result"] as? [String: Any] ?? [:]
            }
            if m["method"] != nil { events.append(m) }
        }
        throw Failure(description: "\(method): no reply in \(timeout) s")
    }

    func waitForEvent(_ method: String, timeout: Double) throws {
        if events.contains(where: { $0["method"] as? String == method }) { return }
        let deadline = Date().addingTimeInterval(timeout)
        while let m = try receive(until: deadline) {
            if m["method"] != nil { events.append(m) }
            if m["method"] as? String == method { return }
        }
        throw Failure(description: "no \(method) in \(timeout) s")
    }

    /// Opens `file` in a new tab (1280 px wide) and waits for its load event and a short settle.
    public func open(file: String) throws -> PageLoad {
        let target = try send("Target.createTarget", ["url": "about:blank"])
        guard let targetID = target["targetId"] as? String else { throw Failure(description: "no target") }
        let attached = try send("Target.attachToTarget", ["targetId": targetID, "flatten": true])
        guard let s = attached["sessionId"] as? String else { throw Failure(description: "no session") }
        session = s
        for m in ["Runtime.enable", "Log.enable", "Network.enable", "Page.enable"] { try send(m, [:], session: s) }
        try send("Emulation.setDeviceMetricsOverride", ["width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false], session: s)
        events.removeAll()
        let url = URL(fileURLWithPath: file).absoluteString
        try send("Page.navigate", ["url": url], session: s)
        try waitForEvent("Page.loadEventFired", timeout: 30)
        // Late console messages and requests (none expected) get a moment to arrive.
        let settle = Date().addingTimeInterval(0.3)
        while let m = try receive(until: settle) { if m["method"] != nil { events.append(m) } }
        var load = PageLoad()
        for e in events where e["sessionId"] as? String == s {
            let params = e["params"] as? [String: Any] ?? [:]
            switch e["method"] as? String {
            case "Runtime.consoleAPICalled":
                let type = params["type"] as? String ?? ""
                if type == "error" || type == "assert" { load.errors.append("console.\(type): \(params["args"] ?? "")") }
            case "Runtime.exceptionThrown": load.errors.append("exception: \(params["exceptionDetails"] ?? "")")
            case "Log.entryAdded":
                let entry = params["entry"] as? [String: Any] ?? [:]
                if entry["level"] as? String == "error" { load.errors.append("log: \(entry["text"] ?? "")") }
            case "Network.requestWillBeSent":
                let r = (params["request"] as? [String: Any])?["url"] as? String ?? ""
                if r != url { load.requests.append(r) }
            default: break
            }
        }
        return load
    }

    /// Evaluates a JavaScript expression in the open page; its value as JSON.
    public func evaluate(_ expression: String) throws -> Any? {
        guard let s = session else { throw Failure(description: "no page open") }
        let r = try send("Runtime.evaluate", ["expression": expression, "returnByValue": true], session: s)
        if let ex = r["exceptionDetails"] { throw Failure(description: "evaluate: \(ex)") }
        return (r["result"] as? [String: Any])?["value"]
    }

    /// A PNG of the page region `x, y, width, height` (CSS pixels of the laid-out document).
    public func screenshot(x: Double, y: Double, width: Double, height: Double) throws -> Data {
        guard let s = session else { throw Failure(description: "no page open") }
        let r = try send("Page.captureScreenshot", ["format": "png", "captureBeyondViewport": true,
                                                    "clip": ["x": x, "y": y, "width": width, "height": height, "scale": 1]], session: s)
        guard let b = r["data"] as? String, let d = Data(base64Encoded: b) else { throw Failure(description: "no screenshot") }
        return d
    }
}
