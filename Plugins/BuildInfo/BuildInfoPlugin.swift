import Foundation
import PackagePlugin

/// Generates `BuildInfo.swift` for the `sensor` target before every build: the commit and the build date
/// `sensor --version` prints. A prebuild command runs a system tool (`/bin/sh` with
/// `scripts/build-info.sh`), which rewrites the file only when its content changes, so an unchanged
/// tree recompiles nothing.
@main
struct BuildInfoPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let output = context.pluginWorkDirectoryURL.appendingPathComponent("generated")
        let script = context.package.directoryURL.appendingPathComponent("scripts/build-info.sh")
        return [.prebuildCommand(displayName: "Build info for \(target.name)",
                                 executable: URL(fileURLWithPath: "/bin/sh"),
                                 arguments: [script.path, output.path],
                                 outputFilesDirectory: output)]
    }
}
