//! The API's one error type and its one mapping to HTTP: `{code, message, details?}` with the right status.
//!
//! Handlers return `Result<_, ApiError>` and use `?`; internal errors are logged here with their cause and
//! answered without it, so nothing about the database or Kafka leaks to clients.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use payctl_domain::{FieldError, TransitionError};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request validation failed")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request body is larger than 2 MiB")]
    PayloadTooLarge,
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("payment not found")]
    PaymentNotFound,
    #[error("payout not found")]
    PayoutNotFound,
    #[error("no route {0}")]
    RouteNotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("a request with this idempotency key is still being processed")]
    IdempotencyInProgress,
    /// A row lock (another request changing the same payment) was not released in time. Not
    /// `IdempotencyInProgress`: the request may have no key at all.
    #[error("another request is changing this payment; retry shortly")]
    LockTimeout,
    #[error("this idempotency key was already used with a different request")]
    IdempotencyMismatch,
    #[error("rate limit exceeded for {action} requests; retry in {retry_after_secs} s")]
    RateLimited {
        action: &'static str,
        retry_after_secs: u64,
        limit: u32,
    },
    #[error("the database is unavailable")]
    DatabaseUnavailable,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::PaymentNotFound | Self::PayoutNotFound | Self::RouteNotFound(_) => {
                StatusCode::NOT_FOUND
            }
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Transition(_) | Self::IdempotencyInProgress | Self::LockTimeout => {
                StatusCode::CONFLICT
            }
            Self::IdempotencyMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::DatabaseUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Validation(_) => "VALIDATION_FAILED",
            Self::BadRequest(_) => "BAD_REQUEST",
            Self::UnsupportedMediaType(_) => "UNSUPPORTED_MEDIA_TYPE",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::PaymentNotFound => "PAYMENT_NOT_FOUND",
            Self::PayoutNotFound => "PAYOUT_NOT_FOUND",
            Self::RouteNotFound(_) => "NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::Transition(TransitionError::WrongState { .. }) => "INVALID_STATE",
            Self::Transition(TransitionError::ExceedsRemaining { .. }) => {
                "AMOUNT_EXCEEDS_REMAINING"
            }
            Self::IdempotencyInProgress => "IDEMPOTENCY_IN_PROGRESS",
            Self::LockTimeout => "LOCK_TIMEOUT",
            Self::IdempotencyMismatch => "IDEMPOTENCY_KEY_REUSED",
            Self::RateLimited { .. } => "RATE_LIMIT_EXCEEDED",
            Self::DatabaseUnavailable => "DATABASE_UNAVAILABLE",
            Self::Internal(_) => "INTERNAL_ERROR",
        }
    }

    /// The body bytes, as stored for idempotent replays and sent to the client.
    pub fn body(&self) -> Vec<u8> {
        let details = match self {
            Self::Validation(fields) => Some(serde_json::Value::Array(
                fields
                    .iter()
                    .map(|f| serde_json::json!({"field": f.field, "reason": f.reason}))
                    .collect(),
            )),
            _ => None,
        };
        let body = ErrorBody {
            code: self.code(),
            message: self.to_string(),
            details,
        };
        serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"code\":\"INTERNAL_ERROR\"}".to_vec())
    }

    pub fn validation(field: FieldError) -> Self {
        Self::Validation(vec![field])
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        // Unavailable covers more than a database that is down: read-only during a failover, out of
        // connections or disk, a revoked grant, a killed statement. None is the request's fault, and
        // the same request will pass later: 503 with Retry-After, never 500.
        if crate::storage::is_unavailable(&e) {
            tracing::warn!(
                error = %e,
                errno = crate::storage::mysql_error_number(&e),
                "database unavailable"
            );
            Self::DatabaseUnavailable
        } else if crate::storage::is_lock_wait(&e) {
            Self::LockTimeout
        } else {
            Self::Internal(e.into())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(e) => tracing::error!(error = ?e, "internal error"),
            Self::DatabaseUnavailable => {}
            other => tracing::debug!(code = other.code(), "request refused: {other}"),
        }
        let mut response = json_response(self.status(), self.body());
        let headers = response.headers_mut();
        match &self {
            Self::RateLimited {
                retry_after_secs,
                limit,
                ..
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
                headers.insert("ratelimit-limit", HeaderValue::from(*limit));
                headers.insert("ratelimit-remaining", HeaderValue::from(0));
                headers.insert("ratelimit-reset", HeaderValue::from(*retry_after_secs));
            }
            Self::DatabaseUnavailable | Self::LockTimeout | Self::IdempotencyInProgress => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(1));
            }
            Self::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

/// A JSON response from already-serialised bytes.
pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}
