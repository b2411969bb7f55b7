//! `payctl stop|start|restart SERVICE`: one service of the running stack, on whichever runtime runs
//! it; the others go on. `start` and `restart` return once the service is healthy.

use crate::runtime;
use crate::stack::{self, Ports};
use anyhow::bail;
use clap::Args;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// mariadb, redis, kafka, ingest[-N], consumer, prometheus, gateway (grafana on Docker).
    #[arg(value_parser = stack::service_name)]
    service: String,
    #[command(flatten)]
    ports: Ports,
}

fn runtime_of(home: &Path, ports: &Ports) -> anyhow::Result<Box<dyn runtime::Runtime>> {
    if stack::saved(home).is_none() {
        bail!(
            "no stack under {}; start one with: payctl up",
            home.display()
        );
    }
    Ok(runtime::open(home, ports))
}

pub async fn stop(home: &Path, a: ServiceArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime_of(home, &a.ports)?;
    if rt.stop(&a.service).await? {
        println!("{} stopped", a.service);
    } else {
        println!("{} was not running", a.service);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn start(home: &Path, a: ServiceArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime_of(home, &a.ports)?;
    dependencies_healthy(home, rt.as_ref(), &a.service).await?;
    started(rt.as_ref(), &a.service).await
}

pub async fn restart(home: &Path, a: ServiceArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime_of(home, &a.ports)?;
    dependencies_healthy(home, rt.as_ref(), &a.service).await?;
    rt.stop(&a.service).await?;
    started(rt.as_ref(), &a.service).await
}

/// Ok when every service `service` depends on in the saved stack answers; else the error naming the
/// first that does not, before anything is started (it would only wait for them and give up).
async fn dependencies_healthy(
    home: &Path,
    rt: &dyn runtime::Runtime,
    service: &str,
) -> anyhow::Result<()> {
    let plan = stack::saved(home).unwrap_or_default();
    let Some(svc) = plan.iter().find(|s| s.name == service) else {
        bail!(
            "{service} is not part of the stack under {}",
            home.display()
        );
    };
    for dep in stack::depends_on(svc, &plan) {
        if rt.health(&dep).await? != runtime::Health::Healthy {
            bail!("{service} needs {dep}, which is not running; start it first (payctl start {dep}) or run: payctl up");
        }
    }
    Ok(())
}

/// Starts `service` with a spinner until it is healthy; one that does not get there is stopped again,
/// not left running half-started.
async fn started(rt: &dyn runtime::Runtime, service: &str) -> anyhow::Result<ExitCode> {
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner.set_message(format!("starting {service}"));
    let t = Instant::now();
    let result = rt.start(service).await;
    spinner.finish_and_clear();
    if let Err(e) = result {
        let _ = rt.stop(service).await;
        return Err(e);
    }
    println!("{service} healthy ({:.1?})", t.elapsed());
    Ok(ExitCode::SUCCESS)
}
