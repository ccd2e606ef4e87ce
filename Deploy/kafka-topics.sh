#!/usr/bin/env bash
# Creates the Kafka topics the sensor writes to, with partitions and retention suited to each dataset.
#
# Usage: Deploy/kafka-topics.sh BOOTSTRAP [TOPIC]
#   BOOTSTRAP  broker list, e.g. kafka1:9092,kafka2:9092
#   TOPIC      the topic of the sensor's output URL, with {dataset} (default: {dataset}, i.e. one topic per
#              event.dataset: spanwatch.flow, spanwatch.alert, ...; site1-{dataset} gives site1-spanwatch.flow, ...)
# Environment: KAFKA_TOPICS (path to kafka-topics.sh; default: found on PATH), REPLICATION (default 3),
#   KAFKA_COMMAND_CONFIG (client properties file for TLS/SASL, passed as --command-config).
#
# Sizing, per topic (events per second at a busy 10 Gb/s SPAN port, roughly):
#   flow    tens of thousands/s: 24 partitions so consumers scale out; 7 days (SIEM ingests within hours;
#           the rest is a replay buffer). Keyed by community_id, so one flow's updates stay in order.
#   alert   rare but precious: 6 partitions, 90 days (the incident-specific retention in the capture
#           checklist), min.insync.replicas=2 so an acknowledged alert survives a broker loss.
#   stats   one per worker per interval: 3 partitions, 14 days (capacity trending), compacted no.
#   health  rare: 3 partitions, 30 days.
#   dns, http, file  protocol records (analysers): 12 partitions, 7 days.
#   evidence  one per evidence file written, refused or deleted: 3 partitions, 90 days (as alerts: they
#           name the files an investigation needs).
# One `create` per dataset the sensor writes (EventDataset in Sources/Events/EventDataset.swift; a test
# keeps the two lists equal).
# Retention is a privacy control too: events name hosts and users (see Deploy/CHECKLIST.md).
set -euo pipefail
bootstrap=${1:?usage: $0 BOOTSTRAP [TOPIC]}
template=${2:-'{dataset}'}
case $template in *'{dataset}'*) ;; *) echo "TOPIC must contain {dataset}" >&2; exit 2 ;; esac
rf=${REPLICATION:-3}
kt=${KAFKA_TOPICS:-$(command -v kafka-topics.sh || command -v kafka-topics || true)}
[ -n "$kt" ] || { echo "kafka-topics(.sh) not found: set KAFKA_TOPICS" >&2; exit 2; }
extra=()
[ -n "${KAFKA_COMMAND_CONFIG:-}" ] && extra+=(--command-config "$KAFKA_COMMAND_CONFIG")

day=86400000
create() { # dataset partitions retention_ms [extra configs...]
  local name="${template//\{dataset\}/spanwatch.$1}" parts=$2 ret=$3; shift 3
  local cfg=(--config "retention.ms=$ret" --config "compression.type=zstd" --config "cleanup.policy=delete"
             --config "min.insync.replicas=$(( rf > 1 ? 2 : 1 ))" --config "max.message.bytes=1048576")
  for c in "$@"; do cfg+=(--config "$c"); done
  echo "creating $name: $parts partitions, retention $((ret / day)) d" >&2
  "$kt" --bootstrap-server "$bootstrap" "${extra[@]}" --create --if-not-exists --topic "$name" \
    --partitions "$parts" --replication-factor "$rf" "${cfg[@]}"
}

create flow    24 $((7 * day))  segment.ms=$((day / 4))
create alert    6 $((90 * day)) unclean.leader.election.enable=false
create stats    3 $((14 * day))
create health   3 $((30 * day))
create dns     12 $((7 * day))
create http    12 $((7 * day))
create file    12 $((7 * day))
create evidence 3 $((90 * day))
