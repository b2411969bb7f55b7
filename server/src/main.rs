//! `pay-server`: reads its configuration from flags and environment, serves until SIGINT/SIGTERM, then
//! shuts down gracefully (stop accepting, finish in-flight requests, flush the Kafka producer).

use clap::Parser;
use pay_server::config::{Config, LogFormat};
use pay_server::startup::Application;
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
        // Colour only for a person at a terminal: a log file (the native runtime's) or NO_COLOR gets
        // plain text, so `payctl logs` and grep read it as it is.
        LogFormat::Text => tracing_subscriber::fmt()
            .with_ansi(std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .with_env_filter(filter)
            .init(),
    }
    let app = Application::build(config).await?;
    tracing::info!(address = %app.local_addr(), "pay-server listening");
    // A note set when the binary was compiled (PAY_SERVER_BUILD_NOTE=…): tells one build from another
    // in the log, e.g. for the Docker test that rebuilds pay-server between two `payctl up`s.
    if let Some(note) = option_env!("PAY_SERVER_BUILD_NOTE") {
        tracing::info!(note, "pay-server build");
    }
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
