#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, extracted from the shared captures (see Fuzz/README.md).

usage: fuzz-seeds.py SHARED_DATA_DIR OUT_DIR

Each target reads its own input layout (Fuzz/Targets/*.swift); this turns real traffic into those layouts:
whole small capture files (pcap, pipeline), single frames (decoder), application payloads by port for the
direct parser modes, and conversations (Fuzz/Harness/Conversation.swift's record script) for the stream
modes. Only the standard library: it runs wherever CI runs.
"""
import hashlib
import os
import struct
import sys

MAX_FILE = 16 << 10      # the fuzz runs' -max_len
PER_TARGET = 150         # seeds per target and kind: enough variety, quick to load


def records(path):
    """(link type, frame) of every packet in a pcap or pcapng file; stops quietly at damage."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = "<" if magic[0] in (0xd4, 0x4d) else ">"
        link = struct.unpack(e + "I", data[20:24])[0]
        off = 24
        while off + 16 <= len(data):
            incl = struct.unpack(e + "I", data[off + 8:off + 12])[0]
            if incl > 262144 or off + 16 + incl > len(data):
                return
            yield link, data[off + 16:off + 16 + incl]
            off += 16 + incl
    elif magic == b"\x0a\x0d\x0d\x0a":
        e = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        links, off = [], 0
        while off + 12 <= len(data):
            btype, blen = struct.unpack(e + "II", data[off:off + 8])
            if blen < 12 or off + blen > len(data):
                return
            body = data[off + 8:off + blen - 4]
            if btype == 0x0a0d0d0a:
                links = []
            elif btype == 1 and len(body) >= 2:
                links.append(struct.unpack(e + "H", body[:2])[0])
            elif btype == 6 and len(body) >= 20:
                iface, _, _, caplen = struct.unpack(e + "IIII", body[:16])
                if iface < len(links):
                    yield links[iface], body[20:20 + caplen]
            off += blen


def transport(link, frame):
    """(proto, src, sport, dst, dport, tcp flags, seq, payload) or None."""
    if link == 1:
        off, etype = 12, None
        while off + 2 <= len(frame):
            etype = struct.unpack(">H", frame[off:off + 2])[0]
            if etype in (0x8100, 0x88a8):
                off += 4
                continue
            off += 2
            break
        ip = frame[off:]
    elif link == 113:
        ip = frame[16:]
    elif link == 276:
        ip = frame[20:]
    elif link in (0, 108):
        ip = frame[4:]
    elif link in (12, 14, 101, 228, 229):
        ip = frame
    else:
        return None
    if len(ip) < 20:
        return None
    if ip[0] >> 4 == 4:
        ihl = (ip[0] & 15) * 4
        total = struct.unpack(">H", ip[2:4])[0]
        if struct.unpack(">H", ip[6:8])[0] & 0x1fff:
            return None
        proto, src, dst, l4 = ip[9], ip[12:16], ip[16:20], ip[ihl:max(ihl, min(total, len(ip)))]
    elif ip[0] >> 4 == 6 and len(ip) >= 40:
        proto, src, dst, l4 = ip[6], ip[8:24], ip[24:40], ip[40:40 + struct.unpack(">H", ip[4:6])[0]]
    else:
        return None
    if proto == 6 and len(l4) >= 20:
        sport, dport, seq = struct.unpack(">HHI", l4[:8])
        return 6, src, sport, dst, dport, l4[13], seq, l4[(l4[12] >> 4) * 4:]
    if proto == 17 and len(l4) >= 8:
        sport, dport = struct.unpack(">HH", l4[:4])
        return 17, src, sport, dst, dport, 0, 0, l4[8:]
    return None


class Corpus:
    def __init__(self, out):
        self.out, self.counts = out, {}

    def add(self, target, data, kind=""):
        key = target + kind
        if not data or len(data) > MAX_FILE or self.counts.get(key, 0) >= PER_TARGET:
            return
        d = os.path.join(self.out, target)
        os.makedirs(d, exist_ok=True)
        name = os.path.join(d, hashlib.sha1(data).hexdigest())
        if not os.path.exists(name):
            with open(name, "wb") as f:
                f.write(data)
            self.counts[key] = self.counts.get(key, 0) + 1


def script(messages):
    """Conversation records: header 0 (IPv4, handshake, FIN), then each message in order, 2-byte lengths."""
    out = bytearray([0])
    for from_client, payload in messages:
        payload = payload[:65535]
        out += bytes([0x80 | (0 if from_client else 1)]) + struct.pack(">H", len(payload)) + payload
        if len(out) > MAX_FILE:
            break
    return bytes(out)


def placed(conv):
    """The conversation plus one more client byte placed by a 32-bit offset (zero: in order), so that one
    mutation of the offset reaches any point of sequence space (wrap-around, the 2^31 distance)."""
    return conv + bytes([0x06, 1]) + b"\x00\x00\x00\x00" + b"A"


def varint2(v):
    return bytes([0x40 | (v >> 8), v & 0xff])


def main():
    shared, out = sys.argv[1], sys.argv[2]
    c = Corpus(out)
    paths = []
    for base in ("pcaps", "protocol-tests"):
        for dirpath, _, files in os.walk(os.path.join(shared, base)):
            paths += [os.path.join(dirpath, f) for f in files if f.endswith((".pcap", ".pcapng"))]
    paths.sort()
    decoder_links = {1: 0, 0: 1, 12: 2, 14: 3, 108: 4, 113: 5, 101: 6, 228: 7, 229: 8, 276: 9}
    # Stream modes want whole conversations: (file, proto, client, cport, server, sport) -> messages.
    flows = {}
    for path in paths:
        size = os.path.getsize(path)
        if size <= MAX_FILE - 1:
            with open(path, "rb") as f:
                whole = f.read()
            c.add("pcap", whole)
            c.add("pipeline", b"\x00" + whole)
        for n, (link, frame) in enumerate(records(path)):
            if n > 20000:
                break
            if link in decoder_links:
                c.add("decoder", bytes([decoder_links[link]]) + frame, kind=str(link))
            t = transport(link, frame)
            if t is None:
                continue
            proto, src, sport, dst, dport, flags, _, payload = t
            if proto == 6 and flags & 0x12 == 0x02:  # a SYN names the client
                flows.setdefault((path, proto, src, sport, dst, dport), [])
            key = (path, proto, src, sport, dst, dport)
            rkey = (path, proto, dst, dport, src, sport)
            if key not in flows and rkey not in flows:
                # No SYN seen: the lower port is taken as the server's.
                flows[key if dport < sport else rkey] = []
                key = key if dport < sport else rkey
            if not payload:
                continue
            if key in flows:
                flows[key].append((True, payload))
            else:
                flows[rkey].append((False, payload))
    quic_hellos = []
    for (path, proto, _, cport, _, sport), messages in flows.items():
        if not messages:
            continue
        first_client = next((p for fc, p in messages if fc), b"")
        port = sport
        conv = script(messages[:64])
        direct = [p for _, p in messages[:16]]
        c.add("classifier", b"\x00" + struct.pack(">HH", cport, sport) + first_client)
        c.add("classifier", (b"\x01" if proto == 6 else b"\x02") + struct.pack(">H", port) + conv, kind="conv")
        if proto == 6:
            c.add("classifier", b"\x01" + struct.pack(">H", port) + placed(conv), kind="placed")
        if port in (53, 5353, 5355, 8053):
            for p in direct:
                c.add("dns", b"\x00" + (p[2:] if proto == 6 else p))
            c.add("dns", (b"\x02" if proto == 6 else b"\x01") + conv, kind="conv")
        if proto == 6 and any(p[:1] == b"\x16" for _, p in messages):
            for fc, p in messages[:8]:
                if p[:1] == b"\x16":
                    c.add("tls", (b"\x00" if fc else b"\x01") + p)
                    if fc and len(p) > 9 and p[5] == 1:
                        quic_hellos.append(p[5:])
            c.add("tls", b"\x02" + conv, kind="conv")
        if proto == 17 and port == 443:
            for p in direct:
                c.add("quic", b"\x00" + p)
            c.add("quic", b"\x02" + conv, kind="conv")
        if proto == 6 and any(p[:4] in (b"GET ", b"POST", b"HTTP", b"HEAD", b"PUT ", b"CONN") for _, p in messages):
            for fc, p in messages[:8]:
                c.add("http", (b"\x00" if fc else b"\x01") + p)
            c.add("http", b"\x02" + conv, kind="conv")
        if proto == 6 and port in (445, 139):
            c.add("smb", (b"\x00" if port == 445 else b"\x01") + conv)
            c.add("smb", (b"\x00" if port == 445 else b"\x01") + placed(conv), kind="placed")
        blobs = [p[p.find(b"NTLMSSP\x00"):] for _, p in messages if b"NTLMSSP\x00" in p]
        for b in blobs:
            c.add("ntlm", b"\x00" + b)
            c.add("ntlm", b"\x01" + b, kind="smb")
        if proto == 6 and any(p[:1] == b"\x05" and len(p) > 2 and p[2] in (0, 2, 11, 12) for _, p in messages):
            for _, p in messages[:16]:
                if p[:1] == b"\x05":
                    c.add("dcerpc", b"\x00" + p)
            c.add("dcerpc", b"\x01" + conv, kind="conv")
        if port == 88:
            for p in direct:
                c.add("kerberos", b"\x00" + (p[4:] if proto == 6 else p))
            c.add("kerberos", (b"\x02" if proto == 6 else b"\x01") + conv, kind="conv")
    # QUIC Initials sealed by the harness: TLS ClientHellos as CRYPTO frames (mode 1, v1, 8-byte DCID).
    for hello in quic_hellos[:100]:
        frames = b"\x06" + varint2(0) + varint2(len(hello)) + hello
        c.add("quic", b"\x01\x00\x08" + bytes(range(8)) + struct.pack(">H", len(frames)) + frames, kind="sealed")
    # Text inputs: the repository's own files.
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    examples = os.path.join(repo, "Rules", "indicators", "examples")
    for dirpath, _, files in os.walk(examples):
        for f in sorted(files):
            ext = {".txt": 0, ".list": 3, ".csv": 1, ".json": 2}.get(os.path.splitext(f)[1])
            if ext is not None:
                c.add("intel", bytes([ext]) + open(os.path.join(dirpath, f), "rb").read())
    for i, name in enumerate(["dns-tunneling.yaml", "lateral-movement.yaml", "evidence.yaml", "c2.yaml", "beaconing.yaml"]):
        p = os.path.join(repo, "Rules", name)
        if os.path.exists(p):
            c.add("rules", bytes([i]) + open(p, "rb").read())
    for p in (os.path.join(repo, "Deploy", "sensor.example.yaml"),):
        if os.path.exists(p):
            c.add("config", b"\x00" + open(p, "rb").read())
    for t in sorted(set(k for k in os.listdir(out))):
        print(f"fuzz seeds: {t}: {len(os.listdir(os.path.join(out, t)))}", file=sys.stderr)


if __name__ == "__main__":
    main()
