//! `payctl up`: start the platform on the chosen runtime, wait until every part is healthy, and show
//! where it answers with the dev merchant's key.

use super::status;
use crate::ops::merchants::{dev_merchant_key, DEV_MERCHANT};
use crate::runtime::{self, docker};
use crate::stack::{saved_plan, Kind, Ports, Scale};
use clap::Args;
use pay_server::auth::ApiKey;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Do not install anything: print the commands for what is missing and exit 1.
    #[arg(long)]
    no_install: bool,
    /// Where to run: native processes, or Docker (auto: Docker when an engine answers).
    #[arg(long, value_enum, env = "PAYCTL_RUNTIME", default_value_t = runtime::Choice::Auto)]
    runtime: runtime::Choice,
    /// Instances of the services that scale out: the API (each instance with its outbox relay, all
    /// behind the gateway) and the ledger consumer (one consumer group sharing the partitions):
    /// --scale ingest=3,consumer=2. Instances beyond these are stopped.
    #[arg(long, value_name = "SERVICE=N,…", value_parser = parse_scale, default_value = "ingest=1")]
    scale: Vec<String>,
    /// Partitions per topic: pay-server creates the topics with these, or grows them to these where
    /// the broker can add partitions (Kafka; tansu cannot, so `payctl down --volumes` first). A topic
    /// never shrinks. Without it: 3 for new topics, and those that exist keep theirs.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    partitions: Option<u16>,
    #[command(flatten)]
    ports: Ports,
    #[command(flatten)]
    docker: Box<docker::DockerArgs>,
}

/// One `--scale` value, checked as clap reads it; [`UpArgs::shape`] lays them over each other.
fn parse_scale(s: &str) -> Result<String, String> {
    Scale::default().parse_onto(s).map(|_| s.to_owned())
}

impl UpArgs {
    /// The shape asked for: each `--scale` in turn (a later count wins), and `--partitions`.
    fn shape(&self) -> anyhow::Result<Scale> {
        let mut scale = Scale::default();
        for spec in &self.scale {
            scale = scale.parse_onto(spec).map_err(anyhow::Error::msg)?;
        }
        scale.partitions = self.partitions;
        scale.check().map_err(anyhow::Error::msg)?;
        Ok(scale)
    }
}

pub async fn exec(home: &Path, a: UpArgs) -> anyhow::Result<ExitCode> {
    let shape = a.shape()?;
    let runtime = runtime::choose(a.runtime, home, &a.ports, a.no_install, &a.docker).await?;
    runtime.up(shape).await?;
    let home = &home.canonicalize()?;
    let key = dev_merchant_key(home, &a.ports).await?;
    status::print(&runtime.status().await?)?;
    print_endpoints(home, &a.ports, &key);
    if saved_plan(home, &a.ports)
        .iter()
        .any(|s| s.kind == Kind::Grafana)
    {
        println!(
            "Grafana:      http://127.0.0.1:{}/   (admin password in {})",
            a.ports.grafana_port,
            home.join("secrets/grafana-admin-password").display()
        );
    } else if !runtime.supports(Kind::Grafana) {
        println!("Grafana:      needs the Docker runtime (payctl top shows the key figures)");
    }
    Ok(ExitCode::SUCCESS)
}

/// The gateway, the API and the dev merchant's key, after `up` on either runtime.
pub fn print_endpoints(home: &Path, ports: &Ports, key: &ApiKey) {
    println!(
        "\ngateway:      http://127.0.0.1:{}/   (the store)",
        ports.gateway_port
    );
    println!("API:          http://127.0.0.1:{}/api", ports.gateway_port);
    println!("merchant:     {DEV_MERCHANT}");
    println!(
        "API key:      {}   (dev only; stored in {})",
        key.expose(),
        home.join("secrets/dev-merchant.key").display()
    );
    println!(
        "try:          curl -s -H 'Authorization: Bearer {}' -H 'Idempotency-Key: demo-1' -H 'Content-Type: application/json' \\\n                -d '{{\"amount\":1000,\"currency\":\"KRW\"}}' http://127.0.0.1:{}/api/payments/authorize",
        key.expose(),
        ports.gateway_port
    );
}
