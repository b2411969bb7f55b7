//! The acquirer's HTTP API. Requests are parsed strictly at the edge (unknown fields and query
//! parameters are 400s naming them) into the domain's types; the store does the rest.
//!
//! | route | |
//! |---|---|
//! | `POST /v1/settlements` | settle (header `Idempotency-Key`): 201 first time, 200 replay, 422 key reused |
//! | `GET /v1/settlements/{reference}` | one settlement's stored response |
//! | `GET /v1/settlements?eventId=` | every settlement of an event (the worker's recovery) |
//! | `GET /v1/statements/{date}` | the business date's statement, CSV; `drop,amount,duplicate,unknown,seed` damage it; header `Statement-Version` |
//! | `GET /v1/statements/{date}/discrepancies` | what those parameters did, JSON; pass `version` (the CSV's `Statement-Version`) to describe that very statement |
//! | `POST /v1/admin/outage`, `GET`/`PUT /v1/admin/settings` | misbehaviour controls, never refused |
//! | `GET /health`, `GET /ready` | 200 `{"status":"UP"}` when the database answers `SELECT 1`, else 503 |
//! | `GET /metrics` | |

use crate::chaos::{Failure, Settings};
use crate::config::{FailureRate, LatencyRange};
use crate::error::{json_response, ApiError};
use crate::startup::AppState;
use crate::store::{self, Outcome, SettlementRequest};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use payctl_domain::settlement::{
    business_day_start, format_statement, inject, Injected, Injection, SettlementType,
    StatementLine,
};
use payctl_domain::{Amount, Currency, EventId, FieldError, IdempotencyKey, MerchantId, PaymentId};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;
use time::Date;

pub fn router(state: AppState) -> Router {
    // Everything an outage refuses.
    let v1 = Router::new()
        .route("/v1/settlements", post(settle).get(by_event))
        .route("/v1/settlements/{reference}", get(by_reference))
        .route("/v1/statements/{date}", get(statement))
        .route("/v1/statements/{date}/discrepancies", get(discrepancies))
        .route_layer(middleware::from_fn_with_state(state.clone(), outage_gate));
    Router::new()
        .merge(v1)
        .route("/v1/admin/outage", post(start_outage))
        .route("/v1/admin/settings", get(settings).put(change_settings))
        .route("/health", get(health))
        // What the Docker image's HEALTHCHECK asks: the same answer as /health.
        .route("/ready", get(health))
        .route("/metrics", get(metrics))
        .fallback(|req: Request| async move {
            ApiError::NotFound(format!("no route {}", req.uri().path()))
        })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::track,
        ))
        .with_state(state)
}

/// During an outage, 503 with `Retry-After` (the seconds left, at least 1) before anything else runs.
async fn outage_gate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match state.chaos.outage() {
        Some((_, left)) => ApiError::Unavailable {
            retry_after_secs: left.as_secs() + u64::from(left.subsec_nanos() > 0),
        }
        .into_response(),
        None => next.run(request).await,
    }
}

/// The settlement request's body. Unknown fields are refused, never ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettleBody {
    #[serde(rename = "type")]
    kind: SettlementType,
    merchant_id: String,
    payment_id: String,
    event_id: String,
    amount: i64,
    currency: String,
}

impl SettleBody {
    /// Every field checked, every problem reported at once.
    fn parse(self) -> Result<SettlementRequest, ApiError> {
        let mut errors = Vec::new();
        let merchant_id = keep(
            &mut errors,
            MerchantId::parse("merchantId", &self.merchant_id),
        );
        let payment_id = keep(&mut errors, PaymentId::parse("paymentId", &self.payment_id));
        let event_id = keep(&mut errors, EventId::parse("eventId", &self.event_id));
        let amount = keep(&mut errors, Amount::parse("amount", self.amount));
        let currency = keep(&mut errors, Currency::parse("currency", &self.currency));
        match (merchant_id, payment_id, event_id, amount, currency) {
            (Some(merchant_id), Some(payment_id), Some(event_id), Some(amount), Some(currency)) => {
                Ok(SettlementRequest {
                    kind: self.kind,
                    merchant_id,
                    payment_id,
                    event_id,
                    amount,
                    currency,
                })
            }
            _ => Err(ApiError::Validation(errors)),
        }
    }
}

/// The value, or `None` with its error collected.
fn keep<T>(errors: &mut Vec<FieldError>, parsed: Result<T, FieldError>) -> Option<T> {
    parsed.map_err(|e| errors.push(e)).ok()
}

fn idempotency_key(headers: &HeaderMap) -> Result<IdempotencyKey, ApiError> {
    let field = "Idempotency-Key";
    let raw = headers
        .get("idempotency-key")
        .ok_or_else(|| ApiError::validation(FieldError::new(field, "the header is required")))?
        .to_str()
        .map_err(|_| ApiError::validation(FieldError::new(field, "must be printable ASCII")))?;
    IdempotencyKey::parse(field, raw).map_err(ApiError::validation)
}

