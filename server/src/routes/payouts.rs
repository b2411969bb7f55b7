//! Payout routes: a page of the merchant's payouts, one payout with the settlements it covers. Payouts are
//! written by `payctl settle`, never here. Another merchant's payout is answered exactly like a missing one
//! (404) and never listed.

use crate::auth::Merchant;
use crate::error::ApiError;
use crate::settlement::{parse_business_date, Payout, PayoutDetail};
use crate::startup::AppState;
use crate::storage::{self, PayoutFilter};
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::Json;
use payctl_domain::{FieldError, PayoutId};
use serde::{Deserialize, Serialize};

/// The payout id of `/payouts/{id}`: malformed is 400 `VALIDATION_FAILED` naming `payoutId`, in the API's
/// error shape (axum's own rejection is plain text).
pub struct PayoutPath(pub PayoutId);

impl<S: Send + Sync> FromRequestParts<S> for PayoutPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::validation(FieldError::new("payoutId", e.body_text())))?;
        PayoutId::parse("payoutId", &raw)
            .map(Self)
            .map_err(ApiError::validation)
    }
}

/// Like `GET /payments`: every parameter optional, unknown ones ignored, a known one twice is 400.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
    starting_after: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    data: Vec<Payout>,
    has_more: bool,
    /// Pass as `startingAfter` to get the next page.
    next_cursor: Option<PayoutId>,
}

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 200;

/// `GET /payouts?from&to&limit&startingAfter`: newest business date first. `from` after `to` is an empty
/// range, not an error.
pub async fn list(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    let Query(params) =
        params.map_err(|e| ApiError::validation(FieldError::new("query", e.body_text())))?;
    let limit = match params.limit.as_deref() {
        None => DEFAULT_PAGE,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| {
                ApiError::validation(FieldError::new("limit", format!("must be 1 to {MAX_PAGE}")))
            })?,
    };
    let date = |field: &'static str, raw: Option<&str>| {
        raw.map(|r| parse_business_date(field, r).map_err(ApiError::validation))
            .transpose()
    };
    let filter = PayoutFilter {
        from: date("from", params.from.as_deref())?,
        to: date("to", params.to.as_deref())?,
        starting_after: params
            .starting_after
            .as_deref()
            .map(|s| PayoutId::parse("startingAfter", s).map_err(ApiError::validation))
            .transpose()?,
        limit: limit + 1,
    };
    let mut data = storage::list_payouts(&state.db, &merchant, filter).await?;
    let has_more = data.len() > limit as usize;
    data.truncate(limit as usize);
    let next_cursor = if has_more {
        data.last().map(|p| p.payout_id)
    } else {
        None
    };
    Ok(Json(Page {
        data,
        has_more,
        next_cursor,
    }))
}

/// `GET /payouts/{id}`: the payout and the settlements it covers.
pub async fn get(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    PayoutPath(id): PayoutPath,
) -> Result<Json<PayoutDetail>, ApiError> {
    let payout = storage::get_payout(&state.db, id, &merchant)
        .await?
        .ok_or(ApiError::PayoutNotFound)?;
    // Only once the payout is known to be the merchant's.
    let items = storage::payout_items(&state.db, id).await?;
    Ok(Json(PayoutDetail { payout, items }))
}
