//! `payctl doctor`: what this machine has for the platform — programs and versions, ports, disk, memory.

use crate::ops::doctor::report;
use crate::output::{self, mark, table};
use crate::runtime::docker;
use crate::stack::Ports;
use clap::Args;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    ports: Ports,
}

pub async fn exec(home: &Path, a: DoctorArgs) -> anyhow::Result<ExitCode> {
    let report = report(home, &a.ports, docker::answers().await);
    if a.json {
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
