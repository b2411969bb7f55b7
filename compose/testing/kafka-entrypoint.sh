#!/bin/bash
# tansu configured like apache/kafka: it listens on the first of KAFKA_LISTENERS and advertises the
# first of KAFKA_ADVERTISED_LISTENERS (tansu has one listener; the test runs on the host network).
set -euo pipefail
listen="${KAFKA_LISTENERS%%,*}"
listen="${listen#*://}"
[ -n "${listen%%:*}" ] || listen="0.0.0.0${listen}"
advertised="${KAFKA_ADVERTISED_LISTENERS%%,*}"
cd "${KAFKA_LOG_DIRS:-/var/lib/kafka/data}"
exec tansu broker --listener-url "tcp://${listen}" --advertised-listener-url "tcp://${advertised#*://}" \
  --storage-engine sqlite://tansu.db
