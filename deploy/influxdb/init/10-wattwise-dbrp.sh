#!/bin/bash
# Run once by the influxdb:2.7 image after its first-start setup, with the
# influx CLI already configured for the new org and operator token.
# InfluxQL (the optimizer, Grafana) names a database and retention policy;
# this maps database "wattwise", retention policy "autogen" to the bucket.
# 2.7 also answers through a virtual mapping per bucket, but an explicit one
# survives renaming the bucket and is what `influx v1 dbrp list` shows.
set -euo pipefail

influx v1 dbrp create \
    --org "${DOCKER_INFLUXDB_INIT_ORG}" \
    --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
    --db "${DOCKER_INFLUXDB_INIT_BUCKET}" \
    --rp autogen \
    --default
