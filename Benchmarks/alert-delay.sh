#!/usr/bin/env bash
# Alert delay of the cross-flow detectors, live: the in-process host stage against `--host-facts kafka://…`
# plus `sensor aggregate`, on the same traffic.
#
# On a veth pair inside a private network namespace (nothing leaves it), tcpreplay plays captures that raise
# lateral-movement, DNS-tunnelling and non-standard-port alerts at their own pace (MULTIPLIER) into
# `sensor run --workers 2`: once with its in-process stage, once publishing its host facts to the mock
# Kafka cluster (kafka-mock-broker, 4 partitions, in the namespace) with `sensor aggregate` reading them.
# Live, packet time is wall time: an alert's @timestamp is the packet time of the fact that raised it (the
# SMB/DCE-RPC/Kerberos fact, the DNS message, the flow's last packet), and `event.created` the wall time it was
# emitted, so delay = event.created − @timestamp. "To output" is the time its line reached our reader of the
# process's stdout (the outputs are flushed once a second) − @timestamp. Alerts emitted after the sensor was
# told to stop (detectors concluding at shutdown) are counted apart, not in the delays. Paths alternate,
# ROUNDS times each.
#
# Usage: Benchmarks/alert-delay.sh [BIN]   (BIN: folder with sensor and kafka-mock-broker; default .build/release)
# Environment: ROUNDS (default 2), MULTIPLIER (tcpreplay --multiplier, default 1), WORKERS (default 2),
#   LATENESS (aggregate --lateness, default 10: its gathering hold passes before traffic starts), DATA
#   (default ../shared/data/pcaps), KEEP=1 keeps the work folder.
# Needs root, iproute2, tcpreplay, python3. Takes about (captures' length / MULTIPLIER + 30 s) × 2 × ROUNDS.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-.build/release}")
rounds=${ROUNDS:-2}
multiplier=${MULTIPLIER:-1}
workers=${WORKERS:-2}
lateness=${LATENESS:-10}
data=$(realpath "${DATA:-../shared/data/pcaps}")
[ "$(id -u)" -eq 0 ] || { echo "needs root (network namespace)" >&2; exit 2; }
for t in ip tcpreplay python3; do command -v "$t" >/dev/null || { echo "$t not installed" >&2; exit 2; }; done
[ -x "$bin/sensor" ] && [ -x "$bin/kafka-mock-broker" ] || { echo "$bin: needs sensor and kafka-mock-broker" >&2; exit 2; }
captures=(lateral/LM_psexec_smb_dcerpc_epm_svcctl.pcapng lateral/20171220_smb_at_schedule.pcap
          lateral/Discovery_dcerp_srvsvc_NetShareEnum.pcapng lateral/LM_WMI_ProcessCallCreate.pcapng
          lateral/LM_dcom_mmc20.application_dcerpc.pcapng lateral/CA_kerbrute_passwordspray_kerberos_AS-REQ.pcapng
          lateral/LM_smbexec_smb_dcerpc_svcctl_epm.pcapng
          dns-tunnel/dnscat2.pcap dns-tunnel/iodine.pcap dns-tunnel/dns2tcp.pcap dns-tunnel/dnsextrator.pcap
          c2-nonstd-port/http-on-port-5432.pcap c2-nonstd-port/http-single-conn-22.pcap
          c2-nonstd-port/http_large_req_8001.pcap c2-nonstd-port/http_on_sip_port.pcap)
files=()
for c in "${captures[@]}"; do [ -f "$data/$c" ] || { echo "missing $data/$c" >&2; exit 2; }; files+=("$data/$c"); done

ns=sensor-delay-$$
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
    [ "${KEEP:-0}" = 1 ] && echo "work folder: $work" || rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns"
ip netns exec "$ns" sh -ec '
  ip link set lo up
  ip link add vrep type veth peer name vcap
  sysctl -qw net.ipv6.conf.all.disable_ipv6=1; sysctl -qw net.ipv6.conf.default.disable_ipv6=1
  ip link set vrep up; ip link set vcap up'
