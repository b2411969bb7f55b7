# Grafana with the Prometheus data source and the payment dashboard provisioned (monitoring/grafana).
ARG GRAFANA_IMAGE=grafana/grafana:11.3.0
FROM ${GRAFANA_IMAGE}
COPY monitoring/grafana/provisioning/ /etc/grafana/provisioning/
COPY monitoring/grafana/dashboards/ /etc/grafana/dashboards/
