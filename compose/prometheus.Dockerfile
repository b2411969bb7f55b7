# Prometheus with the repository's scrape config and alert rules (monitoring/prometheus). The targets
# files here list the compose services; payctl uploads its own, written from its stack definition.
ARG PROMETHEUS_IMAGE=prom/prometheus:v2.53.2
FROM ${PROMETHEUS_IMAGE}
COPY monitoring/prometheus/prometheus.yml monitoring/prometheus/alerts.yml /etc/prometheus/
COPY compose/prometheus/targets/ /etc/prometheus/targets/
