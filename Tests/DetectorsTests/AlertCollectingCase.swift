import Events
import XCTest

/// A test case whose detectors emit through `emitter` (no sinks); their alerts land in `alerts`.
class AlertCollectingCase: XCTestCase {
    var alerts: [Alert] = []
    lazy var emitter: EventEmitter = {
        let e = EventEmitter(observer: ObserverInfo(name: "t", hostname: "t"), sinks: [])
        e.alertObservers.append { [unowned self] in self.alerts.append($0) }
        return e
    }()
}
