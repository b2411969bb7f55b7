//! Assembling the consumer (used by `main` and the tests): pool, migrations, Kafka clients, the worker,
//! and the HTTP endpoints `/health`, `/ready`, `/metrics`.

use crate::config::Config;
use crate::metrics::Metrics;
use crate::worker::{self, Worker};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use rdkafka::consumer::{Consumer, StreamConsumer};
use serde_json::json;
use sqlx::MySqlPool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct HttpState {
    db: MySqlPool,
    consumer: Arc<StreamConsumer>,
    metrics: Arc<Metrics>,
}

pub struct App {
    listener: TcpListener,
    worker: Worker,
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
        let consumer = Arc::new(worker::consumer(&config).await?);
        let dlq = worker::dlq_producer(&config)?;
        let metrics = Metrics::new(&config.event_topics());
        let listener = TcpListener::bind(config.listen).await?;
        let http = HttpState {
            db: db.clone(),
            consumer: consumer.clone(),
            metrics: metrics.clone(),
        };
        Ok(Self {
            listener,
            worker: Worker {
                config: Arc::new(config),
                db,
                consumer,
                dlq,
                metrics,
            },
            http,
            shutdown: CancellationToken::new(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound")
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.http.metrics.clone()
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs until the token is cancelled: finishes the batch in hand, commits offsets, leaves the group.
    pub async fn run(self) -> anyhow::Result<()> {
        let router = Router::new()
            .route("/health", get(|| async { Json(json!({"status": "UP"})) }))
            .route("/ready", get(ready))
            .route("/metrics", get(metrics))
            .with_state(self.http);
        let stop = self.shutdown.clone();
        let listener = self.listener;
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        });
        self.worker.run(self.shutdown.clone()).await;
        self.shutdown.cancel();
        let _ = server.await;
        Ok(())
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
    // Ready means consuming: the group has given this instance its partitions. Which ones, by topic,
    // shows how the group spread them (`payctl status` prints them per consumer).
    let assignment = s.consumer.assignment().ok();
    let mut by_topic: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
    for e in assignment.iter().flat_map(|a| a.elements()) {
        by_topic
            .entry(e.topic().to_owned())
            .or_default()
            .push(e.partition());
    }
    by_topic.values_mut().for_each(|p| p.sort_unstable());
    let partitions: usize = by_topic.values().map(Vec::len).sum();
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
                "kafka": {"status": up(kafka), "assignedPartitions": partitions, "partitions": by_topic},
            }
        })),
    )
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}
