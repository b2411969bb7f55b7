//! `pay-settlement`: runs the settlement worker until SIGINT/SIGTERM, then stops gracefully (finish the
//! batch in hand and the acquirer calls in flight, commit offsets, leave the group).

use clap::Parser;
use pay_consumer::config::LogFormat;
use pay_settlement::config::Config;
use pay_settlement::startup::App;
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
        // Colour only for a person at a terminal (see pay-consumer).
        LogFormat::Text => tracing_subscriber::fmt()
            .with_ansi(std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .with_env_filter(filter)
            .init(),
    }
    let app = App::build(config).await?;
    tracing::info!("pay-settlement listening on {}", app.local_addr());
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
