import ConfigKit
import SensorRuntime

/// The sensor's YAML configuration: ConfigKit's line-numbered YAML reading and every section's reader
/// and validator (flows, outputs, evidence, intel, live capture, DNS, metrics, privileges).
func fuzzConfig(_ input: inout FuzzInput) {
    let text = input.restAsText()
    _ = try? YAMLDocument.parse(text, file: "sensor.yaml")
    _ = try? SensorConfiguration.parse(text: text, file: "sensor.yaml")
}
