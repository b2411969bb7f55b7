//! The monitoring files of the repository (`monitoring/`), built into payctl so that `payctl up` can run
//! Prometheus with exactly the config and alert rules that are reviewed and tested, from any directory.

pub const PROMETHEUS_YML: &str = include_str!("../../../monitoring/prometheus/prometheus.yml");
pub const ALERTS_YML: &str = include_str!("../../../monitoring/prometheus/alerts.yml");
/// Grafana's Prometheus data source; the Docker runtime points its URL at where Prometheus runs.
pub const GRAFANA_DATASOURCE: &str =
    include_str!("../../../monitoring/grafana/provisioning/datasources/prometheus.yml");
