import Capture
import Events
import Foundation
import Logging
import ServiceLifecycle

/// Owns the event sinks for the life of the process. Listed before the packet services in the
/// `ServiceGroup`, so on shutdown it stops last: every event the pipeline produced is flushed before exit.
public final class EventOutputService: Service, @unchecked Sendable {
    public let sinks: [any EventSink]
    let logger: Logger
    let monitor: OutputMonitor
    public private(set) var closeErrors: [String] = []

    public init(sinks: [any EventSink], logger: Logger) {
        self.sinks = sinks
        self.logger = logger
        monitor = OutputMonitor(sinks: sinks, logger: logger)
    }

    public func run() async throws {
        // Sinks are written to by the pipelines directly; until shutdown this only watches them fail.
        await cancelWhenGracefulShutdown { [monitor] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                monitor.check()
            }
        }
        closeAll()
        monitor.check()
    }

    /// Flushes and closes every sink; a failing sink does not stop the others from closing.
    public func closeAll() {
        for s in sinks {
            do { try s.close() } catch {
                closeErrors.append("\(error)")
                logger.error("output failed to close", metadata: ["output": "\(s.name)", "error": "\(error)"])
            }
        }
    }
}

/// Periodic work a live worker does on its own thread, beside the packet path (statistics, metrics,
/// reloads, idle flow expiry). Called about once a second of wall time, also when the link is quiet.
public protocol WorkerHousekeeping: AnyObject {
    /// `idle`: the source's wait timed out with no packet.
    func periodic(_ pipeline: Pipeline, idle: Bool)
    /// After the last packet: report every flow and the final statistics.
    func finish(_ pipeline: Pipeline)
    /// The source's wait timed out with no packet (every block timeout on a quiet link).
    func idle(_ pipeline: Pipeline)
}

extension WorkerHousekeeping {
    public func idle(_ pipeline: Pipeline) {}
}

/// Runs one pipeline over one packet source on a dedicated thread.
///
/// libpcap calls block, so they never run on Swift's cooperative pool. Graceful shutdown (SIGTERM,
/// SIGINT, or the group ending) stops the source; the thread then reports every open flow and returns.
public final class PacketProcessingService: Service, @unchecked Sendable {
    public let pipeline: Pipeline
    public let source: any PacketSource
    let logger: Logger
    public private(set) var readError: CaptureError?
    public private(set) var interrupted = false
    /// CPU time the processing thread used (packet path only: no start-up, no other threads), for benchmarks.
    public private(set) var processingCPUSeconds: Double = 0
    /// Live workers: the CPU the thread pins itself to, and its periodic work.
    let cpu: Int?
    let housekeeping: (any WorkerHousekeeping)?
    let threadName: String
    /// What the source feeds: the pipeline, or a `FlowShardFilter` in front of it.
    let consumer: PacketConsumer

    public init(pipeline: Pipeline, source: any PacketSource, logger: Logger, cpu: Int? = nil,
                housekeeping: (any WorkerHousekeeping)? = nil, threadName: String = "sensor-pipeline", consumer: PacketConsumer? = nil) {
        self.pipeline = pipeline
        self.consumer = consumer ?? pipeline
        self.source = source
        self.logger = logger
        self.cpu = cpu
        self.housekeeping = housekeeping
        self.threadName = threadName
    }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await DedicatedThread.run(name: threadName) { [self] in
                if let cpu, let problem = ThreadAffinity.pinCurrentThread(to: cpu) {
                    logger.warning("cannot pin worker thread", metadata: ["cpu": "\(cpu)", "error": "\(problem)"])
                }
                processAll()
            }
        } onGracefulShutdown: { [source] in
            source.stop()
        }
        if let readError { throw readError }
    }

    /// The processing loop (public for tests and benchmarks that drive it without a service group).
    public func processAll() {
        let cpuStart = Self.threadCPUSeconds()
        defer { processingCPUSeconds = Self.threadCPUSeconds() - cpuStart }
        var lastFlush = ContinuousClock.now
        do {
            // Batches from libpcap's buffer; outputs are flushed at most once a second of wall time so live
            // events leave promptly while replay writes in large blocks. A live source also comes back
            // `.idle` on a quiet link, so its worker still does its periodic work.
            loop: while true {
                let idle: Bool
                switch try source.dispatchOrIdle(maxPackets: 4096, to: consumer) {
                case .delivered: idle = false
                case .idle:
                    idle = true
                    housekeeping?.idle(pipeline)
                case .end: break loop
                }
                let now = ContinuousClock.now
                if now - lastFlush >= .seconds(1) {
                    lastFlush = now
                    housekeeping?.periodic(pipeline, idle: idle)
                    flushOutputs()
                }
            }
        } catch {
            readError = error
            logger.error("capture input damaged; processed what came before it", metadata: ["error": "\(error)"])
        }
        if Task.isCancelled { interrupted = true }
        if let housekeeping { housekeeping.finish(pipeline) } else { pipeline.finish() }
        flushOutputs()
    }

    static func threadCPUSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    func flushOutputs() {
        do { try pipeline.emitter.flush() } catch {
            logger.error("output flush failed", metadata: ["error": "\(error)"])
        }
    }
}
