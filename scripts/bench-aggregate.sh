#!/usr/bin/env bash
# Host-fact records per second through one `sensor aggregate`, on librdkafka's mock cluster on loopback.
# Usage: scripts/bench-aggregate.sh CAPTURE [BIN]   (BIN: folder with sensor and kafka-mock-broker; default: a
# release build in .build-release). One replay publishes the capture's host facts to a 4-partition topic;
# one aggregator then reads them all (--exit-at-end) and prints its spanwatch.stats.aggregate counters: facts
# applied and the CPU seconds of its consumer thread (polling, merging, detectors, alerts), so
# facts / cpu_seconds is what one aggregator sustains (checkpoints included unless AGGREGATE_ARGS=--no-checkpoints;
# the checkpoint transactions and their sizes are printed). The in-process replay of the same capture is timed too.
# PARTITIONS (default 4): the topic's partitions. The mock cluster keeps at most 100,000 records per partition
# (older ones are deleted as by retention): a capture that puts more on one partition needs more partitions.
set -euo pipefail
cd "$(dirname "$0")/.."
capture=${1:?capture file}
bin=${2:-}
if [ -z "$bin" ]; then
    swift build -c release --scratch-path .build-release --product sensor >/dev/null
    swift build -c release --scratch-path .build-release --product kafka-mock-broker >/dev/null
    bin=.build-release/release
fi
work=$(mktemp -d)
trap 'exec 3>&-; kill "$broker_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
mkfifo "$work/cmd"
"$bin/kafka-mock-broker" --topic "hostfacts:${PARTITIONS:-4}" <"$work/cmd" >"$work/broker.out" 2>"$work/broker.err" &
broker_pid=$!
exec 3>"$work/cmd"
for _ in $(seq 50); do [ -s "$work/broker.out" ] && break; sleep 0.1; done
boot=$(head -1 "$work/broker.out")
url="kafka://$boot/hostfacts"

t0=$(date +%s.%N)
"$bin/sensor" replay --no-flow-events --no-dns-events "$capture" >"$work/inproc.out" 2>/dev/null
t1=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "in-process replay: %.2f s\n", b - a }'
t0=$(date +%s.%N)
"$bin/sensor" replay --no-flow-events --no-dns-events --host-facts "$url?spool=$work/spool&flush_timeout=300s" "$capture" >/dev/null 2>"$work/pub.log"
t1=$(date +%s.%N)
grep -o 'output=host facts[^=]*accepted=[0-9]* delivered=[0-9]*' "$work/pub.log" || grep 'host facts' "$work/pub.log" || true
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "replay publishing host facts: %.2f s\n", b - a }'
t0=$(date +%s.%N)
# The whole process's CPU time too (librdkafka's fetch and decompression threads, the outputs).
# shellcheck disable=SC2086  # AGGREGATE_ARGS: extra options, e.g. --no-checkpoints or --checkpoint-interval 5000r
/usr/bin/time -o "$work/agg.time" -f '%U %S' \
    "$bin/sensor" aggregate --host-facts "$url" --lateness 1 --exit-at-end --log-level info ${AGGREGATE_ARGS:-} >"$work/agg.out" 2>"$work/agg.log"
process_cpu=$(awk '{ print $1 + $2 }' "$work/agg.time")
t1=$(date +%s.%N)
stats=$(grep -o '"aggregate":{[^}]*}' "$work/agg.out")
echo "$stats"
facts=$(echo "$stats" | grep -o '"facts":[0-9]*' | cut -d: -f2)
cpu=$(echo "$stats" | grep -o '"cpu_seconds":[0-9.e-]*' | cut -d: -f2)
awk -v n="$facts" -v c="$cpu" -v p="$process_cpu" -v a="$t0" -v b="$t1" 'BEGIN { printf "aggregate: %d facts, %.3f CPU s = %.0f facts/s (consumer thread); process %.2f CPU s = %.0f facts/s (wall %.2f s incl. 1 s hold and exit check)\n", n, c, n / c, p, n / p, b - a }'
grep -o 'checkpoint committed.*' "$work/agg.log" | awk '{ n++; if (match($0, /bytes=[0-9]+/)) { b = substr($0, RSTART + 6, RLENGTH - 6); t += b; if (b > m) m = b } }
    END { if (n) printf "checkpoint transactions: %d, %d bytes in all, largest %d\n", n, t, m }'
echo "alerts: in-process $(grep -c '"spanwatch.alert"' "$work/inproc.out" || true), aggregate $(grep -c '"spanwatch.alert"' "$work/agg.out" || true)"
