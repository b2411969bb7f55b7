//! The acquirer's one error type and its one mapping to HTTP: `{code, message, details?}` with the right
//! status. Codes are lower snake case, as card acquirers' APIs spell them (`acquirer_unavailable`).
//!
//! Handlers return `Result<_, ApiError>` and use `?`; internal errors are logged here with their cause and
//! answered without it.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use payctl_domain::FieldError;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 naming the fields (a misspelt field is named too, never ignored).
    #[error("request validation failed")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    /// 422: well-formed, but more than can be done (e.g. more discrepancies than the statement has lines).
    #[error("{0}")]
    Unprocessable(String),
    /// 503: an injected failure or an outage; the caller retries after `retry_after_secs`.
    #[error("the acquirer is unavailable; retry with the same Idempotency-Key")]
    Unavailable { retry_after_secs: u64 },
    #[error("the acquirer's database is unavailable")]
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
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::IdempotencyKeyReused | Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable { .. } | Self::DatabaseUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Validation(_) => "validation_failed",
            Self::BadRequest(_) => "bad_request",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::Unprocessable(_) => "unprocessable",
            Self::Unavailable { .. } => "acquirer_unavailable",
            Self::DatabaseUnavailable => "database_unavailable",
            Self::Internal(_) => "internal_error",
        }
    }

    pub fn validation(field: FieldError) -> Self {
        Self::Validation(vec![field])
    }

    fn body(&self) -> Vec<u8> {
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
        serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"code\":\"internal_error\"}".to_vec())
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        // Closed, out of connections, read-only, the write lock not released in time: not the request's
        // fault, and the same request passes later. 503 with Retry-After, never 500.
        if crate::db::is_unavailable(&e) {
            tracing::warn!(error = %e, "database unavailable");
            Self::DatabaseUnavailable
        } else {
            Self::Internal(e.into())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(e) => tracing::error!(error = ?e, "internal error"),
            other => tracing::debug!(code = other.code(), "request refused: {other}"),
        }
        let mut response = json_response(self.status(), self.body());
        let retry_after = match &self {
            Self::Unavailable { retry_after_secs } => Some(*retry_after_secs),
            Self::DatabaseUnavailable => Some(1),
            _ => None,
        };
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A JSON response from already-serialised bytes (stored responses are replayed byte for byte).
pub fn json_response(status: StatusCode, body: impl Into<axum::body::Body>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.into(),
    )
        .into_response()
}