/// `POST /v1/settlements`: waits the planned latency, then settles, perhaps failing before or after.
async fn settle(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SettleBody>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let request = body.parse()?;
    let plan = state.chaos.plan();
    tokio::time::sleep(plan.delay).await;
    let fail = |when: Failure| {
        state
            .metrics
            .failures_injected
            .with_label_values(&[when.label()])
            .inc();
        tracing::info!(
            failure = when.label(),
            key = key.as_str(),
            "injected failure"
        );
        ApiError::Unavailable {
            retry_after_secs: 1,
        }
    };
    if plan.failure == Some(Failure::Before) {
        return Err(fail(Failure::Before));
    }
    let bps = state.config.fees.bps_for(&request.merchant_id);
    let outcome = store::settle(
        &state.db,
        &key,
        &request,
        bps,
        &state.config.time_zone,
        &state.clock,
    )
    .await?;
    if let Outcome::Settled(_) = outcome {
        state
            .metrics
            .settlements
            .with_label_values(&[request.kind.as_str()])
            .inc();
    }
    if plan.failure == Some(Failure::After) {
        return Err(fail(Failure::After));
    }
    Ok(match outcome {
        Outcome::Settled(body) => json_response(StatusCode::CREATED, body),
        Outcome::Replayed(body) => {
            let mut response = json_response(StatusCode::OK, body);
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            response
        }
    })
}

