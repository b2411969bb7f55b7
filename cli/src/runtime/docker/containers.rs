//! The stack as containers: one definition, read by the Docker runtime to create containers and by
//! `payctl compose` to write `compose/docker-compose.yml`, so the two cannot drift.
//!
//! It is derived from the stack definition's [`plan`](crate::stack::plan) (names, order, ports), and
//! adds what only containers have: images, environment, volumes and the config files placed in them.

use super::owned::fingerprint;
use crate::stack::config::{nginx_conf, prometheus_targets, NginxLayout};
use crate::stack::{self, Kind, Ports, Scale, Svc};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

/// How containers reach each other and the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum Network {
    /// A bridge network: services find each other by name, ports are published on 127.0.0.1.
    Bridge,
    /// The host's network: every service listens on its payctl port on 127.0.0.1 (CI, no bridge).
    Host,
}

/// The images of the stack. Upstream ones are pulled when missing; the project's own (payctl/…) are
/// built from compose/*.Dockerfile when missing.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct Images {
    /// MariaDB image (the official image's MARIADB_* environment is used).
    #[arg(long, env = "PAYCTL_MARIADB_IMAGE", default_value = "mariadb:11.4")]
    pub mariadb_image: String,
    /// Redis image.
    #[arg(long, env = "PAYCTL_REDIS_IMAGE", default_value = "redis:7.4")]
    pub redis_image: String,
    /// Kafka image (KRaft, configured through KAFKA_* environment like apache/kafka).
    #[arg(long, env = "PAYCTL_KAFKA_IMAGE", default_value = "apache/kafka:3.9.1")]
    pub kafka_image: String,
    /// The payment API image (built from compose/rust-service.Dockerfile).
    #[arg(
        long,
        env = "PAYCTL_SERVER_IMAGE",
        default_value = "payctl/pay-server:dev"
    )]
    pub server_image: String,
    /// The ledger consumer image (built from compose/rust-service.Dockerfile).
    #[arg(
        long,
        env = "PAYCTL_CONSUMER_IMAGE",
        default_value = "payctl/pay-consumer:dev"
    )]
    pub consumer_image: String,
    /// The settlement worker image (built from compose/rust-service.Dockerfile).
    #[arg(
        long,
        env = "PAYCTL_SETTLEMENT_IMAGE",
        default_value = "payctl/pay-settlement:dev"
    )]
    pub settlement_image: String,
    /// The mock acquirer image (built from compose/rust-service.Dockerfile).
    #[arg(
        long,
        env = "PAYCTL_ACQUIRER_IMAGE",
        default_value = "payctl/pay-acquirer:dev"
    )]
    pub acquirer_image: String,
    /// The gateway image: nginx and the built store (compose/gateway.Dockerfile).
    #[arg(
        long,
        env = "PAYCTL_GATEWAY_IMAGE",
        default_value = "payctl/gateway:dev"
    )]
    pub gateway_image: String,
    /// Prometheus with the config and alert rules (compose/prometheus.Dockerfile).
    #[arg(
        long,
        env = "PAYCTL_PROMETHEUS_IMAGE",
        default_value = "payctl/prometheus:dev"
    )]
    pub prometheus_image: String,
    /// Grafana with the provisioned dashboard (compose/grafana.Dockerfile).
    #[arg(
        long,
        env = "PAYCTL_GRAFANA_IMAGE",
        default_value = "payctl/grafana:dev"
    )]
    pub grafana_image: String,
}

/// How a project image is built: its Dockerfile and build arguments, from the repository.
#[derive(Debug, Clone, PartialEq)]
pub struct Build {
    pub dockerfile: &'static str,
    /// The binary of compose/rust-service.Dockerfile (SERVICE), if any.
    pub service: Option<&'static str>,
    /// Repository paths the build needs (the context sent to the engine).
    pub context: &'static [&'static str],
}

