#!/bin/sh
# Loads the sensor's Elasticsearch and Kibana artefacts (docs/SIEM.md):
#   ES=https://es:9200 KIBANA=https://kibana:5601 AUTH=elastic:password Deploy/elastic/load.sh
# ECS component templates (ecs/, Elastic's own, ECS 8.11.0), the vendor component template, the ILM
# policy, the ingest pipeline, the index template, then the Kibana data view and dashboard.
set -eu
: "${ES:?set ES to the Elasticsearch URL}"
AUTH="${AUTH:-}"
DIR=$(cd "$(dirname "$0")" && pwd)
put() {  # path file
    curl -fsS ${AUTH:+-u "$AUTH"} -X PUT "$ES/$1" -H 'Content-Type: application/json' --data-binary "@$2" >/dev/null
    echo "PUT $1"
}
for f in "$DIR"/ecs/*.json; do
    put "_component_template/ecs_8.11.0_$(basename "$f" .json)" "$f"
done
put _component_template/spanwatch_vendor "$DIR/component-spanwatch.json"
put _ilm/policy/sensor-logs "$DIR/ilm-policy.json"
put _ingest/pipeline/sensor-ingest "$DIR/ingest-pipeline.json"
put _index_template/logs-spanwatch "$DIR/index-template.json"
if [ -n "${KIBANA:-}" ]; then
    curl -fsS ${AUTH:+-u "$AUTH"} -X POST "$KIBANA/api/saved_objects/_import?overwrite=true" -H 'kbn-xsrf: true' \
        --form file=@"$DIR/kibana/spanwatch-overview.ndjson" >/dev/null
    echo "imported kibana/spanwatch-overview.ndjson"
fi
