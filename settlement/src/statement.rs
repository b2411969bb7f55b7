//! Reconciliation against the acquirer: every line of its statement of a business date matched to our
//! settlement records and ledger, and every settlement we recorded for that date found in the statement.
//!
//! A line is found by its acquirer reference (what the acquirer answered when it settled), else by our
//! event id. What does not match is an exception of exactly one kind:
//!
//! | kind | meaning |
//! |---|---|
//! | `missing_at_acquirer` | we recorded a settlement of this date that the statement does not list |
//! | `missing_at_us` | the statement lists a transaction we never submitted |
//! | `amount_mismatch` | gross or net differ from what the acquirer answered us (or type, currency) |
//! | `fee_mismatch` | the fee differs from what the acquirer answered us |
//! | `duplicate` | a reference listed more than once (each repeat is one exception) |
//! | `not_in_ledger` | the line matches a settlement whose event has no ledger legs |
//!
//! [`match_statement`] is pure (tested on its own); [`records_for`] reads what it needs.

use payctl_domain::settlement::{SettlementType, StatementLine};
use serde::Serialize;
use sqlx::{MySqlPool, Row};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// One of our settled records, as the statement is compared with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OurSettlement {
    pub event_id: Uuid,
    pub payment_id: Uuid,
    pub kind: SettlementType,
    pub amount: i64,
    pub currency: String,
    pub reference: String,
    pub fee: i64,
    pub net: i64,
    /// The event's legs are in the ledger.
    pub in_ledger: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExceptionKind {
    MissingAtAcquirer,
    MissingAtUs,
    AmountMismatch,
    FeeMismatch,
    Duplicate,
    NotInLedger,
}

