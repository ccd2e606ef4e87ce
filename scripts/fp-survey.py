#!/usr/bin/env python3
"""False-positive survey: run the sensor over many ordinary captures and count its alerts.

    scripts/fp-survey.py [--sensor PATH] [--rules DIR] [--jobs N] [--keep-synth DIR] [--list] [--only SETS]
    scripts/fp-survey.py --synth-only DIR

Inputs (all ordinary traffic: every alert there is a false positive unless explained):
  - ../shared/data/protocol-tests/**  (the tcpdump project's protocol test captures)
  - ../shared/data/pcaps/benign/*
  - captures synthesised here: sessions of the protocols a SPAN port carries that a port-based or
    prefix-based identifier gets wrong (CLDAP on UDP 389, NFS/portmap replies, h2c on 80, S7comm and
    MMS on TCP 102, IRC, Modbus, DNP3, databases, mail retrieval, VNC, MQTT, telnet, STUN, SSDP), TLS to
    vendor ports, short named sessions to unlisted ports, and a loopback test harness on 4445.

Prints, per input set and in total: captures, captures with at least one alert, and alerts per
rule.category per 1,000 captures; with --list, every alert (capture, rule, source, destination, message).
Exit status 0; the figures are for the README, not a pass/fail gate.
"""
import argparse
import collections
import concurrent.futures
import json
import os
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")


# ---------------------------------------------------------------------------------------------------
# Capture synthesis (pure Python: Ethernet/IPv4/TCP|UDP in a classic pcap file)

def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ip4(a):
    return bytes(int(x) for x in a.split("."))


class Pcap:
    def __init__(self, path, t0=1_700_000_000.0):
        self.f = open(path, "wb")
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        self.t = t0

    def frame(self, src, dst, proto, l4):
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0x4000, 64, proto, 0, ip4(src), ip4(dst))
        ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
        pseudo = ip4(src) + ip4(dst) + struct.pack("!BBH", 0, proto, len(l4))
        off = 16 if proto == 6 else 6
        l4 = l4[:off] + struct.pack("!H", checksum(pseudo + l4)) + l4[off + 2:]
        eth = b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + b"\x08\x00"
        pkt = eth + ip + l4
        sec = int(self.t)
        self.f.write(struct.pack("<IIII", sec, int((self.t - sec) * 1e6), len(pkt), len(pkt)) + pkt)

    def advance(self, dt):
        self.t += dt

    def udp(self, src, sport, dst, dport, payload, dt=0.01):
        self.frame(src, dst, 17, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload)
        self.advance(dt)

    def tcp_session(self, c, cport, s, sport, exchanges, dt=0.01):
        """SYN, SYN-ACK, ACK, then (from_client, bytes) exchanges, then FIN both ways."""
        seq = {True: 1000, False: 5000}

        def seg(from_client, flags, payload=b""):
            a, ap, b, bp = (c, cport, s, sport) if from_client else (s, sport, c, cport)
            ack = seq[not from_client] if flags & 0x10 else 0
            hdr = struct.pack("!HHIIBBHHH", ap, bp, seq[from_client], ack, 5 << 4, flags, 65535, 0, 0)
            self.frame(a, b, 6, hdr + payload)
            seq[from_client] += len(payload) + (1 if flags & 0x03 else 0)
            self.advance(dt)

        seg(True, 0x02)
        seg(False, 0x12)
        seg(True, 0x10)
        for from_client, data in exchanges:
            for i in range(0, len(data), 1400):
                seg(from_client, 0x18, data[i:i + 1400])
            seg(not from_client, 0x10)
        seg(True, 0x11)
        seg(False, 0x11)
        seg(True, 0x10)

    def close(self):
        self.f.close()


def ber(tag, value, long4=False):
    if long4:
        return bytes([tag, 0x84]) + struct.pack("!I", len(value)) + value
    if len(value) < 128:
        return bytes([tag, len(value)]) + value
    return bytes([tag, 0x82]) + struct.pack("!H", len(value)) + value


