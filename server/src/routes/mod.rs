//! HTTP routes. Each module is small; the request parsing every route shares lives here.

mod ops;
mod payments;
mod queries;

use crate::error::ApiError;
use crate::startup::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{middleware, Router};
use payctl_domain::{FieldError, IdempotencyKey, MerchantId, PaymentId};
use serde::de::DeserializeOwned;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/payments/authorize", post(payments::authorize))
        .route("/payments/capture/{id}", post(payments::capture))
        .route("/payments/refund/{id}", post(payments::refund))
        .route("/payments/void/{id}", post(payments::void))
        .route("/payments", get(queries::list))
        .route("/payments/{id}", get(queries::get))
        .route("/payments/{id}/ledger", get(queries::ledger))
        .route("/circuit-breaker/kafka-publisher", get(ops::breaker))
        .route("/circuit-breaker/status", get(ops::breaker_status))
        .route(
            "/circuit-breaker/kafka-publisher/state",
            post(ops::set_breaker_state),
        )
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .fallback(
            |req: Request| async move { ApiError::RouteNotFound(req.uri().path().to_owned()) },
        )
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::track,
        ))
        .with_state(state)
}

/// A JSON body parsed into `T`, with errors in the API's shape: 415 for a non-JSON content type, 400
/// `BAD_REQUEST` for malformed JSON, 400 `VALIDATION_FAILED` naming the field for wrong types or missing
/// fields. An empty body reads as `{}` (capture and void need no fields).
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
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest(format!("cannot read the body: {e}"))
            }
        })?;
        let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
            Bytes::from_static(b"{}")
        } else {
            if is_json != Some(true) {
                return Err(ApiError::UnsupportedMediaType(
                    "send the body as Content-Type: application/json".into(),
                ));
            }
            bytes
        };
        parse_body(&bytes).map(JsonBody)
    }
}

/// Parses a request body strictly, as Stripe does: one JSON value and nothing after it, no field the
/// route does not know (a misspelt `amount` must not silently mean "all that remains"), each field once.
/// Syntax errors are `400 BAD_REQUEST`; a wrong, unknown or missing field is `400 VALIDATION_FAILED`
/// naming it. Pure, so the fuzz test can drive it with arbitrary bytes.
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
        ApiError::Validation(vec![FieldError::new(field, reason)])
    })?;
    // Trailing bytes after the value (`{…}garbage`) are as malformed as a missing brace.
    de.end()
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// For optional fields where `null` is not a value: absent means the default, `null` is refused.
/// (`#[serde(default, deserialize_with = "non_null")]`)
pub fn non_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

pub fn parse_payment_id(raw: &str) -> Result<PaymentId, ApiError> {
    PaymentId::parse("paymentId", raw).map_err(ApiError::validation)
}

/// The payment id of a `…/{id}` route. A malformed one is 400 `VALIDATION_FAILED` naming `paymentId`,
/// in the API's error shape, also when its percent-encoding is not UTF-8 (axum's own rejection is plain
/// text).
pub struct PaymentPath(pub PaymentId);

impl<S: Send + Sync> FromRequestParts<S> for PaymentPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::validation(FieldError::new("paymentId", e.body_text())))?;
        parse_payment_id(&raw).map(Self)
    }
}

/// `merchantId` in a body is optional (the key says who the merchant is) but must match when present.
pub fn check_body_merchant(body: Option<&str>, merchant: &MerchantId) -> Result<(), ApiError> {
    match body {
        Some(m) if m != merchant.as_str() => Err(ApiError::Forbidden(format!(
            "merchantId '{m}' does not match the API key's merchant"
        ))),
        _ => Ok(()),
    }
}

/// The idempotency key from the `Idempotency-Key` header or, for compatibility, the body.
pub fn idempotency_key(
    headers: &axum::http::HeaderMap,
    body: Option<&str>,
) -> Result<Option<IdempotencyKey>, ApiError> {
    let header = match headers.get("idempotency-key") {
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError::validation(FieldError::new("Idempotency-Key", "must be ASCII"))
        })?),
        None => None,
    };
    match (header, body) {
        (Some(h), Some(b)) if h != b => Err(ApiError::validation(FieldError::new(
            "idempotencyKey",
            "differs from the Idempotency-Key header",
        ))),
        (Some(k), _) => IdempotencyKey::parse("Idempotency-Key", k)
            .map(Some)
            .map_err(ApiError::validation),
        (None, Some(k)) => IdempotencyKey::parse("idempotencyKey", k)
            .map(Some)
            .map_err(ApiError::validation),
        (None, None) => Ok(None),
    }
}