chmod 0755 "$work"

# Every line of stdin, prefixed with the wall time it arrived (s since the epoch) and a tab.
stamp() { python3 -u -c '
import sys, time
out = open(sys.argv[1], "w")
for line in iter(sys.stdin.buffer.readline, b""):
    out.write("%.6f\t%s" % (time.time(), line.decode("utf-8", "replace")))
    out.flush()' "$1"; }

wait_for() {  # FILE TEXT SECONDS
    for _ in $(seq $(( $3 * 10 ))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    echo "timed out waiting for '$2' in $1:" >&2; tail -5 "$1" >&2; return 1
}

# The broker lives as long as the script; one topic (and checkpoint topic) per round.
topics=()
for r in $(seq "$rounds"); do topics+=(--topic "hf$r:4" --topic "hf$r-checkpoints:4"); done
mkfifo "$work/broker.cmd"
ip netns exec "$ns" "$bin/kafka-mock-broker" "${topics[@]}" <"$work/broker.cmd" >"$work/broker.out" 2>"$work/broker.err" &
pids+=($!)
exec 3>"$work/broker.cmd"
wait_for "$work/broker.out" . 20
boot=$(head -1 "$work/broker.out")

sensor_args=(run --interface vcap --workers "$workers" --allow-root --metrics off --stats-interval 3600
             --no-flow-events --no-dns-events --log-level info)

# run PATH ROUND: one live run; writes $work/PATH-ROUND.{sensor.alerts,alerts,stop,sensor.log,agg.log}
# (stdout through a FIFO to the time stamper, so $! is the sensor's own pid: `ip netns exec` execs it).
run() {
    local path=$1 r=$2 out=$work/$1-$2
    local agg="" aggstamp="" extra=()
    if [ "$path" = kafka ]; then
        local url="kafka://$boot/hf$r"
        mkdir -m 0700 "$out.spool"
        mkfifo "$out.agg.fifo"
        stamp "$out.alerts" <"$out.agg.fifo" &
        aggstamp=$!
        ip netns exec "$ns" "$bin/sensor" aggregate --host-facts "$url" --group "delay$r" --lateness "$lateness" --log-level info \
            >"$out.agg.fifo" 2>"$out.agg.log" &
        agg=$!
        pids+=("$agg")
        wait_for "$out.agg.log" "partitions assigned" 60
        extra=(--host-facts "$url?spool=$out.spool" --sensor-name tap)
    fi
    mkfifo "$out.sensor.fifo"
    stamp "$out.sensor.alerts" <"$out.sensor.fifo" &
    local sensorstamp=$!
    ip netns exec "$ns" "$bin/sensor" "${sensor_args[@]}" "${extra[@]}" >"$out.sensor.fifo" 2>"$out.sensor.log" &
    local sensor=$!
    pids+=("$sensor")
    wait_for "$out.sensor.log" "capture started" 60
    # The aggregator's partitions gather their producers for --lateness after the first record: traffic
    # starts once that hold has passed (the in-process run waits as long, for the same conditions).
    sleep $(( lateness + 3 ))
    ip netns exec "$ns" tcpreplay -q -i vrep --multiplier "$multiplier" "${files[@]}" >"$out.tcpreplay" 2>&1
    # Closed TCP flows end 5 s of packet time after their last packet (flows.tcp_closed_timeout): their
    # alerts come out before the stop.
    sleep 12
    python3 -c 'import time; print("%.6f" % time.time())' >"$out.stop"
    kill -TERM "$sensor"
    wait "$sensor" || true
    wait "$sensorstamp" || true
    if [ -n "$agg" ]; then
        # The sensor's end records conclude the partitions; then the aggregator stops.
        sleep 3
        kill -TERM "$agg"
        wait "$agg" || true
        wait "$aggstamp" || true
    fi
}

echo "captures: ${#files[@]} files, $(capinfos -c -M "${files[@]}" 2>/dev/null | awk -F: '/Number of packets/ { gsub(/ /, "", $2); n += $2 } END { print n }') packets, replayed at x$multiplier; workers $workers; rounds $rounds; $(nproc) CPUs, load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$rounds"); do
    run inproc "$r"
    run kafka "$r"
done
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$work" "$rounds" <<'EOF'
import json, re, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
cats = {"beaconing", "lateral_movement", "dns_tunneling", "nonstandard_port_c2"}

def seconds(ts):
    # 2026-12-07T15:30:53.123456Z (fraction of 0 to 9 digits)
    m = re.match(r"(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)(?:\.(\d+))?Z$", ts)
    import calendar
    y, mo, d, h, mi, s, frac = m.groups()
    whole = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s)))
    return whole + (int(frac) / 10 ** len(frac) if frac else 0)

