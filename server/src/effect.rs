//! What a payment command does, computed in memory: the new or changed payment row, its event and the
//! response. Writing it is the caller's business — a transaction of its own (`service`) or a shared one
//! (`batch`) — so both paths answer byte for byte the same.

use crate::error::ApiError;
use crate::idempotency::SavedResponse;
use crate::ratelimit::Action;
use crate::storage::{self, PaymentRecord};
use axum::http::StatusCode;
use payctl_domain::payment::Balances;
use payctl_domain::{
    Amount, Currency, EventId, EventType, MerchantId, PaymentEvent, PaymentId, PaymentStatus,
    Transition, EVENT_SCHEMA_VERSION,
};
use serde::Serialize;
use time::OffsetDateTime;

/// A payment as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentView {
    pub payment_id: PaymentId,
    pub merchant_id: String,
    pub status: PaymentStatus,
    pub amount: i64,
    pub captured_amount: i64,
    pub refunded_amount: i64,
    /// The part of the authorization released by a void.
    pub voided_amount: i64,
    pub currency: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'static str>,
}

impl From<&PaymentRecord> for PaymentView {
    fn from(p: &PaymentRecord) -> Self {
        Self {
            payment_id: p.id,
            merchant_id: p.merchant_id.clone(),
            status: p.status,
            amount: p.amount,
            captured_amount: p.captured,
            refunded_amount: p.refunded,
            voided_amount: p.voided,
            currency: p.currency.clone(),
            created_at: p.created_at,
            updated_at: p.updated_at,
            message: None,
        }
    }
}

/// A money-moving request, parsed.
#[derive(Debug, Clone)]
pub enum Command {
    Authorize {
        amount: Amount,
        currency: Currency,
    },
    Change {
        payment_id: PaymentId,
        transition: Transition,
        reason: Option<String>,
    },
}

impl Command {
    pub fn action(&self) -> Action {
        match self {
            Self::Authorize { .. } => Action::Authorize,
            Self::Change { transition, .. } => match transition {
                Transition::Capture(_) => Action::Capture,
                Transition::Refund(_) => Action::Refund,
                Transition::Void => Action::Void,
            },
        }
    }
}

/// A command's result once committed: the response (also the idempotency key's stored response) and the
/// event it published, if it moved money.
#[derive(Debug, Clone)]
pub struct Written {
    pub saved: SavedResponse,
    pub effect: Option<EventType>,
}

/// A payment change ready to be written: the row after it, the event, and the response.
pub struct Effect {
    pub payment: PaymentRecord,
    pub event: PaymentEvent,
    pub saved: SavedResponse,
}

/// A new authorization of `amount` for `merchant`.
pub fn authorization(
    merchant: &MerchantId,
    amount: Amount,
    currency: Currency,
) -> Result<Effect, ApiError> {
    let now = storage::now();
    let payment = PaymentRecord {
        id: PaymentId::new(),
        merchant_id: merchant.as_str().to_owned(),
        status: PaymentStatus::Authorized,
        amount: amount.minor_units(),
        captured: 0,
        refunded: 0,
        voided: 0,
        currency: currency.code().to_owned(),
        version: 0,
        created_at: now,
        updated_at: now,
    };
    let event = event_for(&payment, EventType::PaymentAuthorized, payment.amount, None);
    // 200 like the original and Stripe: its clients check for 200 (a 201 failed every k6 flow of the
    // original's scenario).
    let saved = saved_view(&payment, "Payment authorized successfully")?;
    Ok(Effect {
        payment,
        event,
        saved,
    })
}

/// `transition` applied to `payment` (read under its row lock): the row after it, or why it is refused.
pub fn change(
    mut payment: PaymentRecord,
    transition: Transition,
    reason: Option<String>,
) -> Result<Effect, ApiError> {
    let applied = payment.balances().apply(transition)?;
    let Balances {
        status,
        captured,
        refunded,
        voided,
        ..
    } = applied.after;
    payment.status = status;
    payment.captured = captured;
    payment.refunded = refunded;
    payment.voided = voided;
    payment.version += 1;
    payment.updated_at = storage::now();
    let (event_type, message) = match transition {
        Transition::Capture(_) => (EventType::PaymentCaptured, "Payment captured successfully"),
        Transition::Refund(_) => (EventType::PaymentRefunded, "Payment refunded successfully"),
        // After a partial capture the payment stays captured; say what the void did.
        Transition::Void if payment.captured > 0 => (
            EventType::PaymentVoided,
            "The uncaptured rest of the authorization was released; what was captured stays captured",
        ),
        Transition::Void => (EventType::PaymentVoided, "Payment voided successfully"),
    };
    let event = event_for(&payment, event_type, applied.moved, reason);
    let saved = saved_view(&payment, message)?;
    Ok(Effect {
        payment,
        event,
        saved,
    })
}

/// Refusals the client caused, which are part of an idempotency key's history (Stripe semantics: the
/// same request replays the same refusal). Anything else leaves the key free.
pub fn is_recorded_refusal(e: &ApiError) -> bool {
    matches!(e, ApiError::Transition(_) | ApiError::PaymentNotFound)
}

/// The stored form of a refusal.
pub fn saved_refusal(e: &ApiError) -> SavedResponse {
    SavedResponse {
        status: e.status().as_u16(),
        body: e.body(),
    }
}

fn saved_view(payment: &PaymentRecord, message: &'static str) -> Result<SavedResponse, ApiError> {
    let mut view = PaymentView::from(payment);
    view.message = Some(message);
    let body = serde_json::to_vec(&view).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(SavedResponse {
        status: StatusCode::OK.as_u16(),
        body,
    })
}

fn event_for(
    p: &PaymentRecord,
    event_type: EventType,
    amount: i64,
    reason: Option<String>,
) -> PaymentEvent {
    PaymentEvent {
        event_id: EventId::new(),
        event_type,
        schema_version: EVENT_SCHEMA_VERSION,
        payment_id: p.id,
        sequence: p.version + 1,
        merchant_id: p.merchant_id.clone(),
        amount,
        currency: p.currency.clone(),
        occurred_at: p.updated_at,
        status: p.status,
        authorized_amount: p.amount,
        captured_amount: p.captured,
        refunded_amount: p.refunded,
        voided_amount: p.voided,
        reason,
    }
}
