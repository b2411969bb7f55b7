//! Settlement with the card acquirer: what the mock acquirer (`pay-acquirer`), our settlement worker and
//! `payctl reconcile` must agree on. Pure: no I/O, no clock, no OS randomness.
//!
//! # Fees
//! Amounts are integer minor units, so the fee is too: `fee = gross × bps / 10 000`, rounded half-up to a
//! whole minor unit (`.5` goes up; computed in `i128`, never in floating point). For a zero-decimal
//! currency (KRW, JPY) the minor unit *is* the won or yen, so the fee is rounded to a whole won: 2.5 % of
//! ₩10,001 is ₩250.025, charged as ₩250; of ₩10,020 it is ₩250.5, charged as ₩251.
//!
//! A capture carries the fee and settles `net = gross − fee` to the merchant. A refund carries fee 0 and
//! `net = gross`: the acquirer keeps the fee it took on the capture, and the whole refunded amount leaves
//! the merchant. Amounts on a statement are never negative; its `type` column gives the direction.
//!
//! # Business date
//! The acquirer closes its day at midnight in its cutoff time zone (Asia/Seoul by default, UTC+9 with no
//! daylight saving), so a settlement at 14:59:59Z belongs to one day's statement and one at 15:00:00Z to
//! the next. [`business_date`] is that rule; the zone database is compiled in (jiff's
//! `tzdb-bundle-always`), so a slim container without `/usr/share/zoneinfo` gets the same answer.
//!
//! # Statements
//! A statement is a CSV file with the header [`STATEMENT_HEADER`], one line per settlement. No field may
//! hold a comma, a quote or a line break (references and currencies are ours, merchant ids are
//! [`MerchantId`](crate::MerchantId)s, which cannot), so the format needs no quoting and no CSV crate;
//! [`format_statement`] refuses a line that would break that rather than write an unreadable file.
//!
//! # Injected discrepancies
//! [`inject`] damages a correct statement in a known, seeded way (lines dropped, amounts changed, lines
//! duplicated, unknown lines added) and returns the list of what it did, so a reconciliation can be
//! tested against ground truth.

use crate::{Currency, MerchantId};
use rand::seq::index;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

/// The fee in basis points when the schedule names neither the merchant nor a default: 2.5 %.
pub const DEFAULT_FEE_BPS: u32 = 250;

/// The cutoff time zone when none is configured.
pub const DEFAULT_TIME_ZONE: &str = "Asia/Seoul";

/// The first line of every statement, exactly.
pub const STATEMENT_HEADER: &str =
    "acquirer_reference,payment_id,event_id,merchant_id,type,gross_amount,fee,net_amount,currency,settled_at";

const COLUMNS: [&str; 10] = [
    "acquirer_reference",
    "payment_id",
    "event_id",
    "merchant_id",
    "type",
    "gross_amount",
    "fee",
    "net_amount",
    "currency",
    "settled_at",
];

/// What a settlement moves: a capture (money to the merchant) or a refund (money back to the cardholder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SettlementType {
    Capture,
    Refund,
}

impl SettlementType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Capture => "CAPTURE",
            Self::Refund => "REFUND",
        }
    }

    /// The upper-case name, as serialised; anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "CAPTURE" => Some(Self::Capture),
            "REFUND" => Some(Self::Refund),
            _ => None,
        }
    }
}

impl fmt::Display for SettlementType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `gross × bps / 10 000`, rounded half-up to a whole minor unit (see the module doc). Negative amounts
/// are rounded symmetrically (half away from zero), so `fee(-g, b) == -fee(g, b)`; a result beyond `i64`
/// (only possible above 10 000 bps) saturates.
pub fn fee(gross_minor: i64, bps: u32) -> i64 {
    let product = i128::from(gross_minor) * i128::from(bps);
    let rounded = (product.abs() + 5_000) / 10_000;
    let signed = if product < 0 { -rounded } else { rounded };
    i64::try_from(signed).unwrap_or(if signed < 0 { i64::MIN } else { i64::MAX })
}

/// The fee and net of a settlement of `gross` under `bps`: captures pay the fee, refunds do not.
pub fn fee_and_net(kind: SettlementType, gross_minor: i64, bps: u32) -> (i64, i64) {
    match kind {
        SettlementType::Capture => {
            let f = fee(gross_minor, bps);
            (f, gross_minor - f)
        }
        SettlementType::Refund => (0, gross_minor),
    }
}

/// Fee rates by merchant, in basis points, with a default for merchants not named.
///
/// Written `default=250,m-1=180`: comma-separated `name=bps` entries, `default` being the rate of every
/// merchant not listed ([`DEFAULT_FEE_BPS`] when absent). Rates are 0–10 000 bps (0–100 %).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeSchedule {
    default_bps: u32,
    merchants: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fee schedule entry {entry:?}: {reason} (expected e.g. \"default=250,m-1=180\", rates in basis points 0-10000)")]
