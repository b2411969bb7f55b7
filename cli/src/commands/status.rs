//! `payctl status`: each service of the stack, its process or container, address and health (exit 3
//! if one is not healthy), then where things are (store, API, Prometheus, Grafana, the dev key's file,
//! the database), as `supabase status` shows them.

use crate::ops::endpoints::{absolute, Endpoints};
use crate::output;
use crate::runtime::{self, Health, Runs, ServiceStatus};
use crate::stack::Ports;
use clap::Args;
use serde::Serialize;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  payctl status                           services, then the URLs and where the dev key is
  payctl status --json | jq -r .apiUrl    the API's URL for a script
  payctl status --watch                   again every 2 s, until Ctrl-C")]
pub struct StatusArgs {
    /// Print {services: [...], storeUrl, apiUrl, prometheusUrl, grafanaUrl, devKeyFile, databaseUrl,
    /// databasePasswordFile} as JSON.
    #[arg(long)]
    json: bool,
    /// Show it again every 2 seconds, until Ctrl-C.
    #[arg(short, long, conflicts_with = "json")]
    watch: bool,
    #[command(flatten)]
    ports: Ports,
}

/// `status --json`: the services and, beside them, where things are.
#[derive(Serialize)]
struct StatusJson<'a> {
    services: &'a [ServiceStatus],
    #[serde(flatten)]
    endpoints: Endpoints,
}

pub async fn exec(home: &Path, a: StatusArgs) -> anyhow::Result<ExitCode> {
    if a.watch {
        let runtime = runtime::open(home, &a.ports);
        return output::watch(Duration::from_secs(2), "payctl status", || async {
            print(&runtime.status().await?)?;
            Ok(())
        })
        .await;
    }
    let rows = runtime::open(home, &a.ports).status().await?;
    let endpoints = Endpoints::of(&absolute(home), &a.ports);
    let healthy = if a.json {
        output::json(&StatusJson {
            services: &rows,
            endpoints,
        })?;
        all_healthy(&rows)
    } else {
        let healthy = print(&rows)?;
        println!();
        for (label, value) in endpoints.lines() {
            println!("{:<12}{value}", format!("{label}:"));
        }
        healthy
    };
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn all_healthy(rows: &[ServiceStatus]) -> bool {
    !rows.is_empty() && rows.iter().all(|r| r.health == Health::Healthy)
}

/// Prints the services as a table; true when every one is healthy.
pub fn print(rows: &[ServiceStatus]) -> anyhow::Result<bool> {
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
    Ok(all_healthy(rows))
}