def alerts(path, stop):
    live, late = [], 0
    for line in open(path):
        arrived, _, text = line.partition("\t")
        o = json.loads(text)
        rule = o.get("rule") or {}
        if rule.get("category") not in cats:
            continue
        if "created" not in o["event"]:
            sys.exit("%s: alerts without event.created (a sensor build before it)" % path)
        t, created = seconds(o["@timestamp"]), seconds(o["event"]["created"])
        if created >= stop:
            late += 1
            continue
        ident = "%s %s %s" % (rule["id"], o.get("source", {}).get("ip"), o.get("destination", {}).get("ip"))
        live.append((ident, created - t, float(arrived) - t, rule["category"], t))
    return live, late

def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]

def row(name, xs):
    if not xs:
        return "%-34s %5d" % (name, 0)
    return "%-34s %5d %9.3f %9.3f %9.3f" % (name, len(xs), statistics.median(xs), pct(xs, 0.95), max(xs))

paths = {"inproc": [], "kafka": []}
after = {"inproc": 0, "kafka": 0}
for p in paths:
    for r in range(1, rounds + 1):
        stop = float(open("%s/%s-%d.stop" % (work, p, r)).read())
        src = "%s/%s-%d.%s" % (work, p, r, "sensor.alerts" if p == "inproc" else "alerts")
        live, late = alerts(src, stop)
        # An identity raised twice (two tunnels between one pair) is paired by order of occurrence.
        seen, run = {}, {}
        for i, d, o, c, _ in sorted(live, key=lambda a: a[4]):
            seen[i] = seen.get(i, 0) + 1
            run["%s #%d" % (i, seen[i])] = (d, o, c)
        paths[p].append(run)
        after[p] += late
        if p == "kafka":
            local, _ = alerts("%s/%s-%d.sensor.alerts" % (work, p, r), float("inf"))
            assert not local, "the publishing sensor raised cross-flow alerts itself"
print("%-34s %5s %9s %9s %9s" % ("seconds (packet → …)", "n", "median", "p95", "max"))
for p, label in (("inproc", "in-process stage"), ("kafka", "Kafka + aggregate")):
    pooled = [v for run in paths[p] for v in run.values()]
    print(row(label + ": emitted", [d for d, _, _ in pooled]))
    for c in sorted(cats):
        if any(v[2] == c for v in pooled):
            print(row("  " + c, [d for d, _, k in pooled if k == c]))
    print(row(label + ": to output", [o for _, o, _ in pooled]))
    print("%-34s %5d" % (label + ": after stop (excluded)", after[p]))
# Paired: the same alert (rule, source, destination) in the same round of both paths.
diff = []
for r in range(rounds):
    a, b = paths["inproc"][r], paths["kafka"][r]
    diff += [(b[i][0] - a[i][0], a[i][2]) for i in a.keys() & b.keys()]
print(row("Kafka − in-process, same alert", [d for d, _ in diff]))
for c in sorted(cats):
    if any(k == c for _, k in diff):
        print(row("  " + c, [d for d, k in diff if k == c]))
for r in range(rounds):
    a, b = paths["inproc"][r], paths["kafka"][r]
    if a.keys() != b.keys():
        print("round %d: only in-process %s; only Kafka %s" % (r + 1, sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())))
EOF
