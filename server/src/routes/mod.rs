//! HTTP routes. Each module is small; the request parsing every route shares lives here.

mod ops;
mod payments;
mod queries;

use crate::error::ApiError;
use crate::startup::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
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
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("cannot read the body: {e}")))?;
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
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize(&mut de) {
            Ok(v) => Ok(JsonBody(v)),
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if inner.is_syntax() || inner.is_eof() {
                    Err(ApiError::BadRequest(format!("malformed JSON: {inner}")))
                } else {
                    let field = if path == "." { "body".to_owned() } else { path };
                    Err(ApiError::Validation(vec![FieldError::new(
                        field,
                        inner.to_string(),
                    )]))
                }
            }
        }
    }
}

pub fn parse_payment_id(raw: &str) -> Result<PaymentId, ApiError> {
    PaymentId::parse("paymentId", raw).map_err(ApiError::validation)
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
