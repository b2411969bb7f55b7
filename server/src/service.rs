//! Carrying out a payment command: replay check, rate limit, then one database transaction holding the
//! idempotency record, the payment change, its outbox event and the stored response.

use crate::error::{json_response, ApiError};
use crate::idempotency::{self, Keyed, Reservation, SavedResponse};
use crate::outbox;
use crate::ratelimit::{Action, Decision};
use crate::startup::AppState;
use crate::storage::{self, PaymentRecord, Tx};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
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
    fn action(&self) -> Action {
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

/// Runs `command` for `merchant`, idempotently when `keyed` is given.
pub async fn execute(
    state: &AppState,
    merchant: &MerchantId,
    command: Command,
    keyed: Option<Keyed>,
) -> Result<Response, ApiError> {
    if let Some(k) = &keyed {
        if let Some(saved) = idempotency::cached(&state.redis, k).await? {
            return Ok(replay(state, saved));
        }
    }
    let action = command.action();
    let decision = state.limiter.check(merchant, action, &state.metrics).await;
    if let Decision::Limited {
        limit,
        retry_after_secs,
    } = decision
    {
        // A retry of a request that already completed must get its answer, not a 429, even when Redis
        // no longer holds the response: look in the database before refusing. Only limited requests
        // pay for that read, and only a few at once, so a flood past the limit stays away from the
        // database; a read that fails (database down) leaves the answer at 429.
        if let Some(k) = &keyed {
            if let Ok(_permit) = state.limited_replay_lookups.try_acquire() {
                match idempotency::stored(&state.db, k).await {
                    Ok(Some(saved)) => {
                        cache_later(state, k, &saved);
                        return Ok(replay(state, saved));
                    }
                    Err(e @ ApiError::IdempotencyMismatch) => return Err(e),
                    Ok(None) | Err(_) => {}
                }
            }
        }
        return Err(ApiError::RateLimited {
            action: action.as_str(),
            retry_after_secs,
            limit,
        });
    }

    let mut tx: Tx = state.db.begin().await?;
    if let Some(k) = &keyed {
        let retention = time::Duration::hours(i64::from(state.config.idempotency.retention_hours));
        if let Reservation::Replay(saved) = idempotency::reserve(&mut tx, k, retention).await? {
            tx.rollback().await?;
            cache_later(state, k, &saved);
            return Ok(replay(state, saved));
        }
    }

    let outcome = match &command {
        Command::Authorize { amount, currency } => {
            authorize(&mut tx, merchant, *amount, *currency).await
        }
        Command::Change {
            payment_id,
            transition,
            reason,
        } => change(&mut tx, merchant, *payment_id, *transition, reason.clone()).await,
    };
    let (saved, payment_id, effect) = match outcome {
        Ok((payment, event, status, message)) => {
            outbox::enqueue(&mut tx, &event).await?;
            let mut view = PaymentView::from(&payment);
            view.message = Some(message);
            let body = serde_json::to_vec(&view).map_err(|e| ApiError::Internal(e.into()))?;
            (
                SavedResponse {
                    status: status.as_u16(),
                    body,
                },
                Some(payment.id.as_uuid()),
                Some(event.event_type),
            )
        }
        // Refusals the client caused are part of the key's history too (Stripe semantics): the same
        // request replays the same refusal.
        Err(e @ (ApiError::Transition(_) | ApiError::PaymentNotFound)) => {
            if keyed.is_none() {
                return Err(e);
            }
            (
                SavedResponse {
                    status: e.status().as_u16(),
                    body: e.body(),
                },
                None,
                None,
            )
        }
        Err(e) => return Err(e),
    };
    if let Some(k) = &keyed {
        idempotency::complete(&mut tx, k, &saved, payment_id).await?;
    }
    tx.commit().await?;

    if let Some(event_type) = effect {
        state.relay_wake.notify_one();
        let operation = match event_type {
            EventType::PaymentAuthorized => "authorized",
            EventType::PaymentCaptured => "captured",
            EventType::PaymentRefunded => "refunded",
            EventType::PaymentVoided => "voided",
        };
        state.metrics.payments.with_label_values(&[operation]).inc();
    }
    if let Some(k) = &keyed {
        cache_later(state, k, &saved);
    }
    let mut response = respond(&saved);
    if let Decision::Allowed {
        limit,
        remaining,
        reset_secs,
    } = decision
    {
        let h = response.headers_mut();
        h.insert("ratelimit-limit", HeaderValue::from(limit));
        h.insert("ratelimit-remaining", HeaderValue::from(remaining));
        h.insert("ratelimit-reset", HeaderValue::from(reset_secs));
    }
    Ok(response)
}

type Effect = (PaymentRecord, PaymentEvent, StatusCode, &'static str);

async fn authorize(
    tx: &mut Tx,
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
    storage::insert_payment(tx, &payment).await?;
    let event = event_for(&payment, EventType::PaymentAuthorized, payment.amount, None);
    Ok((
        payment,
        event,
        // 200 like the original and Stripe: its clients check for 200 (a 201 failed every k6 flow of
        // the original's scenario).
        StatusCode::OK,
        "Payment authorized successfully",
    ))
}

async fn change(
    tx: &mut Tx,
    merchant: &MerchantId,
    id: PaymentId,
    transition: Transition,
    reason: Option<String>,
) -> Result<Effect, ApiError> {
    let mut payment = storage::lock_payment(tx, id, merchant)
        .await?
        .ok_or(ApiError::PaymentNotFound)?;
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
    storage::update_balances(tx, &payment).await?;
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
    Ok((payment, event, StatusCode::OK, message))
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

fn respond(saved: &SavedResponse) -> Response {
    json_response(
        StatusCode::from_u16(saved.status).unwrap_or(StatusCode::OK),
        saved.body.clone(),
    )
}

fn replay(state: &AppState, saved: SavedResponse) -> Response {
    state.metrics.idempotent_replays.inc();
    let mut response = respond(&saved);
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

fn cache_later(state: &AppState, keyed: &Keyed, saved: &SavedResponse) {
    let redis = state.redis.clone();
    let keyed = keyed.clone();
    let saved = saved.clone();
    let ttl = state.config.idempotency.cache_ttl_seconds;
    tokio::spawn(async move { idempotency::cache(&redis, &keyed, &saved, ttl).await });
}
