//! A payment's settlement and a merchant's payouts, as the API shows them (issue 15).
//!
//! pay-server only reads these rows. The settlement worker (`pay-settlement`) writes one settlement record
//! per capture and refund it reads from Kafka (`domain/migrations/0005_settlements.sql`) and moves it
//! PENDING → SUBMITTED → SETTLED (or FAILED); `payctl settle` writes payouts and marks the records each one
//! covers (`0006_payouts.sql`). All of that happens after the payment itself has stopped changing, so
//! nothing here may be derived from, or cached under, the payment's `version`: `GET /payments/{id}` reads
//! the records on every request.
//!
//! The worker's `last_error` is not shown: it is the acquirer's or the network's wording, meant for
//! operators (`payctl reconcile`, the DLQ record), and may name internal hosts.

use payctl_domain::settlement::SettlementType;
use payctl_domain::{EventId, FieldError, PaymentId, PayoutId};
use serde::Serialize;
use time::{Date, OffsetDateTime};

// `business_date` (and `business_date::option`): a date as `YYYY-MM-DD`, for `#[serde(with)]`.
time::serde::format_description!(pub business_date, Date, "[year]-[month]-[day]");

/// A business date given as a query parameter: exactly `YYYY-MM-DD` (JSON Schema's `format: date`).
pub fn parse_business_date(field: &'static str, raw: &str) -> Result<Date, FieldError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Some(raw)
        .filter(|r| r.len() == 10 && r.bytes().all(|b| b.is_ascii_digit() || b == b'-'))
        .and_then(|r| Date::parse(r, format).ok())
        .ok_or_else(|| FieldError::new(field, "must be a date as YYYY-MM-DD"))
}

/// Where the worker has got with one capture or refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ItemStatus {
    Pending,
    /// A worker is calling the acquirer now.
    Submitted,
    Settled,
    /// Refused for good or out of attempts; `payctl dlq replay` may put it back to PENDING.
    Failed,
}

impl ItemStatus {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PENDING" => Some(Self::Pending),
            "SUBMITTED" => Some(Self::Submitted),
            "SETTLED" => Some(Self::Settled),
            "FAILED" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// One payment's settlement in a word, for a merchant's screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Summary {
    /// No record: nothing captured, or the worker has not read the capture yet.
    None,
    /// Some capture or refund is not settled yet (and none failed).
    Pending,
    /// Everything settled; not all of it paid out yet.
    Settled,
    /// Everything settled and paid out.
    PaidOut,
    /// Some capture or refund failed; it wins over the rest, since it needs someone to act.
    Failed,
}

/// One settlement record of a payment.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SettlementItem {
    pub event_id: EventId,
    #[serde(rename = "type")]
    pub kind: SettlementType,
    pub amount: i64,
    pub currency: String,
    pub status: ItemStatus,
    /// Calls made to the acquirer so far.
    pub attempts: u32,
    pub acquirer_reference: Option<String>,
    pub fee: Option<i64>,
    pub net: Option<i64>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub settled_at: Option<OffsetDateTime>,
    #[serde(with = "business_date::option")]
    pub business_date: Option<Date>,
    pub payout_id: Option<PayoutId>,
}

/// The `settlement` of `GET /payments/{id}`: the summary and the records, in the order of their events.
#[derive(Debug, Clone, Serialize)]
pub struct Settlement {
    pub status: Summary,
    pub items: Vec<SettlementItem>,
}

impl Settlement {
    pub fn of(items: Vec<SettlementItem>) -> Self {
        Self {
            status: summarize(&items),
            items,
        }
    }
}

/// NONE without records; FAILED if any failed; else PENDING if any is not settled yet; else PAID_OUT
/// when every record is in a payout; else SETTLED.
pub fn summarize(items: &[SettlementItem]) -> Summary {
    if items.is_empty() {
        Summary::None
    } else if items.iter().any(|i| i.status == ItemStatus::Failed) {
        Summary::Failed
    } else if items.iter().any(|i| i.status != ItemStatus::Settled) {
        Summary::Pending
    } else if items.iter().all(|i| i.payout_id.is_some()) {
        Summary::PaidOut
    } else {
        Summary::Settled
    }
}

/// One payout as the merchant sees it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Payout {
    pub payout_id: PayoutId,
    #[serde(with = "business_date")]
    pub business_date: Date,
    /// 1 for a date's first payout; 2, 3, … for settlements of that date recorded after it was paid out.
    pub seq: u32,
    pub currency: String,
    pub captures: u32,
    pub refunds: u32,
    pub gross_captured: i64,
    pub gross_refunded: i64,
    pub fees: i64,
    /// `grossCaptured − grossRefunded − fees`; negative when the merchant owes.
    pub net: i64,
    /// The cutoff time zone `businessDate` is a date in.
    pub time_zone: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A settlement a payout covers.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PayoutItem {
    pub event_id: EventId,
    pub payment_id: PaymentId,
    #[serde(rename = "type")]
    pub kind: SettlementType,
    pub amount: i64,
    pub fee: i64,
    pub net: i64,
    pub acquirer_reference: String,
}

/// `GET /payouts/{id}`: the payout and what it covers.
#[derive(Debug, Clone, Serialize)]
pub struct PayoutDetail {
    #[serde(flatten)]
    pub payout: Payout,
    pub items: Vec<PayoutItem>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(status: ItemStatus, paid_out: bool) -> SettlementItem {
        SettlementItem {
            event_id: EventId::new(),
            kind: SettlementType::Capture,
            amount: 1000,
            currency: "KRW".into(),
            status,
            attempts: 1,
            acquirer_reference: None,
            fee: None,
            net: None,
            settled_at: None,
            business_date: None,
            payout_id: paid_out.then(PayoutId::new),
        }
    }

    #[test]
    fn the_summary_follows_the_most_urgent_record() {
        use ItemStatus::*;
        for (items, want) in [
            (vec![], Summary::None),
            (vec![(Pending, false)], Summary::Pending),
            (vec![(Submitted, false)], Summary::Pending),
            (vec![(Settled, false), (Submitted, false)], Summary::Pending),
            (vec![(Settled, true), (Failed, false)], Summary::Failed),
            (vec![(Pending, false), (Failed, false)], Summary::Failed),
            (vec![(Settled, false)], Summary::Settled),
            (vec![(Settled, true), (Settled, false)], Summary::Settled),
            (vec![(Settled, true), (Settled, true)], Summary::PaidOut),
        ] {
            let records: Vec<_> = items.iter().map(|&(s, p)| item(s, p)).collect();
            assert_eq!(summarize(&records), want, "{items:?}");
        }
    }

    #[test]
    fn dates_are_exactly_yyyy_mm_dd() {
        let d = parse_business_date("from", "2026-12-05").unwrap();
        assert_eq!(
            serde_json::to_value(Settlement::of(vec![SettlementItem {
                business_date: Some(d),
                ..item(ItemStatus::Settled, false)
            }]))
            .unwrap()["items"][0]["businessDate"],
            "2026-12-05"
        );
        for bad in [
            "2026-12-5",
            "2026-13-01",
            "2026-02-30",
            "20261205",
            "+2026-12-05",
            " 2026-12-05",
            "2026-12-05T00:00:00Z",
            "",
        ] {
            assert!(parse_business_date("from", bad).is_err(), "{bad:?}");
        }
    }
}
