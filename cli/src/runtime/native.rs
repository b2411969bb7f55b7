//! The native runtime: the platform as local processes under one state directory.
//!
//! `up` saves the plan it ran (`stack.json`), walks it forwards, `down` walks it backwards and `status`
//! reads it. Every process is started detached with its pid recorded, so `down` stops exactly what `up`
//! started and nothing else. The gateway (nginx) is the service discovery: it balances over the ingest
//! instances and passively takes a dead one out.

use crate::ops::merchants::{dev_merchant_key, print_endpoints, store_key};
use crate::ops::store::build_store_if_missing;
use crate::output;
use crate::stack::config::{nginx_conf, prometheus_targets, NginxLayout};
use crate::stack::health::healthy;
use crate::stack::secrets::{database_url, secret, write_private, DATABASE, DB_USER};
use crate::stack::{plan, saved_plan, Kind, Ports, Svc};
use anyhow::{bail, Context};
use payctl_stack::process::{pid_alive, Supervised};
use payctl_stack::{ports, Lifetime, MariaDb, Redis, Tansu};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

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
    std::fs::write(&config, crate::stack::monitoring::PROMETHEUS_YML)?;
    std::fs::write(dir.join("alerts.yml"), crate::stack::monitoring::ALERTS_YML)?;
    for (file, body) in prometheus_targets(stack, &|s| format!("127.0.0.1:{}", s.port))? {
        std::fs::write(dir.join(file), body)?;
    }
    Ok(config)
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
