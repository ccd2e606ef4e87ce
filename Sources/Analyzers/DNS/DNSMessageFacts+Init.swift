import PacketCore

extension DNSMessageFacts {
    /// For consumers that rebuild the facts from a copy (the host-sharded detector stage carries DNS
    /// messages from the workers to the tunnelling detector as records).
    public init(at timestamp: Timestamp, client: IPAddress, server: IPAddress, clientPort: UInt16, serverPort: UInt16,
                ipProtocol: UInt8, appProtocol: AppProtocol, isResponse: Bool, id: UInt16, queryType: UInt16,
                responseCode: UInt16, name: UnsafeRawBufferPointer, lowercaseName: UnsafeRawBufferPointer,
                registeredDomainStart: Int, publicSuffixStart: Int, messageLength: Int, answerCount: Int,
                answerDataBytes: Int, answerPayload: DNSAnswerPayload = DNSAnswerPayload()) {
        self.timestamp = timestamp
        self.client = client
        self.server = server
        self.clientPort = clientPort
        self.serverPort = serverPort
        self.ipProtocol = ipProtocol
        self.appProtocol = appProtocol
        self.isResponse = isResponse
        self.id = id
        self.queryType = queryType
        self.responseCode = responseCode
        self.name = name
        self.lowercaseName = lowercaseName
        self.registeredDomainStart = registeredDomainStart
        self.publicSuffixStart = publicSuffixStart
        self.messageLength = messageLength
        self.answerCount = answerCount
        self.answerDataBytes = answerDataBytes
        self.answerPayload = answerPayload
    }
}
