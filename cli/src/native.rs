//! The native runtime: the platform as local processes under one state directory.
//!
//! One definition, [`plan`], says what runs, in which order, on which port and how its health is
//! checked; `up` saves the plan it ran (`stack.json`), walks it forwards, `down` walks it backwards and
//! `status` reads it. Every process is started detached with its pid recorded, so `down` stops exactly
//! what `up` started and nothing else. The gateway (nginx) is the service discovery: it balances over
//! the ingest instances and passively takes a dead one out.

use crate::output;
use anyhow::{bail, Context};
use clap::Args;
use pay_server::auth::{create_merchant, ApiKey};
use payctl_domain::MerchantId;
use payctl_stack::process::{pid_alive, Supervised};
use payctl_stack::services::{mariadb_greets, redis_pongs};
use payctl_stack::{ports, Lifetime, MariaDb, Redis, Tansu};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

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

const DATABASE: &str = "payments";
const DB_USER: &str = "payctl";
const DEV_MERCHANT: &str = "dev-merchant";
/// The merchant the demo store (frontend/) sells as.
pub const STORE_MERCHANT: &str = "store-merchant";

fn pid_file(home: &Path, name: &str) -> PathBuf {
    home.join(name).join("pid")
}

pub fn running_pid(home: &Path, name: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file(home, name))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    pid_alive(pid).then_some(pid)
}

fn write_pid(home: &Path, name: &str, pid: Option<u32>) -> anyhow::Result<()> {
    let pid = pid.context("service started without a pid")?;
    std::fs::write(pid_file(home, name), pid.to_string())?;
    Ok(())
}

/// A generated secret kept in the state directory (mode 0600), created on first use. Dev-only.
pub fn secret(home: &Path, name: &str) -> anyhow::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = home.join("secrets").join(name);
    if let Ok(s) = std::fs::read_to_string(&path) {
        return Ok(s.trim().to_owned());
    }
    std::fs::create_dir_all(path.parent().context("secrets dir")?)?;
    let value: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&path)?;
    std::io::Write::write_all(&mut f, value.as_bytes())?;
    Ok(value)
}

/// Writes a file only its owner can read (mode 0600 when created): keys and configs that hold them.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    std::io::Write::write_all(&mut f, bytes)?;
    Ok(())
}

pub fn database_url(home: &Path, ports: &Ports) -> anyhow::Result<String> {
    Ok(format!(
        "mysql://{DB_USER}:{}@127.0.0.1:{}/{DATABASE}",
        secret(home, "db-password")?,
        ports.mariadb_port
    ))
}

/// Builds the store (frontend/dist) when this is a checkout without a build and npm is here, so that the
/// gateway serves the store on the first `up`. Without npm the gateway shows a page that says how.
pub fn build_store_if_missing() {
    let Ok(cwd) = std::env::current_dir() else {
        return;
    };
    let frontend = cwd.join("frontend");
    if std::env::var_os("PAYCTL_STORE_DIR").is_some()
        || frontend.join("dist/index.html").exists()
        || !frontend.join("package.json").exists()
        || payctl_stack::install::which("npm").is_none()
    {
        return;
    }
    eprintln!("building the store (npm ci && npm run build in frontend/) …");
    let run = |args: &[&str]| {
        Command::new("npm")
            .args(args)
            .current_dir(&frontend)
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let ok = (frontend.join("node_modules").exists() || run(&["ci", "--no-audit", "--no-fund"]))
        && run(&["run", "build"]);
    if !ok {
        eprintln!("warning: the store did not build; the gateway serves a placeholder at /");
    }
}

/// The platform's binaries beside this executable (same cargo profile), built first if missing.
fn binaries() -> anyhow::Result<(PathBuf, PathBuf)> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("executable has no directory")?;
    let (server, consumer) = (dir.join("pay-server"), dir.join("pay-consumer"));
    if !server.exists() || !consumer.exists() {
        eprintln!("building pay-server and pay-consumer …");
        let mut cargo = Command::new("cargo");
        cargo.args(["build", "-p", "pay-server", "-p", "pay-consumer"]);
        if dir.ends_with("release") {
            cargo.arg("--release");
        }
        let status = cargo.status().context("running cargo build")?;
        if !status.success() || !server.exists() || !consumer.exists() {
            bail!("could not build the services (cargo build -p pay-server -p pay-consumer)");
        }
    }
    Ok((server, consumer))
}

