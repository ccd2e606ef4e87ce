import PacketCore

/// The L2–L4 decoder for every link type the sensor reads (and one it does not), then what analysers
/// derive from a decoded packet: its payload view, flow key and Community ID.
func fuzzDecoder(_ input: inout FuzzInput) {
    let linkTypes: [LinkType] = [.ethernet, .null, .raw, .rawAlt, .loop, .linuxSLL, .linktypeRaw, .ipv4, .ipv6, .linuxSLL2,
                                 LinkType(rawValue: 147)]
    let linkType = linkTypes[Int(input.u8()) % linkTypes.count]
    let frame = input.rest()
    var p = DecodedPacket()
    p.wireLength = frame.count
    p.capturedLength = frame.count
    let outcome = PacketDecoder.decode(frame, linkType: linkType, into: &p)
    guard outcome == .ok || p.hasPorts else { return }
    let payload = p.payload(in: frame)
    if let first = payload.first { _ = first }
    _ = CommunityID(seed: 0).string(FlowKey.make(p).key)
}
