import Events
import Outputs
import PacketCore
#if canImport(Glibc)
import Glibc
#endif

/// The `zeek:` output: its in-place scanner of event JSON and its mapping to Zeek log lines, given arbitrary
/// bytes as an event of each dataset it reads (a flow, a DNS transaction, an alert), files in a private
/// directory. The first byte picks the dataset; the rest is the event.
nonisolated(unsafe) let fuzzZeekSink: ZeekSink = {
    let dir = FuzzEnvironment.temporaryDirectory + "/zeek"
    mkdir(dir, 0o700)
    return try! ZeekSink(directory: dir)
}()

func fuzzZeek(_ input: inout FuzzInput) {
    let datasets: [StaticString] = ["spanwatch.flow", "spanwatch.dns", "spanwatch.alert"]
    let pick = Int(input.u8() % 3)
    let event = input.rest()
    fuzzZeekSink.write(event, metadata: EventMetadata(dataset: datasets[pick], kind: pick == 2 ? .alert : .event,
                                                      timestamp: Timestamp(seconds: 1_714_564_800)))
    if fuzzZeekSink.statistics.accepted % 4096 == 0 { try? fuzzZeekSink.flush() }
}
