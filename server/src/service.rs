//! Carrying out a payment command: replay check and rate limit, then the writes — the idempotency
//! record, the payment change, its outbox event and the stored response, committed together — either in a
//! batch shared with concurrent requests (`batch`, the default) or in a transaction of its own.

use crate::batch::Outcome;
use crate::effect::{self, Written};
use crate::error::{json_response, ApiError};
use crate::idempotency::{self, Keyed, Reservation, SavedResponse};
use crate::outbox;
use crate::ratelimit::{Decision, Verdict};
use crate::startup::AppState;
use crate::storage::{self, Tx};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use payctl_domain::{EventType, MerchantId};

pub use crate::effect::{Command, PaymentView};

/// Runs `command` for `merchant`, idempotently when `keyed` is given.
pub async fn execute(
    state: &AppState,
    merchant: &MerchantId,
    command: Command,
    keyed: Option<Keyed>,
) -> Result<Response, ApiError> {
    // One Redis round trip: the cached response of the key if there is one (a replay, not counted
    // against the limit), else the rate limit's decision.
    let action = command.action();
    let cache_key = keyed.as_ref().map(|k| k.cache_key(&state.redis));
    let verdict = state
        .limiter
        .check_or_cached(merchant, action, cache_key.as_deref(), &state.metrics)
        .await;
    let decision = match (verdict, &keyed) {
        (Verdict::Decided(decision), _) => decision,
        (Verdict::Cached(bytes), Some(k)) => match idempotency::decode(k, &bytes)? {
            Some(saved) => return Ok(replay(state, saved)),
            // Not an entry we wrote (the limit was not asked): as if nothing were cached.
            None => state.limiter.check(merchant, action, &state.metrics).await,
        },
        (Verdict::Cached(_), None) => state.limiter.check(merchant, action, &state.metrics).await,
    };
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

    let answer = match &state.batcher {
        Some(batcher) => match batcher
            .submit(merchant.clone(), command.clone(), keyed.clone())
            .await?
        {
            Outcome::Written(written) => Answer::Written(written),
            Outcome::Alone => alone(state, merchant, &command, keyed.as_ref()).await?,
        },
        None => alone(state, merchant, &command, keyed.as_ref()).await?,
    };
    let Written { saved, effect } = match answer {
        Answer::Written(written) => written,
        Answer::Replayed(saved) => {
            if let Some(k) = &keyed {
                cache_later(state, k, &saved);
            }
            return Ok(replay(state, saved));
        }
    };

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

/// What the writes of one request came to.
enum Answer {
    Written(Written),
    /// The key was used before for this same request: its stored response.
    Replayed(SavedResponse),
}

/// One request in a transaction of its own: the key claimed first (a concurrent duplicate waits on it),
/// then the payment row locked, changed and committed with its event and stored response.
async fn alone(
    state: &AppState,
    merchant: &MerchantId,
    command: &Command,
    keyed: Option<&Keyed>,
) -> Result<Answer, ApiError> {
    let mut tx: Tx = state.db.begin().await?;
    if let Some(k) = &keyed {
        let retention = time::Duration::hours(i64::from(state.config.idempotency.retention_hours));
        if let Reservation::Replay(saved) = idempotency::reserve(&mut tx, k, retention).await? {
            tx.rollback().await?;
            return Ok(Answer::Replayed(saved));
        }
    }

    let outcome = match command {
        Command::Authorize { amount, currency } => {
            match effect::authorization(merchant, *amount, *currency) {
                Ok(effect) => storage::insert_payment(&mut tx, &effect.payment)
                    .await
                    .map(|()| effect)
                    .map_err(ApiError::from),
                Err(e) => Err(e),
            }
        }
        Command::Change {
            payment_id,
            transition,
            reason,
        } => match storage::lock_payment(&mut tx, *payment_id, merchant).await? {
            None => Err(ApiError::PaymentNotFound),
            Some(payment) => {
                let before = payment.version;
                match effect::change(payment, *transition, reason.clone()) {
                    Ok(effect) => {
                        storage::update_balances(&mut tx, &effect.payment, before).await?;
                        Ok(effect)
                    }
                    Err(e) => Err(e),
                }
            }
        },
    };
    let (saved, payment_id, effect) = match outcome {
        Ok(effect) => {
            outbox::enqueue(&mut tx, &effect.event).await?;
            (
                effect.saved,
                Some(effect.payment.id.as_uuid()),
                Some(effect.event.event_type),
            )
        }
        Err(e) if effect::is_recorded_refusal(&e) => {
            if keyed.is_none() {
                return Err(e);
            }
            (effect::saved_refusal(&e), None, None)
        }
        Err(e) => return Err(e),
    };
    if let Some(k) = keyed {
        idempotency::complete(&mut tx, k, &saved, payment_id).await?;
    }
    tx.commit().await?;
    Ok(Answer::Written(Written { saved, effect }))
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
