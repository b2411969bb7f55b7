//! The money-moving routes: authorize, capture, refund, void. They parse and check the request at the
//! edge, then hand a typed command to the service.

use super::{check_body_merchant, idempotency_key, non_null, Integer, JsonBody, PaymentPath};
use crate::auth::Merchant;
use crate::error::ApiError;
use crate::idempotency::Keyed;
use crate::service::{execute, Command};
use crate::startup::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use payctl_domain::{Amount, Currency, FieldError, PaymentId, Transition};
use serde::Deserialize;
use serde_json::json;

/// The original's body, with `idempotencyKey` now optional when the header carries the key. Unknown
/// fields are refused (400), never ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizeBody {
    merchant_id: Option<String>,
    amount: Integer,
    currency: String,
    idempotency_key: Option<String>,
}

/// Capture, refund and void. Unknown fields are refused: `{"refundAmount": 100}` must not read as a
/// body without `amount`, which means "all that remains".
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangeBody {
    merchant_id: Option<String>,
    /// Partial capture or refund; all that remains when absent. `null` is refused, not read as absent.
    #[serde(default, deserialize_with = "non_null")]
    amount: Option<Integer>,
    reason: Option<String>,
    idempotency_key: Option<String>,
}

const MAX_REASON: usize = 128;

pub async fn authorize(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    headers: HeaderMap,
    JsonBody(body): JsonBody<AuthorizeBody>,
) -> Result<Response, ApiError> {
    check_body_merchant(body.merchant_id.as_deref(), &merchant)?;
    let mut errors = Vec::new();
    let amount = Amount::parse("amount", body.amount.0)
        .map_err(|e| errors.push(e))
        .ok();
    let currency = Currency::parse("currency", &body.currency)
        .map_err(|e| errors.push(e))
        .ok();
    let key = idempotency_key(&headers, body.idempotency_key.as_deref())?;
    if key.is_none() {
        errors.push(FieldError::new(
            "idempotencyKey",
            "is required for authorize (header Idempotency-Key or body idempotencyKey)",
        ));
    }
    let (Some(amount), Some(currency), Some(key), true) =
        (amount, currency, key, errors.is_empty())
    else {
        return Err(ApiError::Validation(errors));
    };
    let keyed = Keyed::new(
        merchant.clone(),
        key,
        "authorize",
        &json!({"amount": amount.minor_units(), "currency": currency.code()}),
    );
    execute(
        &state,
        &merchant,
        Command::Authorize { amount, currency },
        Some(keyed),
    )
    .await
}

async fn change(
    state: AppState,
    merchant: payctl_domain::MerchantId,
    payment_id: PaymentId,
    headers: HeaderMap,
    body: ChangeBody,
    kind: &'static str,
) -> Result<Response, ApiError> {
    check_body_merchant(body.merchant_id.as_deref(), &merchant)?;
    let amount = body
        .amount
        .map(|a| Amount::parse("amount", a.0).map(Amount::minor_units))
        .transpose()
        .map_err(ApiError::validation)?;
    if let Some(reason) = &body.reason {
        if reason.chars().count() > MAX_REASON {
            return Err(ApiError::validation(FieldError::new(
                "reason",
                format!("must be at most {MAX_REASON} characters"),
            )));
        }
    }
    let transition = match kind {
        "capture" => Transition::Capture(amount),
        "refund" => Transition::Refund(amount),
        _ => {
            if amount.is_some() {
                return Err(ApiError::validation(FieldError::new(
                    "amount",
                    "a void always releases the whole authorization",
                )));
            }
            Transition::Void
        }
    };
    let keyed = idempotency_key(&headers, body.idempotency_key.as_deref())?.map(|key| {
        Keyed::new(
            merchant.clone(),
            key,
            &format!("{kind}:{payment_id}"),
            &json!({"amount": amount, "reason": body.reason}),
        )
    });
    let command = Command::Change {
        payment_id,
        transition,
        reason: body.reason,
    };
    execute(&state, &merchant, command, keyed).await
}

pub async fn capture(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    PaymentPath(id): PaymentPath,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ChangeBody>,
) -> Result<Response, ApiError> {
    change(state, merchant, id, headers, body, "capture").await
}

pub async fn refund(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    PaymentPath(id): PaymentPath,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ChangeBody>,
) -> Result<Response, ApiError> {
    change(state, merchant, id, headers, body, "refund").await
}

pub async fn void(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    PaymentPath(id): PaymentPath,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ChangeBody>,
) -> Result<Response, ApiError> {
    change(state, merchant, id, headers, body, "void").await
}
