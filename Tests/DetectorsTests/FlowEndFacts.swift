import Analyzers
import Detectors
import PacketCore

/// What the worker's host-fact tap hands the host-level detectors at a flow's end: its record and the
/// labels the given analysers hold for it (none given: an unlabelled flow).
extension BeaconDetector {
    func flowEnded(_ flow: FlowRecord, reason: FlowEndReason, slot: Int32, tls: TLSAnalyzer? = nil, http: HTTPAnalyzer? = nil) {
        flowEnded(flow, reason: reason, labels: FlowLabels(flow, slot: slot, identifier: nil, tls: tls, http: http))
    }
}

extension NonStandardPortDetector {
    func flowEnded(_ flow: FlowRecord, reason: FlowEndReason, slot: Int32, identifier: ProtocolIdentifier? = nil,
                   tls: TLSAnalyzer? = nil, http: HTTPAnalyzer? = nil) {
        flowEnded(flow, reason: reason, labels: FlowLabels(flow, slot: slot, identifier: identifier, tls: tls, http: http))
    }
}

/// Hands the FTP data channels an identifier announces to a detector, as the worker's host-fact
/// publisher does through the host-level stage.
final class FTPAnnouncements: FTPDataObserver {
    let detector: NonStandardPortDetector
    init(_ detector: NonStandardPortDetector) { self.detector = detector }
    func ftpDataAnnounced(_ channel: FTPDataChannels.Expected, at time: Timestamp) { detector.ftpDataAnnounced(channel, at: time) }
}