/// One container of the stack.
#[derive(Debug, Clone)]
pub struct Container {
    pub service: String,
    pub kind: Kind,
    pub image: String,
    pub build: Option<Build>,
    pub env: Vec<(String, String)>,
    pub cmd: Option<Vec<String>>,
    /// (host port on 127.0.0.1, container port); empty on the host network.
    pub publish: Vec<(u16, u16)>,
    /// Where the service's named volume is mounted.
    pub volume: Option<&'static str>,
    /// A fingerprint of the secrets the volume is initialised with (MariaDB's users, Grafana's admin),
    /// kept as its label: secrets that differ from it would not open it.
    pub credentials: Option<String>,
    /// Config files written into the container before it starts (path, content).
    pub files: Vec<(String, Vec<u8>)>,
    /// Services that must be healthy first ([`stack::depends_on`]).
    pub depends_on: Vec<String>,
}

/// The secrets a stack runs with: generated per state directory by `payctl up`, or `${VAR:-…}`
/// references marked dev-only in the compose file.
pub struct Secrets {
    pub db_password: String,
    pub db_root_password: String,
    pub admin_token: String,
    pub grafana_password: String,
    /// The store merchant's API key for the gateway's /store-api (none in the compose file).
    pub store_key: Option<String>,
}

const RUST_CONTEXT: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    // The build script the services' manifests name (`build = "../build/git_commit.rs"`).
    "build",
    "domain",
    "db",
    "stack",
    "server",
    "consumer",
    "acquirer",
    "settlement",
    "breaker",
    "cli",
    "monitoring",
    "compose/rust-service.Dockerfile",
    "compose/healthcheck.sh",
    "compose/prebuilt/README.md",
];

/// The port a service listens on inside its container on a bridge network.
pub fn container_port(kind: Kind) -> u16 {
    match kind {
        Kind::MariaDb => 3306,
        Kind::Redis => 6379,
        Kind::Kafka => 9092,
        Kind::Ingest => 8080,
        Kind::Consumer => 8081,
        Kind::Acquirer => 8095,
        Kind::Settlement => 8092,
        Kind::Prometheus => 9090,
        Kind::Gateway => 80,
        Kind::Grafana => 3000,
    }
}

/// The default ports and images, never the caller's PAYCTL_* environment (the compose file, tests).
pub fn defaults() -> (Ports, Images) {
    #[derive(clap::Parser)]
    struct Defaults {
        #[command(flatten)]
        ports: Ports,
        #[command(flatten)]
        images: Images,
    }
    let d = <Defaults as clap::Parser>::parse_from(["payctl"]);
    (d.ports, d.images)
}

/// The stack's services for containers: the native plan, plus Grafana, minus what `without` names.
pub fn plan(ports: &Ports, scale: Scale, without: &[String]) -> Vec<Svc> {
    let mut stack = stack::plan(ports, scale);
    stack.push(Svc {
        name: "grafana".into(),
        kind: Kind::Grafana,
        port: ports.grafana_port,
    });
    stack.retain(|s| !without.contains(&s.name));
    stack
}

