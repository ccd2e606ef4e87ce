import ArgumentParser
import Capture
import SensorRuntime

/// `--workers`, `--cpus` and `--flow-shard` of the offline commands (`replay`, `hunt`): one reader hands each packet to
/// one of N worker pipelines (docs/LIVE.md, "Offline workers").
struct OfflineWorkerOptions: ParsableArguments {
    @Option(name: .long, help: "Worker pipelines (default 1); a reader thread hands each packet to one of them.")
    var workers: Int?

    @Option(name: .long, help: ArgumentHelp("CPUs to pin the workers to, one per worker.", valueName: "0,1,..."))
    var cpus: String?

    @Option(name: .long, help: ArgumentHelp("Process only the flows whose address-pair hash falls in shard I of N (N machines share one capture; the whole file is still read).", valueName: "I/N"))
    var flowShard: String?

    func validate() throws {
        if let s = flowShard, FlowShard(s) == nil { throw ValidationError("--flow-shard expects I/N with 0 ≤ I < N ≤ 1024, e.g. 0/2") }
        if let w = workers, !(1...256).contains(w) { throw ValidationError("--workers must be between 1 and 256") }
        if let c = cpus {
            guard let list = parseCPUList(c) else { throw ValidationError("--cpus expects a comma-separated list of CPU numbers, e.g. 0,1") }
            if list.count < count { throw ValidationError("--cpus lists \(list.count) CPUs for \(count) workers: list one per worker") }
            if Set(list).count != list.count { throw ValidationError("a CPU is listed twice in --cpus") }
            if let bad = list.first(where: { $0 >= ThreadAffinity.cpuCount }) {
                throw ValidationError("CPU \(bad) does not exist (this machine has \(ThreadAffinity.cpuCount))")
            }
        }
    }

    var count: Int { workers ?? 1 }
    var shard: FlowShard? { flowShard.flatMap(FlowShard.init) }
    var cpuList: [Int] { cpus.flatMap(parseCPUList) ?? [] }
}

/// A comma-separated list of CPU numbers (`--cpus 0,1`), or nil when malformed.
func parseCPUList(_ s: String) -> [Int]? {
    var out: [Int] = []
    for part in s.split(separator: ",") {
        guard let n = Int(part.trimmingSpaces), n >= 0 else { return nil }
        out.append(n)
    }
    return out.isEmpty ? nil : out
}
