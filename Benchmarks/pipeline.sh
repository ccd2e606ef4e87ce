#!/usr/bin/env bash
# Whole-pipeline benchmark (not a test): `sensor replay` on each benchmark capture next to
# `tcpdump -r FILE -w /dev/null` and `nfpcapd -r FILE -w DIR` (nfdump's flow builder) on the same file,
# interleaved in the same run. Prints, per capture, medians of wall and CPU time, the ratios, packets/s,
# peak RSS and the flow table's bytes per flow. The machines are small and noisy: read medians and ratios.
# The two captures (built once under .build/bench/):
#   bench.pcap  internet traffic: the largest shared capture (large-mixed-A) × 8, about 1.84 M packets
#   mix.pcap    enterprise LAN traffic: the shared lateral, beacon, SMB and HTTP captures re-timed to play
#               at once, × 60 (make-bench-mix.sh), about 650 k packets
#
# Usage: Benchmarks/pipeline.sh [RUNS] [-- extra sensor replay flags]
#   BENCH_CAPTURE=path   use this capture (or several, comma-separated) instead of the two built ones
#   BENCH_BINARY=path    measure this sensor binary instead of a release build of this tree
#   BENCH_WORKERS=1,2    one sensor row per worker count (`replay --workers N`; default 1,2)
#   BENCH_VARIANTS=1     also measure analyser families one at a time (config `dns/c2/lateral_movement:
#                        {enabled}`) and the evidence lookback ring (on, no trigger fires, so only the
#                        ring's cost counts; full frames and headers only), interleaved with tcpdump in
#                        the same runs. The benchmark capture is sparse on the packet clock (its 60 s
#                        windows hold at most ~8 MB), so there the ring's age bound limits it; the same
#                        packets retimed 2 µs apart (about 1.1 Gbit/s, `dense`) measure it where its byte
#                        bound does, as on a busy link.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-7}; shift || true
[ "${1:-}" = "--" ] && shift
extra=("$@")
shared=${SHARED:-../shared}
for t in tcpdump nfpcapd capinfos editcap mergecap; do command -v $t >/dev/null || { echo "missing $t (scripts/install-deps.sh test)" >&2; exit 1; }; done

if [ -n "${BENCH_CAPTURE:-}" ]; then
  IFS=, read -ra captures <<< "$BENCH_CAPTURE"