/// The containers for `stack`, in start order.
pub fn containers(
    stack: &[Svc],
    network: Network,
    images: &Images,
    secrets: &Secrets,
) -> Vec<Container> {
    let port_of = |kind: Kind| stack.iter().find(|s| s.kind == kind).map(|s| s.port);
    // Where one container reaches another service.
    let peer = |kind: Kind| -> String {
        let svc = stack.iter().find(|s| s.kind == kind);
        match network {
            Network::Bridge => format!(
                "{}:{}",
                svc.map(|s| s.name.as_str()).unwrap_or("?"),
                container_port(kind)
            ),
            Network::Host => format!("127.0.0.1:{}", svc.map(|s| s.port).unwrap_or(0)),
        }
    };
    let kafka_port = port_of(Kind::Kafka).unwrap_or(19092);
    let kafka_bootstrap = match network {
        Network::Bridge => format!("kafka:{}", container_port(Kind::Kafka)),
        Network::Host => format!("127.0.0.1:{kafka_port}"),
    };
    let database_url = format!(
        "mysql://payctl:{}@{}/payments",
        secrets.db_password,
        peer(Kind::MariaDb)
    );
    stack
        .iter()
        .map(|svc| {
            let (listen_ip, port) = match network {
                Network::Bridge => ("0.0.0.0", container_port(svc.kind)),
                Network::Host => ("127.0.0.1", svc.port),
            };
            let env = |pairs: &[(&str, String)]| -> Vec<(String, String)> {
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect()
            };
            let mut c = Container {
                service: svc.name.clone(),
                kind: svc.kind,
                image: String::new(),
                build: None,
                env: Vec::new(),
                cmd: None,
                publish: match network {
                    Network::Bridge => vec![(svc.port, container_port(svc.kind))],
                    Network::Host => Vec::new(),
                },
                volume: None,
                credentials: None,
                files: Vec::new(),
                depends_on: stack::depends_on(svc, stack),
            };
            match svc.kind {
                Kind::MariaDb => {
                    c.image = images.mariadb_image.clone();
                    c.env = env(&[
                        ("MARIADB_ROOT_PASSWORD", secrets.db_root_password.clone()),
                        ("MARIADB_DATABASE", "payments".into()),
                        ("MARIADB_USER", "payctl".into()),
                        ("MARIADB_PASSWORD", secrets.db_password.clone()),
                    ]);
                    // As natively: a few API instances with pools of 32 would exhaust the default 151.
                    let mut cmd = vec!["--max-connections=1000".to_owned()];
                    if network == Network::Host {
                        cmd.push(format!("--port={port}"));
                        cmd.push(format!("--bind-address={listen_ip}"));
                    }
                    c.cmd = Some(cmd);
                    c.volume = Some("/var/lib/mysql");
                    c.credentials = Some(fingerprint(&[
                        &secrets.db_password,
                        &secrets.db_root_password,
                    ]));
                }
                Kind::Redis => {
                    c.image = images.redis_image.clone();
                    c.cmd = Some(
                        [
                            "redis-server",
                            "--port",
                            &port.to_string(),
                            "--bind",
                            listen_ip,
                            "--protected-mode",
                            "no",
                            "--appendonly",
                            "yes",
                            "--dir",
                            "/data",
                        ]
                        .map(String::from)
                        .to_vec(),
                    );
                    c.volume = Some("/data");
                }
                Kind::Kafka => {
                    c.image = images.kafka_image.clone();
                    // Two listeners on a bridge: one for the other containers (kafka:9092) and one
                    // advertised as 127.0.0.1 for payctl on the host. One on the host network.
                    let (listeners, advertised, map, voters) = match network {
                        Network::Bridge => (
                            format!("INTERNAL://:9092,HOST://:{kafka_port},CONTROLLER://:9093"),
                            format!("INTERNAL://kafka:9092,HOST://127.0.0.1:{kafka_port}"),
                            "INTERNAL:PLAINTEXT,HOST:PLAINTEXT,CONTROLLER:PLAINTEXT",
                            "1@localhost:9093".to_owned(),
                        ),
                        Network::Host => (
                            format!(
                                "INTERNAL://127.0.0.1:{kafka_port},CONTROLLER://127.0.0.1:{}",
                                kafka_port + 1
                            ),
                            format!("INTERNAL://127.0.0.1:{kafka_port}"),
                            "INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
                            format!("1@127.0.0.1:{}", kafka_port + 1),
                        ),
                    };
                    if network == Network::Bridge {
                        // The host listener keeps its port inside the container, so that the
                        // advertised 127.0.0.1:port is right on both sides.
                        c.publish = vec![(kafka_port, kafka_port)];
                    }
                    c.env = env(&[
                        ("KAFKA_NODE_ID", "1".into()),
                        ("KAFKA_PROCESS_ROLES", "broker,controller".into()),
                        ("KAFKA_LISTENERS", listeners),
                        ("KAFKA_ADVERTISED_LISTENERS", advertised),
                        ("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", map.into()),
                        ("KAFKA_INTER_BROKER_LISTENER_NAME", "INTERNAL".into()),
                        ("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER".into()),
                        ("KAFKA_CONTROLLER_QUORUM_VOTERS", voters),
                        ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1".into()),
                        ("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1".into()),
                        ("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1".into()),
                        ("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0".into()),
                        // Topics are created by pay-server with their partitions, never by accident.
                        ("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false".into()),
                        ("KAFKA_LOG_DIRS", "/var/lib/kafka/data".into()),
                    ]);
                    c.volume = Some("/var/lib/kafka/data");
                }
                Kind::Ingest | Kind::Consumer | Kind::Settlement => {
                    let (image, service) = match svc.kind {
                        Kind::Ingest => (&images.server_image, "pay-server"),
                        Kind::Consumer => (&images.consumer_image, "pay-consumer"),
                        _ => (&images.settlement_image, "pay-settlement"),
                    };
                    c.image = image.clone();
                    c.build = Some(Build {
                        dockerfile: "compose/rust-service.Dockerfile",
                        service: Some(service),
                        context: RUST_CONTEXT,
                    });
                    c.env = env(&[
                        ("APP_LISTEN", format!("{listen_ip}:{port}")),
                        ("APP_DATABASE_URL", database_url.clone()),
                        ("APP_REDIS_URL", format!("redis://{}/", peer(Kind::Redis))),
                        ("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap.clone()),
                        ("APP_ADMIN_TOKEN", secrets.admin_token.clone()),
                        // Static group membership: a restarted consumer takes its own place at once.
                        ("APP_CONSUMER_INSTANCE_ID", format!("payctl-{}", svc.name)),
                    ]);
                    if svc.kind == Kind::Settlement {
                        c.env.push((
                            "APP_ACQUIRER_URL".into(),
                            format!("http://{}", peer(Kind::Acquirer)),
                        ));
                    }
                }
                Kind::Acquirer => {
                    c.image = images.acquirer_image.clone();
                    c.build = Some(Build {
                        dockerfile: "compose/rust-service.Dockerfile",
                        service: Some("pay-acquirer"),
                        context: RUST_CONTEXT,
                    });
                    c.env = env(&[
                        ("APP_ACQUIRER_BIND", format!("{listen_ip}:{port}")),
                        (
                            "APP_ACQUIRER_DATABASE_URL",
                            "sqlite:///var/lib/acquirer/acquirer.db?mode=rwc".into(),
                        ),
                        // The image's health check reads the port from here.
                        ("HEALTH_PORT", port.to_string()),
                    ]);
                    c.volume = Some("/var/lib/acquirer");
                }
                Kind::Prometheus => {
                    c.image = images.prometheus_image.clone();
                    c.build = Some(Build {
                        dockerfile: "compose/prometheus.Dockerfile",
                        service: None,
                        context: &[
                            "compose/prometheus.Dockerfile",
                            "compose/prometheus",
                            "monitoring/prometheus",
                        ],
                    });
                    c.cmd = Some(vec![
                        "--config.file=/etc/prometheus/prometheus.yml".into(),
                        "--storage.tsdb.path=/prometheus".into(),
                        format!("--web.listen-address={listen_ip}:{port}"),
                        "--storage.tsdb.retention.time=7d".into(),
                    ]);
                    c.volume = Some("/prometheus");
                    let addr = |s: &Svc| match network {
                        Network::Bridge => format!("{}:{}", s.name, container_port(s.kind)),
                        Network::Host => format!("127.0.0.1:{}", s.port),
                    };
                    c.files = prometheus_targets(stack, &addr)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(f, b)| (format!("/etc/prometheus/{f}"), b))
                        .collect();
                }
                Kind::Gateway => {
                    c.image = images.gateway_image.clone();
                    c.build = Some(Build {
                        dockerfile: "compose/gateway.Dockerfile",
                        service: None,
                        context: &[
                            "compose/gateway.Dockerfile",
                            "compose/gateway",
                            "compose/healthcheck.sh",
                            "frontend/dist",
                        ],
                    });
                    let upstreams: Vec<String> = stack
                        .iter()
                        .filter(|s| s.kind == Kind::Ingest)
                        .map(|s| match network {
                            Network::Bridge => format!("{}:{}", s.name, container_port(s.kind)),
                            Network::Host => format!("127.0.0.1:{}", s.port),
                        })
                        .collect();
                    let conf = nginx_conf(
                        &format!("{listen_ip}:{port}"),
                        &upstreams,
                        secrets.store_key.as_deref(),
                        &container_nginx(),
                    );
                    c.env = env(&[("HEALTH_PORT", port.to_string())]);
                    c.files = vec![("/etc/nginx/nginx.conf".into(), conf.into_bytes())];
                }
                Kind::Grafana => {
                    c.image = images.grafana_image.clone();
                    c.build = Some(Build {
                        dockerfile: "compose/grafana.Dockerfile",
                        service: None,
                        context: &["compose/grafana.Dockerfile", "monitoring/grafana"],
                    });
                    c.env = env(&[
                        ("GF_SERVER_HTTP_ADDR", listen_ip.to_owned()),
                        ("GF_SERVER_HTTP_PORT", port.to_string()),
                        (
                            "GF_SECURITY_ADMIN_PASSWORD",
                            secrets.grafana_password.clone(),
                        ),
                        ("GF_AUTH_ANONYMOUS_ENABLED", "true".into()),
                        ("GF_AUTH_ANONYMOUS_ORG_ROLE", "Viewer".into()),
                    ]);
                    c.volume = Some("/var/lib/grafana");
                    // Grafana sets the admin password when it creates its database, on first start.
                    c.credentials = Some(fingerprint(&[&secrets.grafana_password]));
                    // The provisioned data source, pointed at where Prometheus is on this network.
                    c.files = vec![(
                        "/etc/grafana/provisioning/datasources/prometheus.yml".into(),
                        crate::stack::monitoring::GRAFANA_DATASOURCE
                            .replace(
                                "http://prometheus:9090",
                                &format!("http://{}", peer(Kind::Prometheus)),
                            )
                            .into_bytes(),
                    )];
                }
            }
            c
        })
        .collect()
}

