//! `payctl settle --date D`: close a business date — pay each merchant, per currency, the net of what the
//! acquirer settled that day (captures − refunds − fees), as a payout record and its ledger legs. Running
//! it again pays out only what settled since (nothing, usually), so it is safe to repeat.

use crate::ops::acquirer::{date_text, parse_date};
use crate::ops::payouts::{settle, Settled};
use crate::output::{self, table};
use crate::stack::Ports;
use clap::Args;
use pay_settlement::payout::Payout;
use payctl_domain::settlement::{business_date, parse_time_zone, DEFAULT_TIME_ZONE};
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  payctl settle                          pay out yesterday (in the cutoff time zone)
  payctl settle --date 2026-12-05        pay out that business date; again: nothing more to pay
  payctl settle --date 2026-12-05 --json {date, timeZone, made: [payout], payouts: [payout], unsettled}

A business date's settlements are those the acquirer settled between its midnights in the cutoff time
zone (the acquirer's APP_ACQUIRER_TIME_ZONE; default Asia/Seoul). Net = settled captures − settled
refunds − fees; a negative net is what the merchant owes. Each settlement is paid out once: one still
settling is paid with the date it settles on, by a later `payctl settle` of that date.")]
pub struct SettleArgs {
    /// The business date to pay out, YYYY-MM-DD (default: yesterday in the cutoff time zone).
    #[arg(long, value_parser = parse_date)]
    date: Option<time::Date>,
    /// The cutoff time zone business dates are in (IANA name); must be the acquirer's.
    #[arg(long, env = "PAYCTL_TIME_ZONE", default_value = DEFAULT_TIME_ZONE)]
    time_zone: String,
    /// The result as JSON: {date, timeZone, made, payouts, unsettled}.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    ports: Ports,
}

pub async fn exec(home: &Path, a: SettleArgs) -> anyhow::Result<ExitCode> {
    let zone = parse_time_zone(&a.time_zone)?;
    let today = business_date(time::OffsetDateTime::now_utc(), &zone);
    let date = match a.date {
        Some(d) => d,
        None => today.previous_day().unwrap_or(today),
    };
    let Settled {
        made,
        all,
        unsettled,
    } = settle(home, &a.ports, date, &a.time_zone).await?;
    if a.json {
        output::json(&serde_json::json!({
            "date": date_text(date),
            "timeZone": a.time_zone,
            "made": made,
            "payouts": all,
            "unsettled": unsettled,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if made.is_empty() {
        println!(
            "settle {}: nothing new to pay out ({} payout(s) of that date already made)",
            date_text(date),
            all.len()
        );
    } else {
        println!("settle {}: {} payout(s) made", date_text(date), made.len());
    }
    if !all.is_empty() {
        println!("{}", payout_table(&all, &made));
    }
    if date >= today {
        println!(
            "note: {} is still open in {}; what settles later that day is paid out by the next `payctl settle --date {}`",
            date_text(date),
            a.time_zone,
            date_text(date)
        );
    }
    if unsettled > 0 {
        println!("note: {unsettled} capture(s) and refund(s) are still settling; each is paid out with the date it settles on");
    }
    Ok(ExitCode::SUCCESS)
}

fn payout_table(all: &[Payout], made: &[Payout]) -> String {
    table(
        &[
            "", "merchant", "currency", "seq", "captures", "refunds", "captured", "refunded",
            "fees", "net", "payout",
        ],
        all.iter().map(|p| {
            vec![
                if made.iter().any(|m| m.payout_id == p.payout_id) {
                    "new".into()
                } else {
                    String::new()
                },
                p.merchant_id.clone(),
                p.currency.clone(),
                p.seq.to_string(),
                p.captures.to_string(),
                p.refunds.to_string(),
                p.gross_captured.to_string(),
                p.gross_refunded.to_string(),
                p.fees.to_string(),
                p.net.to_string(),
                p.payout_id.to_string(),
            ]
        }),
    )
}