pub struct FeeScheduleError {
    pub entry: String,
    pub reason: String,
}

impl FeeSchedule {
    pub const MAX_BPS: u32 = 10_000;

    pub fn parse(s: &str) -> Result<Self, FeeScheduleError> {
        let mut default_bps = None;
        let mut merchants = BTreeMap::new();
        let err = |entry: &str, reason: &str| FeeScheduleError {
            entry: entry.to_owned(),
            reason: reason.to_owned(),
        };
        if s.trim().is_empty() {
            return Ok(Self::default());
        }
        for entry in s.split(',') {
            let trimmed = entry.trim();
            let (name, bps) = trimmed
                .split_once('=')
                .ok_or_else(|| err(trimmed, "is not name=bps"))?;
            let (name, bps) = (name.trim(), bps.trim());
            let bps: u32 = bps
                .parse()
                .map_err(|_| err(trimmed, "the rate is not a whole number of basis points"))?;
            if bps > Self::MAX_BPS {
                return Err(err(trimmed, "the rate is above 10000 bps (100 %)"));
            }
            if name == "default" {
                if default_bps.replace(bps).is_some() {
                    return Err(err(trimmed, "default is given twice"));
                }
            } else {
                let id = MerchantId::parse("merchant", name)
                    .map_err(|e| err(trimmed, &format!("merchant id {}", e.reason)))?;
                if merchants.insert(id.as_str().to_owned(), bps).is_some() {
                    return Err(err(trimmed, "this merchant is given twice"));
                }
            }
        }
        Ok(Self {
            default_bps: default_bps.unwrap_or(DEFAULT_FEE_BPS),
            merchants,
        })
    }

    /// The rate that applies to `merchant`.
    pub fn bps_for(&self, merchant: &MerchantId) -> u32 {
        self.merchants
            .get(merchant.as_str())
            .copied()
            .unwrap_or(self.default_bps)
    }

    pub fn default_bps(&self) -> u32 {
        self.default_bps
    }
}

impl Default for FeeSchedule {
    fn default() -> Self {
        Self {
            default_bps: DEFAULT_FEE_BPS,
            merchants: BTreeMap::new(),
        }
    }
}

impl std::str::FromStr for FeeSchedule {
    type Err = FeeScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for FeeSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "default={}", self.default_bps)?;
        for (m, bps) in &self.merchants {
            write!(f, ",{m}={bps}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown time zone {name:?} (an IANA name such as Asia/Seoul or UTC): {reason}")]
pub struct TimeZoneError {
    pub name: String,
    pub reason: String,
}

/// An IANA time zone by name, from the compiled-in database.
pub fn parse_time_zone(name: &str) -> Result<jiff::tz::TimeZone, TimeZoneError> {
    jiff::tz::TimeZone::get(name).map_err(|e| TimeZoneError {
        name: name.to_owned(),
        reason: e.to_string(),
    })
}

/// The calendar date of `at` in the cutoff zone `tz`: the statement the settlement belongs to.
pub fn business_date(at: OffsetDateTime, tz: &jiff::tz::TimeZone) -> time::Date {
    // jiff's range ends a day short of time's (±9999 years); there, and only there, the UTC date is
    // answered rather than panicking.
    let nanos = i32::try_from(at.nanosecond()).unwrap_or(0);
    jiff::Timestamp::new(at.unix_timestamp(), nanos)
        .ok()
        .map(|ts| tz.to_datetime(ts).date())
        .and_then(|d| {
            let month = time::Month::try_from(u8::try_from(d.month()).ok()?).ok()?;
            time::Date::from_calendar_date(i32::from(d.year()), month, u8::try_from(d.day()).ok()?)
                .ok()
        })
        .unwrap_or_else(|| at.to_offset(time::UtcOffset::UTC).date())
}

/// The first instant of business date `date` in `tz` (local midnight, or the first valid time after it
/// on a day that starts with a gap); `None` outside the supported range.
pub fn business_day_start(date: time::Date, tz: &jiff::tz::TimeZone) -> Option<OffsetDateTime> {
    let civil = jiff::civil::Date::new(
        i16::try_from(date.year()).ok()?,
        i8::try_from(u8::from(date.month())).ok()?,
        i8::try_from(date.day()).ok()?,
    )
    .ok()?;
    let ts = civil
        .to_zoned(tz.clone())
        .ok()?
        .start_of_day()
        .ok()?
        .timestamp();
    OffsetDateTime::from_unix_timestamp_nanos(ts.as_nanosecond()).ok()
}

/// One line of an acquirer statement: one settlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatementLine {
    pub acquirer_reference: String,
    pub payment_id: Uuid,
    pub event_id: Uuid,
    pub merchant_id: String,
    #[serde(rename = "type")]
    pub kind: SettlementType,
    pub gross: i64,
    pub fee: i64,
    pub net: i64,
    pub currency: String,
    #[serde(with = "time::serde::rfc3339")]
    pub settled_at: OffsetDateTime,
}