async fn by_reference(
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> Result<Response, ApiError> {
    store::response_by_reference(&state.db, &reference)
        .await?
        .map(|body| json_response(StatusCode::OK, body))
        .ok_or_else(|| ApiError::NotFound(format!("no settlement {reference}")))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EventQuery {
    event_id: String,
}

/// `GET /v1/settlements?eventId=…`: a JSON array of the stored responses, byte for byte.
async fn by_event(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<EventQuery>,
) -> Result<Response, ApiError> {
    let event_id = EventId::parse("eventId", &q.event_id).map_err(ApiError::validation)?;
    let responses = store::responses_by_event(&state.db, event_id).await?;
    Ok(json_response(
        StatusCode::OK,
        format!("[{}]", responses.join(",")),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatementQuery {
    #[serde(default)]
    drop: usize,
    #[serde(default)]
    amount: usize,
    #[serde(default)]
    duplicate: usize,
    #[serde(default)]
    unknown: usize,
    #[serde(default)]
    seed: u64,
    /// The statement as it was at this version (a `Statement-Version` header), not as it is now.
    #[serde(default)]
    version: Option<i64>,
}

/// The statement of `date` as the acquirer would send it, damaged as the query asks, what was done, and
/// the version it was read at.
async fn damaged_statement(
    state: &AppState,
    date: &str,
    q: StatementQuery,
) -> Result<(Vec<StatementLine>, Vec<Injected>, i64), ApiError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let day = Date::parse(date, &format).map_err(|_| {
        ApiError::validation(FieldError::new(
            "date",
            format!("{date:?} is not a date YYYY-MM-DD"),
        ))
    })?;
    let (lines, version) = store::statement_lines(&state.db, day, q.version).await?;
    let spec = Injection {
        drop: q.drop,
        amount: q.amount,
        duplicate: q.duplicate,
        unknown: q.unknown,
    };
    if spec.is_empty() {
        return Ok((lines, Vec::new(), version));
    }
    let empty_day = lines.is_empty();
    let (mut lines, manifest) =
        inject(lines, spec, q.seed).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    if empty_day {
        // Unknown lines copy an existing line's time; on an empty day they have none, so they are put
        // at the day's local noon, inside the statement's date.
        let noon = business_day_start(day, &state.config.time_zone)
            .map(|start| start + time::Duration::hours(12));
        if let Some(noon) = noon {
            lines.iter_mut().for_each(|l| l.settled_at = noon);
        }
    }
    Ok((lines, manifest, version))
}

/// `GET /v1/statements/{date}`: CSV, see [`payctl_domain::settlement`].
async fn statement(
    State(state): State<AppState>,
    Path(date): Path<String>,
    QueryParams(q): QueryParams<StatementQuery>,
) -> Result<Response, ApiError> {
    let (lines, _, version) = damaged_statement(&state, &date, q).await?;
    let csv = format_statement(&lines).map_err(|e| ApiError::Internal(e.into()))?;
    Ok((
        StatusCode::OK,
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                axum::http::HeaderName::from_static("statement-version"),
                HeaderValue::from(version),
            ),
        ],
        csv,
    )
        .into_response())
}

async fn discrepancies(
    State(state): State<AppState>,
    Path(date): Path<String>,
    QueryParams(q): QueryParams<StatementQuery>,
) -> Result<Response, ApiError> {
    let (_, manifest, _) = damaged_statement(&state, &date, q).await?;
    let body = serde_json::to_vec(&manifest).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(json_response(StatusCode::OK, body))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutageBody {
    seconds: u64,
}

/// `POST /v1/admin/outage {seconds}`: starts (or, with 0, ends) an outage.
async fn start_outage(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<OutageBody>,
) -> Result<Response, ApiError> {
    if body.seconds > crate::chaos::Chaos::MAX_OUTAGE_SECONDS {
        return Err(ApiError::validation(FieldError::new(
            "seconds",
            format!(
                "must be at most {} (a day)",
                crate::chaos::Chaos::MAX_OUTAGE_SECONDS
            ),
        )));
    }
    let until = state.chaos.start_outage(body.seconds);
    tracing::info!(seconds = body.seconds, "outage set");
    Ok(json_response(
        StatusCode::OK,
        json!({"outageUntil": until.map(store::rfc3339)}).to_string(),
    ))
}

fn settings_body(s: Settings) -> Response {
    json_response(
        StatusCode::OK,
        json!({"latencyMs": s.latency.to_string(), "failureRate": s.failure_rate.get()})
            .to_string(),
    )
}

async fn settings(State(state): State<AppState>) -> Response {
    settings_body(state.chaos.settings())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SettingsBody {
    latency_ms: Option<String>,
    failure_rate: Option<f64>,
}

/// `PUT /v1/admin/settings {latencyMs?, failureRate?}`: what is given changes, the rest stays.
async fn change_settings(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<SettingsBody>,
) -> Result<Response, ApiError> {
    let mut settings = state.chaos.settings();
    let mut errors = Vec::new();
    if let Some(l) = body.latency_ms {
        match LatencyRange::parse(&l) {
            Ok(l) => settings.latency = l,
            Err(e) => errors.push(FieldError::new("latencyMs", e)),
        }
    }
    if let Some(r) = body.failure_rate {
        match FailureRate::new(r) {
            Ok(r) => settings.failure_rate = r,
            Err(e) => errors.push(FieldError::new("failureRate", e)),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    state.chaos.set_settings(settings);
    tracing::info!(latency_ms = %settings.latency, failure_rate = settings.failure_rate.get(), "settings changed");
    Ok(settings_body(settings))
}

async fn health(State(state): State<AppState>) -> Response {
    let up = tokio::time::timeout(Duration::from_secs(2), store::ping(&state.db))
        .await
        .unwrap_or(false);
    if !up {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "DOWN"}).to_string(),
        );
    }
    let mut body = json!({"status": "UP"});
    if let Some((until, _)) = state.chaos.outage() {
        body["outageUntil"] = json!(store::rfc3339(until));
    }
    json_response(StatusCode::OK, body.to_string())
}

async fn metrics(State(state): State<AppState>) -> Response {
    // An outage that ended by itself is noticed here, so the gauge does not stay at 1.
    let _ = state.chaos.outage();
    (
        StatusCode::OK,
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// A JSON body parsed into `T`, with errors in the API's shape: 415 for a content type that is not JSON,
/// 400 `bad_request` for malformed JSON, 400 `validation_failed` naming the field for an unknown, missing
/// or mistyped one. (The same rules as pay-server's, which this crate does not depend on.)
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let mime = v
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            });
        if is_json != Some(true) {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as Content-Type: application/json".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("cannot read the body: {e}")))?;
        parse_body(&bytes).map(JsonBody)
    }
}

/// Parses a body strictly: one JSON value, nothing after it, no unknown field. Pure, for unit tests.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::BadRequest(format!("malformed JSON: {inner}"));
        }
        let message = inner.to_string();
        // serde names an unknown field only in its message: "unknown field `x`, expected one of …".
        let field = match message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split_once('`'))
        {
            Some((name, _)) if path == "." => name.to_owned(),
            _ if path == "." => "body".to_owned(),
            _ => path,
        };
        let reason = message.split(" at line ").next().unwrap_or(&message);
        ApiError::validation(FieldError::new(field, reason))
    })?;
    de.end()
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// Query parameters parsed into `T`; an unknown, missing or malformed one is a 400 in the API's shape
/// (axum's own rejection is plain text).
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(q)| QueryParams(q))
            .map_err(|e| ApiError::validation(FieldError::new("query", e.body_text())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_field_is_named() {
        let body = br#"{"type":"CAPTURE","merchantId":"m","paymentId":"p","eventId":"e","amount":1,"currncy":"KRW"}"#;
        match parse_body::<SettleBody>(body) {
            Err(ApiError::Validation(f)) => assert_eq!(f[0].field, "currncy", "{f:?}"),
            other => panic!("{other:?}"),
        }
        match parse_body::<SettleBody>(br#"{"type":"CAPTUR"}"#) {
            Err(ApiError::Validation(f)) => assert_eq!(f[0].field, "type", "{f:?}"),
            other => panic!("{other:?}"),
        }
        // Trailing bytes after a complete value are as malformed as a missing brace.
        let trailing = br#"{"type":"CAPTURE","merchantId":"m","paymentId":"p","eventId":"e","amount":1,"currency":"KRW"} x"#;
        assert!(matches!(
            parse_body::<SettleBody>(trailing),
            Err(ApiError::BadRequest(_))
        ));
    }
}
