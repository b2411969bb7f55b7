//! `up --scale ingest=N,consumer=M` on a running stack: the gateway and Prometheus follow the
//! instances, and instances beyond N (M) are removed once nothing routes to them.
//!
//! The gateway gets its regenerated nginx.conf and a reload (SIGHUP to nginx, the container's first
//! process), which also resolves the instances' names again on a bridge network; `up` goes on once
//! every worker of the old config has exited, so a removed instance is no longer routed to.
//! Prometheus gets its regenerated targets files, which it watches (file_sd), and `up` waits until
//! its targets API lists the instances.

use super::containers::Container;
use super::owned::{self, Ours};
use super::{log_lines, put_files, remove_container};
use crate::stack::{self, Svc};
use anyhow::{bail, Context};
use bollard::query_parameters::{KillContainerOptions, StopContainerOptions};
use bollard::Docker as Engine;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Whether a service name is an instance of a service that scales: ingest, ingest-2, …, consumer,
/// consumer-2, …
fn is_instance(service: &str) -> bool {
    stack::SCALED.contains(&service) || stack::is_extra_instance(service)
}

/// The stack's instances (API, consumer) that `stack` has no more.
pub async fn surplus(docker: &Engine, project: &str, stack: &[Svc]) -> anyhow::Result<Vec<Ours>> {
    let wanted: HashSet<&str> = stack.iter().map(|s| s.name.as_str()).collect();
    Ok(owned::all(docker, project)
        .await?
        .into_iter()
        .filter(|c| is_instance(&c.service) && !wanted.contains(c.service.as_str()))
        .collect())
}

/// Gives a running gateway or Prometheus the config for the API instances of `def` (the stack's
/// current definition), and for the gateway waits until it runs on it.
pub async fn follow(docker: &Engine, c: &Ours, def: &Container) -> anyhow::Result<()> {
    put_files(docker, c, &def.files).await?;
    if def.kind == crate::stack::Kind::Gateway {
        reload_gateway(docker, c).await?;
    }
    Ok(())
}

/// Stops and removes an instance that is no longer wanted (no volume of its own).
pub async fn remove(docker: &Engine, c: &Ours) -> anyhow::Result<()> {
    // Gracefully first: an API instance finishes what it was doing and its relay leaves the outbox
    // clean; a consumer commits what it applied and its partitions go to the others.
    let _ = docker
        .stop_container(
            &c.id,
            Some(StopContainerOptions {
                t: Some(30),
                ..Default::default()
            }),
        )
        .await;
    remove_container(docker, c).await
}

/// The pids of nginx's worker processes in a container (those shutting down included).
async fn nginx_workers(docker: &Engine, c: &Ours) -> anyhow::Result<HashSet<String>> {
    let top = docker
        .top_processes(&c.id, None)
        .await
        .with_context(|| format!("listing the processes of {}", c.name))?;
    let titles = top.titles.unwrap_or_default();
    let column = |names: &[&str]| titles.iter().position(|t| names.contains(&t.as_str()));
    let (Some(pid), Some(cmd)) = (column(&["PID"]), column(&["CMD", "COMMAND"])) else {
        bail!("unexpected process list of {}: {titles:?}", c.name);
    };
    Ok(top
        .processes
        .unwrap_or_default()
        .into_iter()
        .filter(|p| {
            p.get(cmd)
                .is_some_and(|c| c.contains("nginx: worker process"))
        })
        .filter_map(|p| p.get(pid).cloned())
        .collect())
}

/// Makes nginx in the gateway container load its config again, and returns once every worker of the
/// old config has exited (they finish their requests first).
pub async fn reload_gateway(docker: &Engine, c: &Ours) -> anyhow::Result<()> {
    const TIMEOUT: Duration = Duration::from_secs(20);
    let old = nginx_workers(docker, c).await?;
    docker
        .kill_container(
            &c.id,
            Some(KillContainerOptions {
                signal: "SIGHUP".into(),
            }),
        )
        .await
        .with_context(|| format!("reloading nginx in {}", c.name))?;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let now = nginx_workers(docker, c).await?;
        // New workers, none of the old: nginx took the config (a bad one leaves the old workers).
        if !now.is_empty() && now.is_disjoint(&old) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the gateway ({}) did not reload its config within {}s; its last log lines:\n{}",
                c.name,
                TIMEOUT.as_secs(),
                log_lines(docker, &c.id, 20).await.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many targets of `job` Prometheus on `port` scrapes now, if it answers.
async fn targets(client: &reqwest::Client, port: u16, job: &str) -> Option<usize> {
    let body: serde_json::Value = client
        .get(format!(
            "http://127.0.0.1:{port}/api/v1/targets?state=active"
        ))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let targets = body.pointer("/data/activeTargets")?.as_array()?;
    Some(
        targets
            .iter()
            .filter(|t| t.pointer("/labels/job").and_then(|j| j.as_str()) == Some(job))
            .count(),
    )
}

/// Waits until Prometheus on `port` scrapes `instances` instances of `job`; says so when it does not
/// within a while (the stack runs either way: only its metrics are behind).
pub async fn await_targets(port: u16, job: &str, instances: u16) {
    const TIMEOUT: Duration = Duration::from_secs(30);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + TIMEOUT;
    let mut last = None;
    while Instant::now() < deadline {
        last = targets(&client, port, job).await;
        if last == Some(usize::from(instances)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "warning: Prometheus (127.0.0.1:{port}) lists {} {job} instance(s) after {}s, not {instances}",
        last.map_or("no".to_owned(), |n| n.to_string()),
        TIMEOUT.as_secs()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_api_and_the_consumer_are_scaled() {
        assert!(is_instance("ingest"));
        assert!(is_instance("ingest-3"));
        assert!(!is_instance("ingest-x"));
        assert!(is_instance("consumer"));
        assert!(is_instance("consumer-2"));
        assert!(!is_instance("consumerx-2"));
        assert!(!is_instance("gateway"));
        assert!(!is_instance("settlement"));
    }
}
