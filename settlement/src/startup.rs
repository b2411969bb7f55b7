//! Assembling the worker (used by `main` and the tests): pool, migrations, Kafka clients, the acquirer
//! client, the breaker, the consume loop, the dispatcher, the DLQ publisher, and the HTTP endpoints
//! `/health`, `/ready`, `/metrics`.

use crate::acquirer::{Acquirer, HttpAcquirer};
use crate::config::Config;
use crate::consume::{self, ConsumeLoop};
use crate::dispatch::Dispatcher;
use crate::dlq::{self, DlqPublisher};
use crate::gauges;
use crate::metrics::Metrics;
use crate::store;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use payctl_breaker::CircuitBreaker;
use rdkafka::consumer::{Consumer, StreamConsumer};
use serde_json::json;
use sqlx::MySqlPool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How often the record and payout gauges are refreshed (a few count queries).
const GAUGE_PERIOD: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct HttpState {
    db: MySqlPool,
    consumer: Arc<StreamConsumer>,
    metrics: Arc<Metrics>,
    breaker: Arc<CircuitBreaker>,
    time_zone: jiff::tz::TimeZone,
}

pub struct App {
    listener: TcpListener,
    consume: ConsumeLoop,
    dispatcher: Arc<Dispatcher>,
    dlq: DlqPublisher,
    http: HttpState,
    shutdown: CancellationToken,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let db = payctl_db::pool(
            &config.database_url,
            config.database_pool_size,
            Duration::from_secs(5),
            10,
        )?;
        payctl_db::migrate_when_available(&db).await?;
        let consumer = Arc::new(consume::consumer(&config)?);
        let producer = dlq::producer(&config)?;
        let acquirer: Arc<dyn Acquirer> = Arc::new(HttpAcquirer::new(
            &config.acquirer_url,
            config.call_timeout(),
        )?);
        let breaker = Arc::new(CircuitBreaker::new(config.breaker.settings()));
        let metrics = Metrics::new();
        let listener = TcpListener::bind(config.listen).await?;
        let time_zone = config.time_zone.clone();
        let config = Arc::new(config);
        let recorded = Arc::new(Notify::new());
        let failed = Arc::new(Notify::new());
        Ok(Self {
            listener,
            consume: ConsumeLoop {
                config: config.clone(),
                db: db.clone(),
                consumer: consumer.clone(),
                producer: producer.clone(),
                metrics: metrics.clone(),
                recorded: recorded.clone(),
            },
            dispatcher: Arc::new(Dispatcher {
                config: config.clone(),
                db: db.clone(),
                acquirer,
                breaker: breaker.clone(),
                metrics: metrics.clone(),
                recorded,
                failed: failed.clone(),
            }),
            dlq: DlqPublisher {
                config,
                db: db.clone(),
                producer,
                metrics: metrics.clone(),
                failed,
            },
            http: HttpState {
                db,
                consumer,
                metrics,
                breaker,
                time_zone,
            },
            shutdown: CancellationToken::new(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.http.metrics.clone()
    }

    pub fn breaker(&self) -> Arc<CircuitBreaker> {
        self.http.breaker.clone()
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs until the token is cancelled, then stops gracefully: the batch in hand is recorded and its
    /// offsets committed, the calls in flight finish and write their outcomes. Every part runs in a
    /// task owned here, so dropping (aborting) this future stops everything at once, as a crash would.
    pub async fn run(self) -> anyhow::Result<()> {
        let router = Router::new()
            .route("/health", get(|| async { Json(json!({"status": "UP"})) }))
            .route("/ready", get(ready))
            .route("/metrics", get(metrics))
            .with_state(self.http.clone());
        let stop = self.shutdown.clone();
        let mut tasks = JoinSet::new();
        let listener = self.listener;
        tasks.spawn(async move {
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
            {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
        tasks.spawn(self.consume.run(self.shutdown.clone()));
        tasks.spawn(self.dispatcher.run(self.shutdown.clone()));
        tasks.spawn(self.dlq.run(self.shutdown.clone()));
        tasks.spawn(refresh_gauges(self.http.clone(), self.shutdown.clone()));
        let mut failure = None;
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                // A part panicked: stop the rest rather than run half a worker.
                tracing::error!(error = %e, "a settlement task failed; stopping");
                self.shutdown.cancel();
                failure.get_or_insert(e);
            }
        }
        match failure {
            Some(e) => Err(anyhow::anyhow!("a settlement task failed: {e}")),
            None => Ok(()),
        }
    }
}

async fn refresh_gauges(s: HttpState, shutdown: CancellationToken) {
    loop {
        s.metrics.set_breaker_state(s.breaker.state());
        match store::gauges(&s.db).await {
            Ok((counts, oldest)) => {
                for status in crate::metrics::STATUSES {
                    let n = counts
                        .iter()
                        .find(|(st, _)| st == status)
                        .map_or(0, |(_, n)| *n);
                    s.metrics.records.with_label_values(&[status]).set(n);
                }
                s.metrics.oldest_pending_age.set(oldest);
            }
            Err(e) => tracing::debug!(error = %e, "refreshing settlement gauges"),
        }
        if let Err(e) = gauges::refresh(&s.db, &s.time_zone, &s.metrics).await {
            tracing::debug!(error = %e, "refreshing payout gauges");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(GAUGE_PERIOD) => {}
        }
    }
}

async fn ready(State(s): State<HttpState>) -> impl IntoResponse {
    let db = tokio::time::timeout(
        Duration::from_secs(1),
        sqlx::query("SELECT 1").execute(&s.db),
    )
    .await
    .map(|r| r.is_ok())
    .unwrap_or(false);
    let c = s.consumer.clone();
    let kafka =
        tokio::task::spawn_blocking(move || c.fetch_metadata(None, Duration::from_secs(1)).is_ok())
            .await
            .unwrap_or(false);
    let partitions = s.consumer.assignment().map(|a| a.count()).unwrap_or(0);
    // Ready means consuming. The acquirer is not a condition: while it is down the breaker holds the
    // settlements and the worker still records events, which is its job.
    let ok = db && kafka && partitions > 0;
    let up = |ok: bool| if ok { "UP" } else { "DOWN" };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": up(ok),
            "components": {
                "database": {"status": up(db)},
                "kafka": {"status": up(kafka), "assignedPartitions": partitions},
                "acquirerBreaker": s.breaker.state(),
            }
        })),
    )
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    s.metrics.set_breaker_state(s.breaker.state());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}
