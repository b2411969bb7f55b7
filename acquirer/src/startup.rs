//! Assembling the acquirer: one place that wires configuration to the pool, the migrations, the
//! misbehaviour controls and the routes, used by `main` and by the integration tests alike.

use crate::chaos::{Chaos, Settings};
use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::{db, routes, store};
use anyhow::Context;
use sqlx::SqlitePool;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Everything a request handler may need. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: SqlitePool,
    pub chaos: Arc<Chaos>,
    pub clock: Arc<Clock>,
    pub metrics: Arc<Metrics>,
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
}

impl Application {
    /// Opens (creating when missing) the database file, applies the acquirer's migrations and binds the
    /// listener; does not serve yet.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let db = db::connect(&config.database_url, config.database_pool_size).await?;
        store::MIGRATOR
            .run(&db)
            .await
            .context("applying the acquirer's migrations")?;
        let metrics = Metrics::new();
        let chaos = Chaos::new(
            Settings {
                latency: config.latency_ms,
                failure_rate: config.failure_rate,
            },
            config.seed,
            metrics.clone(),
        );
        let listener = TcpListener::bind(config.bind).await?;
        Ok(Self {
            listener,
            state: AppState {
                config: Arc::new(config),
                db,
                chaos: Arc::new(chaos),
                clock: Arc::new(Clock::default()),
                metrics,
            },
            shutdown: CancellationToken::new(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// A token that stops the server gracefully when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled: stops accepting and lets in-flight requests finish.
    pub async fn run(self) -> anyhow::Result<()> {
        let Self {
            listener,
            state,
            shutdown,
        } = self;
        let app = routes::router(state);
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await?;
        Ok(())
    }
}