/// nginx's files inside the gateway container (the nginx image's standard places).
pub fn container_nginx() -> NginxLayout {
    NginxLayout {
        pid: "/tmp/nginx.pid".into(),
        error_log: "/dev/stderr".into(),
        access_log: "/dev/stdout".into(),
        temp: "/tmp".into(),
        root: "/usr/share/nginx/html".into(),
        as_root: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defs(network: Network, ingest: u16) -> Vec<Container> {
        let (ports, images) = defaults();
        let secrets = Secrets {
            db_password: "db".into(),
            db_root_password: "root".into(),
            admin_token: "admin".into(),
            grafana_password: "grafana".into(),
            store_key: Some("sk_store".into()),
        };
        containers(
            &plan(&ports, Scale::ingest(ingest), &[]),
            network,
            &images,
            &secrets,
        )
    }

    fn env<'a>(c: &'a Container, key: &str) -> &'a str {
        c.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    }

    #[test]
    fn the_rust_build_context_holds_every_file_the_manifests_name() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let workspace = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        let members: Vec<String> = workspace
            .lines()
            .find_map(|l| l.trim().strip_prefix("members = "))
            .unwrap()
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .map(|m| m.trim().trim_matches('"').to_owned())
            .collect();
        assert!(members.len() >= 6, "{members:?}");
        let mut named = 0;
        for member in &members {
            assert!(RUST_CONTEXT.contains(&member.as_str()), "{member}");
            let manifest = std::fs::read_to_string(root.join(member).join("Cargo.toml")).unwrap();
            for build in manifest
                .lines()
                .filter_map(|l| l.trim().strip_prefix("build = "))
            {
                // `../build/x.rs` from the member's folder: `build/x.rs` from the root.
                let path = std::path::Path::new(member).join(build.trim_matches('"'));
                let from_root: std::path::PathBuf = path
                    .components()
                    .fold(Vec::new(), |mut parts, c| {
                        match c {
                            std::path::Component::ParentDir => {
                                parts.pop();
                            }
                            c => parts.push(c.as_os_str().to_owned()),
                        }
                        parts
                    })
                    .iter()
                    .collect();
                assert!(
                    RUST_CONTEXT
                        .iter()
                        .any(|c| from_root.starts_with(c) && root.join(c).exists()),
                    "{member} builds with {}, which the Docker build context lacks",
                    from_root.display()
                );
                named += 1;
            }
        }
        assert!(
            named >= 3,
            "payctl, pay-server and pay-consumer name their build script"
        );
    }

    #[test]
    fn on_a_bridge_services_meet_by_name_and_the_host_gets_loopback_ports() {
        let defs = defs(Network::Bridge, 2);
        let ingest = defs.iter().find(|c| c.service == "ingest-2").unwrap();
        assert_eq!(
            env(ingest, "APP_DATABASE_URL"),
            "mysql://payctl:db@mariadb:3306/payments"
        );
        assert_eq!(env(ingest, "KAFKA_BOOTSTRAP_SERVERS"), "kafka:9092");
        assert_eq!(ingest.publish, vec![(18081, 8080)]);
        let kafka = defs.iter().find(|c| c.kind == Kind::Kafka).unwrap();
        // Containers use kafka:9092, payctl on the host the advertised 127.0.0.1 listener.
        assert!(env(kafka, "KAFKA_ADVERTISED_LISTENERS").contains("INTERNAL://kafka:9092"));
        assert!(env(kafka, "KAFKA_ADVERTISED_LISTENERS").contains("HOST://127.0.0.1:19092"));
        assert_eq!(kafka.publish, vec![(19092, 19092)]);
        let gateway = defs.iter().find(|c| c.kind == Kind::Gateway).unwrap();
        let conf = String::from_utf8(gateway.files[0].1.clone()).unwrap();
        assert!(conf.contains("server ingest:8080") && conf.contains("server ingest-2:8080"));
        assert!(conf.contains("Bearer sk_store"));
        assert_eq!(gateway.depends_on, vec!["ingest", "ingest-2"]);
        let mariadb = defs.iter().find(|c| c.kind == Kind::MariaDb).unwrap();
        assert_eq!(
            mariadb.cmd.as_deref(),
            Some(&["--max-connections=1000".to_owned()][..])
        );
    }

    #[test]
    fn the_volumes_that_keep_secrets_carry_their_fingerprint() {
        let (ports, images) = defaults();
        let stack = plan(&ports, Scale::default(), &[]);
        let with = |db: &str, grafana: &str| {
            let secrets = Secrets {
                db_password: db.into(),
                db_root_password: "root".into(),
                admin_token: "admin".into(),
                grafana_password: grafana.into(),
                store_key: None,
            };
            let defs = containers(&stack, Network::Bridge, &images, &secrets);
            let of = |kind| {
                defs.iter()
                    .find(|c| c.kind == kind)
                    .and_then(|c| c.credentials.clone())
            };
            (of(Kind::MariaDb), of(Kind::Grafana), of(Kind::Redis))
        };
        let (db, grafana, redis) = with("db", "grafana");
        assert!(db.is_some() && grafana.is_some());
        assert_eq!(redis, None, "Redis keeps no secret");
        let (other_db, same_grafana, _) = with("other", "grafana");
        assert_ne!(db, other_db);
        assert_eq!(grafana, same_grafana);
        assert_ne!(grafana, with("db", "other").1);
    }

    #[test]
    fn on_the_host_network_every_service_listens_on_its_payctl_port() {
        let defs = defs(Network::Host, 1);
        assert!(defs.iter().all(|c| c.publish.is_empty()));
        let ingest = defs.iter().find(|c| c.kind == Kind::Ingest).unwrap();
        assert_eq!(env(ingest, "APP_LISTEN"), "127.0.0.1:18080");
        assert_eq!(env(ingest, "APP_REDIS_URL"), "redis://127.0.0.1:16379/");
        let mariadb = defs.iter().find(|c| c.kind == Kind::MariaDb).unwrap();
        assert_eq!(
            mariadb.cmd.as_deref(),
            Some(
                &[
                    "--max-connections=1000".to_owned(),
                    "--port=13306".to_owned(),
                    "--bind-address=127.0.0.1".to_owned()
                ][..]
            )
        );
        let prometheus = defs.iter().find(|c| c.kind == Kind::Prometheus).unwrap();
        let targets = prometheus
            .files
            .iter()
            .find(|(p, _)| p.ends_with("ingest.json"))
            .unwrap();
        assert!(String::from_utf8_lossy(&targets.1).contains("127.0.0.1:18080"));
    }

    #[test]
    fn left_out_services_are_neither_started_nor_waited_for() {
        let (ports, images) = defaults();
        let stack = plan(&ports, Scale::default(), &["prometheus".into()]);
        assert!(stack.iter().all(|s| s.kind != Kind::Prometheus));
        let secrets = Secrets {
            db_password: String::new(),
            db_root_password: String::new(),
            admin_token: String::new(),
            grafana_password: String::new(),
            store_key: None,
        };
        let defs = containers(&stack, Network::Bridge, &images, &secrets);
        let grafana = defs.iter().find(|c| c.kind == Kind::Grafana).unwrap();
        assert!(grafana.depends_on.is_empty(), "{:?}", grafana.depends_on);
    }
}
