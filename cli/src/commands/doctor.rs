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
    /// The checks as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    ports: Ports,
}

pub async fn exec(home: &Path, a: DoctorArgs) -> anyhow::Result<ExitCode> {
    let report = report(home, &a.ports, docker::answers().await);
    if a.json {
        output::json(&report)?;
        return Ok(verdict(&report.failures));
    }
    println!(
        "{}",
        table(
            &["", "program", "for", "version", "install with"],
            report.programs.iter().map(|p| vec![
                if p.path.is_some() {
                    mark(true)
                } else if p.required && !report.docker_engine {
                    mark(false)
                } else {
                    "-".into() // missing, but not needed here: no failure
                },
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
                mark(c.ok),
                c.service.clone(),
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
    Ok(verdict(&report.failures))
}

/// Exit 1 with the failed checks in one line on stderr, 0 when every check passed.
fn verdict(failures: &[String]) -> ExitCode {
    if failures.is_empty() {
        return ExitCode::SUCCESS;
    }
    eprintln!("doctor: {}", failures.join("; "));
    ExitCode::from(1)
}
