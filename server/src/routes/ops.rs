//! Operational routes: liveness, readiness, metrics, the breaker's state and the OpenAPI document.

use crate::breaker::{Snapshot, State as BreakerState};
use crate::error::ApiError;
use crate::kafka;
use crate::startup::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use payctl_domain::FieldError;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Liveness: the process answers. Dependencies are `/ready`'s business.
pub async fn health() -> Json<Value> {
    Json(json!({"status": "UP"}))
}

/// Readiness, with each dependency reported. The instance is ready (200) when the database answers:
/// without Redis it fails open, without Kafka the outbox holds events, so neither stops payments.
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let db = tokio::time::timeout(
        Duration::from_secs(1),
        sqlx::query("SELECT 1").execute(&state.db),
    )
    .await
    .map(|r| r.is_ok())
    .unwrap_or(false);
    let (redis, kafka) = tokio::join!(
        state.redis.ping(),
        kafka::reachable(&state.producer, Duration::from_secs(1))
    );
    let up = |ok: bool| if ok { "UP" } else { "DOWN" };
    let status = if db {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if db && redis && kafka { "UP" } else if db { "DEGRADED" } else { "DOWN" },
        "components": {
            "database": {"status": up(db)},
            "redis": {"status": up(redis)},
            "kafka": {
                "status": up(kafka),
                "topicsReady": state.topics_ready.load(Ordering::Acquire),
                "circuitBreaker": state.breaker.state(),
            },
        }
    });
    (status, Json(body))
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let m = &state.metrics;
    let snapshot = state.breaker.snapshot();
    for s in BreakerState::ALL {
        m.breaker_state
            .with_label_values(&["kafka-publisher", s.label()])
            .set(if s == snapshot.state { 1.0 } else { 0.0 });
    }
    m.breaker_failure_rate.set(snapshot.failure_rate_value);
    m.breaker_slow_call_rate.set(snapshot.slow_call_rate_value);
    m.breaker_buffered_calls
        .with_label_values(&["successful"])
        .set(f64::from(snapshot.number_of_successful_calls));
    m.breaker_buffered_calls
        .with_label_values(&["failed"])
        .set(f64::from(snapshot.number_of_failed_calls));
    m.breaker_buffered_calls
        .with_label_values(&["slow"])
        .set(f64::from(snapshot.number_of_slow_calls));
    m.breaker_not_permitted
        .set(snapshot.number_of_not_permitted_calls as i64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        m.render(),
    )
}

pub async fn breaker(State(state): State<AppState>) -> Json<Snapshot> {
    Json(state.breaker.snapshot())
}

/// The original's map form: `{"kafka-publisher": {...}}`.
pub async fn breaker_status(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"kafka-publisher": state.breaker.snapshot()}))
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], crate::OPENAPI)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateChange {
    state: String,
}

/// Operator control of the breaker: `CLOSED` (reset), `DISABLED`, `FORCED_OPEN`, `METRICS_ONLY`.
/// Needs `Authorization: Bearer <APP_ADMIN_TOKEN>`.
pub async fn set_breaker_state(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    crate::routes::JsonBody(change): crate::routes::JsonBody<StateChange>,
) -> Result<Json<Snapshot>, ApiError> {
    let Some(expected) = state
        .config
        .admin_token
        .as_deref()
        .filter(|t| !t.is_empty())
    else {
        return Err(ApiError::Forbidden(
            "the admin API is disabled; set APP_ADMIN_TOKEN".into(),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized)?;
    use sha2::{Digest, Sha256};
    if Sha256::digest(given.as_bytes()) != Sha256::digest(expected.as_bytes()) {
        return Err(ApiError::Unauthorized);
    }
    let to = match change.state.as_str() {
        "CLOSED" => BreakerState::Closed,
        "DISABLED" => BreakerState::Disabled,
        "FORCED_OPEN" => BreakerState::ForcedOpen,
        "METRICS_ONLY" => BreakerState::MetricsOnly,
        other => {
            return Err(ApiError::validation(FieldError::new(
                "state",
                format!(
                    "'{other}' cannot be set; use CLOSED, DISABLED, FORCED_OPEN or METRICS_ONLY"
                ),
            )))
        }
    };
    state.breaker.force(to);
    state.relay_wake.notify_one();
    Ok(Json(state.breaker.snapshot()))
}