/// Why a statement could not be read or written: the 1-based line of the file (the header is line 1)
/// and the column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("statement line {line}, {field}: {reason}")]
pub struct StatementError {
    pub line: usize,
    pub field: &'static str,
    pub reason: String,
}

/// The statement file for `lines`, in the order given, with a trailing newline.
///
/// Refuses (rather than writes a file no reader can split) a text field that is empty or holds a comma,
/// quote or line break, and a time outside RFC 3339's years 0000–9999.
pub fn format_statement(lines: &[StatementLine]) -> Result<String, StatementError> {
    let mut out = String::with_capacity(STATEMENT_HEADER.len() + 1 + lines.len() * 180);
    out.push_str(STATEMENT_HEADER);
    out.push('\n');
    for (i, l) in lines.iter().enumerate() {
        let line = i + 2;
        for (field, value) in [
            ("acquirer_reference", &l.acquirer_reference),
            ("merchant_id", &l.merchant_id),
            ("currency", &l.currency),
        ] {
            check_text(line, field, value)?;
        }
        let settled_at = l
            .settled_at
            .to_offset(time::UtcOffset::UTC)
            .format(&Rfc3339)
            .map_err(|e| StatementError {
                line,
                field: "settled_at",
                reason: e.to_string(),
            })?;
        use std::fmt::Write;
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{}",
            l.acquirer_reference,
            l.payment_id.hyphenated(),
            l.event_id.hyphenated(),
            l.merchant_id,
            l.kind,
            l.gross,
            l.fee,
            l.net,
            l.currency,
            settled_at
        );
    }
    Ok(out)
}

fn check_text(line: usize, field: &'static str, value: &str) -> Result<(), StatementError> {
    let reason = if value.is_empty() {
        "is empty"
    } else if value.contains([',', '"', '\r', '\n']) {
        "contains a comma, a quote or a line break"
    } else {
        return Ok(());
    };
    Err(StatementError {
        line,
        field,
        reason: reason.to_owned(),
    })
}

/// Reads a statement written by [`format_statement`] (or by an acquirer following the same format):
/// the exact header, then ten columns per line. Line endings may be `\n` or `\r\n`, and the last line may
/// or may not end with one; a blank line elsewhere is an error.
pub fn parse_statement(text: &str) -> Result<Vec<StatementLine>, StatementError> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut rows = body.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let header = rows.next().unwrap_or("");
    if header != STATEMENT_HEADER {
        return Err(StatementError {
            line: 1,
            field: "header",
            reason: format!(
                "expected {STATEMENT_HEADER:?}, found {:?}",
                truncate(header)
            ),
        });
    }
    // A header alone, with or without its newline, is an empty statement.
    if text.trim_end_matches(['\r', '\n']) == STATEMENT_HEADER {
        return Ok(Vec::new());
    }
    rows.enumerate()
        .map(|(i, row)| parse_row(i + 2, row))
        .collect()
}

fn truncate(s: &str) -> String {
    s.chars().take(120).collect()
}

fn parse_row(line: usize, row: &str) -> Result<StatementLine, StatementError> {
    let err = |field: &'static str, reason: String| StatementError {
        line,
        field,
        reason,
    };
    let cols: Vec<&str> = row.split(',').collect();
    let [reference, payment_id, event_id, merchant_id, kind, gross, fee, net, currency, settled_at] =
        cols[..]
    else {
        return Err(err(
            "columns",
            format!("expected {} columns, found {}", COLUMNS.len(), cols.len()),
        ));
    };
    // Fields are read exactly as format_statement writes them: no padding, no quotes, no signs, so a
    // value compares equal to ours only when it is ours.
    let text = |field: &'static str, v: &str| {
        if v.is_empty() || v.contains('"') || v.trim() != v {
            Err(err(field, "is empty, quoted or padded".into()))
        } else {
            Ok(v.to_owned())
        }
    };
    let uuid = |field: &'static str, v: &str| {
        Some(v)
            .filter(|v| v.len() == 36)
            .and_then(|v| Uuid::try_parse(v).ok())
            .ok_or_else(|| err(field, format!("{:?} is not a hyphenated UUID", truncate(v))))
    };
    // Amounts on a statement are never negative and carry no sign.
    let number = |field: &'static str, v: &str| {
        Some(v)
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| {
                err(
                    field,
                    format!("{:?} is not an amount in minor units", truncate(v)),
                )
            })
    };
    let (gross, fee, net) = (
        number("gross_amount", gross)?,
        number("fee", fee)?,
        number("net_amount", net)?,
    );
    if gross == 0 {
        return Err(err("gross_amount", "must be greater than 0".into()));
    }
    if gross.checked_sub(fee) != Some(net) {
        return Err(err(
            "net_amount",
            format!("{net} is not gross {gross} − fee {fee}"),
        ));
    }
    let merchant_id =
        MerchantId::parse("merchant_id", merchant_id).map_err(|e| err("merchant_id", e.reason))?;
    let currency = Currency::parse("currency", currency).map_err(|e| err("currency", e.reason))?;
    Ok(StatementLine {
        acquirer_reference: text("acquirer_reference", reference)?,
        payment_id: uuid("payment_id", payment_id)?,
        event_id: uuid("event_id", event_id)?,
        merchant_id: merchant_id.as_str().to_owned(),
        kind: SettlementType::parse(kind).ok_or_else(|| {
            err(
                "type",
                format!("{:?} is not CAPTURE or REFUND", truncate(kind)),
            )
        })?,
        gross,
        fee,
        net,
        currency: currency.code().to_owned(),
        settled_at: OffsetDateTime::parse(settled_at, &Rfc3339)
            .map_err(|e| {
                err(
                    "settled_at",
                    format!("{:?} is not an RFC 3339 time: {e}", truncate(settled_at)),
                )
            })?
            .to_offset(time::UtcOffset::UTC),
    })
}

