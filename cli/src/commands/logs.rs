//! `payctl logs SERVICE [-f]`: a service's log, from the runtime it runs on.

use crate::runtime::{docker, native};
use clap::Args;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct LogsArgs {
    service: String,
    /// Keep printing what is appended.
    #[arg(short, long)]
    follow: bool,
    /// Lines of history to show first.
    #[arg(short = 'n', long, default_value_t = 50)]
    lines: usize,
}

pub async fn exec(home: &Path, a: LogsArgs) -> anyhow::Result<ExitCode> {
    match docker::saved(home) {
        Some(_) => docker::logs(home, &a.service, a.lines, a.follow).await,
        None => native::logs(home, &a.service, a.lines, a.follow).await,
    }
}
