import CSensorShims
import Foundation

/// Runs blocking work (libpcap, the host-stage merge, the metrics socket) on a thread of its own and
/// returns when it ends: such loops never run on Swift's cooperative pool, which they would starve.
enum DedicatedThread {
    /// `body` runs on a new thread named `name`; the caller's task waits without blocking a pool thread.
    static func run(name: String, stackSize: Int = 8 << 20, _ body: @escaping @Sendable () -> Void) async {
        await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
            let t = Thread {
                // Foundation keeps the name to itself on Linux: give it to the kernel too.
                csensor_name_thread(name)
                body()
                cont.resume()
            }
            t.name = name
            t.stackSize = stackSize
            t.start()
        }
    }
}
