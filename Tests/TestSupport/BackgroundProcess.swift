import Foundation

/// A real program running beside a test (a mock Kafka broker, rsyslogd): its standard input can be
/// written, its standard output read line by line, and it is killed when the test ends.
public final class BackgroundProcess: @unchecked Sendable {
    public let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private let errors = Pipe()
    private let lock = NSLock()
    private var outputBuffer = Data()
    private var errorBuffer = Data()
    private let lineReady = DispatchSemaphore(value: 0)

    /// Starts `executable` (an absolute path, or a name looked up on PATH).
    public init(_ executable: String, _ arguments: [String], currentDirectory: String? = nil) throws {
        if executable.hasPrefix("/") {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [executable] + arguments
        }
        if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        output.fileHandleForReading.readabilityHandler = { [weak self] h in
            let d = h.availableData
            guard let self else { return }
            self.lock.lock(); self.outputBuffer.append(d); self.lock.unlock()
            self.lineReady.signal()
        }
        errors.fileHandleForReading.readabilityHandler = { [weak self] h in
            let d = h.availableData
            guard let self else { return }
            self.lock.lock(); self.errorBuffer.append(d); self.lock.unlock()
        }
        try process.run()
    }

    deinit { stop() }

    /// Reads the next line of standard output, waiting up to `timeout` seconds.
    public func readLine(timeout: Double = 10) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            lock.lock()
            if let nl = outputBuffer.firstIndex(of: 10) {
                let line = String(decoding: outputBuffer[outputBuffer.startIndex..<nl], as: UTF8.self)
                outputBuffer.removeSubrange(outputBuffer.startIndex...nl)
                lock.unlock()
                return line
            }
            lock.unlock()
            if Date() >= deadline { return nil }
            _ = lineReady.wait(timeout: .now() + 0.1)
        }
    }

    /// Writes one line to standard input.
    public func send(_ line: String) {
        input.fileHandleForWriting.write(Data((line + "\n").utf8))
    }

    /// Sends a command and returns the one-line answer.
    public func command(_ line: String, timeout: Double = 10) -> String? {
        send(line)
        return readLine(timeout: timeout)
    }

    public var standardError: String {
        lock.lock(); defer { lock.unlock() }
        return String(decoding: errorBuffer, as: UTF8.self)
    }

    /// Terminates the program (SIGTERM, then SIGKILL after a second) and waits for it.
    public func stop() {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(1)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        output.fileHandleForReading.readabilityHandler = nil
        errors.fileHandleForReading.readabilityHandler = nil
    }
}

extension TestSupport {
    /// Another executable of this package, built next to `sensor` (e.g. `kafka-mock-broker`).
    public static func builtExecutable(_ name: String) -> String {
        URL(fileURLWithPath: sensorBinary).deletingLastPathComponent().appendingPathComponent(name).path
    }

    /// A loopback TCP or UDP port that was free a moment ago (the kernel picks it).
    public static func freePort(udp: Bool = false) -> Int {
        let fd = socket(AF_INET, udp ? Int32(SOCK_DGRAM.rawValue) : Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// Waits until `condition` holds, polling every 50 ms, for at most `timeout` seconds.
    @discardableResult
    public static func waitUntil(timeout: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(50_000)
        }
        return condition()
    }
}