impl ExceptionKind {
    pub const ALL: [ExceptionKind; 6] = [
        Self::MissingAtAcquirer,
        Self::MissingAtUs,
        Self::AmountMismatch,
        Self::FeeMismatch,
        Self::Duplicate,
        Self::NotInLedger,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingAtAcquirer => "missing_at_acquirer",
            Self::MissingAtUs => "missing_at_us",
            Self::AmountMismatch => "amount_mismatch",
            Self::FeeMismatch => "fee_mismatch",
            Self::Duplicate => "duplicate",
            Self::NotInLedger => "not_in_ledger",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Exception {
    pub kind: ExceptionKind,
    pub acquirer_reference: String,
    pub event_id: Uuid,
    pub payment_id: Uuid,
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Matching {
    /// Lines that match a settlement of ours in every figure (and are in the ledger).
    pub matched: usize,
    pub lines: usize,
    pub ours: usize,
    pub exceptions: Vec<Exception>,
}

impl Matching {
    pub fn count(&self, kind: ExceptionKind) -> usize {
        self.exceptions.iter().filter(|e| e.kind == kind).count()
    }
}

/// Matches the statement's `lines` with `ours` (our settled records of the same business date, plus any
/// other record a line names: a line of ours dated otherwise is not "missing at us").
pub fn match_statement(
    lines: &[StatementLine],
    ours: &[OurSettlement],
    ours_of_the_date: &HashSet<Uuid>,
) -> Matching {
    let by_reference: HashMap<&str, &OurSettlement> =
        ours.iter().map(|o| (o.reference.as_str(), o)).collect();
    let by_event: HashMap<Uuid, &OurSettlement> = ours.iter().map(|o| (o.event_id, o)).collect();
    let mut out = Matching {
        lines: lines.len(),
        ours: ours_of_the_date.len(),
        ..Matching::default()
    };
    let mut seen_references: HashSet<&str> = HashSet::new();
    let mut listed: HashSet<Uuid> = HashSet::new();
    for line in lines {
        let exception = |kind, detail: String| Exception {
            kind,
            acquirer_reference: line.acquirer_reference.clone(),
            event_id: line.event_id,
            payment_id: line.payment_id,
            detail,
        };
        if !seen_references.insert(line.acquirer_reference.as_str()) {
            out.exceptions.push(exception(
                ExceptionKind::Duplicate,
                "the reference is listed more than once".into(),
            ));
            continue;
        }
        let Some(o) = by_reference
            .get(line.acquirer_reference.as_str())
            .or_else(|| by_event.get(&line.event_id))
        else {
            out.exceptions.push(exception(
                ExceptionKind::MissingAtUs,
                format!(
                    "{} {} {} {}: no settlement of ours",
                    line.kind.as_str(),
                    line.gross,
                    line.currency,
                    line.merchant_id
                ),
            ));
            continue;
        };
        listed.insert(o.event_id);
        let mut problems = Vec::new();
        if line.kind != o.kind || line.currency != o.currency {
            problems.push((
                ExceptionKind::AmountMismatch,
                format!(
                    "{} {} listed, {} {} settled",
                    line.kind.as_str(),
                    line.currency,
                    o.kind.as_str(),
                    o.currency
                ),
            ));
        } else if line.gross != o.amount || line.net != o.net {
            problems.push((
                ExceptionKind::AmountMismatch,
                format!(
                    "gross {} net {} listed, {} and {} settled",
                    line.gross, line.net, o.amount, o.net
                ),
            ));
        }
        if line.fee != o.fee {
            problems.push((
                ExceptionKind::FeeMismatch,
                format!("fee {} listed, {} settled", line.fee, o.fee),
            ));
        }
        if !o.in_ledger {
            problems.push((
                ExceptionKind::NotInLedger,
                "the event has no ledger legs".into(),
            ));
        }
        if problems.is_empty() {
            out.matched += 1;
        }
        for (kind, detail) in problems {
            out.exceptions.push(Exception {
                event_id: o.event_id,
                payment_id: o.payment_id,
                ..exception(kind, detail)
            });
        }
    }
    let mut missing: Vec<&OurSettlement> = ours
        .iter()
        .filter(|o| ours_of_the_date.contains(&o.event_id) && !listed.contains(&o.event_id))
        .collect();
    missing.sort_by(|a, b| a.reference.cmp(&b.reference));
    for o in missing {
        out.exceptions.push(Exception {
            kind: ExceptionKind::MissingAtAcquirer,
            acquirer_reference: o.reference.clone(),
            event_id: o.event_id,
            payment_id: o.payment_id,
            detail: format!(
                "{} {} {} settled with us, not in the statement",
                o.kind.as_str(),
                o.amount,
                o.currency
            ),
        });
    }
    out
}

/// Our SETTLED records of business date `date`, plus those the `lines` name (by reference or event id)
/// of other dates; and which of them belong to `date`.
pub async fn records_for(
    db: &MySqlPool,
    date: time::Date,
    lines: &[StatementLine],
) -> Result<(Vec<OurSettlement>, HashSet<Uuid>), sqlx::Error> {
    const COLUMNS: &str = "s.event_id, s.payment_id, s.type, s.amount, s.currency, \
         s.acquirer_reference, s.fee, s.net, s.business_date, \
         EXISTS (SELECT 1 FROM ledger_entries l WHERE l.event_id = s.event_id) AS in_ledger";
    let mut rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM settlements s WHERE s.status = 'SETTLED' AND s.business_date = ?"
    ))
    .bind(date)
    .fetch_all(db)
    .await?;
    // Lines naming records of other dates (a few at most: a statement is one date's).
    for chunk in lines.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(",");
        let sql = format!(
            "SELECT event_id FROM settlements WHERE status = 'SETTLED' \
             AND (business_date IS NULL OR business_date <> ?) \
             AND (acquirer_reference IN ({marks}) OR event_id IN ({marks}))"
        );
        let mut q = sqlx::query_as::<_, (Vec<u8>,)>(&sql).bind(date);
        for l in chunk {
            q = q.bind(&l.acquirer_reference);
        }
        for l in chunk {
            q = q.bind(l.event_id.as_bytes().to_vec());
        }
        for (id,) in q.fetch_all(db).await? {
            rows.extend(
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM settlements s WHERE s.event_id = ?"
                ))
                .bind(id)
                .fetch_all(db)
                .await?,
            );
        }
    }
    let mut ours = Vec::with_capacity(rows.len());
    let mut of_the_date = HashSet::new();
    for r in rows {
        let uuid = |col: &str| -> Result<Uuid, sqlx::Error> {
            let b: Vec<u8> = r.try_get(col)?;
            Uuid::from_slice(&b).map_err(|e| sqlx::Error::Decode(Box::new(e)))
        };
        let kind: String = r.try_get("type")?;
        let kind = SettlementType::parse(&kind)
            .ok_or_else(|| sqlx::Error::Decode(format!("settlement type {kind:?}").into()))?;
        let o = OurSettlement {
            event_id: uuid("event_id")?,
            payment_id: uuid("payment_id")?,
            kind,
            amount: r.try_get("amount")?,
            currency: r.try_get("currency")?,
            reference: r
                .try_get::<Option<String>, _>("acquirer_reference")?
                .unwrap_or_default(),
            fee: r.try_get::<Option<i64>, _>("fee")?.unwrap_or_default(),
            net: r.try_get::<Option<i64>, _>("net")?.unwrap_or_default(),
            in_ledger: r.try_get::<i64, _>("in_ledger")? != 0,
        };
        if r.try_get::<Option<time::Date>, _>("business_date")? == Some(date) {
            of_the_date.insert(o.event_id);
        }
        ours.push(o);
    }
    Ok((ours, of_the_date))
}

#[cfg(test)]
mod tests {
    use super::*;
    use payctl_domain::settlement::{inject, InjectedKind, Injection};
    use proptest::prelude::*;

