import Foundation

/// Builds the HTML report from events (NDJSON as the sensor writes it).
public final class ReportBuilder {
    let model = ReportModel()

    public init() {}

    /// Adds every line of an NDJSON buffer; lines that are not JSON objects are counted and skipped.
    public func add(ndjson: UnsafeRawBufferPointer) {
        var start = 0
        let n = ndjson.count
        while start < n {
            var end = start
            while end < n, ndjson[end] != 0x0A { end += 1 }
            if end > start {
                let line = UnsafeRawBufferPointer(rebasing: ndjson[start..<end])
                if let e = EventObject(line: line) { model.add(e) } else if !line.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) { model.unparsedLines &+= 1 }
            }
            start = end + 1
        }
    }

    /// Adds an NDJSON file (`-` for standard input).
    public func add(eventsFile path: String) throws {
        let data: Data
        if path == "-" {
            data = FileHandle.standardInput.readDataToEndOfFile()
        } else {
            guard let d = FileManager.default.contents(atPath: path) else { throw ReportError("cannot read \(path)") }
            data = d
        }
        data.withUnsafeBytes { add(ndjson: $0) }
    }

    public var alertCount: Int { model.alerts.count }

    /// The page: one self-contained HTML document.
    public func render(provenance: ReportProvenance, generatedAt: Date = Date()) -> String {
        var page = ReportPage(model: model, provenance: provenance, generatedAt: generatedAt)
        return page.render()
    }
}
