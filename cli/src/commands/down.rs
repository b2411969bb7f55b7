//! `payctl down`: stop what `payctl up` started, on the runtime it started it on.

use crate::runtime;
use crate::stack::Ports;
use clap::Args;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Also delete the databases, topics, logs and dev secrets.
    #[arg(long)]
    volumes: bool,
    #[command(flatten)]
    ports: Ports,
}

pub async fn exec(home: &Path, a: DownArgs) -> anyhow::Result<ExitCode> {
    runtime::open(home, &a.ports).down(a.volumes).await?;
    Ok(ExitCode::SUCCESS)
}
