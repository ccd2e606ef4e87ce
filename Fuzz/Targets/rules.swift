import ConfigKit
import Detectors
import Evidence

/// The rules files the detectors and evidence capture read (`Rules/*.yaml`): the first byte picks which
/// reader gets the rest as that file's text.
func fuzzRules(_ input: inout FuzzInput) {
    let which = input.u8() % 5
    let text = input.restAsText()
    switch which {
    case 0: _ = try? DNSTunnelRules.parse(text: text, file: "dns-tunneling.yaml")
    case 1: _ = try? LateralMovementRules.parse(text: text, file: "lateral-movement.yaml")
    case 2: _ = try? EvidenceRules.parse(text: text, file: "evidence.yaml")
    case 3:
        guard let root = try? YAMLDocument.parse(text, file: "c2.yaml") else { return }
        _ = try? C2PortRules.parse(root)
    default:
        guard let root = try? YAMLDocument.parse(text, file: "beaconing.yaml") else { return }
        _ = try? BeaconRules.parse(root)
    }
}
