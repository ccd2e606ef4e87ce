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
trap 'rm -f "$log"' EXIT
set +e
swift test --skip-build --disable-swift-testing 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One plain closing line for CI: the XCTest totals of the whole run.
summary=$(grep -E "^[[:space:]]*Executed [0-9]+ tests?, with .*[0-9]+ failures?" "$log" | tail -1)
executed=$(sed -E 's/.*Executed ([0-9]+) tests?.*/\1/' <<<"$summary")
failures=$(sed -E 's/.* ([0-9]+) failures? .*/\1/' <<<"$summary")
skipped=$(grep -oE "[0-9]+ tests? skipped" <<<"$summary" | grep -oE "^[0-9]+" || echo 0)
if [ -z "$summary" ]; then echo "tests: no XCTest summary found" >&2; exit 1; fi
echo "tests: $((executed - failures - skipped)) passed, $failures failed, $skipped skipped"
if [ "$status" -eq 0 ] && [ "$fuzz_status" -ne 0 ]; then status=$fuzz_status; fi
exit "$status"
