//! HTTP routes. Each module is small; the request parsing every route shares lives here.

mod ops;
mod payments;
mod payouts;
mod queries;

#[cfg(test)]
mod fuzz;

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
        .route("/payouts", get(payouts::list))
        .route("/payouts/{id}", get(payouts::get))
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

/// An integer field, sent as any JSON number without a fractional part: `100`, `100.0` and `1e2` are one
/// number in JSON, and JSON Schema's `type: integer` (the API document's) accepts all three, so the
/// server does too. `100.5`, strings and booleans are refused. Values beyond `i64` saturate, for the
/// caller's range check to name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Integer(pub i64);

impl<'de> serde::Deserialize<'de> for Integer {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Integer;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an integer")
            }

            fn visit_i64<E>(self, v: i64) -> Result<Integer, E> {
                Ok(Integer(v))
            }

            fn visit_u64<E>(self, v: u64) -> Result<Integer, E> {
                Ok(Integer(i64::try_from(v).unwrap_or(i64::MAX)))
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Integer, E> {
                if v.is_finite() && v.fract() == 0.0 {
                    // `as` saturates: 1e300 becomes i64::MAX, which the range check refuses.
                    Ok(Integer(v as i64))
                } else {
                    Err(E::invalid_type(serde::de::Unexpected::Float(v), &self))
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        amount: Integer,
    }

    fn amount(json: &str) -> Result<i64, ApiError> {
        parse_body::<Body>(format!("{{\"amount\": {json}}}").as_bytes()).map(|b| b.amount.0)
    }

    #[test]
    fn an_integer_may_be_spelt_as_any_json_number_without_a_fraction() {
        for (json, want) in [
            ("1", 1),
            ("1.0", 1),
            ("1e3", 1000),
            ("2.5e1", 25),
            ("-5", -5),
            ("-0.0", 0),
            ("99999999999.0", 99_999_999_999),
            // Beyond i64 saturates, for the range check to refuse.
            ("18446744073709551615", i64::MAX),
            ("1e300", i64::MAX),
            ("-1e300", i64::MIN),
        ] {
            assert_eq!(amount(json).unwrap(), want, "{json}");
        }
        for bad in ["1.5", "0.1", "\"1\"", "true", "null", "[1]", "{}"] {
            match amount(bad) {
                Err(ApiError::Validation(fields)) => {
                    assert_eq!(fields[0].field, "amount", "{bad}: {fields:?}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
