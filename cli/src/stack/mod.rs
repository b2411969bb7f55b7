//! The stack definition: what runs, in which order, on which port and how its health is checked — the
//! one definition both runtimes (`runtime::native`, `runtime::docker`) and `payctl compose` read.
//!
//! [`plan`] names the services in start order; `up` saves the plan it ran (`stack.json`) and the
//! commands after it read that ([`saved_plan`]). [`health`] has the real probes, [`config`] the
//! gateway's and Prometheus' configs, [`secrets`] the dev secrets and the database URL.

pub mod config;
pub mod health;
pub mod monitoring;
pub mod secrets;

use clap::Args;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Ports of the native stack. The defaults stay clear of a developer's own MariaDB (3306) and Redis
/// (6379).
#[derive(Debug, Clone, Args)]
pub struct Ports {
    /// MariaDB port.
    #[arg(long, env = "PAYCTL_MARIADB_PORT", default_value_t = 13306)]
    pub mariadb_port: u16,
    /// Redis port.
    #[arg(long, env = "PAYCTL_REDIS_PORT", default_value_t = 16379)]
    pub redis_port: u16,
    /// Kafka (tansu) port.
    #[arg(long, env = "PAYCTL_KAFKA_PORT", default_value_t = 19092)]
    pub kafka_port: u16,
    /// Payment API (pay-server) port.
    #[arg(long, env = "PAYCTL_INGEST_PORT", default_value_t = 18080)]
    pub ingest_port: u16,
    /// Ledger consumer (pay-consumer) health and metrics port.
    #[arg(long, env = "PAYCTL_CONSUMER_PORT", default_value_t = 18091)]
    pub consumer_port: u16,
    /// Prometheus: scrapes every service, evaluates the alert rules (monitoring/prometheus).
    #[arg(long, env = "PAYCTL_PROMETHEUS_PORT", default_value_t = 19090)]
    pub prometheus_port: u16,
    /// Gateway (nginx): the store at /, the API at /api.
    #[arg(long, env = "PAYCTL_GATEWAY_PORT", default_value_t = 8080)]
    pub gateway_port: u16,
    /// Grafana (Docker runtime only).
    #[arg(long, env = "PAYCTL_GRAFANA_PORT", default_value_t = 13000)]
    pub grafana_port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    MariaDb,
    Redis,
    Kafka,
    Ingest,
    Consumer,
    Prometheus,
    Gateway,
    /// Docker runtime only: not packaged for the native one.
    Grafana,
}

/// One process of the stack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Svc {
    pub name: String,
    pub kind: Kind,
    pub port: u16,
}

/// The stack in start order, with `ingest` instances of the API (named ingest, ingest-2, …, on
/// consecutive ports from --ingest-port).
pub fn plan(ports: &Ports, ingest: u16) -> Vec<Svc> {
    let svc = |name: &str, kind, port| Svc {
        name: name.to_owned(),
        kind,
        port,
    };
    let mut v = vec![
        svc("mariadb", Kind::MariaDb, ports.mariadb_port),
        svc("redis", Kind::Redis, ports.redis_port),
        svc("kafka", Kind::Kafka, ports.kafka_port),
    ];
    for i in 0..ingest.max(1) {
        let name = if i == 0 {
            "ingest".to_owned()
        } else {
            format!("ingest-{}", i + 1)
        };
        v.push(Svc {
            name,
            kind: Kind::Ingest,
            port: ports.ingest_port + i,
        });
    }
    v.push(svc("consumer", Kind::Consumer, ports.consumer_port));
    v.push(svc("prometheus", Kind::Prometheus, ports.prometheus_port));
    v.push(svc("gateway", Kind::Gateway, ports.gateway_port));
    v
}

/// The plan the last `up` ran, or the default one.
pub fn saved_plan(home: &Path, ports: &Ports) -> Vec<Svc> {
    std::fs::read(home.join("stack.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| plan(ports, 1))
}

/// Position of a service in the start order (unknown ones last).
pub fn start_rank(service: &str) -> usize {
    let base = service.split('-').next().unwrap_or(service);
    [
        "mariadb",
        "redis",
        "kafka",
        "ingest",
        "consumer",
        "prometheus",
        "gateway",
        "grafana",
    ]
    .iter()
    .position(|s| *s == base)
    .unwrap_or(usize::MAX)
}
