import Foundation
import Report

/// `sensor report --from-events`: NDJSON from anywhere (a SIEM export, a file anyone could edit) through
/// the line splitter, Foundation's JSON parser, the event-time parser, every aggregation and the whole
/// page, whose escaping must hold for any string.
func fuzzReport(_ input: inout FuzzInput) {
    let text = input.restAsText()
    let builder = ReportBuilder()
    Data(text.utf8).withUnsafeBytes { builder.add(ndjson: $0) }
    _ = builder.render(provenance: ReportProvenance(reportVersion: "fuzz"), generatedAt: Date(timeIntervalSince1970: 0))
}
