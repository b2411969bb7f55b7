//! `payctl status`: each service of the stack, its process or container, address and health.

use crate::runtime::{docker, native};
use crate::stack::Ports;
use clap::Args;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    ports: Ports,
}

pub async fn exec(home: &Path, a: StatusArgs) -> anyhow::Result<ExitCode> {
    match docker::saved(home) {
        Some(_) => docker::status(home, a.json).await,
        None => native::status(home, &a.ports, a.json).await,
    }
}
