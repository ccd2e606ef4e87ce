import Analyzers

/// DCE-RPC: every PDU reader directly (header, bind contexts, request, stub, auth value, endpoint-mapper
/// towers, DCOM activation, the Netlogon and GetNCChanges stub readers in both byte orders); then the analyser over TCP on 135, whose endpoint-mapper answers teach it
/// dynamic ports.
func fuzzDCERPC(_ input: inout FuzzInput) {
    guard input.u8() & 1 == 0 else {
        Conversation(.tcp, serverPort: 135).play(&input, through: PipelineSession())
        return
    }
    let pdu = input.rest()
    _ = DCERPC.endpointMapperPorts(pdu)
    _ = DCERPC.activatedClass(pdu)
    _ = DCERPC.namesWin32Process(pdu)
    _ = DCERPC.containsOBJREF(pdu)
    guard let h = DCERPC.header(pdu) else { return }
    _ = DCERPC.bindContexts(pdu, header: h)
    _ = DCERPC.request(pdu, header: h)
    _ = DCERPC.authValue(pdu, header: h)
    if let stub = DCERPC.stub(pdu, header: h) {
        _ = DCERPC.endpointMapperPorts(stub)
        _ = DCERPC.activatedClass(stub)
        for opnum: UInt16 in [3, 4, 5, 15, 26, 30] {
            _ = DCERPC.netlogonSignature(opnum: opnum, stub: stub, littleEndian: h.littleEndian)
            _ = DCERPC.netlogonSignature(opnum: opnum, stub: stub, littleEndian: !h.littleEndian)
        }
        _ = DCERPC.looksLikeGetNCChanges(opnum: 3, stub: stub, littleEndian: h.littleEndian)
        _ = DCERPC.looksLikeGetNCChanges(opnum: 3, stub: stub, littleEndian: !h.littleEndian)
    }
}
