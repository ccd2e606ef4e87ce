import Analyzers
import PacketCore

/// One source's authentication failures within the window, with the per-account and per-method counts
/// the spray and brute-force rules read, kept up to date as failures come and expire.
///
/// Why: a source on the monitored network decides how many failed logins it sends, so what one failure
/// costs must not grow with the failures already held (up to `LateralMovementDetector.failureCap`):
/// a failure is a count update and expiry pops the oldest; sorting accounts waits for an alert.
///
/// The failures are kept in time order, so the expired ones (older than the horizon) are always a
/// prefix, whatever order packet times arrive in: a late failure is inserted behind the ones no older
/// than it (normally at the end), failures of the same time stay in arrival order.
struct AuthFailureWindow {
    struct Failure {
        var user: String
        var time: Timestamp
        var method: AuthenticationAttempt.Method
    }

    /// The failures from `head` on, in time order; those before `head` have expired and are dropped in
    /// batches (when at least as many as the live ones), so expiry is amortised O(1).
    private var queue: [Failure] = []
    private var head = 0
    /// Live failures per lower-cased account, and per method; accounts and methods with none are absent.
    private var perUser: [String: Int] = [:]
    private var perMethod: [AuthenticationAttempt.Method: Int] = [:]

    init() {}

    /// Failures held.
    var count: Int { queue.count - head }
    /// Accounts with at least one failure held.
    var distinctUsers: Int { perUser.count }
    /// Failures held for `user`, nil when none.
    func failures(of user: String) -> Int? { perUser[user] }
    /// The accounts, sorted (replays must give identical events).
    var sortedUsers: [String] { perUser.keys.sorted() }
    /// The methods' names, sorted.
    var sortedMethods: [String] { perMethod.keys.map(\.rawValue).sorted() }
    /// The failures held, oldest first.
    var live: ArraySlice<Failure> { queue[head...] }

    /// Drops the failures older than `horizon`.
    mutating func expire(before horizon: Timestamp) {
        while head < queue.count, queue[head].time < horizon {
            perUser.decrementCount(queue[head].user)
            perMethod.decrementCount(queue[head].method)
            head += 1
        }
        if head > 0 && head >= queue.count - head {
            queue.removeFirst(head)
            head = 0
        }
    }

    mutating func append(_ f: Failure) {
        var i = queue.count
        while i > head && queue[i - 1].time > f.time { i -= 1 }
        if i == queue.count { queue.append(f) } else { queue.insert(f, at: i) }
        perUser[f.user, default: 0] += 1
        perMethod[f.method, default: 0] += 1
    }
}
