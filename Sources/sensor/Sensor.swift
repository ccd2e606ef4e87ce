import ArgumentParser

/// The sensor's command line: one subcommand per job, each in its own file. The entry point is
/// `SensorMain` (Main.swift), which runs `run`'s privileged start-up on the main thread.
struct Sensor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sensor",
        abstract: "Real-time network security sensor: flows, detections and evidence as ECS JSON.",
        version: SensorVersion.text,
        subcommands: [Replay.self, Run.self, Hunt.self, Aggregate.self, CaseReport.self, CheckConfig.self, CheckRules.self, Custody.self]
    )
}
