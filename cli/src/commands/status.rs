//! `payctl status`: each service of the stack, its process or container, address and health (exit 3
//! if one is not healthy), then where things are (store, API, Prometheus, Grafana, the dev key's file,
//! the database), as `supabase status` shows them.

use crate::ops::endpoints::{absolute, Endpoints};
use crate::output;
use crate::runtime::{self, Health, Runs, ServiceStatus};
use crate::stack::Ports;
use clap::Args;
use serde::Serialize;
use std::collections::BTreeMap;
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
#[serde(rename_all = "camelCase")]
struct StatusJson<'a> {
    services: &'a [ServiceStatus],
    /// Which partitions each ledger consumer reads now, by topic.
    consumer_group: Vec<Assigned>,
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
    let group = assignments(&rows).await;
    let healthy = if a.json {
        output::json(&StatusJson {
            services: &rows,
            consumer_group: group,
            endpoints,
        })?;
        all_healthy(&rows)
    } else {
        let healthy = print(&rows)?;
        print_group(&group);
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

/// One ledger consumer and the partitions the group gave it.
#[derive(Serialize)]
struct Assigned {
    service: String,
    partitions: BTreeMap<String, Vec<i32>>,
}

/// What each healthy consumer says it reads (its `/ready`), in the order of `rows`.
async fn assignments(rows: &[ServiceStatus]) -> Vec<Assigned> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default();
    let mut out = Vec::new();
    for r in rows.iter().filter(|r| {
        r.health == Health::Healthy
            && (r.service == "consumer" || r.service.starts_with("consumer-"))
    }) {
        let ready: Option<serde_json::Value> = match client
            .get(format!("http://{}/ready", r.address))
            .send()
            .await
        {
            Ok(reply) => reply.json().await.ok(),
            Err(_) => None,
        };
        let partitions = ready
            .and_then(|v| v.pointer("/components/kafka/partitions").cloned())
            .and_then(|p| serde_json::from_value(p).ok())
            .unwrap_or_default();
        out.push(Assigned {
            service: r.service.clone(),
            partitions,
        });
    }
    out
}

/// The partitions line of each consumer, under the table: `consumer-2  reads partitions 3, 4, 5`
/// when every topic gives it the same ones, else topic by topic.
fn print_group(group: &[Assigned]) {
    let list = |p: &[i32]| p.iter().map(i32::to_string).collect::<Vec<_>>().join(", ");
    if !group.is_empty() {
        println!();
    }
    for a in group {
        let mut lists = a.partitions.values();
        let first = lists.next();
        let line = match first {
            None => "reads no partition".to_owned(),
            Some(p) if a.partitions.values().all(|q| q == p) => format!(
                "reads partition(s) {} of each of its {} topics",
                list(p),
                a.partitions.len()
            ),
            Some(_) => a
                .partitions
                .iter()
                .map(|(t, p)| format!("{t} {}", list(p)))
                .collect::<Vec<_>>()
                .join("; "),
        };
        println!("{:<12}{line}", a.service);
    }
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
