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

use anyhow::Context;
use clap::Args;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Ports of the native stack. The defaults stay clear of a developer's own MariaDB (3306) and Redis
/// (6379). In --help they stand under their own heading (each also reads a `PAYCTL_*_PORT` variable,
/// and a project's saved stack gives their defaults).
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(next_help_heading = "Stack ports (default: the saved stack's)")]
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
    /// The settlement worker (pay-settlement) health and metrics port.
    #[arg(long, env = "PAYCTL_SETTLEMENT_PORT", default_value_t = 18092)]
    pub settlement_port: u16,
    /// The mock acquirer (pay-acquirer): settles captures and refunds, delivers statements.
    #[arg(long, env = "PAYCTL_ACQUIRER_PORT", default_value_t = 18095)]
    pub acquirer_port: u16,
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

impl Ports {
    /// The ports the services of `stack` listen on (the first instance's for the API), the others'
    /// from `self`.
    pub fn of(&self, stack: &[Svc]) -> Ports {
        let port = |kind: Kind, default: u16| {
            stack
                .iter()
                .find(|s| s.kind == kind)
                .map_or(default, |s| s.port)
        };
        Ports {
            mariadb_port: port(Kind::MariaDb, self.mariadb_port),
            redis_port: port(Kind::Redis, self.redis_port),
            kafka_port: port(Kind::Kafka, self.kafka_port),
            ingest_port: port(Kind::Ingest, self.ingest_port),
            consumer_port: port(Kind::Consumer, self.consumer_port),
            acquirer_port: port(Kind::Acquirer, self.acquirer_port),
            settlement_port: port(Kind::Settlement, self.settlement_port),
            prometheus_port: port(Kind::Prometheus, self.prometheus_port),
            gateway_port: port(Kind::Gateway, self.gateway_port),
            grafana_port: port(Kind::Grafana, self.grafana_port),
        }
    }
}