else
  mkdir -p .build/bench
  large=$(ls -S "$shared"/data/pcaps/large/* | head -1)
  # Eight time-shifted copies (about 1.8 M packets) so start-up does not dominate.
  bash "$shared/tools/make-bench-capture.sh" "$large" .build/bench/bench.pcap 8
  p=$shared/data/pcaps
  bash "$shared/tools/make-bench-mix.sh" .build/bench/mix.pcap 60 "$p"/lateral/* "$p"/beacon/* "$p"/benign/smb2* \
    "$p"/benign/normal_share_traversal.pcap "$p"/benign/bro.org.pcap "$p"/benign/http_* "$p"/benign/wikipedia.pcap
  captures=(.build/bench/bench.pcap .build/bench/mix.pcap)
fi
bin=${BENCH_BINARY:-.build/release/sensor}
[ -n "${BENCH_BINARY:-}" ] || swift build -c release --product sensor >&2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

measure() { # name, command...
  local name=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$tmp/t" "$@" >/dev/null 2>"$tmp/err" || { echo "$name failed:"; cat "$tmp/err"; exit 1; }
  echo "$name $(cat "$tmp/t")" >> "$tmp/results"
}
IFS=, read -ra workers <<< "${BENCH_WORKERS:-1,2}"
for capture in "${captures[@]}"; do
packets=$(capinfos -M -c "$capture" | awk -F': *' '/Number of packets/ {print $2}')
bytes=$(capinfos -M -d "$capture" | awk -F': *' '/Data size/ {print $2+0}')
cat "$capture" > /dev/null  # warm the page cache for every contender alike
: > "$tmp/results"
for i in $(seq 1 "$runs"); do
  for w in "${workers[@]}"; do
    measure "sensor-${w}w" "$bin" replay "$capture" --workers "$w" --output "file:/dev/null" --log-level error "${extra[@]}"
  done
  measure tcpdump tcpdump -Z root -r "$capture" -w /dev/null
  rm -rf "$tmp/nf"; mkdir -p "$tmp/nf"
  measure nfpcapd nfpcapd -r "$capture" -w "$tmp/nf"
done
"$bin" replay "$capture" --log-level error "${extra[@]}" | tail -1 > "$tmp/stats.json"

python3 - "$tmp/results" "$tmp/stats.json" "$packets" "$bytes" "$capture" "$runs" "${workers[@]}" <<'PY'
import json, statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
stats = json.load(open(sys.argv[2]))["spanwatch"]["stats"]
packets, nbytes, capture, runs = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
sensors = [f"sensor-{w}w" for w in sys.argv[7:]]
med = {}
for name in sensors + ["tcpdump", "nfpcapd"]:
    r = [x for x in rows if x[0] == name]
    med[name] = dict(wall=statistics.median(float(x[1]) for x in r),
                     cpu=statistics.median(float(x[2]) + float(x[3]) for x in r),
                     rss=max(int(x[4]) for x in r))
print(f"capture: {capture}: {packets} packets, {nbytes/1e6:.0f} MB, {stats['flows']['created']} flows; {runs} runs, medians")
print(f"{'':10}{'wall s':>9}{'cpu s':>9}{'Mpkt/s':>9}{'peak RSS':>11}{'wall ratio':>12}{'cpu ratio':>11}")
for name in sensors + ["tcpdump", "nfpcapd"]:
    m = med[name]
    print(f"{name:10}{m['wall']:9.3f}{m['cpu']:9.3f}{packets/m['wall']/1e6:9.2f}{m['rss']/1024:9.1f}MB"
          f"{m['wall']/med['tcpdump']['wall']:12.2f}{m['cpu']/med['tcpdump']['cpu']:11.2f}")
for name in sensors:
    print(f"{name} vs nfpcapd (wall): {med[name]['wall']/med['nfpcapd']['wall']:.2f}")
    if name != sensors[0]:
        print(f"{name} vs {sensors[0]} (wall): {med[name]['wall']/med[sensors[0]]['wall']:.2f}")
print(f"flow table: {stats['flows']['bytes_per_flow']} bytes per flow of capacity ({stats['flows']['capacity']} flows), "
      f"{stats['flows']['evicted']} evicted; events written: {stats['events']['emitted']}")
PY
echo
done
capture=${captures[0]}

[ "${BENCH_VARIANTS:-0}" = 1 ] || exit 0
# Variants: rules and configs in a scratch directory, so the repository's Rules/ stay untouched. Each is
# measured in the same interleaved runs as tcpdump and the default pipeline.
cp -r Rules "$tmp/rules"; printf 'triggers: []\n' > "$tmp/rules/evidence.yaml"
family() { printf 'dns: {enabled: %s}\nc2: {enabled: %s}\nlateral_movement: {enabled: %s}\n' "$1" "$2" "$3" > "$tmp/$4.yaml"; }
family false false false core; family false false true lateral; family true false false dns
family false true true no-dns
command -v age-keygen >/dev/null || { echo "missing age-keygen (scripts/install-deps.sh test)" >&2; exit 1; }
age-keygen -o "$tmp/key" 2>/dev/null; recipient=$(grep -o 'age1[0-9a-z]*' "$tmp/key" | head -1)
mkdir -m 700 "$tmp/evidence"
: > "$tmp/results"
base=("$bin" replay "$capture" --output file:/dev/null --log-level error --rules "$tmp/rules" "${extra[@]}")
printf 'evidence: {snaplen: 96}\n' > "$tmp/ring-96.yaml"
dense=${capture%.pcap}-dense.pcap
[ -s "$dense" ] || python3 - "$capture" "$dense" <<'PY'
import struct, sys  # the same packets 2 µs apart: pcap record headers rewritten, data copied
src, dst = open(sys.argv[1], "rb"), open(sys.argv[2] + ".tmp", "wb")
g = src.read(24); assert g[:4] == b"\xd4\xc3\xb2\xa1", "little-endian microsecond pcap expected"; dst.write(g)
us = 0
while len(h := src.read(16)) == 16:
    _, _, incl, orig = struct.unpack("<IIII", h); us += 2
    dst.write(struct.pack("<IIII", 1_700_000_000 + us // 1_000_000, us % 1_000_000, incl, orig) + src.read(incl))
dst.close()
import os; os.rename(sys.argv[2] + ".tmp", sys.argv[2])
PY
ring=(--evidence-dir "$tmp/evidence" --evidence-recipient "$recipient" --authorization BENCH --purpose benchmark)
dbase=("$bin" replay "$dense" --output file:/dev/null --log-level error --rules "$tmp/rules" "${extra[@]}")
for i in $(seq 1 "$runs"); do
  measure tcpdump tcpdump -Z root -r "$capture" -w /dev/null
  measure default "${base[@]}"
  for v in core lateral dns no-dns; do measure "$v" "${base[@]}" --config "$tmp/$v.yaml"; done
  measure ring-on "${base[@]}" "${ring[@]}"
  measure ring-96 "${base[@]}" "${ring[@]}" --config "$tmp/ring-96.yaml"
  measure dense "${dbase[@]}"
  measure dense-ring "${dbase[@]}" "${ring[@]}"
  measure dense-96 "${dbase[@]}" "${ring[@]}" --config "$tmp/ring-96.yaml"
done
python3 - "$tmp/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
names = ["tcpdump", "default", "core", "lateral", "dns", "no-dns", "ring-on", "ring-96", "dense", "dense-ring", "dense-96"]
what = {"default": "every family on", "core": "decode + flows + flow events only", "lateral": "core + lateral movement (SMB, DCE-RPC, Kerberos, reassembly, detector)",
        "dns": "core + DNS", "no-dns": "every family but DNS", "ring-on": "every family + evidence lookback ring (64 MiB / 60 s, full frames)",
        "ring-96": "the same, headers only (snaplen 96)", "dense": "every family, packets retimed 2 µs apart",
        "dense-ring": "dense + lookback ring (byte bound limits it)", "dense-96": "dense + lookback ring, headers only"}
m = {n: (statistics.median(float(x[1]) for x in rows if x[0] == n), statistics.median(float(x[2]) + float(x[3]) for x in rows if x[0] == n)) for n in names}
print(f"{'variant':10}{'wall s':>9}{'cpu s':>9}{'wall ratio':>12}{'cpu ratio':>11}  (to tcpdump; medians)")
for n in names:
    w, c = m[n]
    print(f"{n:10}{w:9.3f}{c:9.3f}{w / m['tcpdump'][0]:12.2f}{c / m['tcpdump'][1]:11.2f}  {what.get(n, '')}")
print(f"DNS adds {m['default'][1] / m['no-dns'][1] - 1:+.1%} CPU to the full pipeline, {m['dns'][1] / m['core'][1] - 1:+.1%} to the core; "
      f"the lookback ring adds {m['ring-on'][1] / m['default'][1] - 1:+.1%} ({m['ring-96'][1] / m['default'][1] - 1:+.1%} headers only); "
      f"on the dense capture {m['dense-ring'][1] / m['dense'][1] - 1:+.1%} ({m['dense-96'][1] / m['dense'][1] - 1:+.1%} headers only)")
PY
