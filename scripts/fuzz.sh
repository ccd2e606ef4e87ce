#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser and of the whole pipeline with libFuzzer (shipped with the Swift
# toolchain). See Fuzz/README.md.
#
#   scripts/fuzz.sh TARGET SECONDS   build if needed, then fuzz TARGET over its corpus for SECONDS
#   scripts/fuzz.sh all SECONDS      every target in turn, SECONDS each; fails on the first crash
#   scripts/fuzz.sh ci SECONDS       what scripts/test.sh runs: every target over its committed corpus only,
#                                    one line each, then --self-test; non-zero if any crashed (the input
#                                    is kept) or the self-test failed
#   scripts/fuzz.sh build            build only
#   scripts/fuzz.sh seeds            (re)extract the seed corpora from ../shared/data
#   scripts/fuzz.sh list             the target names
#   scripts/fuzz.sh repro TARGET FILE  run one input (a crash found earlier) through TARGET once
#   scripts/fuzz.sh --self-test      plant an Int32 negation overflow in a copy of the DNS parser and
#                                    require the dns target to find it within FUZZ_SELF_TEST_SECONDS (60)
#
# Only our modules are compiled with coverage (and AddressSanitizer): swift-nio, swift-crypto, Yams… are
# linked from the ordinary debug build in .build, whose objects this script reuses (it runs `swift build`
# first when they are missing). Output goes to .build/fuzz; corpora grow in .build/fuzz/corpus/TARGET
# (seeded from Fuzz/corpus/TARGET, committed, and ../shared/data); crashes land in Fuzz/crashes-found/TARGET.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# libFuzzer prints the stack of a trap itself; Swift's backtracer, reading memory under AddressSanitizer,
# only adds a spurious ASan report after it.
export SWIFT_BACKTRACE=${SWIFT_BACKTRACE:-enable=no}
out=${FUZZ_BUILD_DIR:-$root/.build/fuzz}
targets=(pcap decoder dns tls quic http smb ntlm dcerpc kerberos classifier intel config rules pipeline x509 report zeek hostfacts checkpoint)
# Our modules, in dependency order (Package.swift).
modules=(PacketCore Events Analyzers ConfigKit Detectors HostStage Capture Outputs Enrichment ThreatIntel Evidence SensorRuntime Report)

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

# The ordinary debug build: its third-party modules and objects, and the C module flags SwiftPM used.
debug_build() {
    bin=$(swift build --show-bin-path)
    [ -n "${FUZZ_MODULES_ONLY:-}" ] && return 0
    if [ ! -f "$bin/sensor.product/Objects.LinkFileList" ] || [ ! -f "$bin/Modules/Crypto.swiftmodule" ]; then
        echo "fuzz: building the debug build the fuzz binary links against" >&2
        swift build --product sensor 2>&1 | grep -Ev '^\[[0-9]+/[0-9]+\]' || true
    fi
    [ -f "$bin/sensor.product/Objects.LinkFileList" ] || { echo "fuzz: no debug build in $bin" >&2; exit 1; }
}

# Flags every module compile needs: SwiftPM's own for SensorRuntime (which sees every C module).
compile_flags() {
    python3 - "$root/.build/debug.yaml" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
key = '"C.SensorRuntime-x86_64-unknown-linux-gnu-debug.module"'
i = text.index(key)
j = text.index("args:", i)
args = json.loads(text[j + 5:text.index("\n", j)])
keep, k = [], 0
while k < len(args):
    a = args[k]
    if a in ("-Xcc", "-I", "-package-name", "-swift-version"):
        keep += [a, args[k + 1]]; k += 2; continue
    if a.startswith("-I") or a.startswith("-D"):
        keep.append(a)
    k += 1
print("\n".join(keep))
EOF
}

# Objects of everything but our modules (those are rebuilt with coverage) and the CLI's main.
link_objects() {
    local skip
    skip=$(printf '%s.build/\n' "${modules[@]}" sensor)
    grep -vF "$skip" "$bin/sensor.product/Objects.LinkFileList"
}

# Our modules get libFuzzer's coverage (edges and comparisons) and AddressSanitizer. Parsers at -Onone:
# there even unsafe-buffer subscripts are bounds-checked. Detectors at -O (overflow checks stay) with edge
# coverage only: each pipeline the harness builds precomputes per-port rule owners over all 65,536 ports,
# ~0.4 s per input at -Onone with comparison tracing, which made every pipeline target crawl at 2 inputs
# a second.
optimization() {
    case $1 in
        Detectors) echo "-O -sanitize=address -sanitize-coverage=edge,inline-8bit-counters,pc-table" ;;
        *) echo "-Onone -sanitize=fuzzer,address" ;;
    esac
}

