//! `pay-acquirer`: reads its configuration from flags and environment, serves until SIGINT/SIGTERM, then
//! shuts down gracefully (stop accepting, finish in-flight requests).

use clap::Parser;
use pay_acquirer::config::{Config, LogFormat};
use pay_acquirer::startup::Application;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
        // Colour only for a person at a terminal, as pay-server does.
        LogFormat::Text => tracing_subscriber::fmt()
            .with_ansi(std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .with_env_filter(filter)
            .init(),
    }
    let app = Application::build(config).await?;
    let settings = app.state().chaos.settings();
    tracing::info!(
        latency_ms = %settings.latency,
        failure_rate = settings.failure_rate.get(),
        fees = %app.state().config.fees,
        time_zone = app.state().config.time_zone.iana_name().unwrap_or("?"),
        "pay-acquirer listening on {}",
        app.local_addr()
    );
    let token = app.shutdown_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        token.cancel();
    });
    app.run().await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