/// How many discrepancies of each kind to put into a statement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Injection {
    /// Lines removed.
    #[serde(default)]
    pub drop: usize,
    /// Lines whose gross (and net with it) is changed.
    #[serde(default)]
    pub amount: usize,
    /// Lines written twice.
    #[serde(default)]
    pub duplicate: usize,
    /// Lines added for settlements nobody made.
    #[serde(default)]
    pub unknown: usize,
}

impl Injection {
    /// The most unknown lines one injection may add: enough for any test, small enough that a typo
    /// cannot make the acquirer build a statement of a billion lines.
    pub const MAX_UNKNOWN: usize = 100_000;

    /// `drop=2,amount=1,duplicate=1,unknown=3`; kinds left out are 0, the empty string is no injection.
    pub fn parse(s: &str) -> Result<Self, InjectError> {
        let mut spec = Self::default();
        let mut seen = Vec::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = |reason: &str| InjectError::Parse(format!("{entry:?}: {reason}"));
            let (name, count) = entry
                .split_once('=')
                .ok_or_else(|| bad("is not kind=count"))?;
            let count: usize = count
                .trim()
                .parse()
                .map_err(|_| bad("the count is not a whole number"))?;
            let name = name.trim();
            let slot = match name {
                "drop" => &mut spec.drop,
                "amount" => &mut spec.amount,
                "duplicate" => &mut spec.duplicate,
                "unknown" => &mut spec.unknown,
                _ => return Err(bad("the kind is not drop, amount, duplicate or unknown")),
            };
            if seen.contains(&name) {
                return Err(bad("this kind is given twice"));
            }
            seen.push(name);
            *slot = count;
        }
        Ok(spec)
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    #[error("cannot damage {asked} distinct lines (drop + amount + duplicate) of a statement of {lines}")]
    NotEnoughLines { asked: usize, lines: usize },
    #[error("at most {max} unknown lines may be added, {asked} asked")]
    TooManyUnknown { asked: usize, max: usize },
    #[error("injection {0} (expected e.g. \"drop=2,amount=1,duplicate=1,unknown=3\")")]
    Parse(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InjectedKind {
    Drop,
    Amount,
    Duplicate,
    Unknown,
}

/// One discrepancy [`inject`] made: the ground truth a reconciliation should find.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Injected {
    pub kind: InjectedKind,
    pub acquirer_reference: String,
    pub event_id: Uuid,
    pub detail: String,
}

/// Damages `lines` as `spec` asks, deterministically for `seed`; returns the new lines (ordered by
/// settled_at, then reference, a duplicate right after its original) and what was done.
///
/// The lines dropped, changed and duplicated are pairwise distinct, so each is exactly one discrepancy.
/// A changed amount moves gross and net by the same nonzero amount (the fee stays), keeping gross
/// positive. Unknown lines get fresh references and payment and event ids drawn from the seeded
/// generator, a random existing line's merchant, currency and time, and an amount with the default fee;
/// on an empty statement they are KRW captures of merchant `M-UNKNOWN` at the Unix epoch (callers that
/// know the day should move them into it).
pub fn inject(
    lines: Vec<StatementLine>,
    spec: Injection,
    seed: u64,
) -> Result<(Vec<StatementLine>, Vec<Injected>), InjectError> {
    let damaged = spec
        .drop
        .checked_add(spec.amount)
        .and_then(|s| s.checked_add(spec.duplicate))
        .unwrap_or(usize::MAX);
    if damaged > lines.len() {
        return Err(InjectError::NotEnoughLines {
            asked: damaged,
            lines: lines.len(),
        });
    }
    if spec.unknown > Injection::MAX_UNKNOWN {
        return Err(InjectError::TooManyUnknown {
            asked: spec.unknown,
            max: Injection::MAX_UNKNOWN,
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // What happens to each input line: chosen without replacement, so no line gets two discrepancies.
    let mut fate: Vec<Option<InjectedKind>> = vec![None; lines.len()];
    let chosen = index::sample(&mut rng, lines.len(), damaged);
    for (n, i) in chosen.iter().enumerate() {
        fate[i] = Some(if n < spec.drop {
            InjectedKind::Drop
        } else if n < spec.drop + spec.amount {
            InjectedKind::Amount
        } else {
            InjectedKind::Duplicate
        });
    }

    let mut out = Vec::with_capacity(lines.len() + spec.duplicate + spec.unknown);
    let mut manifest = Vec::with_capacity(damaged + spec.unknown);
    let record = |kind, line: &StatementLine, detail: String| Injected {
        kind,
        acquirer_reference: line.acquirer_reference.clone(),
        event_id: line.event_id,
        detail,
    };
    for (line, fate) in lines.iter().zip(&fate) {
        match fate {
            None => out.push(line.clone()),
            Some(InjectedKind::Drop) => {
                manifest.push(record(InjectedKind::Drop, line, "line removed".into()));
            }
            Some(InjectedKind::Duplicate) => {
                manifest.push(record(
                    InjectedKind::Duplicate,
                    line,
                    "line written twice".into(),
                ));
                out.push(line.clone());
                out.push(line.clone());
            }
            Some(InjectedKind::Amount) => {
                let magnitude: i64 = rng.gen_range(1..=1_000);
                // A line an acquirer could write: gross stays positive and net (gross − fee, the fee
                // unchanged) stays at least 0, so down by at most min(net, gross − 1).
                let room_down = line.net.min(line.gross.saturating_sub(1));
                let up = rng.gen_bool(0.5) || room_down < 1;
                let delta = if up && line.gross.checked_add(magnitude).is_some() {
                    magnitude
                } else {
                    -magnitude.min(room_down).max(1)
                };
                let mut changed = line.clone();
                changed.gross = line.gross.saturating_add(delta);
                changed.net = line.net.saturating_add(delta);
                manifest.push(record(
                    InjectedKind::Amount,
                    line,
                    format!(
                        "gross {} -> {}, net {} -> {}",
                        line.gross, changed.gross, line.net, changed.net
                    ),
                ));
                out.push(changed);
            }
            Some(InjectedKind::Unknown) => unreachable!("unknown lines are added, never chosen"),
        }
    }
    for _ in 0..spec.unknown {
        let template = (!lines.is_empty()).then(|| &lines[rng.gen_range(0..lines.len())]);
        let reference = format!("ACQ-{}", random_uuid(&mut rng).simple()).to_ascii_uppercase();
        let kind = template.map_or(SettlementType::Capture, |t| t.kind);
        let gross: i64 = rng.gen_range(1_000..=1_000_000);
        let (fee, net) = fee_and_net(kind, gross, DEFAULT_FEE_BPS);
        let line = StatementLine {
            acquirer_reference: reference,
            payment_id: random_uuid(&mut rng),
            event_id: random_uuid(&mut rng),
            merchant_id: template.map_or_else(|| "M-UNKNOWN".into(), |t| t.merchant_id.clone()),
            kind,
            gross,
            fee,
            net,
            currency: template.map_or_else(|| "KRW".into(), |t| t.currency.clone()),
            settled_at: template.map_or(OffsetDateTime::UNIX_EPOCH, |t| t.settled_at),
        };
        manifest.push(record(
            InjectedKind::Unknown,
            &line,
            format!("no such settlement (payment {})", line.payment_id),
        ));
        out.push(line);
    }
    // Stable: a duplicate stays right after its original.
    out.sort_by(|a, b| {
        (a.settled_at, &a.acquirer_reference).cmp(&(b.settled_at, &b.acquirer_reference))
    });
    Ok((out, manifest))
}

/// A version-4 UUID from the seeded generator (not the OS), so injections replay exactly.
fn random_uuid(rng: &mut ChaCha8Rng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.gen()).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;
    use time::macros::datetime;

    fn seoul() -> jiff::tz::TimeZone {
        parse_time_zone(DEFAULT_TIME_ZONE).unwrap()
    }

    #[test]
    fn fee_rounds_half_up_to_a_whole_minor_unit() {
        for (gross, bps, want) in [
            (10_000, 250, 250),
            (10_001, 250, 250), // 250.025
            (10_020, 250, 251), // 250.5 rounds up
            (10_019, 250, 250), // 250.475
            (1, 250, 0),        // 0.025
            (20, 250, 1),       // 0.5 rounds up
            (19, 250, 0),       // 0.475
            (99_999_999_999, 10_000, 99_999_999_999),
            (12_345, 0, 0),
            (-10_020, 250, -251),
        ] {
            assert_eq!(fee(gross, bps), want, "fee({gross}, {bps})");
        }
        assert_eq!(fee(i64::MAX, u32::MAX), i64::MAX, "saturates");
        assert_eq!(
            fee_and_net(SettlementType::Capture, 10_020, 250),
            (251, 9_769)
        );
        assert_eq!(
            fee_and_net(SettlementType::Refund, 10_020, 250),
            (0, 10_020)
        );
    }

    #[test]
    fn fee_schedules_parse_with_a_default_and_per_merchant_rates() {
        let s = FeeSchedule::parse("default=300, m-1=180,M_2=0").unwrap();
        let m = |id| MerchantId::parse("m", id).unwrap();
        assert_eq!(s.bps_for(&m("m-1")), 180);
        assert_eq!(s.bps_for(&m("M_2")), 0);
        assert_eq!(s.bps_for(&m("other")), 300);
        assert_eq!(s.to_string(), "default=300,M_2=0,m-1=180");
        let only = FeeSchedule::parse("m-1=100").unwrap();
        assert_eq!(only.default_bps(), DEFAULT_FEE_BPS);
        assert_eq!(FeeSchedule::parse("").unwrap(), FeeSchedule::default());
        for (bad, why) in [
            ("default", "name=bps"),
            ("default=2.5", "whole number"),
            ("default=-1", "whole number"),
            ("default=10001", "above 10000"),
            ("m 1=100", "merchant id"),
            ("m,1=100", "name=bps"),
            ("a=1,a=2", "twice"),
            ("default=1,default=2", "twice"),
            ("=5", "merchant id"),
        ] {
            let e = FeeSchedule::parse(bad).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn business_date_follows_the_seoul_midnight() {
        let tz = seoul();
        assert_eq!(
            business_date(datetime!(2026-03-01 14:59:59.999999 UTC), &tz),
            time::macros::date!(2026 - 03 - 01)
        );
        assert_eq!(
            business_date(datetime!(2026-03-01 15:00:00 UTC), &tz),
            time::macros::date!(2026 - 03 - 02)
        );
        // The offset of the input does not matter, only the instant.
        assert_eq!(
            business_date(datetime!(2026-03-02 00:30 +09:00), &tz),
            time::macros::date!(2026 - 03 - 02)
        );
        let utc = parse_time_zone("UTC").unwrap();
        assert_eq!(
            business_date(datetime!(2026-03-01 23:59:59 UTC), &utc),
            time::macros::date!(2026 - 03 - 01)
        );
        assert_eq!(
            business_day_start(time::macros::date!(2026 - 03 - 02), &tz),
            Some(datetime!(2026-03-01 15:00 UTC))
        );
        // Extremes do not panic.
        let _ = business_date(
            OffsetDateTime::new_utc(time::Date::MAX, time::Time::MIDNIGHT),
            &tz,
        );
        let _ = business_date(
            OffsetDateTime::new_utc(time::Date::MIN, time::Time::MIDNIGHT),
            &tz,
        );
        assert!(parse_time_zone("Mars/Olympus").is_err());
    }

    fn line(n: u8) -> StatementLine {
        StatementLine {
            acquirer_reference: format!("ACQ-{n}"),
            payment_id: Uuid::from_u128(u128::from(n)),
            event_id: Uuid::from_u128(1000 + u128::from(n)),
            merchant_id: "m-1".into(),
            kind: SettlementType::Capture,
            gross: 10_000,
            fee: 250,
            net: 9_750,
            currency: "KRW".into(),
            settled_at: datetime!(2026-03-01 03:00:00.5 UTC),
        }
    }

    #[test]
    fn a_statement_is_the_header_and_one_line_per_settlement() {
        let text = format_statement(&[line(1)]).unwrap();
        assert_eq!(
            text,
            format!(
                "{STATEMENT_HEADER}\nACQ-1,00000000-0000-0000-0000-000000000001,\
                 00000000-0000-0000-0000-0000000003e9,m-1,CAPTURE,10000,250,9750,KRW,\
                 2026-03-01T03:00:00.5Z\n"
            )
        );
        assert_eq!(parse_statement(&text).unwrap(), vec![line(1)]);
        assert_eq!(
            parse_statement(&text.replace('\n', "\r\n")).unwrap(),
            vec![line(1)]
        );
        assert_eq!(parse_statement(text.trim_end()).unwrap(), vec![line(1)]);
        assert_eq!(parse_statement(STATEMENT_HEADER).unwrap(), vec![]);
        assert_eq!(
            parse_statement(&format!("{STATEMENT_HEADER}\r\n")).unwrap(),
            vec![]
        );
    }

    #[test]
    fn parse_errors_name_the_line_and_the_field() {
        let good = format_statement(&[line(1), line(2)]).unwrap();
        let cases: Vec<(String, usize, &str)> = vec![
            (String::new(), 1, "header"),
            (good.replacen("gross_amount", "gross", 1), 1, "header"),
            (good.replace("ACQ-2,", "ACQ-2,x,"), 3, "columns"),
            (good.replace("ACQ-2,", ""), 3, "columns"),
            (format!("{good}\n"), 4, "columns"),
            (
                good.replacen(",10000,", ",10k,", 2)
                    .replacen(",10k,", ",10000,", 1),
                3,
                "gross_amount",
            ),
            (good.replacen(",250,", ",2.5,", 1), 2, "fee"),
            (good.replacen(",9750,", ",,", 1), 2, "net_amount"),
            (
                good.replacen("00000000-0000-0000-0000-000000000001", "not-a-uuid", 1),
                2,
                "payment_id",
            ),
            (
                good.replacen(
                    "00000000-0000-0000-0000-0000000003e9",
                    "{00000000-0000-0000-0000-0000000003e9}",
                    1,
                ),
                2,
                "event_id",
            ),
            (good.replacen("CAPTURE", "capture", 1), 2, "type"),
            (
                good.replacen("2026-03-01T03:00:00.5Z", "2026-03-01 03:00", 1),
                2,
                "settled_at",
            ),
            (good.replacen("m-1", "", 1), 2, "merchant_id"),
            (good.replacen("KRW", "\"KRW\"", 1), 2, "currency"),
        ];
        for (text, line_no, field) in cases {
            let e = parse_statement(&text).expect_err(&text);
            assert_eq!((e.line, e.field), (line_no, field), "{e} in {text:?}");
        }
    }

    #[test]
    fn format_refuses_what_it_cannot_write_readably() {
        for (mutate, field) in [
            (
                Box::new(|l: &mut StatementLine| l.merchant_id = "a,b".into())
                    as Box<dyn Fn(&mut StatementLine)>,
                "merchant_id",
            ),
            (
                Box::new(|l: &mut StatementLine| l.acquirer_reference = "x\"y".into()),
                "acquirer_reference",
            ),
            (
                Box::new(|l: &mut StatementLine| l.currency = "K\nRW".into()),
                "currency",
            ),
            (
                Box::new(|l: &mut StatementLine| l.currency = String::new()),
                "currency",
            ),
            (
                Box::new(|l: &mut StatementLine| l.settled_at = datetime!(-0001-01-01 0:00 UTC)),
                "settled_at",
            ),
        ] {
            let mut l = line(1);
            mutate(&mut l);
            let e = format_statement(&[line(2), l]).expect_err(field);
            assert_eq!((e.line, e.field), (3, field), "{e}");
        }
    }

    #[test]
    fn injections_parse() {
        assert_eq!(
            Injection::parse("drop=2,amount=1,duplicate=1,unknown=3").unwrap(),
            Injection {
                drop: 2,
                amount: 1,
                duplicate: 1,
                unknown: 3
            }
        );
        assert_eq!(Injection::parse(" unknown = 4 ").unwrap().unknown, 4);
        assert!(Injection::parse("").unwrap().is_empty());
        for bad in ["drop", "drop=x", "drop=-1", "dropp=1", "drop=1,drop=2"] {
            assert!(
                matches!(Injection::parse(bad), Err(InjectError::Parse(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn inject_refuses_more_than_there_is() {
        let lines = vec![line(1), line(2)];
        let spec = Injection {
            drop: 1,
            amount: 1,
            duplicate: 1,
            unknown: 0,
        };
        assert_eq!(
            inject(lines.clone(), spec, 1),
            Err(InjectError::NotEnoughLines { asked: 3, lines: 2 })
        );
        let huge = Injection {
            drop: usize::MAX,
            amount: 1,
            ..Injection::default()
        };
        assert!(inject(lines.clone(), huge, 1).is_err());
        let many = Injection {
            unknown: Injection::MAX_UNKNOWN + 1,
            ..Injection::default()
        };
        assert!(matches!(
            inject(lines, many, 1),
            Err(InjectError::TooManyUnknown { .. })
        ));
        // Unknown lines need no existing line.
        let (out, manifest) = inject(
            vec![],
            Injection {
                unknown: 2,
                ..Injection::default()
            },
            7,
        )
        .unwrap();
        assert_eq!((out.len(), manifest.len()), (2, 2));
    }

    fn arb_time() -> impl Strategy<Value = OffsetDateTime> {
        // Years 0000–9999, nanosecond precision: the RFC 3339 range.
        (-62_167_219_200i64..253_402_300_799, 0u32..1_000_000_000).prop_map(|(s, ns)| {
            OffsetDateTime::from_unix_timestamp(s)
                .unwrap()
                .replace_nanosecond(ns)
                .unwrap()
        })
    }

    fn arb_line() -> impl Strategy<Value = StatementLine> {
        (
            "[A-Za-z0-9_-]{1,40}",
            any::<u128>(),
            any::<u128>(),
            "[A-Za-z0-9_-]{1,32}",
            prop_oneof![Just(SettlementType::Capture), Just(SettlementType::Refund)],
            1..=i64::MAX,
            0..=i64::MAX,
            prop_oneof![Just("KRW"), Just("USD"), Just("JPY"), Just("BHD")],
            arb_time(),
        )
            .prop_map(|(r, p, e, m, kind, gross, fee, c, at)| StatementLine {
                acquirer_reference: r,
                payment_id: Uuid::from_u128(p),
                event_id: Uuid::from_u128(e),
                merchant_id: m,
                kind,
                gross,
                // Any fee up to gross: what a parser must take is net = gross − fee ≥ 0.
                fee: fee % gross,
                net: gross - fee % gross,
                currency: c.to_owned(),
                settled_at: at,
            })
    }

    /// Lines with distinct references and positive, consistent amounts, as an acquirer writes them.
    fn arb_statement() -> impl Strategy<Value = Vec<StatementLine>> {
        proptest::collection::vec(arb_line(), 0..30).prop_map(|lines| {
            lines
                .into_iter()
                .enumerate()
                .map(|(i, mut l)| {
                    l.acquirer_reference = format!("ACQ-{i}-{}", l.acquirer_reference);
                    l.gross = l.gross.rem_euclid(Amount::MAX) + 1;
                    (l.fee, l.net) = fee_and_net(l.kind, l.gross, 250);
                    l
                })
                .collect()
        })
    }
    use crate::Amount;

    proptest! {
        #[test]
        fn format_then_parse_gives_the_lines_back(lines in proptest::collection::vec(arb_line(), 0..20)) {
            let text = format_statement(&lines).unwrap();
            prop_assert_eq!(parse_statement(&text).unwrap(), lines.clone());
            prop_assert_eq!(parse_statement(&text.replace('\n', "\r\n")).unwrap(), lines);
        }

        #[test]
        fn parse_never_panics(text in any::<String>()) {
            let _ = parse_statement(&text);
        }

        #[test]
        fn parse_never_panics_on_near_statements(rows in proptest::collection::vec("[-A-Za-z0-9:.,\r\"]{0,120}", 0..5)) {
            let _ = parse_statement(&format!("{STATEMENT_HEADER}\n{}", rows.join("\n")));
        }

        #[test]
        fn inject_does_exactly_what_is_asked(
            lines in arb_statement(),
            counts in (0usize..10, 0usize..10, 0usize..10, 0usize..10),
            seed in any::<u64>(),
        ) {
            let (drop, amount, duplicate, unknown) = counts;
            let spec = Injection { drop, amount, duplicate, unknown };
            let n = lines.len();
            let result = inject(lines.clone(), spec, seed);
            if drop + amount + duplicate > n {
                prop_assert!(matches!(result, Err(InjectError::NotEnoughLines { .. })), "{:?}", result);
                return Ok(());
            }
            let (out, manifest) = result.unwrap();
            prop_assert_eq!(out.len(), n - drop + duplicate + unknown);
            let count = |k| manifest.iter().filter(|m| m.kind == k).count();
            prop_assert_eq!(count(InjectedKind::Drop), drop);
            prop_assert_eq!(count(InjectedKind::Amount), amount);
            prop_assert_eq!(count(InjectedKind::Duplicate), duplicate);
            prop_assert_eq!(count(InjectedKind::Unknown), unknown);
            // Each damaged line is damaged once.
            let refs: HashSet<_> = manifest.iter().map(|m| &m.acquirer_reference).collect();
            prop_assert_eq!(refs.len(), manifest.len());
            // And the output shows exactly that.
            let original: BTreeMap<_, _> = lines.iter().map(|l| (&l.acquirer_reference, l)).collect();
            for m in &manifest {
                let found: Vec<_> = out.iter().filter(|l| l.acquirer_reference == m.acquirer_reference).collect();
                match m.kind {
                    InjectedKind::Drop => prop_assert!(found.is_empty()),
                    InjectedKind::Duplicate => {
                        prop_assert_eq!(found.len(), 2);
                        prop_assert_eq!(found[0], original[&m.acquirer_reference]);
                        prop_assert_eq!(found[1], original[&m.acquirer_reference]);
                    }
                    InjectedKind::Amount => {
                        prop_assert_eq!(found.len(), 1);
                        let o = original[&m.acquirer_reference];
                        prop_assert_ne!(found[0].gross, o.gross);
                        prop_assert!(found[0].gross > 0);
                        prop_assert_eq!(found[0].gross - o.gross, found[0].net - o.net);
                        prop_assert_eq!(found[0].fee, o.fee);
                    }
                    InjectedKind::Unknown => {
                        prop_assert_eq!(found.len(), 1);
                        prop_assert!(!original.contains_key(&m.acquirer_reference));
                        prop_assert!(lines.iter().all(|l| l.event_id != found[0].event_id && l.payment_id != found[0].payment_id));
                    }
                }
            }
            // Lines not named in the manifest are untouched.
            let untouched = out.iter().filter(|l| !refs.contains(&l.acquirer_reference)).count();
            prop_assert_eq!(untouched, n - drop - amount - duplicate);
            // Same seed, same result.
            prop_assert_eq!(inject(lines, spec, seed).unwrap(), (out, manifest));
        }
    }
}
