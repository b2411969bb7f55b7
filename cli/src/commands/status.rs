//! `payctl status`: each service of the stack, its process or container, address and health (exit 3
//! if one is not healthy).

use crate::output;
use crate::runtime::{self, Health, Runs, ServiceStatus};
use crate::stack::Ports;
use clap::Args;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  payctl status                      a table; exit 3 when a service is not healthy
  payctl status --json | jq '.[] | select(.health != \"healthy\")'
  payctl status --watch              again every 2 s, until Ctrl-C")]
pub struct StatusArgs {
    /// The services as a JSON array.
    #[arg(long)]
    json: bool,
    /// Show it again every 2 seconds, until Ctrl-C.
    #[arg(short, long, conflicts_with = "json")]
    watch: bool,
    #[command(flatten)]
    ports: Ports,
}

pub async fn exec(home: &Path, a: StatusArgs) -> anyhow::Result<ExitCode> {
    if a.watch {
        let runtime = runtime::open(home, &a.ports);
        return output::watch(Duration::from_secs(2), "payctl status", || async {
            print(&runtime.status().await?, false)?;
            Ok(())
        })
        .await;
    }
    let rows = runtime::open(home, &a.ports).status().await?;
    Ok(if print(&rows, a.json)? {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// Prints the services as a table or JSON; true when every one is healthy.
pub fn print(rows: &[ServiceStatus], json: bool) -> anyhow::Result<bool> {
    let all_healthy = !rows.is_empty() && rows.iter().all(|r| r.health == Health::Healthy);
    if json {
        println!("{}", serde_json::to_string_pretty(rows)?);
        return Ok(all_healthy);
    }
    // Only a Docker stack can have no rows (the native runtime lists its plan): its columns then.
    let processes = matches!(rows.first().map(|r| &r.runs), Some(Runs::Process { .. }));
    let header: &[&str] = if processes {
        &["service", "pid", "address", "health"]
    } else {
        &[
            "service",
            "container",
            "image",
            "state",
            "address",
            "health",
        ]
    };
    println!(
        "{}",
        output::table(
            header,
            rows.iter().map(|r| {
                let mut cells = vec![r.service.clone()];
                match &r.runs {
                    Runs::Process { pid } => {
                        cells.push(pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()))
                    }
                    Runs::Container {
                        container,
                        image,
                        state,
                    } => cells.extend([container.clone(), image.clone(), state.clone()]),
                }
                cells.extend([r.address.clone(), output::health(r.health.as_str())]);
                cells
            })
        )
    );
    Ok(all_healthy)
}
