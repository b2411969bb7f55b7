//! The native runtime: the platform as local processes under one state directory.
//!
//! `up` saves the plan it ran (`stack.json`), walks it forwards, `down` walks it backwards and `status`
//! reads it. Every process is started detached with its pid recorded, so `down` stops exactly what `up`
//! started and nothing else. The gateway (nginx) is the service discovery: it balances over the ingest
//! instances and passively takes a dead one out.

use super::{Health, LogStream, Runs, Runtime, ServiceStatus};
use crate::ops::merchants::store_key;
use crate::ops::procfs;
use crate::ops::store::build_store_if_missing;
use crate::output;
use crate::stack::config::{nginx_conf, prometheus_targets, NginxLayout};
use crate::stack::health::healthy;
use crate::stack::secrets::{database_url, secret, write_private, DATABASE, DB_USER};
use crate::stack::{self, plan, saved, saved_plan, saved_service, Kind, Ports, Scale, Svc};
use anyhow::{bail, Context};
use async_trait::async_trait;
use futures::StreamExt;
use payctl_stack::process::{pid_alive, Supervised};
use payctl_stack::{ports, Lifetime, MariaDb, Redis, Tansu};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The stack as processes under the state directory `home`.
pub struct Native {
    home: PathBuf,
    /// Where the services listen when `up` saved no plan, and what the API and the consumer are
    /// configured with.
    ports: Ports,
    /// `up` names the commands for what is missing instead of installing it.
    no_install: bool,
}

impl Native {
    pub fn new(home: &Path, ports: &Ports, no_install: bool) -> Self {
        Self {
            home: home.to_owned(),
            ports: ports.clone(),
            no_install,
        }
    }

    fn service(&self, name: &str) -> anyhow::Result<Svc> {
        saved_service(&self.home, &self.ports, name)
    }

    /// The pid of a running service of the stack.
    fn running(&self, name: &str) -> anyhow::Result<u32> {
        self.service(name)?;
        running_pid(&self.home, name).with_context(|| format!("{name} is not running"))
    }
}

#[async_trait]
impl Runtime for Native {
    fn supports(&self, kind: Kind) -> bool {
        kind != Kind::Grafana
    }

    async fn up(&self, scale: Scale) -> anyhow::Result<()> {
        up(&self.home, &self.ports, scale, self.no_install).await
    }

    async fn down(&self, volumes: bool) -> anyhow::Result<()> {
        down(&self.home, &self.ports, volumes)
    }

    async fn status(&self) -> anyhow::Result<Vec<ServiceStatus>> {
        Ok(rows(&self.home, &self.ports).await)
    }

    async fn logs(&self, service: &str, lines: usize, follow: bool) -> anyhow::Result<LogStream> {
        logs(&self.home, service, lines, follow)
    }

    async fn start(&self, service: &str) -> anyhow::Result<()> {
        // Absolute paths for the services' files: nginx reads its config relative to its prefix.
        let home = &self.home.canonicalize()?;
        let stack = saved_plan(home, &self.ports);
        let svc = self.service(service)?;
        // Configured as `up` configured it: with the ports of the plan it saved.
        let ports = self.ports.of(&stack);
        match running_pid(home, service) {
            Some(pid) => wait_healthy(&svc, pid).await,
            None => start_service(home, &ports, &svc, &stack, None).await,
        }
    }

    async fn stop(&self, service: &str) -> anyhow::Result<bool> {
        self.service(service)?;
        stop_one(&self.home, service)
    }

