//! `payctl authorize | capture | refund | void | get | list | ledger`: the payment API from the terminal.
//!
//! Human output is a table; `--json` prints the API's own JSON. An API error prints as one line with its
//! code (`error: PAYMENT_NOT_FOUND: payment not found`) and exits with 1.

use crate::ops::api::{Api, Target};
use crate::output::{self, table};
use clap::Args;
use serde_json::{json, Value};
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

/// An amount in minor units: a whole number ≥ 1.
pub fn amount(s: &str) -> Result<i64, String> {
    match s.parse::<i64>() {
        Ok(n) if n >= 1 => Ok(n),
        Ok(n) => Err(format!("amount must be ≥ 1 (minor units), not {n}")),
        Err(_) => Err(format!(
            "amount must be a whole number ≥ 1 (minor units), not {s:?}"
        )),
    }
}

/// The statuses a payment can be in, as the API spells them.
pub const STATUSES: [&str; 5] = [
    "AUTHORIZED",
    "CAPTURED",
    "PARTIALLY_REFUNDED",
    "REFUNDED",
    "VOIDED",
];

#[derive(Debug, Args)]
pub struct AuthorizeArgs {
    /// Amount in minor units (KRW has none: 50000 is ₩50,000); at least 1.
    #[arg(long, value_parser = amount, allow_hyphen_values = true)]
    pub amount: i64,
    /// ISO-4217 currency.
    #[arg(long, default_value = "KRW")]
    pub currency: String,
    /// Idempotency key; a fresh one is generated when absent. Re-run with the same key to retry safely.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Print only the payment id (for scripts: `id=$(payctl authorize --amount 100 -q)`).
    #[arg(short, long, conflicts_with = "json")]
    pub quiet: bool,
    /// The API's JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: Target,
}

/// A capture, refund or void, whichever subcommand's arguments it came from.
#[derive(Debug)]
pub struct ChangeArgs {
    pub id: String,
    pub amount: Option<i64>,
    pub reason: Option<String>,
    pub idempotency_key: Option<String>,
    pub json: bool,
    pub quiet: bool,
    pub target: Target,
}

#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// Payment id.
    pub id: String,
    /// Partial amount (minor units, ≥ 1); all that remains when absent.
    #[arg(long, value_parser = amount, allow_hyphen_values = true)]
    pub amount: Option<i64>,
    /// Idempotency key; a fresh one is generated when absent.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Print only the payment id (for scripts: `id=$(payctl authorize --amount 100 -q)`).
    #[arg(short, long, conflicts_with = "json")]
    pub quiet: bool,
    /// The API's JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, Args)]
