//! `payctl logs SERVICE [-f]`: a service's log, from the runtime it runs on.

use crate::runtime;
use crate::stack::saved_ports;
use clap::Args;
use futures::StreamExt;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// mariadb, redis, kafka, ingest[-N], consumer, prometheus, gateway (grafana on Docker).
    #[arg(value_parser = service)]
    service: String,
    /// Keep printing what is appended.
    #[arg(short, long)]
    follow: bool,
    /// Lines of history to show first.
    #[arg(short = 'n', long, default_value_t = 50)]
    lines: usize,
}

fn service(s: &str) -> Result<String, String> {
    let instance = s
        .strip_prefix("ingest-")
        .is_some_and(|n| n.parse::<u16>().is_ok_and(|n| n >= 2));
    if crate::stack::SERVICE_NAMES.contains(&s) || instance {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "no service {s:?}: one of {}, or ingest-N",
            crate::stack::SERVICE_NAMES.join(", ")
        ))
    }
}

pub async fn exec(home: &Path, a: LogsArgs) -> anyhow::Result<ExitCode> {
    // A log is found by its service's name: no port is needed.
    let runtime = runtime::open(home, &saved_ports(home));
    let mut log = runtime.logs(&a.service, a.lines, a.follow).await?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            piece = log.next() => match piece {
                Some(text) => print!("{}", text?),
                None => return Ok(ExitCode::SUCCESS),
            }
        }
    }
}
