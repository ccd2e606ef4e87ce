import Analyzers

/// DCE-RPC: every PDU reader directly (header, bind contexts, request, stub, auth value, endpoint-mapper
/// towers, DCOM activation); then the analyser over TCP on 135, whose endpoint-mapper answers teach it
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
    }
}