def synthesise(d):
    """Writes one capture per ordinary protocol session into `d`."""
    cl, srv, ext = "10.1.2.30", "10.1.2.5", "198.51.100.20"

    def cap(name, fill):
        p = Pcap(os.path.join(d, name + ".pcap"))
        fill(p)
        p.close()

    # CLDAP: the domain-controller locator (netlogon ping), request and searchResEntry/Done.
    def cldap(p):
        search = (ber(0x04, b"") + ber(0x0A, b"\0") + ber(0x0A, b"\0") + ber(0x02, b"\0") + ber(0x02, b"\0")
                  + ber(0x01, b"\0") + ber(0xA0, ber(0xA3, ber(0x04, b"DnsDomain") + ber(0x04, b"corp.example"))
                                                  + ber(0xA3, ber(0x04, b"NtVer") + ber(0x04, b"\x06\0\0\0")))
                  + ber(0x30, ber(0x04, b"Netlogon")))
        for i in range(3):
            p.udp(cl, 55000 + i, srv, 389, ber(0x30, ber(0x02, bytes([i + 1])) + ber(0x63, search, True), True))
            entry = ber(0x64, ber(0x04, b"") + ber(0x30, ber(0x30, ber(0x04, b"Netlogon") + ber(0x31, ber(0x04, b"\x17\0" + b"x" * 90)))), True)
            p.udp(srv, 389, cl, 55000 + i, ber(0x30, ber(0x02, bytes([i + 1])) + entry, True)
                  + ber(0x30, ber(0x02, bytes([i + 1])) + ber(0x65, ber(0x0A, b"\0") + ber(0x04, b"") + ber(0x04, b""), True), True))
            p.advance(30)
    cap("cldap-dc-locator", cldap)

    # NFSv3 over UDP: portmap GETPORT, then GETATTR calls and replies whose xids look like DNS flags.
    def nfs(p):
        def call(xid, prog, vers, proc, args):
            return struct.pack("!IIIIIIIIII", xid, 0, 2, prog, vers, proc, 0, 0, 0, 0) + args
        def reply(xid, body):
            return struct.pack("!IIIIII", xid, 1, 0, 0, 0, 0) + body
        p.udp(cl, 801, srv, 111, call(0x5A3B8001, 100000, 2, 3, struct.pack("!IIII", 100003, 3, 17, 0)))
        p.udp(srv, 111, cl, 801, reply(0x5A3B8001, struct.pack("!I", 2049)))
        for i in range(20):
            xid = 0x7F218000 + i
            p.udp(cl, 802, srv, 2049, call(xid, 100003, 3, 1, struct.pack("!I", 32) + b"\x01" * 32))
            p.udp(srv, 2049, cl, 802, reply(xid, struct.pack("!III", 1, 0o644, 1) + b"\0" * 72))
            p.advance(5)
    cap("nfs-udp", nfs)

    # h2c with prior knowledge on port 80 (gRPC-style internal API).
    def h2c(p):
        preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + struct.pack("!I", 0)[1:] + b"\x04\0" + struct.pack("!I", 0)
        headers = struct.pack("!I", 20)[1:] + b"\x01\x05" + struct.pack("!I", 1) + b"\x82\x86\x84\x41\x8a" + b"\x08" * 10 + b"\x00\x00\x00"
        settings = struct.pack("!I", 0)[1:] + b"\x04\0" + struct.pack("!I", 0)
        p.tcp_session(cl, 40100, srv, 80, [(True, preface + headers), (False, settings + b"\0\0\x20\x01\x04\0\0\0\x01" + b"\x88" * 32),
                                            (True, b"\0" * 9), (False, b"\0\x10\x00\x00\x01\0\0\0\x01" + b"d" * 4096)])
    cap("h2c-prior-knowledge", h2c)

    # S7comm on 102: COTP CR with TSAPs, CC, setup communication, a few read-var jobs.
    def s7(p):
        cr = bytes.fromhex("0300001611e00000000100c0010ac1020100c2020102")
        cc = bytes.fromhex("0300001611d00001000100c0010ac1020100c2020102")
        setup = bytes.fromhex("0300001902f08032010000000000080000f0000001000101e0")
        ack = bytes.fromhex("0300001b02f080320300000000000800000000f0000001000100f0")
        read = bytes.fromhex("0300001f02f080320100000001000e00000401120a10020001000184000000")
        data = bytes.fromhex("0300001a02f0803203000000010002000500000401ff040008") + b"\x11"
        ex = [(True, cr), (False, cc), (True, setup), (False, ack)] + [(True, read), (False, data)] * 30
        p.tcp_session(cl, 49800, srv, 102, ex, dt=0.5)
    cap("s7comm-102", s7)

    # MMS (IEC 61850) on 102: COTP CR, CC, ISO session CONNECT carrying the MMS initiate.
    def mms(p):
        cr = bytes.fromhex("0300001611e00000000100c1020001c2020001c0010d")
        cc = bytes.fromhex("0300001611d00001000100c1020001c2020001c0010d")
        connect = bytes.fromhex("0300002402f0800d1b0506130100160102140200023302000134020001c1060101") + b"\0" * 3
        accept = bytes.fromhex("0300001402f0800e0b0506130100160102140200") 
        p.tcp_session(cl, 49900, srv, 102, [(True, cr), (False, cc), (True, connect), (False, accept)]
                      + [(True, bytes.fromhex("0300001002f080010003000100") + b"ab"), (False, bytes.fromhex("0300001202f080010003000100") + b"cdef")] * 20, dt=0.5)
    cap("mms-102", mms)

    # IRC: a client registering on 6667 and on a network's alternate port 6697-less plain 7777.
    for port in (6667, 7777):
        def irc(p, port=port):
            p.tcp_session(cl, 41000, ext, port, [
                (False, b":irc.example.net NOTICE * :*** Looking up your hostname...\r\n"),
                (True, b"CAP LS 302\r\nNICK alice\r\nUSER alice 0 * :Alice\r\n"),
                (False, b":irc.example.net 001 alice :Welcome to the Example IRC Network alice\r\n" * 3),
                (True, b"JOIN #ops\r\n"), (False, b":alice!a@host JOIN #ops\r\n")], dt=2)
        cap("irc-%d" % port, irc)

    # Industrial and service protocols on their own ports.
    def modbus(p):
        ex = []
        for i in range(30):
            ex += [(True, struct.pack("!HHHBBHH", i, 0, 6, 1, 3, 0, 10)), (False, struct.pack("!HHHBBB", i, 0, 23, 1, 3, 20) + b"\0" * 20)]
        p.tcp_session(cl, 42000, srv, 502, ex, dt=1)
    cap("modbus-502", modbus)

    def dnp3(p):
        p.tcp_session(cl, 42100, srv, 20000, [(True, bytes.fromhex("056405c901000004a657")),
                                              (False, bytes.fromhex("0564050b04000100") + b"\x00\x00")], dt=1)
    cap("dnp3-20000", dnp3)

    def mysql(p):
        v = b"\x0a8.0.36\0" + b"\1\0\0\0" + b"abcdefgh\0" + b"\xff\xf7\x21\x02\0\xff\xc1\x15" + b"\0" * 10 + b"ijklmnopqrst\0"
        greet = struct.pack("<I", len(v))[:3] + b"\0" + v
        login = struct.pack("<I", 40)[:3] + b"\1" + b"\x8d\xa6\x0f\0" + b"\0" * 36
        p.tcp_session(cl, 43000, srv, 3306, [(False, greet), (True, login), (False, b"\7\0\0\2\0\0\0\2\0\0\0")], dt=0.1)
    cap("mysql-3306", mysql)

    def postgres(p):
        body = struct.pack("!I", 196608) + b"user\0app\0database\0app\0\0"
        p.tcp_session(cl, 43100, srv, 5432, [(True, struct.pack("!I", 4 + len(body)) + body), (False, b"R\0\0\0\x08\0\0\0\0Z\0\0\0\x05I")], dt=0.1)
    cap("postgresql-5432", postgres)

    def redis(p):
        p.tcp_session(cl, 43200, srv, 6379, [(True, b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n"), (False, b"$5\r\nvalue\r\n")] * 5, dt=0.1)
    cap("redis-6379", redis)

    def vnc(p):
        p.tcp_session(cl, 43300, srv, 5900, [(False, b"RFB 003.008\n"), (True, b"RFB 003.008\n"), (False, b"\x01\x02"), (True, b"\x02")], dt=0.1)
    cap("vnc-5900", vnc)

    def pop3(p):
        p.tcp_session(cl, 43400, srv, 110, [(False, b"+OK Dovecot ready.\r\n"), (True, b"CAPA\r\n"), (False, b"+OK\r\nUSER\r\n.\r\n")], dt=0.1)
    cap("pop3-110", pop3)

    def imap(p):
        p.tcp_session(cl, 43500, srv, 143, [(False, b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n"), (True, b"a1 CAPABILITY\r\n"),
                                            (False, b"* CAPABILITY IMAP4rev1\r\na1 OK done\r\n")], dt=0.1)
    cap("imap-143", imap)

    def mqtt(p):
        connect = b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04abcd"
        p.tcp_session(cl, 43600, srv, 1883, [(True, connect), (False, b"\x20\x02\x00\x00"), (True, b"\x30\x07\x00\x03a/bxy")], dt=0.1)
    cap("mqtt-1883", mqtt)

    def telnet(p):
        p.tcp_session(cl, 43700, srv, 23, [(False, b"\xff\xfd\x18\xff\xfd\x20\xff\xfd\x23\xff\xfd\x27"), (True, b"\xff\xfc\x18\xff\xfc\x20"),
                                           (False, b"login: "), (True, b"admin\r\n")], dt=0.3)
    cap("telnet-23", telnet)

    def stun(p):
        for i in range(5):
            tx = bytes([i]) * 12
            p.udp(cl, 50000, "192.0.2.80", 3478, b"\x00\x01\x00\x00\x21\x12\xa4\x42" + tx)
            p.udp("192.0.2.80", 3478, cl, 50000, b"\x01\x01\x00\x0c\x21\x12\xa4\x42" + tx + b"\x00\x20\x00\x08\x00\x01\xe1\x12\x5e\x12\xa4\x43")
            p.advance(10)
    cap("stun-3478", stun)

    def ssdp(p):
        p.udp(cl, 50100, "239.255.255.250", 1900, b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n")
        p.udp(srv, 1900, cl, 50100, b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\nST: upnp:rootdevice\r\nLOCATION: http://10.1.2.5:49152/desc.xml\r\n\r\n")
    cap("ssdp-1900", ssdp)

    # TLS with a server name to vendor/alternate ports and to an unlisted port (one short session each).
    def hello(sni):
        ext_sni = struct.pack("!HHHBH", 0, len(sni) + 5, len(sni) + 3, 0, len(sni)) + sni
        body = b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x00\x04\x13\x01\x13\x02" + b"\x01\x00" + struct.pack("!H", len(ext_sni)) + ext_sni
        hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
        return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs
    server_hello = b"\x16\x03\x03\x00\x2a\x02\x00\x00\x26\x03\x03" + b"\x22" * 32 + b"\x00\x13\x01\x00" + b"\x17\x03\x03\x00\x20" + b"\x33" * 32
    for port, sni in ((5223, b"courier.push.apple.com"), (9443, b"portal.example.com"), (4433, b"api.example.net"), (8001, b"app.example.net")):
        def tls(p, port=port, sni=sni):
            p.tcp_session(cl, 44000, ext, port, [(True, hello(sni)), (False, server_hello), (True, b"\x17\x03\x03\x00\x40" + b"\x44" * 64),
                                                 (False, b"\x17\x03\x03\x01\x00" + b"\x55" * 256)], dt=0.05)
        cap("tls-%d-named" % port, tls)

    # HTTP with a host name to an unlisted port (an internal app server), one short session.
    def http_named(p):
        p.tcp_session(cl, 44100, srv, 8001, [(True, b"GET /status HTTP/1.1\r\nHost: app.corp.example:8001\r\nUser-Agent: curl/8.5\r\n\r\n"),
                                             (False, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")], dt=0.05)
    cap("http-8001-named", http_named)

    # A loopback test harness on 4445 (Metasploit's default port + 1): long, large, repeated.
    def loopback(p):
        for i in range(12):
            p.tcp_session("127.0.0.1", 45000 + i, "127.0.0.1", 4445, [(True, b"\x00" * 4000), (False, b"\x01" * 60000)], dt=5)
    cap("loopback-harness-4445", loopback)


# ---------------------------------------------------------------------------------------------------
# Survey

def captures(path):
    out = []
    for dirpath, _, files in os.walk(path):
        for f in files:
            if f.endswith((".pcap", ".pcapng", ".cap")) or ".pcap" in f:
                out.append(os.path.join(dirpath, f))
    return sorted(out)


def replay(args, path):
    cmd = [args.sensor, "replay", "--rules", args.rules, "--no-flow-events", "--no-dns-events", "--log-level", "error", path]
    r = subprocess.run(cmd, capture_output=True, timeout=600)
    alerts = []
    for line in r.stdout.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        rule = e.get("rule") or {}
        if not rule.get("category"):
            continue
        alerts.append({"category": rule["category"], "rule": rule.get("id", ""), "source": (e.get("source") or {}).get("ip"),
                       "destination": "%s:%s" % ((e.get("destination") or {}).get("ip"), (e.get("destination") or {}).get("port")),
                       "message": e.get("message", "")})
    return path, r.returncode, alerts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sensor", default=os.path.join(ROOT, ".build", "debug", "sensor"))
    ap.add_argument("--rules", default=os.path.join(ROOT, "Rules"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--keep-synth", help="write the synthesised captures here (kept)")
    ap.add_argument("--list", action="store_true", help="print every alert")
    ap.add_argument("--only", help="comma-separated input sets to run (protocol-tests, benign, synthesised)")
    ap.add_argument("--synth-only", metavar="DIR", help="only write the synthesised captures into DIR (the tests use them)")
    args = ap.parse_args()
    if args.synth_only:
        os.makedirs(args.synth_only, exist_ok=True)
        synthesise(args.synth_only)
        return

    synth = args.keep_synth or tempfile.mkdtemp(prefix="fp-survey-")
    os.makedirs(synth, exist_ok=True)
    synthesise(synth)
    sets = [("protocol-tests", captures(os.path.join(SHARED, "protocol-tests"))),
            ("benign", captures(os.path.join(SHARED, "pcaps", "benign"))),
            ("synthesised", captures(synth))]
    if args.only:
        sets = [x for x in sets if x[0] in args.only.split(",")]
    total = collections.Counter()
    total_caps = total_alerting = 0
    failures = []
    print("| input | captures | captures with an alert | alerts per 1,000 captures, by rule.category |")
    print("|---|---:|---:|---|")
    listing = []
    for name, paths in sets:
        per = collections.Counter()
        alerting = 0
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as ex:
            for path, rc, alerts in ex.map(lambda p: replay(args, p), paths):
                if rc not in (0, 3):
                    failures.append((path, rc))
                if alerts:
                    alerting += 1
                for a in alerts:
                    per[a["category"]] += 1
                    listing.append((os.path.relpath(path, SHARED) if path.startswith(SHARED) else os.path.basename(path), a))
        n = len(paths)
        rates = ", ".join("%s %.1f" % (c, 1000.0 * k / n) for c, k in sorted(per.items())) or "none"
        print("| %s | %d | %d | %s |" % (name, n, alerting, rates))
        total.update(per)
        total_caps += n
        total_alerting += alerting
    rates = ", ".join("%s %.1f" % (c, 1000.0 * k / total_caps) for c, k in sorted(total.items())) or "none"
    print("| all | %d | %d | %s |" % (total_caps, total_alerting, rates))
    if args.list:
        print()
        for path, a in listing:
            print("%s\t%s\t%s -> %s\t%s" % (path, a["rule"], a["source"], a["destination"], a["message"]))
    for path, rc in failures:
        print("replay failed (%d): %s" % (rc, path), file=sys.stderr)
    if not args.keep_synth:
        for f in os.listdir(synth):
            os.remove(os.path.join(synth, f))
        os.rmdir(synth)


if __name__ == "__main__":
    main()
