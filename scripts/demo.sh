#!/usr/bin/env bash
# The sensor's main job on the bundled sample capture: installs what is missing, builds, replays,
# and prints the ECS events (no Kafka needed: the default output is stdout).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh build
swift build --product sensor >&2
exec .build/debug/sensor replay samples/demo.pcap "$@"
