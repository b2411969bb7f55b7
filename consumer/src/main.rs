//! `pay-consumer`: runs the ledger consumer until SIGINT/SIGTERM, then stops gracefully (finish the
//! current batch, commit offsets, leave the group).

use clap::Parser;
use pay_consumer::config::{Config, LogFormat};
use pay_consumer::startup::App;
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
    let app = App::build(config).await?;
    tracing::info!(address = %app.local_addr(), "pay-consumer running");
    let token = app.shutdown_token();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        } else {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
        token.cancel();
    });
    app.run().await
}