# Compiles our modules (from $1, default Sources) into $2 and links the one fuzz binary there.
build() {
    local sources=${1:-$root/Sources} dest=${2:-$out}
    debug_build
    mkdir -p "$dest/Modules" "$dest/obj"
    # One build at a time per directory (parallel runs start their builds together).
    exec 9>"$dest/.lock"
    flock 9
    mapfile -t flags < <(compile_flags)
    local common=(-gline-tables-only -enable-testing -suppress-warnings -parse-as-library
                  -module-cache-path "$dest/ModuleCache" -I "$dest/Modules" -I "$out/Modules" -I "$bin/Modules" "${flags[@]}")
    # A module is rebuilt when its sources, the flags, or any module before it changed (its interface
    # feeds every module after it).
    local stamp
    stamp=$(printf '%s\n' "${common[@]}" | sha1sum | cut -c1-40)
    for m in "${modules[@]}"; do
        [ -d "$sources/$m" ] || continue
        mapfile -t srcs < <(find "$sources/$m" -name '*.swift' | sort)
        stamp=$( { echo "$stamp"; optimization "$m"; cat "${srcs[@]}"; } | sha1sum | cut -c1-40)
        [ -n "${FUZZ_ONLY_MODULE:-}" ] && [ "$m" != "$FUZZ_ONLY_MODULE" ] && continue
        [ "$(cat "$dest/obj/$m.stamp" 2>/dev/null)" = "$stamp" ] && [ -f "$dest/obj/$m.o" ] && continue
        echo "fuzz: compiling $m with coverage" >&2
        swiftc -module-name "$m" -wmo -emit-module -emit-module-path "$dest/Modules/$m.swiftmodule" \
            -c "${srcs[@]}" -o "$dest/obj/$m.o" $(optimization "$m") "${common[@]}"
        echo "$stamp" > "$dest/obj/$m.stamp"
    done
    [ -n "${FUZZ_MODULES_ONLY:-}" ] && return 0
    local objects=("$dest"/obj/*.o)
    # A planted copy (--self-test) compiles one module; the rest come from the ordinary fuzz build.
    if [ "$dest" != "$out" ]; then
        objects=()
        for m in "${modules[@]}"; do
            if [ -f "$dest/obj/$m.o" ]; then objects+=("$dest/obj/$m.o"); else objects+=("$out/obj/$m.o"); fi
        done
    fi
    local harness=("$root"/Fuzz/Harness/*.swift "$root"/Fuzz/Targets/*.swift)
    local bstamp
    bstamp=$( { echo "$stamp"; cat "${harness[@]}"; } | sha1sum | cut -c1-40)
    if [ "$(cat "$dest/binary.stamp" 2>/dev/null)" != "$bstamp" ] || [ ! -x "$dest/sensor-fuzz" ]; then
        echo "fuzz: linking $dest/sensor-fuzz" >&2
        link_objects > "$dest/link-objects"
        swiftc -module-name SensorFuzz -Onone -sanitize=fuzzer,address "${harness[@]}" "${objects[@]}" @"$dest/link-objects" "${common[@]}" \
            -L "$bin" -lpcap -lrdkafka -lmaxminddb -lstdc++ -o "$dest/sensor-fuzz.new" 2> >(grep -v "Cannot export local symbol" >&2)
        # Renamed into place: runs in progress (libFuzzer's -fork re-executes the binary) keep a whole one.
        mv "$dest/sensor-fuzz.new" "$dest/sensor-fuzz"
        echo "$bstamp" > "$dest/binary.stamp"
    fi
    for t in "${targets[@]}"; do ln -sf sensor-fuzz "$dest/$t"; done
    flock -u 9
}

# Seeds beyond the committed corpus, extracted from ../shared/data (scripts/fuzz-seeds.py).
seeds() {
    local shared=$root/../shared/data
    [ -d "$shared" ] || { echo "fuzz: no $shared; only the committed corpus is used" >&2; return 0; }
    python3 "$root/scripts/fuzz-seeds.py" "$shared" "$out/seeds"
}

run() {
    local target=$1 seconds=$2 binary=${3:-$out/$1}
    local corpus=$out/corpus/$target crashes=$root/Fuzz/crashes-found/$target
    mkdir -p "$corpus" "$crashes"
    [ -d "$out/seeds" ] || seeds
    local dirs=("$corpus")
    [ -d "$root/Fuzz/corpus/$target" ] && dirs+=("$root/Fuzz/corpus/$target")
    [ -d "$out/seeds/$target" ] && dirs+=("$out/seeds/$target")
    echo "fuzz: $target for ${seconds}s" >&2
    # New inputs go to the first directory only; the committed and extracted seeds are read, never written.
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1} \
        "$binary" -max_total_time="$seconds" -timeout=10 -detect_leaks=0 -rss_limit_mb=2048 -max_len="${FUZZ_MAX_LEN:-16384}" \
        -dict="$root/Fuzz/edges.dict" \
        -print_final_stats=1 -artifact_prefix="$crashes/" ${FUZZ_FLAGS:-} "${dirs[@]}"
}

# Every target briefly over the committed corpus (nothing extracted, nothing added to the repository).
ci() {
    local seconds=$1 failed=() scratch
    local started=$SECONDS
    build
    scratch=$(mktemp -d)
    for t in "${targets[@]}"; do
        mkdir -p "$scratch/$t" "$root/Fuzz/crashes-found/$t"
        local log=$scratch/$t.log status dirs=("$scratch/$t")
        [ -d "$root/Fuzz/corpus/$t" ] && dirs+=("$root/Fuzz/corpus/$t")
        set +e
        ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 "$out/$t" \
            -max_total_time="$seconds" -timeout=10 -detect_leaks=0 -rss_limit_mb=2048 -max_len=16384 -print_final_stats=1 \
            -dict="$root/Fuzz/edges.dict" \
            -artifact_prefix="$root/Fuzz/crashes-found/$t/" "${dirs[@]}" >"$log" 2>&1
        status=$?
        set -e
        local runs cov
        runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
        cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || echo "?")
        if [ $status -eq 0 ]; then
            echo "fuzz: $t: ok, $runs runs, cov $cov"
        else
            failed+=("$t")
            grep -E "Fatal error|runtime failure|ERROR: |SUMMARY|Test unit written|==[0-9]+==" "$log" | head -8 || true
            echo "fuzz: $t: CRASHED (reproduce: scripts/fuzz.sh repro $t FILE; log: $log)"
        fi
    done
    # The fuzzer must still find a planted bug, or a green run above means nothing.
    if ! self_test > "$scratch/self-test.log" 2>&1; then
        tail -5 "$scratch/self-test.log"
        failed+=("self-test")
    else
        grep "fuzz self-test:" "$scratch/self-test.log"
    fi
    echo "fuzz: ${#targets[@]} targets, ${seconds}s each, and the self-test: $((SECONDS - started))s with the build"
    if [ ${#failed[@]} -gt 0 ]; then echo "fuzz: FAILED: ${failed[*]}"; return 1; fi
    rm -rf "$scratch"
}

# Plants `Int(-x)` with x == Int32.min reachable from the DNS header counts in a copy of the sources,
# compiles that one module, and requires the dns target to crash on it in time.
self_test() {
    local seconds=${FUZZ_SELF_TEST_SECONDS:-60}
    build
    local dir=$out/self-test
    rm -rf "$dir/Sources" "$dir/crashes"; mkdir -p "$dir/crashes"
    cp -r "$root/Sources" "$dir/Sources"
    python3 - "$dir/Sources/Analyzers/DNS/DNSMessage.swift" <<'EOF'
import sys
p = sys.argv[1]
s = open(p).read()
anchor = "guard Int(qd) <= maxQuestions else { return nil }"
assert anchor in s, "self-test: the plant's anchor moved; update scripts/fuzz.sh"
s = s.replace(anchor, anchor + "\n        let planted = Int32(bitPattern: UInt32(an) << 16 | UInt32(ns))\n        if planted < 0 { _ = Int(-planted) }", 1)
open(p, "w").write(s)
EOF
    FUZZ_ONLY_MODULE=Analyzers build "$dir/Sources" "$dir"
    # Only the direct parse (mode 0, pinned): the conversation modes build a pipeline per input and are
    # 50 times slower. Seeds: the corpus's direct-mode messages without their mode byte.
    local log=$dir/run.log src=$root/Fuzz/corpus/dns
    [ -d "$src" ] || src=$out/seeds/dns
    rm -rf "$dir/seeds" "$dir/corpus"; mkdir -p "$dir/seeds" "$dir/corpus"
    for f in "$src"/*; do
        if [ "$(head -c1 "$f" | od -An -tu1 | tr -d ' ')" = 0 ]; then tail -c +2 "$f" > "$dir/seeds/${f##*/}"; fi
    done
    set +e
    ASAN_OPTIONS=detect_leaks=0 SENSOR_FUZZ_MODE=0 "$dir/dns" -max_total_time="$seconds" -timeout=10 -detect_leaks=0 -seed=1 \
        -artifact_prefix="$dir/crashes/" "$dir/corpus" "$dir/seeds" >"$log" 2>&1
    local status=$?
    set -e
    if [ $status -ne 0 ] && grep -q "arithmetic overflow" "$log"; then
        grep -E "^#[0-9]+" "$log" | tail -1
        echo "fuzz self-test: planted overflow found after $(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#') inputs: $(grep -m1 -o 'Test unit written to .*' "$log")"
        return 0
    fi
    tail -20 "$log"
    echo "fuzz self-test: FAILED: the planted overflow was not found in ${seconds}s" >&2
    return 1
}

[ $# -ge 1 ] || usage
case $1 in
    build) build ;;
    seeds) rm -rf "$out/seeds"; seeds ;;
    list) printf '%s\n' "${targets[@]}" ;;
    --self-test) self_test ;;
    ci) [ $# -eq 2 ] || usage; ci "$2" ;;
    repro)
        # One input, run once, with the harness's environment (a crash prints its stack).
        [ $# -eq 3 ] || usage
        build
        ASAN_OPTIONS=detect_leaks=0 "$out/$2" "$3" ;;
    all)
        [ $# -eq 2 ] || usage
        build
        for t in "${targets[@]}"; do run "$t" "$2"; done ;;
    -h|--help) usage ;;
    *)
        [ $# -eq 2 ] || usage
        printf '%s\n' "${targets[@]}" | grep -qx "$1" || { echo "fuzz: unknown target $1" >&2; usage; }
        build
        run "$1" "$2" ;;
esac
