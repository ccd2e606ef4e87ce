import Analyzers

/// NTLMSSP: locating the token in a security blob and reading an AUTHENTICATE message, directly; then the
/// same blob inside an SMB2 SESSION_SETUP on 445, the way the SMB analyser meets it.
func fuzzNTLM(_ input: inout FuzzInput) {
    if input.u8() & 1 == 0 {
        let b = input.rest()
        _ = NTLMSSP.find(b)
        _ = NTLMSSP.messageType(b)
        _ = NTLMSSP.authenticate(in: b)
        return
    }
    let blob = Array(input.rest())
    // NetBIOS length, SMB2 header (command 1, SESSION_SETUP), request body with the blob at offset 88.
    var smb: [UInt8] = [0xFE, 0x53, 0x4D, 0x42] + le16(64) + le16(1) + le32(0) + le16(1) + le16(1)
    smb += le32(0) + le32(0) + [UInt8](repeating: 0, count: 8) + le32(0xFEFF) + le32(0) + le32(0x1122) + le32(0)
    smb += [UInt8](repeating: 0, count: 16)
    smb += le16(25) + [0, 1] + le32(0) + le32(0) + le16(64 + 24) + le16(blob.count) + [UInt8](repeating: 0, count: 8) + blob
    let message = [0, UInt8(smb.count >> 16 & 0xff), UInt8(smb.count >> 8 & 0xff), UInt8(smb.count & 0xff)] + smb
    // One client record carrying the whole message (2-byte length form), through the conversation player.
    var script: [UInt8] = [0, 0x80, UInt8(message.count >> 8 & 0xff), UInt8(message.count & 0xff)] + message
    script.withUnsafeBufferPointer { p in
        var i = FuzzInput(p.baseAddress!, p.count)
        Conversation(.tcp, serverPort: 445).play(&i, through: PipelineSession())
    }
}

func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8 & 0xff)] }
func le32(_ v: Int) -> [UInt8] { le16(v & 0xffff) + le16(v >> 16 & 0xffff) }