impl Default for Ports {
    /// The defaults of the flags, without PAYCTL_*_PORT: for what needs no ports (`payctl logs`).
    fn default() -> Self {
        Self {
            mariadb_port: 13306,
            redis_port: 16379,
            kafka_port: 19092,
            ingest_port: 18080,
            consumer_port: 18091,
            acquirer_port: 18095,
            settlement_port: 18092,
            prometheus_port: 19090,
            gateway_port: 8080,
            grafana_port: 13000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    MariaDb,
    Redis,
    Kafka,
    /// The mock acquirer: an outside party's service with its own database (SQLite in its data dir).
    Acquirer,
    Ingest,
    Consumer,
    /// The settlement worker: captures and refunds to the acquirer.
    Settlement,
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

/// How many instances of the services that scale out, and how many partitions the topics get:
/// `payctl up --scale ingest=3,consumer=2 --partitions 6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    /// API instances (pay-server, each with its outbox relay) behind the gateway.
    pub ingest: u16,
    /// Ledger consumers in the one consumer group; no more than the topics' partitions, since a
    /// consumer without a partition has nothing to do and is never ready.
    pub consumer: u16,
    /// Partitions per topic when pay-server creates them (or grows them to, where the broker can);
    /// `None`: its default (3), and topics that exist keep theirs.
    pub partitions: Option<u16>,
}

/// pay-server's own default for `APP_KAFKA_PARTITIONS`.
pub const DEFAULT_PARTITIONS: u16 = 3;
/// Most instances of one service `--scale` takes; more would not fit the port ranges (the API's run
/// from --ingest-port on, the consumers' from --consumer-port in steps of ten).
pub const MAX_INSTANCES: u16 = 8;

impl Default for Scale {
    fn default() -> Self {
        Self {
            ingest: 1,
            consumer: 1,
            partitions: None,
        }
    }
}

impl Scale {
    /// `ingest` API instances, the rest as by default.
    #[cfg(test)]
    pub fn ingest(ingest: u16) -> Self {
        Self {
            ingest,
            ..Self::default()
        }
    }

    /// Reads `ingest=3,consumer=2` (either alone too) onto `self`.
    pub fn parse_onto(mut self, spec: &str) -> Result<Self, String> {
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (service, n) = part
                .split_once('=')
                .ok_or_else(|| format!("'{part}' is not SERVICE=N, like ingest=3"))?;
            let n = n
                .parse::<u16>()
                .ok()
                .filter(|n| (1..=MAX_INSTANCES).contains(n));
            let n = n.ok_or_else(|| {
                format!("'{part}': the number of instances is from 1 to {MAX_INSTANCES}")
            })?;
            match service {
                "ingest" => self.ingest = n,
                "consumer" => self.consumer = n,
                other => {
                    return Err(format!(
                        "'{other}' does not scale: the API (ingest) and the ledger consumer (consumer) do"
                    ))
                }
            }
        }
        Ok(self)
    }

    /// Refuses a shape that cannot work: more consumers than partitions leaves some idle for ever.
    pub fn check(&self) -> Result<(), String> {
        let partitions = self.partitions.unwrap_or(DEFAULT_PARTITIONS);
        if self.consumer > partitions {
            return Err(format!(
                "{} consumers need at least {} partitions per topic (each partition is read by one consumer of the group): add --partitions {}",
                self.consumer, self.consumer, self.consumer
            ));
        }
        Ok(())
    }
}

/// The name of instance `i` (from 0) of a service that scales: `ingest`, `ingest-2`, …
pub fn instance_name(base: &str, i: u16) -> String {
    if i == 0 {
        base.to_owned()
    } else {
        format!("{base}-{}", i + 1)
    }
}

/// The port of instance `i` (from 0) of a service that scales: the API's instances on consecutive
/// ports, the consumers' ten apart (the ports just above --consumer-port are the settlement
/// worker's and the acquirer's).
pub fn instance_port(kind: Kind, first: u16, i: u16) -> u16 {
    match kind {
        Kind::Consumer => first + 10 * i,
        _ => first + i,
    }
}

/// The stack in start order, with `scale.ingest` instances of the API (named ingest, ingest-2, …)
/// and `scale.consumer` ledger consumers (consumer, consumer-2, …), on the ports [`instance_port`]
/// gives.
pub fn plan(ports: &Ports, scale: Scale) -> Vec<Svc> {
    let svc = |name: &str, kind, port| Svc {
        name: name.to_owned(),
        kind,
        port,
    };
    let mut v = vec![
        svc("mariadb", Kind::MariaDb, ports.mariadb_port),
        svc("redis", Kind::Redis, ports.redis_port),
        svc("kafka", Kind::Kafka, ports.kafka_port),
        svc("acquirer", Kind::Acquirer, ports.acquirer_port),
    ];
    for i in 0..scale.ingest.max(1) {
        v.push(Svc {
            name: instance_name("ingest", i),
            kind: Kind::Ingest,
            port: instance_port(Kind::Ingest, ports.ingest_port, i),
        });
    }
    for i in 0..scale.consumer.max(1) {
        v.push(Svc {
            name: instance_name("consumer", i),
            kind: Kind::Consumer,
            port: instance_port(Kind::Consumer, ports.consumer_port, i),
        });
    }
    v.push(svc("settlement", Kind::Settlement, ports.settlement_port));
    v.push(svc("prometheus", Kind::Prometheus, ports.prometheus_port));
    v.push(svc("gateway", Kind::Gateway, ports.gateway_port));
    v
}

/// Refuses, before anything starts, a plan with two services on one port (moved ports can make the
/// API's instances run into another service's).
pub fn refuse_port_clash(stack: &[Svc]) -> anyhow::Result<()> {
    if let Some((a, b)) = port_clash(stack) {
        anyhow::bail!(
            "{} and {} would both use port {}; choose other ports (--ingest-port, --consumer-port, …)",
            a.name,
            b.name,
            a.port
        );
    }
    Ok(())
}

/// The first two services of `stack` that would listen on one port.
pub fn port_clash(stack: &[Svc]) -> Option<(&Svc, &Svc)> {
    stack.iter().enumerate().find_map(|(i, a)| {
        stack[i + 1..]
            .iter()
            .find(|b| b.port == a.port)
            .map(|b| (a, b))
    })
}

/// The services that must be healthy before `svc` starts, of those in `stack`: the API and the
/// consumer need the database, Redis and Kafka (the consumer also the first API instance, which
/// creates the topics), the gateway every API instance, Grafana Prometheus. [`plan`] is in an order
/// that respects them.
pub fn depends_on(svc: &Svc, stack: &[Svc]) -> Vec<String> {
    let mut names: Vec<String> = match svc.kind {
        Kind::Ingest => vec!["mariadb".into(), "redis".into(), "kafka".into()],
        Kind::Consumer => vec![
            "mariadb".into(),
            "redis".into(),
            "kafka".into(),
            "ingest".into(),
        ],
        // Like the consumer (the first API instance creates the topics), and the acquirer it calls.
        Kind::Settlement => vec![
            "mariadb".into(),
            "kafka".into(),
            "acquirer".into(),
            "ingest".into(),
        ],
        Kind::Gateway => stack
            .iter()
            .filter(|s| s.kind == Kind::Ingest)
            .map(|s| s.name.clone())
            .collect(),
        Kind::Grafana => vec!["prometheus".into()],
        Kind::MariaDb | Kind::Redis | Kind::Kafka | Kind::Acquirer | Kind::Prometheus => Vec::new(),
    };
    names.retain(|d| stack.iter().any(|s| &s.name == d));
    names
}

/// The state directory for a command run in `here`, found as cargo finds `Cargo.toml`: walking up,
/// the first folder with a `.payctl/`; the project's root (a `Cargo.toml` with `[workspace]`) ends
/// the walk, its `.payctl` being the one `up` creates. Outside a project: `here/.payctl`.
pub fn find_home(here: &Path) -> PathBuf {
    for dir in here.ancestors() {
        let home = dir.join(".payctl");
        if home.is_dir() {
            return home;
        }
        let is_root = std::fs::read_to_string(dir.join("Cargo.toml"))
            .is_ok_and(|t| t.lines().any(|l| l.trim() == "[workspace]"));
        if is_root {
            return home;
        }
    }
    here.join(".payctl")
}

/// Deletes the state directory `home` (`down --volumes`), but only when it is one: it holds something
/// payctl writes there (secrets/, stack.json, docker.json) and nothing that marks a project or a user's
/// folder (.git, Cargo.toml, package.json). A `--home` or `PAYCTL_HOME` pointed at a checkout or a
/// home folder is refused, not emptied.
pub fn remove_state_dir(home: &Path) -> anyhow::Result<()> {
    if !home.exists() {
        return Ok(());
    }
    let has = |name: &str| home.join(name).exists();
    let foreign = [".git", "Cargo.toml", "package.json"]
        .into_iter()
        .find(|m| has(m));
    if let Some(marker) = foreign {
        anyhow::bail!(
            "{} holds {marker}: it is not only payctl's state directory, so it is not deleted (point --home or PAYCTL_HOME at a folder of its own)",
            home.display()
        );
    }
    if !["secrets", "stack.json", "docker.json"]
        .into_iter()
        .any(has)
    {
        anyhow::bail!(
            "{} does not look like a payctl state directory (no secrets/, stack.json or docker.json); not deleted",
            home.display()
        );
    }
    std::fs::remove_dir_all(home)
        .map_err(|e| anyhow::anyhow!("removing {}: {e}", home.display()))?;
    eprintln!("removed {}", home.display());
    Ok(())
}

/// Where `up` saves the plan it ran, for the commands that follow.
pub fn saved_file(home: &Path) -> PathBuf {
    home.join("stack.json")
}

/// Saves the plan `up` runs.
pub fn save(home: &Path, stack: &[Svc]) -> anyhow::Result<()> {
    std::fs::write(saved_file(home), serde_json::to_vec_pretty(stack)?)?;
    Ok(())
}

/// The plan the last `up` saved, if any.
pub fn saved(home: &Path) -> Option<Vec<Svc>> {
    std::fs::read(saved_file(home))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// The ports of the plan the last `up` ran, or the defaults: what a port flag not given means.
pub fn saved_ports(home: &Path) -> Ports {
    saved(home).map_or_else(Ports::default, |s| Ports::default().of(&s))
}

/// `stack` with each service on the port `ports` gives its kind (instances as [`instance_port`] says).
pub fn on_ports(stack: Vec<Svc>, ports: &Ports) -> Vec<Svc> {
    let (mut ingest, mut consumer) = (0, 0);
    stack
        .into_iter()
        .map(|mut s| {
            s.port = match s.kind {
                Kind::MariaDb => ports.mariadb_port,
                Kind::Redis => ports.redis_port,
                Kind::Kafka => ports.kafka_port,
                Kind::Ingest => {
                    ingest += 1;
                    instance_port(Kind::Ingest, ports.ingest_port, ingest - 1)
                }
                Kind::Consumer => {
                    consumer += 1;
                    instance_port(Kind::Consumer, ports.consumer_port, consumer - 1)
                }
                Kind::Acquirer => ports.acquirer_port,
                Kind::Settlement => ports.settlement_port,
                Kind::Prometheus => ports.prometheus_port,
                Kind::Gateway => ports.gateway_port,
                Kind::Grafana => ports.grafana_port,
            };
            s
        })
        .collect()
}

/// The plan the last `up` ran (its services on `ports`: the saved ones unless a flag said otherwise,
/// see `main`), or the default one.
pub fn saved_plan(home: &Path, ports: &Ports) -> Vec<Svc> {
    saved(home).map_or_else(|| plan(ports, Scale::default()), |s| on_ports(s, ports))
}

/// A service of the plan the last `up` ran (or the default one), by name.
pub fn saved_service(home: &Path, ports: &Ports, name: &str) -> anyhow::Result<Svc> {
    saved_plan(home, ports)
        .into_iter()
        .find(|s| s.name == name)
        .with_context(|| format!("no service '{name}' in the stack under {}", home.display()))
}

/// Every service of the stack definition, in start order (API instances after the first are `ingest-N`,
/// consumers after the first `consumer-N`).
pub const SERVICE_NAMES: [&str; 10] = [
    "mariadb",
    "redis",
    "kafka",
    "acquirer",
    "ingest",
    "consumer",
    "settlement",
    "prometheus",
    "gateway",
    "grafana",
];

/// The services `--scale` runs several instances of.
pub const SCALED: [&str; 2] = ["ingest", "consumer"];

/// Whether `s` names an instance after the first of a service that scales: `ingest-2`, `consumer-3`.
pub fn is_extra_instance(s: &str) -> bool {
    SCALED.iter().any(|base| {
        s.strip_prefix(base)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|n| n.parse::<u16>().is_ok_and(|n| n >= 2))
    })
}

/// clap's value parser for a service name: one of [`SERVICE_NAMES`], or `ingest-N` / `consumer-N`
/// (N ≥ 2) for the instances after the first.
pub fn service_name(s: &str) -> Result<String, String> {
    if SERVICE_NAMES.contains(&s) || is_extra_instance(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "no service {s:?}: one of {}, or ingest-N, consumer-N",
            SERVICE_NAMES.join(", ")
        ))
    }
}