pub struct RefundArgs {
    /// Payment id.
    pub id: String,
    /// Partial amount (minor units, ≥ 1); all that was captured and not yet refunded when absent.
    #[arg(long, value_parser = amount, allow_hyphen_values = true)]
    pub amount: Option<i64>,
    /// Reason.
    #[arg(long)]
    pub reason: Option<String>,
    /// Idempotency key; a fresh one is generated when absent.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Print only the payment id (for scripts: `id=$(payctl authorize --amount 100 -q)`).
    #[arg(short, long, conflicts_with = "json")]
    pub quiet: bool,
    /// The API's JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, Args)]
pub struct VoidArgs {
    /// Payment id.
    pub id: String,
    /// Reason.
    #[arg(long)]
    pub reason: Option<String>,
    /// Idempotency key; a fresh one is generated when absent.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Print only the payment id (for scripts: `id=$(payctl authorize --amount 100 -q)`).
    #[arg(short, long, conflicts_with = "json")]
    pub quiet: bool,
    /// The API's JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: Target,
}

impl From<CaptureArgs> for ChangeArgs {
    fn from(a: CaptureArgs) -> Self {
        Self {
            id: a.id,
            amount: a.amount,
            reason: None,
            idempotency_key: a.idempotency_key,
            json: a.json,
            quiet: a.quiet,
            target: a.target,
        }
    }
}

impl From<RefundArgs> for ChangeArgs {
    fn from(a: RefundArgs) -> Self {
        Self {
            id: a.id,
            amount: a.amount,
            reason: a.reason,
            idempotency_key: a.idempotency_key,
            json: a.json,
            quiet: a.quiet,
            target: a.target,
        }
    }
}

impl From<VoidArgs> for ChangeArgs {
    fn from(a: VoidArgs) -> Self {
        Self {
            id: a.id,
            amount: None,
            reason: a.reason,
            idempotency_key: a.idempotency_key,
            json: a.json,
            quiet: a.quiet,
            target: a.target,
        }
    }
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Payment id.
    pub id: String,
    /// The API's JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Show it again every 2 seconds, until Ctrl-C.
    #[arg(short, long, conflicts_with = "json")]
    pub watch: bool,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Page size (1–100).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub limit: u32,
    /// Only payments in this status.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(STATUSES))]
    pub status: Option<String>,
    /// Cursor: the nextCursor of the previous page.
    #[arg(long)]
    pub starting_after: Option<String>,
    /// The API's JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only the payment ids, one per line.
    #[arg(short, long, conflicts_with_all = ["json", "no_headers"])]
    pub quiet: bool,
    /// Tab-separated rows without the header line (piped output is tab-separated, with a header).
    #[arg(long, conflicts_with = "json")]
    pub no_headers: bool,
    #[command(flatten)]
    pub target: Target,
}

pub fn print_payment(p: &Value) {
    let field = |k: &str| match &p[k] {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    };
    let rows = [
        ("payment", "paymentId"),
        ("status", "status"),
        ("amount", "amount"),
        ("captured", "capturedAmount"),
        ("refunded", "refundedAmount"),
        ("currency", "currency"),
        ("merchant", "merchantId"),
        ("created", "createdAt"),
        ("updated", "updatedAt"),
    ];
    println!(
        "{}",
        table(
            &["field", "value"],
            rows.iter()
                .map(|(label, key)| vec![label.to_string(), field(key)])
        )
    );
}

/// A fresh idempotency key, when the caller gave none.
fn key_or_new(key: Option<String>) -> String {
    key.unwrap_or_else(|| format!("payctl-{}", uuid::Uuid::new_v4()))
}

/// The API's answer with the idempotency key sent and whether the answer is a replay, so that a script
/// reading `--json` can retry with the same key.
pub fn with_idempotency(mut p: Value, key: &str, replayed: bool) -> Value {
    if let Value::Object(m) = &mut p {
        m.insert("idempotencyKey".into(), json!(key));
        m.insert("replayed".into(), json!(replayed));
    }
    p
}

/// The line on stderr under a table: the key to retry with, and whether this answer is a replay.
pub fn idempotency_line(key: &str, replayed: bool) -> String {
    if replayed {
        format!(
            "idempotency key: {key} (replayed: the first answer for this key, nothing done again)"
        )
    } else {
        format!("idempotency key: {key}")
    }
}

/// Prints a write's answer: JSON with its idempotency, or a table and the key on stderr.
fn print_write(
    p: Value,
    key: &str,
    replayed: bool,
    json: bool,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    if quiet {
        println!("{}", output::text(&p["paymentId"]));
        // The key stays on stderr, as under a table: what a script needs to retry safely.
        eprintln!("{}", idempotency_line(key, replayed));
        return Ok(ExitCode::SUCCESS);
    }
    if json {
        output::json(&with_idempotency(p, key, replayed))?;
        return Ok(ExitCode::SUCCESS);
    }
    print_payment(&p);
    eprintln!("{}", idempotency_line(key, replayed));
    Ok(ExitCode::SUCCESS)
}

pub async fn authorize(home: &Path, a: AuthorizeArgs) -> anyhow::Result<ExitCode> {
    let api = &Api::new(home, &a.target)?;
    let key = key_or_new(a.idempotency_key);
    let (p, replayed) = api
        .post_idempotent(
            "/payments/authorize",
            json!({"amount": a.amount, "currency": a.currency}),
            &key,
        )
        .await?;
    print_write(p, &key, replayed, a.json, a.quiet)
}

pub async fn change(home: &Path, verb: &str, a: impl Into<ChangeArgs>) -> anyhow::Result<ExitCode> {
    let a: ChangeArgs = a.into();
    let api = &Api::new(home, &a.target)?;
    let mut body = json!({});
    if let Some(amount) = a.amount {
        body["amount"] = json!(amount);
    }
    if let Some(reason) = &a.reason {
        body["reason"] = json!(reason);
    }
    let key = key_or_new(a.idempotency_key);
    let (p, replayed) = api
        .post_idempotent(&format!("/payments/{verb}/{}", a.id), body, &key)
        .await?;
    print_write(p, &key, replayed, a.json, a.quiet)
}

pub async fn get(home: &Path, a: GetArgs) -> anyhow::Result<ExitCode> {
    let path = format!("/payments/{}", a.id);
    show(home, &a, &path, "get", print_payment).await
}

/// One GET of the API shown as JSON, as a table, or (--watch) as a table again every 2 s.
async fn show(
    home: &Path,
    a: &GetArgs,
    path: &str,
    command: &str,
    print: fn(&Value),
) -> anyhow::Result<ExitCode> {
    let api = &Api::new(home, &a.target)?;
    let first = api.get(path).await?;
    if a.json {
        output::json(&first)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !a.watch {
        print(&first);
        return Ok(ExitCode::SUCCESS);
    }
    output::watch(
        std::time::Duration::from_secs(2),
        &format!("payctl {command} {}", a.id),
        || async {
            print(&api.get(path).await?);
            Ok(())
        },
    )
    .await
}

pub async fn list(home: &Path, a: ListArgs) -> anyhow::Result<ExitCode> {
    let api = &Api::new(home, &a.target)?;
    let mut path = format!("/payments?limit={}", a.limit);
    if let Some(s) = &a.status {
        path.push_str(&format!("&status={s}"));
    }
    if let Some(c) = &a.starting_after {
        path.push_str(&format!("&startingAfter={c}"));
    }
    let page = api.get(&path).await?;
    if a.json {
        output::json(&page)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows = page["data"].as_array().cloned().unwrap_or_default();
    if a.quiet {
        for p in &rows {
            println!("{}", output::text(&p["paymentId"]));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let s = output::text;
    let header = [
        "payment", "status", "amount", "captured", "refunded", "currency", "created",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|p| {
            vec![
                s(&p["paymentId"]),
                s(&p["status"]),
                s(&p["amount"]),
                s(&p["capturedAmount"]),
                s(&p["refundedAmount"]),
                s(&p["currency"]),
                s(&p["createdAt"]),
            ]
        })
        .collect();
    if a.no_headers || !std::io::stdout().is_terminal() {
        print!("{}", output::tsv(&header, cells, !a.no_headers));
    } else {
        println!("{}", table(&header, cells));
    }
    if let Some(next) = page["nextCursor"].as_str() {
        eprintln!("more: {}", next_page(&a, next));
    }
    Ok(ExitCode::SUCCESS)
}

/// The command for the page after this one: the same filters and page size, from `next`.
pub fn next_page(a: &ListArgs, next: &str) -> String {
    let mut c = format!("payctl list --limit {}", a.limit);
    if let Some(s) = &a.status {
        c.push_str(&format!(" --status {s}"));
    }
    c.push_str(&format!(" --starting-after {next}"));
    c
}

pub async fn ledger(home: &Path, a: GetArgs) -> anyhow::Result<ExitCode> {
    let path = format!("/payments/{}/ledger", a.id);
    show(home, &a, &path, "ledger", print_ledger).await
}

fn print_ledger(l: &Value) {
    let entries = l["entries"].as_array().cloned().unwrap_or_default();
    let s = output::text;
    println!(
        "{}",
        table(
            &["event", "leg", "account", "side", "amount", "currency"],
            entries.iter().map(|e| vec![
                s(&e["eventType"]),
                s(&e["leg"]),
                s(&e["account"]),
                s(&e["side"]),
                s(&e["amount"]),
                s(&e["currency"])
            ])
        )
    );
    println!(
        "debits {}  credits {}  {}",
        l["totalDebits"],
        l["totalCredits"],
        if l["balanced"] == json!(true) {
            output::green("balanced")
        } else {
            output::red("NOT balanced")
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct List {
        #[command(flatten)]
        a: ListArgs,
    }

    #[test]
    fn the_next_page_keeps_the_filters_and_the_page_size() {
        let l = List::parse_from(["list", "--limit", "1", "--status", "CAPTURED"]);
        assert_eq!(
            next_page(&l.a, "pay_9"),
            "payctl list --limit 1 --status CAPTURED --starting-after pay_9"
        );
        let l = List::parse_from(["list"]);
        assert_eq!(
            next_page(&l.a, "pay_9"),
            "payctl list --limit 20 --starting-after pay_9"
        );
    }

    #[test]
    fn json_of_a_write_carries_its_idempotency_key_and_whether_it_is_a_replay() {
        let p = with_idempotency(json!({"paymentId": "pay_1"}), "k-1", true);
        assert_eq!(p["paymentId"], "pay_1");
        assert_eq!(p["idempotencyKey"], "k-1");
        assert_eq!(p["replayed"], true);
        let p = with_idempotency(json!({"paymentId": "pay_1"}), "k-2", false);
        assert_eq!(p["replayed"], false);
    }

    #[test]
    fn amounts_are_whole_numbers_of_at_least_one() {
        assert_eq!(amount("1"), Ok(1));
        assert!(amount("0").unwrap_err().contains("≥ 1"));
        assert!(amount("-5").unwrap_err().contains("≥ 1"));
        assert!(amount("ten").is_err());
    }

    #[test]
    fn a_replay_is_marked_under_the_table() {
        assert!(idempotency_line("k-1", true).contains("replayed"));
        assert!(!idempotency_line("k-1", false).contains("replayed"));
        assert!(idempotency_line("k-1", false).contains("k-1"));
    }
}