    async fn kill(&self, service: &str) -> anyhow::Result<bool> {
        self.service(service)?;
        let Some(pid) = running_pid(&self.home, service) else {
            return Ok(false);
        };
        signal_service(pid, libc::SIGKILL)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while pid_alive(pid) {
            if Instant::now() > deadline {
                bail!("{service} (pid {pid}) did not die after SIGKILL");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(true)
    }

    async fn freeze(&self, service: &str) -> anyhow::Result<()> {
        let pid = self.running(service)?;
        signal_service(pid, libc::SIGSTOP)?;
        wait_for_state(service, pid, true).await
    }

    async fn thaw(&self, service: &str) -> anyhow::Result<()> {
        let pid = self.running(service)?;
        signal_service(pid, libc::SIGCONT)?;
        wait_for_state(service, pid, false).await
    }

    async fn health(&self, service: &str) -> anyhow::Result<Health> {
        let svc = self.service(service)?;
        Ok(health(&svc, running_pid(&self.home, service)).await)
    }

    async fn pid(&self, service: &str) -> Option<u32> {
        running_pid(&self.home, service)
    }
}

fn pid_file(home: &Path, name: &str) -> PathBuf {
    home.join(name).join("pid")
}

fn running_pid(home: &Path, name: &str) -> Option<u32> {
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

/// The platform's services, each a binary of this workspace.
const SERVICE_BINARIES: [&str; 4] = [
    "pay-server",
    "pay-consumer",
    "pay-settlement",
    "pay-acquirer",
];

/// The platform's binary `name` (one of [`SERVICE_BINARIES`]) beside this executable (same cargo
/// profile); all of them are built first if one is missing.
fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("executable has no directory")?;
    let missing = || SERVICE_BINARIES.iter().any(|b| !dir.join(b).exists());
    if missing() {
        eprintln!("building {} …", SERVICE_BINARIES.join(", "));
        let mut cargo = Command::new("cargo");
        cargo.arg("build");
        for b in SERVICE_BINARIES {
            cargo.args(["-p", b]);
        }
        if dir.ends_with("release") {
            cargo.arg("--release");
        }
        let status = cargo.status().context("running cargo build")?;
        if !status.success() || missing() {
            bail!(
                "could not build the services (cargo build -p {})",
                SERVICE_BINARIES.join(" -p ")
            );
        }
    }
    Ok(dir.join(name))
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

async fn up(home: &Path, ports: &Ports, scale: Scale, no_install: bool) -> anyhow::Result<()> {
    ensure_installed(no_install)?;
    std::fs::create_dir_all(home)?;
    let home = &home.canonicalize()?;
    let stack = plan(ports, scale);
    stack::refuse_port_clash(&stack)?;
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
    let before = saved(home).unwrap_or_default();
    // Built now when missing, before anything starts.
    binary("pay-server")?;
    build_store_if_missing();
    stack::save(home, &stack)?;
    // This directory's stack runs natively from now on: a Docker stack stopped here earlier (`down`
    // keeps its record, so that `down --volumes` still finds its volumes) is no longer the one the
    // commands talk to. Its volumes stay, labelled; `payctl down --volumes --project` removes them.
    let _ = std::fs::remove_file(home.join("docker.json"));
    scale_consumers(home, &before, &stack)?;
    let mut started_now: Vec<&str> = Vec::new();
    for svc in &stack {
        let (name, port) = (svc.name.as_str(), svc.port);
        if let Some(pid) = running_pid(home, name) {
            eprintln!("{name:<10} already running (pid {pid})");
            continue;
        }
        let started = Instant::now();
        let spinner = indicatif::ProgressBar::new_spinner();
        spinner.set_message(format!("{name:<10} starting on 127.0.0.1:{port} …"));
        spinner.enable_steady_tick(Duration::from_millis(100));
        let result = start_service(home, ports, svc, &stack, scale.partitions).await;
        spinner.finish_and_clear();
        if let Err(e) = result {
            eprintln!(
                "{} {name:<10} failed after {:.1?}",
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
            "{} {name:<10} ready on 127.0.0.1:{port} in {:.1?}",
            output::mark(true),
            started.elapsed()
        );
    }
    follow_scale(home, ports, &before, &stack).await
}

/// The API's instances of a plan, by name and port: what the gateway balances over.
fn apis(stack: &[Svc]) -> Vec<(String, u16)> {
    stack
        .iter()
        .filter(|s| s.kind == Kind::Ingest)
        .map(|s| (s.name.clone(), s.port))
        .collect()
}

/// Before `up` starts what is missing of `stack`, where the last `up` ran `before`: when the number
/// of consumers changes, every consumer stops (each starts again with its new share), and consumers
/// beyond the new count stop for good, committing what they applied.
fn scale_consumers(home: &Path, before: &[Svc], stack: &[Svc]) -> anyhow::Result<()> {
    let consumers = |v: &[Svc]| v.iter().filter(|s| s.kind == Kind::Consumer).count();
    if before.is_empty() || consumers(before) == consumers(stack) {
        return Ok(());
    }
    for c in before.iter().filter(|s| s.kind == Kind::Consumer) {
        let stays = stack.iter().any(|s| s.name == c.name);
        if stop_one(home, &c.name)? {
            if stays {
                eprintln!(
                    "{:<10} stopped, to start again with its share of {} consumers",
                    c.name,
                    consumers(stack)
                );
            } else {
                eprintln!("{:<10} stopped (scaled down)", c.name);
            }
        }
    }
    Ok(())
}

/// After `up` started what was missing: a gateway that ran before it gets the new set of API
/// instances (its config rewritten, then nginx reloaded with SIGHUP: the old workers finish their
/// requests), then the API instances beyond the new count stop, so none is stopped while the gateway
/// still sends it requests. A running Prometheus rereads its target files.
async fn follow_scale(
    home: &Path,
    ports: &Ports,
    before: &[Svc],
    stack: &[Svc],
) -> anyhow::Result<()> {
    if !before.is_empty() && apis(before) != apis(stack) {
        if let (Some(pid), Some(gateway)) = (
            running_pid(home, "gateway"),
            stack.iter().find(|s| s.kind == Kind::Gateway),
        ) {
            let upstreams: Vec<u16> = apis(stack).iter().map(|(_, port)| *port).collect();
            let key = store_key(home, ports).await?;
            gateway_config(
                &home.join("gateway"),
                gateway.port,
                &upstreams,
                key.expose(),
            )?;
            signal_service(pid, libc::SIGHUP)?;
            eprintln!(
                "{} gateway   now balances over {} API instance(s)",
                output::mark(true),
                upstreams.len()
            );
        }
    }
    for old in before
        .iter()
        .filter(|old| old.kind == Kind::Ingest && !stack.iter().any(|s| s.name == old.name))
    {
        if stop_one(home, &old.name)? {
            eprintln!("{:<10} stopped (scaled down)", old.name);
        }
    }
    if running_pid(home, "prometheus").is_some() {
        prometheus_config(&home.join("prometheus"), stack)?;
    }
    Ok(())
}

/// The share of the partitions a ledger consumer reads (`K/N` of N consumers; `1/1`, all of them,
/// for one), instead of taking part in the group's rebalancing. tansu 0.6.0's group coordinator
/// cannot rebalance a group that lost a member (docs/SCALING.md §1 has the source lines): a killed
/// consumer's partitions are never handed to the others, and a member that comes back may get none,
/// which stalls the ledger — even a lone consumer restarted under load sometimes waited for ever. A
/// fixed share cannot be stranded: a consumer that dies keeps its share until it is started again
/// (`payctl start`, chaos's restart) and goes on from the group's committed offsets at once.
fn partition_share(svc: &Svc, stack: &[Svc]) -> Option<String> {
    if svc.kind != Kind::Consumer {
        return None;
    }
    let consumers: Vec<&Svc> = stack.iter().filter(|s| s.kind == Kind::Consumer).collect();
    let index = consumers.iter().position(|s| s.name == svc.name)?;
    Some(format!("{}/{}", index + 1, consumers.len()))
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
fn stop_one(home: &Path, name: &str) -> anyhow::Result<bool> {
    let running = match running_pid(home, name) {
        Some(pid) => {
            // A frozen service would not see SIGTERM until the grace time ran out.
            let _ = signal_service(pid, libc::SIGCONT);
            Supervised::adopt(name, pid, &home.join(name).join("log"))
                .stop(Duration::from_secs(30))?;
            true
        }
        None => false,
    };
    let _ = std::fs::remove_file(pid_file(home, name));
    Ok(running)
}

fn down(home: &Path, ports: &Ports, volumes: bool) -> anyhow::Result<()> {
    for svc in saved_plan(home, ports).iter().rev() {
        let name = svc.name.as_str();
        if stop_one(home, name)? {
            eprintln!("{name:<8} stopped");
        } else {
            eprintln!("{name:<8} not running");
        }
    }
    if volumes {
        crate::stack::remove_state_dir(home)?;
    }
    Ok(())
}

/// A service's health: stopped without a running process, else whether it answers its probe.
async fn health(svc: &Svc, pid: Option<u32>) -> Health {
    match pid {
        None => Health::Stopped,
        Some(_) if healthy(svc.kind, svc.port).await => Health::Healthy,
        Some(_) => Health::Unhealthy,
    }
}

/// Waits until a running service answers its probe, as `up` waits after starting one.
async fn wait_healthy(svc: &Svc, pid: u32) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !healthy(svc.kind, svc.port).await {
        if !pid_alive(pid) || Instant::now() > deadline {
            bail!("{} (pid {pid}) did not become ready", svc.name);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Sends `signal` to a service's processes: to its process group when it leads one, as every service
/// `up` starts does (each in its own session), so that nginx's workers get it with their master;
/// otherwise to the process and its children.
fn signal_service(pid: u32, signal: libc::c_int) -> anyhow::Result<()> {
    let target = pid as libc::pid_t;
    // SAFETY: getpgid and kill(2) on the pid of a service's pid file, checked alive by the caller.
    let leads_group = unsafe { libc::getpgid(target) } == target;
    let whom = if leads_group { -target } else { target };
    // Before the signal: a killed process's children are re-parented at once.
    let children: Vec<u32> = if leads_group {
        Vec::new()
    } else {
        procfs::processes()
            .iter()
            .filter(|p| p.ppid == pid)
            .map(|p| p.pid)
            .collect()
    };
    // SAFETY: as above.
    if unsafe { libc::kill(whom, signal) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("signalling pid {pid}"));
    }
    for child in children {
        // SAFETY: as above, for a child of that process; one already gone at worst yields ESRCH.
        unsafe { libc::kill(child as libc::pid_t, signal) };
    }
    Ok(())
}

/// Waits until the kernel shows a service's process stopped (`frozen`) or going on again.
async fn wait_for_state(service: &str, pid: u32, frozen: bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let state = procfs::stat(pid).map(|s| s.state);
        if state.is_some_and(|s| matches!(s, 'T' | 't') == frozen) {
            return Ok(());
        }
        if state.is_none() || Instant::now() > deadline {
            bail!(
                "{service} (pid {pid}) did not {} (state {state:?})",
                if frozen { "stop" } else { "go on" }
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn rows(home: &Path, ports: &Ports) -> Vec<ServiceStatus> {
    let mut out = Vec::new();
    for svc in saved_plan(home, ports) {
        let pid = running_pid(home, &svc.name);
        let health = health(&svc, pid).await;
        out.push(ServiceStatus {
            service: svc.name,
            runs: Runs::Process { pid },
            address: format!("127.0.0.1:{}", svc.port),
            health,
        });
    }
    out
}

/// The log file of a service.
fn log_path(home: &Path, service: &str) -> anyhow::Result<PathBuf> {
    let file = match service {
        "mariadb" => "mariadb.log".to_owned(),
        "redis" => "redis.log".to_owned(),
        "kafka" => "tansu.log".to_owned(),
        "gateway" => "gateway.log".to_owned(),
        "prometheus" => "prometheus.log".to_owned(),
        s if s == "consumer" || s.starts_with("consumer-") => format!("{s}.log"),
        "acquirer" => "acquirer.log".to_owned(),
        "settlement" => "settlement.log".to_owned(),
        s if s == "ingest" || s.starts_with("ingest-") => format!("{s}.log"),
        other => bail!("unknown service '{other}'; one of: mariadb, redis, kafka, acquirer, ingest[-N], consumer[-N], settlement, prometheus, gateway"),
    };
    Ok(home.join(service).join(file))
}

/// A service's log file: its last lines, then (with follow) what is appended.
fn logs(home: &Path, service: &str, lines: usize, follow: bool) -> anyhow::Result<LogStream> {
    use std::io::{Seek, SeekFrom};
    let path = log_path(home, service)?;
    if !path.exists() {
        bail!(
            "no log for {service} at {} (has it been started?)",
            path.display()
        );
    }
    let tail: String = payctl_stack::process::log_tail(&path, lines)
        .into_iter()
        .map(|line| line + "\n")
        .collect();
    let tail = futures::stream::iter((!tail.is_empty()).then_some(Ok(tail)));
    if !follow {
        return Ok(tail.boxed());
    }
    let mut file = std::fs::File::open(&path)?;
    let pos = file.seek(SeekFrom::End(0))?;
    let appended = futures::stream::try_unfold((file, pos), |(mut file, mut pos)| async move {
        loop {
            if let Some(text) = appended(&mut file, &mut pos)? {
                return Ok(Some((text, (file, pos))));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    Ok(tail.chain(appended).boxed())
}

/// What was appended to a log file since `pos`, if anything (from the start when it was truncated or
/// replaced).
fn appended(file: &mut std::fs::File, pos: &mut u64) -> anyhow::Result<Option<String>> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    if len < *pos {
        *pos = 0; // truncated or replaced
    }
    if len == *pos {
        return Ok(None);
    }
    file.seek(SeekFrom::Start(*pos))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    *pos += buf.len() as u64;
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// Starts one service of the stack and waits until it is healthy.
/// `partitions`: what `up --partitions` asked for, given to the API (it creates the topics).
async fn start_service(
    home: &Path,
    ports: &Ports,
    svc: &Svc,
    stack: &[Svc],
    partitions: Option<u16>,
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
        Kind::Acquirer => {
            let mut cmd = Command::new(binary("pay-acquirer")?);
            cmd.env("APP_ACQUIRER_BIND", format!("127.0.0.1:{port}"))
                .env(
                    "APP_ACQUIRER_DATABASE_URL",
                    format!("sqlite://{}?mode=rwc", dir.join("acquirer.db").display()),
                );
            cmd
        }
        Kind::Ingest | Kind::Consumer | Kind::Settlement => {
            let mut cmd = Command::new(binary(match kind {
                Kind::Ingest => "pay-server",
                Kind::Consumer => "pay-consumer",
                _ => "pay-settlement",
            })?);
            if kind == Kind::Settlement {
                cmd.env(
                    "APP_ACQUIRER_URL",
                    format!("http://127.0.0.1:{}", ports.acquirer_port),
                );
            }
            if let (Kind::Ingest, Some(p)) = (kind, partitions) {
                cmd.env("APP_KAFKA_PARTITIONS", p.to_string());
            }
            // Static group membership (the settlement worker's; a consumer with a share of the
            // partitions does not join the group).
            cmd.env("APP_CONSUMER_INSTANCE_ID", format!("payctl-{name}"));
            match partition_share(svc, stack) {
                Some(share) => cmd.env("APP_CONSUMER_PARTITION_SHARE", share),
                None => cmd.env_remove("APP_CONSUMER_PARTITION_SHARE"),
            };
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
                .env("APP_ADMIN_TOKEN", secret(home, "admin-token")?);
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
                tail.extend(payctl_stack::process::log_tail(
                    &dir.join("gateway.log"),
                    20,
                ));
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
        // One file for both, as a container's output holds both: `payctl logs gateway` shows requests
        // and errors in the order they happened.
        error_log: path_of(dir.join("gateway.log")),
        access_log: path_of(dir.join("gateway.log")),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_home(name: &str) -> PathBuf {
        let home =
            std::env::temp_dir().join(format!("payctl-native-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).unwrap();
        home
    }

    fn state(pid: u32) -> char {
        procfs::stat(pid).map_or('-', |s| s.state)
    }

    async fn eventually(what: &str, check: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !check() {
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGKILLs what a test started and removes its state directory, whatever the test did.
    struct Reap<'a>(&'a Path, Vec<u32>);

    impl Drop for Reap<'_> {
        fn drop(&mut self) {
            for pid in &self.1 {
                // SAFETY: kill(2) on processes this test started.
                unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
            }
            let _ = std::fs::remove_dir_all(self.0);
        }
    }

    /// `sh` with a `sleep` child, recorded as the stack's kafka; the two pids.
    async fn shell_as_kafka(home: &Path, own_session: bool) -> (u32, u32) {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30 & wait"]);
        let pid = if own_session {
            // As `up` starts every service: in a session of its own, signalled as a process group.
            Supervised::spawn("kafka", cmd, &home.join("kafka/sh.log"), Lifetime::Detached)
                .unwrap()
                .pid
        } else {
            // Started by something else, in this test's process group: the process and its children.
            cmd.spawn().unwrap().id()
        };
        std::fs::create_dir_all(home.join("kafka")).unwrap();
        write_pid(home, "kafka", Some(pid)).unwrap();
        let child = || {
            procfs::processes()
                .into_iter()
                .find(|p| p.ppid == pid)
                .map(|p| p.pid)
        };
        eventually("sh starts its sleep", || child().is_some()).await;
        (pid, child().unwrap())
    }

    async fn freeze_thaw_and_kill(own_session: bool) {
        let home = temp_home(if own_session { "group" } else { "children" });
        let (pid, child) = shell_as_kafka(&home, own_session).await;
        let _reap = Reap(&home, vec![pid, child]);
        let runtime = Native::new(&home, &Ports::default(), false);

        runtime.freeze("kafka").await.unwrap();
        for p in [pid, child] {
            eventually("SIGSTOP: state T", || state(p) == 'T').await;
        }
        runtime.thaw("kafka").await.unwrap();
        for p in [pid, child] {
            eventually("SIGCONT: no longer T", || state(p) != 'T').await;
        }

        assert!(runtime.kill("kafka").await.unwrap(), "it was running");
        assert!(!pid_alive(pid));
        eventually("the child dies with it", || !pid_alive(child)).await;
        assert_eq!(runtime.health("kafka").await.unwrap(), Health::Stopped);
        assert_eq!(runtime.pid("kafka").await, None);
        assert!(
            !runtime.kill("kafka").await.unwrap(),
            "nothing left to kill"
        );
        let e = runtime.freeze("kafka").await.unwrap_err();
        assert_eq!(e.to_string(), "kafka is not running");
        let e = runtime.kill("nope").await.unwrap_err();
        assert!(e.to_string().starts_with("no service 'nope'"), "{e}");
    }

    #[tokio::test]
    async fn freeze_thaw_and_kill_reach_a_service_and_its_children() {
        freeze_thaw_and_kill(true).await;
        freeze_thaw_and_kill(false).await;
    }

    /// One inline command to Redis on `port`; its reply.
    fn redis(port: u16, command: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(format!("{command}\r\n").as_bytes()).unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).trim_end().to_owned()
    }

    /// Stops the test's Redis whatever the test did.
    struct Down<'a>(&'a Path);

    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = stop_one(self.0, "redis");
            let _ = std::fs::remove_dir_all(self.0);
        }
    }

    /// A real service through the runtime: started, frozen (it answers nothing) and thawed, killed
    /// like a crash, and started again on its data.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_killed_service_starts_again_healthy_on_its_data() {
        let home = temp_home("redis");
        let _down = Down(&home);
        let port = payctl_stack::free_port().unwrap();
        let svc = Svc {
            name: "redis".into(),
            kind: Kind::Redis,
            port,
        };
        stack::save(&home, &[svc]).unwrap();
        let runtime = Native::new(&home, &stack::saved_ports(&home), false);

        runtime.start("redis").await.unwrap();
        assert_eq!(runtime.health("redis").await.unwrap(), Health::Healthy);
        assert_eq!(redis(port, "SET payment kept"), "+OK");

        runtime.freeze("redis").await.unwrap();
        assert_eq!(runtime.health("redis").await.unwrap(), Health::Unhealthy);
        runtime.thaw("redis").await.unwrap();
        assert_eq!(runtime.health("redis").await.unwrap(), Health::Healthy);

        let pid = runtime.pid("redis").await.unwrap();
        assert!(runtime.kill("redis").await.unwrap());
        assert!(!pid_alive(pid));
        let rows = runtime.status().await.unwrap();
        assert_eq!(rows[0].health, Health::Stopped, "{rows:?}");

        runtime.start("redis").await.unwrap();
        assert_eq!(runtime.health("redis").await.unwrap(), Health::Healthy);
        assert_ne!(runtime.pid("redis").await, Some(pid), "a new process");
        assert_eq!(redis(port, "GET payment"), "$4\r\nkept", "on its data");
        // Started already: start only waits until it is healthy.
        runtime.start("redis").await.unwrap();

        // Frozen, it still stops (thawed first), well within the 30 s grace time.
        runtime.freeze("redis").await.unwrap();
        let stopping = Instant::now();
        assert!(runtime.stop("redis").await.unwrap());
        assert!(stopping.elapsed() < Duration::from_secs(10));
        assert_eq!(runtime.health("redis").await.unwrap(), Health::Stopped);
    }

    #[test]
    fn each_consumer_reads_its_share_of_the_partitions() {
        use crate::stack::Scale;
        let shares = |consumer| {
            let stack = plan(
                &Ports::default(),
                Scale {
                    consumer,
                    ..Scale::default()
                },
            );
            stack
                .iter()
                .filter_map(|s| partition_share(s, &stack).map(|share| (s.name.clone(), share)))
                .collect::<Vec<_>>()
        };
        assert_eq!(shares(1), [("consumer".to_owned(), "1/1".to_owned())]);
        assert_eq!(
            shares(3),
            [
                ("consumer".to_owned(), "1/3".to_owned()),
                ("consumer-2".to_owned(), "2/3".to_owned()),
                ("consumer-3".to_owned(), "3/3".to_owned())
            ]
        );
    }
}
