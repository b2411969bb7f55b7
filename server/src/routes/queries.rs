//! Read routes: one payment (with its settlement), a page of payments, a payment's ledger. Another
//! merchant's payment is answered exactly like a missing one (404), so ids reveal nothing.

use super::PaymentPath;
use crate::auth::Merchant;
use crate::error::ApiError;
use crate::service::PaymentView;
use crate::settlement::Settlement;
use crate::startup::AppState;
use crate::storage;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use payctl_domain::{FieldError, PaymentId, PaymentStatus};
use serde::{Deserialize, Serialize};

/// `GET /payments/{id}`: the payment and where its captures and refunds are with the acquirer.
#[derive(Serialize)]
pub struct PaymentDetail {
    #[serde(flatten)]
    payment: PaymentView,
    settlement: Settlement,
}

/// Read from the database on every request, with no cache and no validator (ETag, Last-Modified): the
/// settlement goes on changing (the worker, then `payctl settle`) after the payment's own version has
/// stopped, so anything keyed on that version would serve a stale settlement status.
pub async fn get(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    PaymentPath(id): PaymentPath,
) -> Result<Json<PaymentDetail>, ApiError> {
    let (payment, items) = tokio::try_join!(
        storage::get_payment(&state.db, id, &merchant),
        storage::settlements_for_payment(&state.db, id, &merchant),
    )?;
    let payment = payment.ok_or(ApiError::PaymentNotFound)?;
    Ok(Json(PaymentDetail {
        payment: PaymentView::from(&payment),
        settlement: Settlement::of(items),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    limit: Option<String>,
    starting_after: Option<String>,
    status: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    data: Vec<PaymentView>,
    has_more: bool,
    /// Pass as `startingAfter` to get the next page.
    next_cursor: Option<PaymentId>,
}

const MAX_PAGE: u32 = 100;

pub async fn list(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    // axum's own rejection (a parameter given twice) is plain text; answer in the API's shape.
    let Query(params) =
        params.map_err(|e| ApiError::validation(FieldError::new("query", e.body_text())))?;
    let limit = match params.limit.as_deref() {
        None => 20,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| {
                ApiError::validation(FieldError::new("limit", format!("must be 1 to {MAX_PAGE}")))
            })?,
    };
    let status = params
        .status
        .as_deref()
        .map(|s| {
            PaymentStatus::parse(s).ok_or_else(|| {
                ApiError::validation(FieldError::new("status", format!("unknown status '{s}'")))
            })
        })
        .transpose()?;
    let after = params
        .starting_after
        .as_deref()
        .map(|s| PaymentId::parse("startingAfter", s).map_err(ApiError::validation))
        .transpose()?;
    let mut rows = storage::list_payments(&state.db, &merchant, status, after, limit + 1).await?;
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let data: Vec<PaymentView> = rows.iter().map(PaymentView::from).collect();
    let next_cursor = if has_more {
        data.last().map(|p| p.payment_id)
    } else {
        None
    };
    Ok(Json(Page {
        data,
        has_more,
        next_cursor,
    }))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerView {
    payment_id: PaymentId,
    currency: String,
    entries: Vec<storage::LedgerLine>,
    total_debits: i64,
    total_credits: i64,
    balanced: bool,
}

pub async fn ledger(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    PaymentPath(id): PaymentPath,
) -> Result<Json<LedgerView>, ApiError> {
    let payment = storage::get_payment(&state.db, id, &merchant)
        .await?
        .ok_or(ApiError::PaymentNotFound)?;
    let entries = storage::ledger_for_payment(&state.db, id).await?;
    let sum = |side: &str| {
        entries
            .iter()
            .filter(|e| e.side == side)
            .map(|e| e.amount)
            .sum::<i64>()
    };
    let (total_debits, total_credits) = (sum("DEBIT"), sum("CREDIT"));
    Ok(Json(LedgerView {
        payment_id: id,
        currency: payment.currency,
        balanced: total_debits == total_credits,
        entries,
        total_debits,
        total_credits,
    }))
}
