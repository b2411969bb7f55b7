//! `payctl up`: start the platform on the chosen runtime and wait until every part is healthy.

use crate::runtime::{self, docker, native};
use crate::stack::Ports;
use clap::Args;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Do not install anything: print the commands for what is missing and exit 1.
    #[arg(long)]
    no_install: bool,
    /// Where to run: native processes, or Docker (auto: Docker when an engine answers).
    #[arg(long, value_enum, env = "PAYCTL_RUNTIME", default_value_t = runtime::Choice::Auto)]
    runtime: runtime::Choice,
    /// Instances per service; only the API scales: --scale ingest=3.
    #[arg(long, value_parser = parse_scale, default_value = "ingest=1")]
    scale: u16,
    #[command(flatten)]
    ports: Ports,
    #[command(flatten)]
    docker: Box<docker::DockerArgs>,
}

fn parse_scale(s: &str) -> Result<u16, String> {
    match s.split_once('=') {
        Some(("ingest", n)) => n
            .parse::<u16>()
            .ok()
            .filter(|n| (1..=16).contains(n))
            .ok_or_else(|| format!("'{n}' is not a number of instances from 1 to 16")),
        _ => Err(format!("'{s}': only the API scales; use --scale ingest=N")),
    }
}

pub async fn exec(home: &Path, a: UpArgs) -> anyhow::Result<ExitCode> {
    match runtime::choose(a.runtime).await? {
        runtime::Choice::Docker => docker::up(home, &a.ports, a.scale, &a.docker).await,
        _ => native::up(home, &a.ports, a.scale, a.no_install).await,
    }
}