/// Position of a service in the start order (unknown ones last).
pub fn start_rank(service: &str) -> usize {
    let base = service.split('-').next().unwrap_or(service);
    SERVICE_NAMES
        .iter()
        .position(|s| *s == base)
        .unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_state_directory_is_deleted_never_a_project_or_an_unknown_folder() {
        let root = std::env::temp_dir().join(format!("payctl-rm-{}", std::process::id()));
        let dir = |name: &str, files: &[&str]| {
            let d = root.join(name);
            std::fs::create_dir_all(&d).unwrap();
            for f in files {
                std::fs::create_dir_all(d.join(f)).unwrap();
            }
            d
        };
        let state = dir("state", &["secrets", "mariadb"]);
        remove_state_dir(&state).unwrap();
        assert!(!state.exists());
        let checkout = dir("checkout", &["secrets", ".git"]);
        let e = remove_state_dir(&checkout).unwrap_err().to_string();
        assert!(
            e.contains("holds .git") && checkout.join(".git").exists(),
            "{e}"
        );
        let src = dir("src", &["notes"]);
        assert!(remove_state_dir(&src).is_err() && src.join("notes").exists());
        remove_state_dir(&root.join("missing")).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
    }

    fn full_stack_on(ports: &Ports, ingest: u16) -> Vec<Svc> {
        let mut stack = plan(ports, Scale::ingest(ingest));
        stack.push(Svc {
            name: "grafana".into(),
            kind: Kind::Grafana,
            port: ports.grafana_port,
        });
        stack
    }

    fn full_stack(ingest: u16) -> Vec<Svc> {
        full_stack_on(&Ports::default(), ingest)
    }

    #[test]
    fn the_plan_starts_every_service_after_what_it_depends_on() {
        let stack = full_stack(3);
        let names: Vec<&str> = stack.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "mariadb",
                "redis",
                "kafka",
                "acquirer",
                "ingest",
                "ingest-2",
                "ingest-3",
                "consumer",
                "settlement",
                "prometheus",
                "gateway",
                "grafana"
            ]
        );
        for (i, svc) in stack.iter().enumerate() {
            for dep in depends_on(svc, &stack) {
                let at = names.iter().position(|n| *n == dep).unwrap();
                assert!(at < i, "{} starts before {dep}", svc.name);
            }
        }
        let consumer = stack.iter().find(|s| s.kind == Kind::Consumer).unwrap();
        assert_eq!(
            depends_on(consumer, &stack),
            ["mariadb", "redis", "kafka", "ingest"]
        );
        let gateway = stack.iter().find(|s| s.kind == Kind::Gateway).unwrap();
        assert_eq!(
            depends_on(gateway, &stack),
            ["ingest", "ingest-2", "ingest-3"]
        );
        // What is not in the stack is not waited for.
        let grafana = stack.last().unwrap();
        assert_eq!(depends_on(grafana, &stack), ["prometheus"]);
        let without_prometheus: Vec<Svc> = stack
            .iter()
            .filter(|s| s.kind != Kind::Prometheus)
            .cloned()
            .collect();
        assert!(depends_on(grafana, &without_prometheus).is_empty());
    }

    #[test]
    fn start_rank_orders_services_as_the_plan_does() {
        let stack = full_stack(2);
        let mut by_rank = stack.clone();
        by_rank.reverse();
        by_rank.sort_by_key(|s| (start_rank(&s.name), s.name.clone()));
        let names = |v: &[Svc]| v.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&by_rank), names(&stack));
        assert_eq!(start_rank("something-else"), usize::MAX);
    }

    #[test]
    fn api_instances_take_consecutive_ports() {
        let ports = Ports::default();
        let ingest: Vec<u16> = plan(&ports, Scale::ingest(3))
            .iter()
            .filter(|s| s.kind == Kind::Ingest)
            .map(|s| s.port)
            .collect();
        assert_eq!(ingest, [18080, 18081, 18082]);
        assert_eq!(
            plan(&ports, Scale::ingest(0)).len(),
            plan(&ports, Scale::default()).len(),
            "at least one"
        );
    }

    #[test]
    fn consumers_scale_on_ports_ten_apart_after_the_apis_instances() {
        let scale = Scale::default().parse_onto("ingest=3,consumer=2").unwrap();
        assert_eq!((scale.ingest, scale.consumer), (3, 2));
        let stack = plan(&Ports::default(), scale);
        let of = |kind| {
            stack
                .iter()
                .filter(|s| s.kind == kind)
                .map(|s| (s.name.as_str(), s.port))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            of(Kind::Consumer),
            [("consumer", 18091), ("consumer-2", 18101)]
        );
        assert_eq!(
            of(Kind::Ingest),
            [("ingest", 18080), ("ingest-2", 18081), ("ingest-3", 18082)]
        );
        assert!(port_clash(&stack).is_none());
        // Moved to other ports, the instances keep their steps.
        let moved = on_ports(stack, &odd_ports());
        let consumers: Vec<u16> = moved
            .iter()
            .filter(|s| s.kind == Kind::Consumer)
            .map(|s| s.port)
            .collect();
        assert_eq!(consumers, [10, 20]);
        // The busiest shape fits the default ports.
        let most = Scale {
            ingest: MAX_INSTANCES,
            consumer: MAX_INSTANCES,
            partitions: Some(MAX_INSTANCES),
        };
        assert!(port_clash(&plan(&Ports::default(), most)).is_none());
    }

    #[test]
    fn a_scale_is_read_from_service_counts_and_refused_when_it_cannot_work() {
        let d = Scale::default();
        assert_eq!(d.parse_onto("consumer=2").unwrap().ingest, 1);
        assert_eq!(
            d.parse_onto("ingest=2")
                .unwrap()
                .parse_onto("consumer=3")
                .unwrap()
                .ingest,
            2
        );
        for bad in ["kafka=2", "ingest", "ingest=0", "ingest=9", "consumer=x"] {
            assert!(d.parse_onto(bad).is_err(), "{bad}");
        }
        let four = d.parse_onto("consumer=4").unwrap();
        let e = four.check().unwrap_err();
        assert!(e.contains("--partitions 4"), "{e}");
        assert!(Scale {
            partitions: Some(6),
            ..four
        }
        .check()
        .is_ok());
        assert!(Scale {
            partitions: Some(3),
            ..four
        }
        .check()
        .is_err());
        assert!(d.parse_onto("consumer=3").unwrap().check().is_ok());
    }

    #[test]
    fn two_services_on_one_port_are_found() {
        let ports = Ports {
            consumer_port: 18081,
            ..Ports::default()
        };
        let stack = plan(&ports, Scale::ingest(2));
        let (a, b) = port_clash(&stack).unwrap();
        assert_eq!((a.name.as_str(), b.name.as_str()), ("ingest-2", "consumer"));
    }

    #[test]
    fn instance_names_are_taken_for_services() {
        assert_eq!(service_name("consumer-2").unwrap(), "consumer-2");
        assert_eq!(service_name("ingest-3").unwrap(), "ingest-3");
        assert!(service_name("consumer-1").is_err());
        assert!(service_name("kafka-2").is_err());
        assert!(is_extra_instance("consumer-2") && !is_extra_instance("consumer"));
    }

    /// Ports no default uses, to tell a plan's own ports from the defaults.
    fn odd_ports() -> Ports {
        Ports {
            mariadb_port: 1,
            redis_port: 2,
            kafka_port: 3,
            ingest_port: 4,
            consumer_port: 10,
            acquirer_port: 14,
            settlement_port: 15,
            prometheus_port: 11,
            gateway_port: 12,
            grafana_port: 13,
        }
    }

    #[test]
    fn the_ports_of_a_saved_plan_are_its_own() {
        let theirs = odd_ports();
        assert_eq!(Ports::default().of(&full_stack_on(&theirs, 3)), theirs);
        let without_grafana = plan(&theirs, Scale::default());
        assert_eq!(Ports::default().of(&without_grafana).grafana_port, 13000);
    }

    #[test]
    fn default_ports_are_the_flags_defaults() {
        use clap::Args as _;
        let cmd = Ports::augment_args(clap::Command::new("payctl"));
        let d = Ports::default();
        for (flag, port) in [
            ("mariadb_port", d.mariadb_port),
            ("redis_port", d.redis_port),
            ("kafka_port", d.kafka_port),
            ("ingest_port", d.ingest_port),
            ("consumer_port", d.consumer_port),
            ("prometheus_port", d.prometheus_port),
            ("gateway_port", d.gateway_port),
            ("grafana_port", d.grafana_port),
        ] {
            let arg = cmd.get_arguments().find(|a| a.get_id() == flag).unwrap();
            assert_eq!(arg.get_default_values(), [port.to_string()], "{flag}");
        }
    }

    #[test]
    fn the_home_is_found_from_a_subfolder_as_cargo_finds_its_manifest() {
        let root = std::env::temp_dir().join(format!("payctl-find-home-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let project = root.join("project");
        let sub = project.join("cli/src");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(project.join("Cargo.toml"), "[workspace]\nmembers = []\n").unwrap();
        std::fs::write(project.join("cli/Cargo.toml"), "[package]\nname = \"x\"\n").unwrap();
        // None yet: the project root's, for `up` to create.
        assert_eq!(find_home(&sub), project.join(".payctl"));
        assert_eq!(find_home(&project), project.join(".payctl"));
        // A .payctl above the project is not the project's.
        std::fs::create_dir_all(root.join(".payctl")).unwrap();
        assert_eq!(find_home(&sub), project.join(".payctl"));
        // The nearest existing one wins.
        std::fs::create_dir_all(project.join("cli/.payctl")).unwrap();
        assert_eq!(find_home(&sub), project.join("cli/.payctl"));
        // Outside any project: above, else here.
        let elsewhere = root.join("elsewhere/deep");
        std::fs::create_dir_all(&elsewhere).unwrap();
        assert_eq!(find_home(&elsewhere), root.join(".payctl"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_saved_plan_moves_to_the_ports_given() {
        let theirs = odd_ports();
        let stack = full_stack(3);
        assert_eq!(
            Ports::default().of(&on_ports(stack.clone(), &theirs)),
            theirs
        );
        let moved: Vec<u16> = on_ports(stack.clone(), &theirs)
            .iter()
            .map(|s| s.port)
            .collect();
        assert_eq!(moved, [1, 2, 3, 14, 4, 5, 6, 10, 15, 11, 12, 13]);
        let same = on_ports(stack.clone(), &Ports::default().of(&stack));
        assert_eq!(
            same.iter().map(|s| (&s.name, s.port)).collect::<Vec<_>>(),
            stack.iter().map(|s| (&s.name, s.port)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_saved_plan_is_read_back_or_defaults() {
        let home = std::env::temp_dir().join(format!("payctl-stack-{}", std::process::id()));
        std::fs::create_dir_all(&home).unwrap();
        assert!(saved(&home).is_none());
        assert_eq!(saved_plan(&home, &Ports::default()).len(), 9);
        save(&home, &plan(&Ports::default(), Scale::ingest(2))).unwrap();
        let back = saved(&home).unwrap();
        assert_eq!(back[5].name, "ingest-2");
        assert_eq!(saved_plan(&home, &Ports::default()).len(), 10);
        let elsewhere = Ports {
            kafka_port: 29092,
            ..Ports::default()
        };
        save(&home, &plan(&elsewhere, Scale::default())).unwrap();
        assert_eq!(saved_ports(&home), elsewhere);
        std::fs::remove_dir_all(&home).unwrap();
    }
}
