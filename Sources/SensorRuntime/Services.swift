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
    public private(set) var closeErrors: [String] = []

    public init(sinks: [any EventSink], logger: Logger) {
        self.sinks = sinks
        self.logger = logger
    }

    public func run() async throws {
        // Nothing to do until shutdown: sinks are written to by the pipelines directly.
        try? await gracefulShutdown()
        closeAll()
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

    public init(pipeline: Pipeline, source: any PacketSource, logger: Logger) {
        self.pipeline = pipeline
        self.source = source
        self.logger = logger
    }

    public func run() async throws {
        try await withGracefulShutdownHandler {
            await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
                let t = Thread { [self] in
                    processAll()
                    cont.resume()
                }
                t.name = "sensor-pipeline"
                t.stackSize = 8 << 20
                t.start()
            }
        } onGracefulShutdown: { [source] in
            source.stop()
        }
        if let readError { throw readError }
    }

    /// The processing loop (public for tests and benchmarks that drive it without a service group).
    public func processAll() {
        var lastFlush = ContinuousClock.now
        do {
            // Batches from libpcap's buffer; outputs are flushed at most once a second of wall time so live
            // events leave promptly while replay writes in large blocks.
            while try source.dispatch(maxPackets: 4096, to: pipeline) > 0 {
                let now = ContinuousClock.now
                if now - lastFlush >= .seconds(1) {
                    lastFlush = now
                    flushOutputs()
                }
            }
        } catch {
            readError = error
            logger.error("capture input damaged; processed what came before it", metadata: ["error": "\(error)"])
        }
        if Task.isCancelled { interrupted = true }
        pipeline.finish()
        flushOutputs()
    }

    func flushOutputs() {
        do { try pipeline.emitter.flush() } catch {
            logger.error("output flush failed", metadata: ["error": "\(error)"])
        }
    }
}
