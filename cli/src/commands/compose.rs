//! `payctl compose`: writes `compose/docker-compose.yml` (and the gateway and Prometheus configs its
//! images bake in) from the same container definition the Docker runtime runs, for people who prefer
//! `docker compose up`; `--check` compares instead.

use crate::runtime::docker::compose::files;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ComposeArgs {
    /// Compare instead of writing: exit 1 when a file differs from the definition.
    #[arg(long)]
    check: bool,
    /// The compose directory of the checkout.
    #[arg(long, default_value = "compose")]
    dir: PathBuf,
}

pub fn exec(args: &ComposeArgs) -> anyhow::Result<ExitCode> {
    let mut stale = Vec::new();
    for (path, body) in files() {
        let full = args.dir.join(&path);
        if args.check {
            if std::fs::read(&full).ok().as_deref() != Some(body.as_slice()) {
                stale.push(full.display().to_string());
            }
        } else {
            std::fs::create_dir_all(full.parent().context("a file without a directory")?)?;
            std::fs::write(&full, body).with_context(|| format!("writing {}", full.display()))?;
            println!("wrote {}", full.display());
        }
    }
    if stale.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "error: differs from payctl's stack definition (run `payctl compose`): {}",
        stale.join(", ")
    );
    Ok(ExitCode::from(1))
}
