//! Payout gauges (issue 15): what `payctl settle` has paid out, per currency, and the SETTLED records
//! it has not paid out though their business day is over. Read from the database next to the record
//! gauges ([`crate::store::gauges`]), on the same few-second refresh.

use crate::metrics::Metrics;
use payctl_domain::settlement::business_date;
use sqlx::MySqlPool;
use time::OffsetDateTime;

/// One reading of the payouts table and of the settlements still to be paid out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payouts {
    /// (currency, payout records, sum of their net in minor units), one row per currency paid out.
    pub by_currency: Vec<(String, i64, i64)>,
    /// SETTLED records without a payout whose business date is before `today`.
    pub unpaid_settled: i64,
}

/// Reads the payout figures. `today` is the business date now in the cutoff zone: a record of today
/// cannot be paid out yet (its statement is not closed), one of an earlier day should have been.
pub async fn payouts(db: &MySqlPool, today: time::Date) -> Result<Payouts, sqlx::Error> {
    // SUM of a BIGINT is a DECIMAL in MariaDB; the cast keeps it an integer of minor units.
    let by_currency: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT currency, COUNT(*), CAST(COALESCE(SUM(net), 0) AS SIGNED) \
         FROM payouts GROUP BY currency ORDER BY currency",
    )
    .fetch_all(db)
    .await?;
    let unpaid_settled: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM settlements \
         WHERE status = 'SETTLED' AND payout_id IS NULL AND business_date < ?",
    )
    .bind(today)
    .fetch_one(db)
    .await?;
    Ok(Payouts {
        by_currency,
        unpaid_settled,
    })
}

/// Reads the payout figures for now in the cutoff zone `tz` and sets the gauges.
pub async fn refresh(
    db: &MySqlPool,
    tz: &jiff::tz::TimeZone,
    metrics: &Metrics,
) -> Result<(), sqlx::Error> {
    let p = payouts(db, business_date(OffsetDateTime::now_utc(), tz)).await?;
    metrics.set_payouts(&p);
    Ok(())
}