/// True when the service on 127.0.0.1:`port` answers as itself (a greeting, a PONG, broker metadata,
/// an HTTP 200), not merely when the port accepts: Docker's port proxy accepts for a container that is
/// not up yet.
pub async fn healthy(kind: Kind, port: u16) -> bool {
    match kind {
        Kind::MariaDb => tokio::task::spawn_blocking(move || mariadb_greets(port))
            .await
            .unwrap_or(false),
        Kind::Redis => tokio::task::spawn_blocking(move || redis_pongs(port))
            .await
            .unwrap_or(false),
        Kind::Kafka => tokio::task::spawn_blocking(move || kafka_answers(port))
            .await
            .unwrap_or(false),
        Kind::Ingest | Kind::Consumer | Kind::Gateway | Kind::Prometheus | Kind::Grafana => {
            reqwest::Client::new()
                .get(format!(
                    "http://127.0.0.1:{port}/{}",
                    match kind {
                        Kind::Gateway => "health",
                        Kind::Prometheus => "-/ready",
                        Kind::Grafana => "api/health",
                        _ => "ready",
                    }
                ))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false)
        }
    }
}

/// A broker answers a metadata request on 127.0.0.1:`port`.
fn kafka_answers(port: u16) -> bool {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: Result<BaseConsumer, _> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{port}"))
        .set_log_level(rdkafka::config::RDKafkaLogLevel::Emerg)
        .create();
    consumer.is_ok_and(|c| c.fetch_metadata(None, Duration::from_secs(2)).is_ok())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Runtime {
    Auto,
    Native,
    Docker,
}

/// Picks the runtime: Docker when asked, or (auto) when an engine answers; native otherwise.
pub async fn choose_runtime(requested: Runtime) -> anyhow::Result<Runtime> {
    Ok(match requested {
        Runtime::Auto if crate::docker::answers().await => Runtime::Docker,
        Runtime::Auto => Runtime::Native,
        other => other,
    })
}

/// What the native runtime runs, the package that provides it, and how to install it.
const REQUIRED: &[(&str, &str)] = &[
    ("mariadbd", "apt-get install -y mariadb-server"),
    ("mariadb-install-db", "apt-get install -y mariadb-server"),
    ("redis-server", "apt-get install -y redis-server"),
    ("tansu", payctl_stack::install::TANSU_INSTALL),
    ("nginx", "apt-get install -y nginx"),
    ("prometheus", "apt-get install -y prometheus"),
];

/// Installs what is missing (Debian packages as root, tansu with cargo), or with `no_install` names
/// the exact commands and fails.
fn ensure_installed(no_install: bool) -> anyhow::Result<()> {
    let mut missing: Vec<(&str, &str)> = REQUIRED
        .iter()
        .filter(|(program, _)| payctl_stack::install::which(program).is_none())
        .copied()
        .collect();
    missing.dedup_by_key(|(_, command)| *command);
    if missing.is_empty() {
        return Ok(());
    }
    let commands: Vec<&str> = missing.iter().map(|(_, c)| *c).collect();
    if no_install {
        bail!(
            "missing {}; install with:\n  {}",
            missing
                .iter()
                .map(|(p, _)| *p)
                .collect::<Vec<_>>()
                .join(", "),
            commands.join("\n  ")
        );
    }
    for (program, command) in missing {
        eprintln!("installing {program}: {command}");
        if program == "tansu" {
            payctl_stack::install::tansu()?;
        } else {
            payctl_stack::install::require(program)?;
        }
    }
    Ok(())
}

pub async fn up(
    home: &Path,
    ports: &Ports,
    ingest: u16,
    no_install: bool,
) -> anyhow::Result<ExitCode> {
    ensure_installed(no_install)?;
    std::fs::create_dir_all(home)?;
    let home = &home.canonicalize()?;
    let stack = plan(ports, ingest);
    // Check every port before starting anything.
    for svc in &stack {
        if running_pid(home, &svc.name).is_none() && ports::is_listening(svc.port) {
            let who = ports::holder(svc.port)
                .map(|(pid, cmd)| format!("{cmd} (pid {pid})"))
                .unwrap_or_else(|| "another process".into());
            let flag = svc.name.split('-').next().unwrap_or(&svc.name);
            bail!(
                "port {} for {} is already in use by {who}; free it or choose another with --{flag}-port",
                svc.port,
                svc.name
            );
        }
    }
    let (server, consumer) = binaries()?;
    build_store_if_missing();
    std::fs::write(home.join("stack.json"), serde_json::to_vec_pretty(&stack)?)?;
    let mut started_now: Vec<&str> = Vec::new();
    for svc in &stack {
        let (name, port) = (svc.name.as_str(), svc.port);
        if let Some(pid) = running_pid(home, name) {
            eprintln!("{name:<9} already running (pid {pid})");
            continue;
        }
        let started = Instant::now();
        let spinner = indicatif::ProgressBar::new_spinner();
        spinner.set_message(format!("{name:<9} starting on 127.0.0.1:{port} …"));
        spinner.enable_steady_tick(Duration::from_millis(100));
        let result = start_service(home, ports, svc, &stack, &server, &consumer).await;
        spinner.finish_and_clear();
        if let Err(e) = result {
            eprintln!(
                "{} {name:<9} failed after {:.1?}",
                output::mark(false),
                started.elapsed()
            );
            // Leave nothing half-started behind: stop what this run started, newest first.
            for done in started_now.iter().rev() {
                let _ = stop_one(home, done);
            }
            return Err(e.context(format!(
                "{name} failed to start; stopped what this run had started"
            )));
        }
        started_now.push(name);
        eprintln!(
            "{} {name:<9} ready on 127.0.0.1:{port} in {:.1?}",
            output::mark(true),
            started.elapsed()
        );
    }
    let key = dev_merchant_key(home, ports).await?;
    print_status(home, ports, false).await?;
    print_endpoints(home, ports, &key);
    println!("Grafana:      needs the Docker runtime (payctl top shows the key figures)");
    Ok(ExitCode::SUCCESS)
}

/// The gateway, the API and the dev merchant's key, after `up` on either runtime.
pub fn print_endpoints(home: &Path, ports: &Ports, key: &ApiKey) {
    println!(
        "\ngateway:      http://127.0.0.1:{}/   (the store)",
        ports.gateway_port
    );
    println!("API:          http://127.0.0.1:{}/api", ports.gateway_port);
    println!("merchant:     {DEV_MERCHANT}");
    println!(
        "API key:      {}   (dev only; stored in {})",
        key.expose(),
        home.join("secrets/dev-merchant.key").display()
    );
    println!(
        "try:          curl -s -H 'Authorization: Bearer {}' -H 'Idempotency-Key: demo-1' -H 'Content-Type: application/json' \\\n                -d '{{\"amount\":1000,\"currency\":\"KRW\"}}' http://127.0.0.1:{}/api/payments/authorize",
        key.expose(),
        ports.gateway_port
    );
}

/// The application's database and its own user with a generated password (root stays local-only).
async fn provision_database(home: &Path, ports: &Ports) -> anyhow::Result<()> {
    let root = sqlx::MySqlPool::connect(&format!("mysql://root@127.0.0.1:{}/", ports.mariadb_port))
        .await?;
    let password = secret(home, "db-password")?;
    sqlx::query(&format!("CREATE DATABASE IF NOT EXISTS {DATABASE}"))
        .execute(&root)
        .await?;
    sqlx::query(&format!(
        "CREATE USER IF NOT EXISTS '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{password}'"
    ))
    .execute(&root)
    .await?;
    sqlx::query(&format!(
        "GRANT ALL PRIVILEGES ON {DATABASE}.* TO '{DB_USER}'@'127.0.0.1'"
    ))
    .execute(&root)
    .await?;
    root.close().await;
    Ok(())
}

/// The dev merchant's API key: created (and stored, 0600) on the first `up`, reused after.
pub async fn dev_merchant_key(home: &Path, ports: &Ports) -> anyhow::Result<ApiKey> {
    merchant_key(home, ports, DEV_MERCHANT, "Dev merchant (payctl up)").await
}

/// The demo store's key, which the gateway adds on /store-api: a browser never holds an API key.
pub async fn store_key(home: &Path, ports: &Ports) -> anyhow::Result<ApiKey> {
    merchant_key(
        home,
        ports,
        STORE_MERCHANT,
        "Demo store (gateway /store-api)",
    )
    .await
}

/// The API key of a merchant payctl provisions (kept in `secrets/<merchant>.key`, mode 0600), created
/// with the merchant on first use. Dev-only.
async fn merchant_key(
    home: &Path,
    ports: &Ports,
    merchant: &str,
    description: &str,
) -> anyhow::Result<ApiKey> {
    let path = home.join("secrets").join(format!("{merchant}.key"));
    let db = sqlx::MySqlPool::connect(&database_url(home, ports)?).await?;
    let id = MerchantId::parse("merchantId", merchant).map_err(|e| anyhow::anyhow!("{e}"))?;
    let known: Option<(String,)> =
        sqlx::query_as("SELECT merchant_id FROM merchants WHERE merchant_id = ?")
            .bind(merchant)
            .fetch_optional(&db)
            .await?;
    if let (Ok(key), Some(_)) = (std::fs::read_to_string(&path), known) {
        return Ok(ApiKey::from_string(key.trim().to_owned()));
    }
    let key = create_merchant(&db, &id, description).await?;
    std::fs::create_dir_all(home.join("secrets"))?;
    write_private(&path, key.expose().as_bytes())?;
    Ok(key)
}

/// Stops one service started by `up`; true if it was running.
pub fn stop_one(home: &Path, name: &str) -> anyhow::Result<bool> {
    let running = match running_pid(home, name) {
        Some(pid) => {
            Supervised::adopt(name, pid, &home.join(name).join("log"))
                .stop(Duration::from_secs(30))?;
            true
        }
        None => false,
    };
    let _ = std::fs::remove_file(pid_file(home, name));
    Ok(running)
}

/// Starts the Kafka broker again on its data (for `payctl cb test`).
pub fn start_kafka(home: &Path, ports: &Ports) -> anyhow::Result<()> {
    let mut tansu = Tansu::new(&home.join("kafka"), ports.kafka_port, Lifetime::Detached);
    tansu.start()?;
    write_pid(home, "kafka", tansu.pid())
}

pub fn down(home: &Path, ports: &Ports, volumes: bool) -> anyhow::Result<ExitCode> {
    for svc in saved_plan(home, ports).iter().rev() {
        let name = svc.name.as_str();
        if stop_one(home, name)? {
            eprintln!("{name:<8} stopped");
        } else {
            eprintln!("{name:<8} not running");
        }
    }
    if volumes && home.exists() {
        std::fs::remove_dir_all(home).with_context(|| format!("removing {}", home.display()))?;
        eprintln!("removed {}", home.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct Row {
    service: String,
    pid: Option<u32>,
    address: String,
    health: &'static str,
}

async fn rows(home: &Path, ports: &Ports) -> Vec<Row> {
    let mut out = Vec::new();
    for svc in saved_plan(home, ports) {
        let pid = running_pid(home, &svc.name);
        let health = match pid {
            None => "stopped",
            Some(_) if healthy(svc.kind, svc.port).await => "healthy",
            Some(_) => "unhealthy",
        };
        out.push(Row {
            service: svc.name,
            pid,
            address: format!("127.0.0.1:{}", svc.port),
            health,
        });
    }
    out
}

async fn print_status(home: &Path, ports: &Ports, json: bool) -> anyhow::Result<bool> {
    let rows = rows(home, ports).await;
    let all_healthy = rows.iter().all(|r| r.health == "healthy");
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "{}",
            output::table(
                &["service", "pid", "address", "health"],
                rows.iter().map(|r| {
                    let health = output::health(r.health);
                    vec![
                        r.service.clone(),
                        r.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                        r.address.clone(),
                        health,
                    ]
                })
            )
        );
    }
    Ok(all_healthy)
}

pub async fn status(home: &Path, ports: &Ports, json: bool) -> anyhow::Result<ExitCode> {
    let all_healthy = print_status(home, ports, json).await?;
    Ok(if all_healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// The log file of a service.
pub fn log_path(home: &Path, service: &str) -> anyhow::Result<PathBuf> {
    let file = match service {
        "mariadb" => "mariadb.log".to_owned(),
        "redis" => "redis.log".to_owned(),
        "kafka" => "tansu.log".to_owned(),
        "gateway" => "error.log".to_owned(),
        "prometheus" => "prometheus.log".to_owned(),
        "consumer" => "consumer.log".to_owned(),
        s if s == "ingest" || s.starts_with("ingest-") => format!("{s}.log"),
        other => bail!("unknown service '{other}'; one of: mariadb, redis, kafka, ingest[-N], consumer, prometheus, gateway"),
    };
    Ok(home.join(service).join(file))
}

/// `payctl logs SERVICE [-f]`: the last lines, then (with follow) what is appended.
pub async fn logs(
    home: &Path,
    service: &str,
    lines: usize,
    follow: bool,
) -> anyhow::Result<ExitCode> {
    use std::io::{Read, Seek, SeekFrom};
    let path = log_path(home, service)?;
    if !path.exists() {
        bail!(
            "no log for {service} at {} (has it been started?)",
            path.display()
        );
    }
    for line in payctl_stack::process::log_tail(&path, lines) {
        println!("{line}");
    }
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    let mut file = std::fs::File::open(&path)?;
    let mut pos = file.seek(SeekFrom::End(0))?;
    loop {
        let len = file.metadata()?.len();
        if len < pos {
            pos = 0; // truncated or replaced
        }
        if len > pos {
            file.seek(SeekFrom::Start(pos))?;
            let mut buf = Vec::new();
            file.read_to_end(&mut buf)?;
            pos += buf.len() as u64;
            print!("{}", String::from_utf8_lossy(&buf));
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// Starts one service of the stack and waits until it is healthy.
async fn start_service(
    home: &Path,
    ports: &Ports,
    svc: &Svc,
    stack: &[Svc],
    server: &Path,
    consumer: &Path,
) -> anyhow::Result<()> {
    let (name, kind, port) = (svc.name.as_str(), svc.kind, svc.port);
    let dir = home.join(name);
    std::fs::create_dir_all(&dir)?;
    let cmd = match kind {
        Kind::MariaDb => {
            let mut db = MariaDb::new(&dir, port, Lifetime::Detached);
            db.start()?;
            write_pid(home, name, db.pid())?;
            return provision_database(home, ports).await;
        }
        Kind::Redis => {
            let mut redis = Redis::new(&dir, port, Lifetime::Detached);
            redis.persistent = true;
            redis.start()?;
            return write_pid(home, name, redis.pid());
        }
        Kind::Kafka => {
            let mut tansu = Tansu::new(&dir, port, Lifetime::Detached);
            tansu.start()?;
            return write_pid(home, name, tansu.pid());
        }
        Kind::Ingest | Kind::Consumer => {
            let mut cmd = Command::new(if kind == Kind::Ingest {
                server
            } else {
                consumer
            });
            cmd.env("APP_LISTEN", format!("127.0.0.1:{port}"))
                .env("APP_DATABASE_URL", database_url(home, ports)?)
                .env(
                    "APP_REDIS_URL",
                    format!("redis://127.0.0.1:{}/", ports.redis_port),
                )
                .env(
                    "KAFKA_BOOTSTRAP_SERVERS",
                    format!("127.0.0.1:{}", ports.kafka_port),
                )
                .env("APP_ADMIN_TOKEN", secret(home, "admin-token")?)
                // Static group membership: a restarted consumer takes its own place at once.
                .env("APP_CONSUMER_INSTANCE_ID", format!("payctl-{name}"));
            cmd
        }
        Kind::Prometheus => {
            let conf = prometheus_config(&dir, stack)?;
            let mut cmd = Command::new(payctl_stack::install::require("prometheus")?);
            cmd.arg(format!("--config.file={}", conf.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--storage.tsdb.retention.time=7d");
            cmd
        }
        Kind::Grafana => bail!("Grafana is not available natively; use --runtime docker"),
        Kind::Gateway => {
            let upstreams: Vec<u16> = stack
                .iter()
                .filter(|s| s.kind == Kind::Ingest)
                .map(|s| s.port)
                .collect();
            let store_key = store_key(home, ports).await?;
            let conf = gateway_config(&dir, port, &upstreams, store_key.expose())?;
            let mut cmd = Command::new(payctl_stack::install::require("nginx")?);
            cmd.arg("-p").arg(&dir).arg("-c").arg(conf);
            cmd
        }
    };
    let log = dir.join(if kind == Kind::Gateway {
        "nginx.out".to_owned()
    } else {
        format!("{name}.log")
    });
    let mut process = Supervised::spawn(name, cmd, &log, Lifetime::Detached)?;
    write_pid(home, name, Some(process.pid))?;
    let deadline = Instant::now() + Duration::from_secs(90);
    while !healthy(kind, port).await {
        if !process.is_running() || Instant::now() > deadline {
            let mut tail = process.log_tail(20);
            if kind == Kind::Gateway {
                tail.extend(payctl_stack::process::log_tail(&dir.join("error.log"), 20));
            }
            bail!(
                "{name} did not become ready; last log lines:\n{}",
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Prometheus for the native runtime: the repository's config and alert rules (monitoring/prometheus,
/// built into payctl) and the targets files written from the stack definition.
fn prometheus_config(dir: &Path, stack: &[Svc]) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir.join("targets"))?;
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, crate::monitoring::PROMETHEUS_YML)?;
    std::fs::write(dir.join("alerts.yml"), crate::monitoring::ALERTS_YML)?;
    for (file, body) in prometheus_targets(stack, &|s| format!("127.0.0.1:{}", s.port))? {
        std::fs::write(dir.join(file), body)?;
    }
    Ok(config)
}

/// Prometheus' targets files (`targets/<job>.json`, file_sd) for every service it scrapes, each at
/// the address `addr` gives: 127.0.0.1:port natively, the service name on a Docker network.
pub fn prometheus_targets(
    stack: &[Svc],
    addr: &dyn Fn(&Svc) -> String,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    for (job, kind) in [
        ("ingest", Kind::Ingest),
        ("consumer", Kind::Consumer),
        ("prometheus", Kind::Prometheus),
    ] {
        let targets: Vec<serde_json::Value> = stack
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| serde_json::json!({"targets": [addr(s)], "labels": {"service": s.name}}))
            .collect();
        let mut body = serde_json::to_vec_pretty(&targets)?;
        body.push(b'\n');
        files.push((format!("targets/{job}.json"), body));
    }
    Ok(files)
}

/// One proxied path to the ingest instances: keep-alive upstream connections, a refused connection or
/// a 502 retried on the next instance. `extra`: more directives (the store's key).
fn api_location(path: &str, extra: &str) -> String {
    format!(
        "location {path} {{\n            proxy_pass http://ingest/;\n            proxy_http_version 1.1;\n\
         proxy_set_header Connection \"\";\n            proxy_set_header X-Forwarded-For $remote_addr;\n\
         {extra}\n            proxy_connect_timeout 1s;\n            proxy_read_timeout 30s;\n\
         proxy_next_upstream error timeout http_502;\n            proxy_next_upstream_tries 3;\n        }}\n        "
    )
}

/// Where nginx keeps its files: under the native runtime's state directory, or in a container's
/// standard places.
pub struct NginxLayout {
    pub pid: String,
    pub error_log: String,
    pub access_log: String,
    pub temp: String,
    pub root: String,
    /// `user root root;`: nginx started by root on the native runtime serves files root can read.
    pub as_root: bool,
}

/// The gateway's nginx.conf, for both runtimes and the compose file: `/` serves the store, `/api/`
/// balances over the ingest instances (`upstreams`, host:port), `/store-api/` adds the store merchant's
/// key when there is one. A refused connection is retried on the next instance and the failed one is
/// left out for a few seconds (passive health checks), so a dead instance costs at most its in-flight
/// requests.
pub fn nginx_conf(
    listen: &str,
    upstreams: &[String],
    store_key: Option<&str>,
    layout: &NginxLayout,
) -> String {
    let servers: String = upstreams
        .iter()
        .map(|a| format!("        server {a} max_fails=1 fail_timeout=5s;\n"))
        .collect();
    let user = if layout.as_root {
        "user root root;\n"
    } else {
        ""
    };
    let store_auth = store_key
        .map(|k| format!("proxy_set_header Authorization \"Bearer {k}\";"))
        .unwrap_or_default();
    format!(
        "# Generated by payctl; changes are overwritten.\n{user}daemon off;\nworker_processes 1;\n\
         pid {pid};\nerror_log {err} warn;\nevents {{ worker_connections 1024; }}\nhttp {{\n\
         access_log {access};\n    client_body_temp_path {tmp}/body;\n    proxy_temp_path {tmp}/proxy;\n\
         fastcgi_temp_path {tmp}/fastcgi;\n    uwsgi_temp_path {tmp}/uwsgi;\n    scgi_temp_path {tmp}/scgi;\n\
         include /etc/nginx/mime.types;\n    upstream ingest {{\n{servers}        keepalive 64;\n    }}\n\
         server {{\n        listen {listen};\n\
         location = /health {{ default_type application/json; return 200 '{{\"status\":\"UP\"}}'; }}\n\
         {api}{store_api}\
         location / {{ root {root}; try_files $uri /index.html; }}\n    }}\n}}\n",
        api = api_location("/api/", ""),
        store_api = api_location("/store-api/", &store_auth),
        pid = layout.pid,
        err = layout.error_log,
        access = layout.access_log,
        tmp = layout.temp,
        root = layout.root,
    )
}

/// nginx for the native runtime, in its state directory; the store from frontend/dist when built.
fn gateway_config(
    dir: &Path,
    port: u16,
    upstreams: &[u16],
    store_key: &str,
) -> anyhow::Result<PathBuf> {
    for sub in ["tmp", "www"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    // The built store: $PAYCTL_STORE_DIR, else frontend/dist under the current directory.
    let store = match std::env::var_os("PAYCTL_STORE_DIR") {
        Some(d) => PathBuf::from(d),
        None => std::env::current_dir()?.join("frontend/dist"),
    };
    let root = if store.join("index.html").exists() {
        store
    } else {
        std::fs::write(
            dir.join("www/index.html"),
            "<!doctype html><html lang=\"en\"><title>payctl</title><h1>payctl gateway</h1>\n\
             <p>The store is not built yet (frontend/dist). The payment API is at <code>/api</code>.</p></html>\n",
        )?;
        dir.join("www")
    };
    let path_of = |p: PathBuf| p.display().to_string();
    let layout = NginxLayout {
        pid: path_of(dir.join("nginx.pid")),
        error_log: path_of(dir.join("error.log")),
        access_log: path_of(dir.join("access.log")),
        temp: path_of(dir.join("tmp")),
        root: path_of(root),
        as_root: payctl_stack::install::is_root(),
    };
    let upstreams: Vec<String> = upstreams.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let conf = nginx_conf(
        &format!("127.0.0.1:{port}"),
        &upstreams,
        Some(store_key),
        &layout,
    );
    let path = dir.join("nginx.conf");
    // It holds the store merchant's key.
    write_private(&path, conf.as_bytes())?;
    Ok(path)
}
