#!/usr/bin/env bash
# Every test: installs what the tests need (real tshark, capinfos, age, kcat, rsyslogd, tcpreplay…),
# builds, and runs the whole suite. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
swift build --build-tests 2>&1 | grep -v '^\[' || true
swift build --build-tests >/dev/null
swift test --skip-build 2>&1
