/// SMB (1, 2, 3; compounds, session setup with NTLMSSP, tree connects, creates, writes, named-pipe
/// DCE-RPC) through the reassembler: the SMB analyser is a stream consumer and has no entry point of its
/// own. Direct TCP on 445, or NetBIOS session service on 139.
func fuzzSMB(_ input: inout FuzzInput) {
    Conversation(.tcp, serverPort: input.u8() & 1 == 0 ? 445 : 139).play(&input, through: PipelineSession())
}