    fn settled(n: u64) -> (OurSettlement, StatementLine) {
        let kind = if n % 3 == 2 {
            SettlementType::Refund
        } else {
            SettlementType::Capture
        };
        let amount = 10_000 + n as i64;
        let fee = if kind == SettlementType::Capture {
            payctl_domain::settlement::fee(amount, 250)
        } else {
            0
        };
        let o = OurSettlement {
            event_id: Uuid::from_u64_pair(1, n),
            payment_id: Uuid::from_u64_pair(2, n),
            kind,
            amount,
            currency: "KRW".into(),
            reference: format!("ACQ-{n:032X}"),
            fee,
            net: amount - fee,
            in_ledger: true,
        };
        let line = StatementLine {
            acquirer_reference: o.reference.clone(),
            payment_id: o.payment_id,
            event_id: o.event_id,
            merchant_id: "m-1".into(),
            kind,
            gross: amount,
            fee,
            net: amount - fee,
            currency: "KRW".into(),
            settled_at: time::OffsetDateTime::from_unix_timestamp(1_800_000_000 + n as i64)
                .unwrap(),
        };
        (o, line)
    }

    fn day(n: u64) -> (Vec<OurSettlement>, Vec<StatementLine>, HashSet<Uuid>) {
        let (ours, lines): (Vec<_>, Vec<_>) = (0..n).map(settled).unzip();
        let of_the_date = ours.iter().map(|o| o.event_id).collect();
        (ours, lines, of_the_date)
    }

    #[test]
    fn a_clean_statement_matches_every_line() {
        let (ours, lines, date) = day(12);
        let m = match_statement(&lines, &ours, &date);
        assert_eq!((m.matched, m.exceptions.len()), (12, 0), "{m:?}");
    }

    #[test]
    fn a_settlement_missing_from_the_ledger_is_an_exception() {
        let (mut ours, lines, date) = day(3);
        ours[1].in_ledger = false;
        let m = match_statement(&lines, &ours, &date);
        assert_eq!(m.count(ExceptionKind::NotInLedger), 1);
        assert_eq!(m.exceptions[0].event_id, ours[1].event_id);
        assert_eq!(m.matched, 2);
    }

    #[test]
    fn a_fee_the_acquirer_changed_is_a_fee_mismatch_only() {
        let (ours, mut lines, date) = day(3);
        lines[0].fee += 1;
        lines[0].net -= 1;
        let m = match_statement(&lines, &ours, &date);
        let kinds: Vec<ExceptionKind> = m.exceptions.iter().map(|e| e.kind).collect();
        // Net follows the fee on the acquirer's side: both figures differ from ours.
        assert_eq!(
            kinds,
            [ExceptionKind::AmountMismatch, ExceptionKind::FeeMismatch]
        );
    }

    #[test]
    fn a_line_of_ours_from_another_date_is_not_missing_at_us() {
        let (ours, lines, _) = day(3);
        let only_two: HashSet<Uuid> = ours[..2].iter().map(|o| o.event_id).collect();
        let m = match_statement(&lines, &ours, &only_two);
        assert_eq!((m.matched, m.exceptions.len()), (3, 0), "{m:?}");
    }

    proptest! {
        /// Every discrepancy `inject` makes is reported as exactly its kind, with its ids, and nothing
        /// else is reported.
        #[test]
        fn each_injected_discrepancy_is_reported_exactly(
            n in 1u64..40,
            drop in 0usize..4,
            amount in 0usize..4,
            duplicate in 0usize..4,
            unknown in 0usize..4,
            seed: u64,
        ) {
            prop_assume!(drop + amount + duplicate <= n as usize);
            let (ours, lines, date) = day(n);
            let spec = Injection { drop, amount, duplicate, unknown };
            let (damaged, injected) = inject(lines, spec, seed).unwrap();
            let m = match_statement(&damaged, &ours, &date);
            let expected: Vec<(ExceptionKind, Uuid)> = {
                let mut v: Vec<(ExceptionKind, Uuid)> = injected
                    .iter()
                    .map(|i| {
                        let kind = match i.kind {
                            InjectedKind::Drop => ExceptionKind::MissingAtAcquirer,
                            InjectedKind::Amount => ExceptionKind::AmountMismatch,
                            InjectedKind::Duplicate => ExceptionKind::Duplicate,
                            InjectedKind::Unknown => ExceptionKind::MissingAtUs,
                        };
                        (kind, i.event_id)
                    })
                    .collect();
                v.sort();
                v
            };
            let mut reported: Vec<(ExceptionKind, Uuid)> =
                m.exceptions.iter().map(|e| (e.kind, e.event_id)).collect();
            reported.sort();
            prop_assert_eq!(reported, expected, "seed {}", seed);
            prop_assert_eq!(m.matched, n as usize - drop - amount);
        }
    }
}
