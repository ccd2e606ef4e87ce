#!/usr/bin/env bash
# Every test: installs what the tests need (real tshark, capinfos, age, kcat, rsyslogd, tcpreplay…),
# builds, and runs the whole suite. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
swift build --build-tests 2>&1 | grep -Ev '^\[[0-9]+/[0-9]+\]' || true
# Every fuzz target for a few seconds over its committed corpus (Fuzz/README.md); a crash fails the run.
set +e
scripts/fuzz.sh ci "${FUZZ_CI_SECONDS:-2}"
fuzz_status=$?
set -e
log=$(mktemp)
xml=$(mktemp)
trap 'rm -f "$log" "$xml"' EXIT
# Test cases run in parallel, each in its own process (most of the suite waits on the real tools and the
# sensor binary it starts); TEST_WORKERS=1 runs them one after another in one process, with their output.
workers=${TEST_WORKERS:-$(nproc)}
[ "$workers" -ge 2 ] 2>/dev/null || workers=1
set +e
if [ "$workers" -gt 1 ]; then
    swift test --skip-build --disable-swift-testing --parallel --num-workers "$workers" --xunit-output "$xml" 2>&1 | tee "$log"
else
    swift test --skip-build --disable-swift-testing 2>&1 | tee "$log"
fi
status=${PIPESTATUS[0]}
set -e
# One plain closing line for CI: the totals of the whole run.
if [ "$workers" -gt 1 ]; then
    executed=$(grep -c "<testcase " "$xml" || true)
    failures=$(grep -c "<failure" "$xml" || true)
    skipped=$(grep -c "<skipped" "$xml" || true)
    if [ "${executed:-0}" -eq 0 ]; then echo "tests: no test results found" >&2; exit 1; fi
else
    summary=$(grep -E "^[[:space:]]*Executed [0-9]+ tests?, with .*[0-9]+ failures?" "$log" | tail -1)
    if [ -z "$summary" ]; then echo "tests: no XCTest summary found" >&2; exit 1; fi
    executed=$(sed -E 's/.*Executed ([0-9]+) tests?.*/\1/' <<<"$summary")
    failures=$(sed -E 's/.* ([0-9]+) failures? .*/\1/' <<<"$summary")
    skipped=$(grep -oE "[0-9]+ tests? skipped" <<<"$summary" | grep -oE "^[0-9]+" || echo 0)
fi
echo "tests: $((executed - failures - skipped)) passed, $failures failed, $skipped skipped"
if [ "$status" -eq 0 ] && [ "$fuzz_status" -ne 0 ]; then status=$fuzz_status; fi
exit "$status"
