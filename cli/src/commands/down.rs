//! `payctl down`: stop what `payctl up` started, on the runtime it started it on.

use crate::runtime::{self, docker, Runtime};
use crate::stack::Ports;
use clap::Args;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Also delete the databases, topics, logs and dev secrets.
    #[arg(long)]
    volumes: bool,
    /// The Docker stack of this name (its containers, network and volumes, found by their label),
    /// whatever the state directory holds: after `.payctl` was removed, or from another directory.
    #[arg(long)]
    project: Option<String>,
    #[command(flatten)]
    ports: Ports,
}

pub async fn exec(home: &Path, a: DownArgs) -> anyhow::Result<ExitCode> {
    match a.project {
        Some(project) => {
            let network = docker::saved(home)
                .filter(|s| s.project == project)
                .map_or(docker::containers::Network::Bridge, |s| s.network);
            let saved = docker::Saved { project, network };
            docker::Docker::open(home, &a.ports, saved)
                .down(a.volumes)
                .await?
        }
        None => runtime::open(home, &a.ports).down(a.volumes).await?,
    }
    Ok(ExitCode::SUCCESS)
}
