//! Adversarial review 2 (payouts, PAYOUT ledger legs, reconcile's settlement checks, the claim's gate).
//! Each test reproduced a finding (it failed against the code reviewed) and now guards its fix.

use crate::helpers::{env, event, Env, MERCHANT};
use pay_settlement::acquirer::Settled;
use pay_settlement::payout;
use payctl_domain::settlement::SettlementType;
use payctl_domain::{EventType, PaymentEvent, PaymentId};
use std::time::Duration;
use time::macros::date;
use time::Date;

const ZONE: &str = "Asia/Seoul";

fn kind(e: &PaymentEvent) -> &'static str {
    match e.event_type {
        EventType::PaymentRefunded => "REFUND",
        _ => "CAPTURE",
    }
}

fn for_merchant(kind: EventType, payment: PaymentId, amount: i64, merchant: &str) -> PaymentEvent {
    let mut e = event(kind, payment, amount);
    e.merchant_id = merchant.into();
    e
}

/// A record as the worker inserts it when it reads the event (PENDING, due now).
async fn pending(env: &Env, e: &PaymentEvent) {
    sqlx::query(
        "INSERT INTO settlements (event_id, payment_id, merchant_id, type, amount, currency, status, attempts, \
         next_attempt_at, topic, kafka_partition, kafka_offset, payload, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, 'PENDING', 0, UTC_TIMESTAMP(6), 't', 0, 0, '{}', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))",
    )
    .bind(e.event_id.as_uuid())
    .bind(e.payment_id.as_uuid())
    .bind(&e.merchant_id)
    .bind(kind(e))
    .bind(e.amount)
    .bind(&e.currency)
    .execute(&env.db)
    .await
    .unwrap();
}

/// The acquirer's answer for `e`, settled on `date` with `fee` (net = amount − fee, as `check_answer`
/// requires), written with the worker's own `store::settled`.
async fn settle_record(env: &Env, e: &PaymentEvent, date: Date, fee: i64) {
    let s = Settled {
        reference: format!("ACQ-{}", e.event_id),
        status: "SETTLED".into(),
        kind: SettlementType::parse(kind(e)).unwrap(),
        merchant_id: e.merchant_id.clone(),
        payment_id: e.payment_id,
        event_id: e.event_id,
        amount: e.amount,
        fee,
        net: e.amount - fee,
        currency: e.currency.clone(),
        settled_at: time::OffsetDateTime::now_utc(),
        business_date: date,
        replayed: false,
    };
    assert!(
        pay_settlement::store::settled(&env.db, &s).await.unwrap(),
        "the worker records the acquirer's answer"
    );
}

/// Finding 1: one settlement whose fee exceeds its gross (an acquirer's minimum fee on a small capture:
/// `check_answer` only requires net = gross − fee, so the worker records it SETTLED with a negative net)
/// makes `payout_legs` produce a negative `payouts` leg; `ck_ledger_amount` refuses it and the single
/// transaction of `settle` rolls back — no merchant of that date is paid, and every rerun fails the same
/// way until someone edits the record by hand.
#[tokio::test]
async fn review2_f1_one_capture_with_fee_above_gross_blocks_every_merchants_payout() {
    let env = env().await;
    let d = date!(2026 - 11 - 10);
    let small = for_merchant(EventType::PaymentCaptured, PaymentId::new(), 100, MERCHANT);
    let other = for_merchant(
        EventType::PaymentCaptured,
        PaymentId::new(),
        50_000,
        "M-OTHER",
    );
    env.book(&[small.clone(), other.clone()]).await;
    pending(&env, &small).await;
    pending(&env, &other).await;
    settle_record(&env, &small, d, 150).await; // fee 150 on a 100 capture: net −50
    settle_record(&env, &other, d, 1_250).await;
    let made = payout::settle(&env.db, d, ZONE).await;
    let made = made.unwrap_or_else(|e| {
        panic!("settle of {d} failed for every merchant because of one record: {e}")
    });
    assert!(
        made.iter()
            .any(|p| p.merchant_id == "M-OTHER" && p.net == 48_750),
        "M-OTHER is paid: {made:#?}"
    );
}

/// Finding 2: `PAYOUT` legs are checked only through `settlements.payout_event_id`, and only on the
/// `payouts` and `fees` accounts: "every ledger leg comes from a committed event" and "ledger net equals
/// captured − refunded" now skip every PAYOUT leg. A second set of PAYOUT legs for an already paid-out
/// capture (a double payout in the books: merchant_payable debited twice, payouts credited twice) is
/// invisible to every reconcile check.
#[tokio::test]
async fn review2_f2_a_second_set_of_payout_legs_for_a_paid_capture_is_not_reported() {
    let env = env().await;
    let d = date!(2026 - 11 - 11);
    let c = event(EventType::PaymentCaptured, PaymentId::new(), 10_000);
    env.book(std::slice::from_ref(&c)).await;
    pending(&env, &c).await;
    settle_record(&env, &c, d, 250).await;
    let made = payout::settle(&env.db, d, ZONE).await.unwrap();
    assert_eq!(made.len(), 1);
    assert_eq!(
        env.failing_checks().await,
        Vec::<String>::new(),
        "clean after the payout"
    );

    // The same capture's payout legs posted again under a fresh event id (what a retried or duplicated
    // payout posting would leave): balanced, and each leg individually plausible.
    let again = uuid::Uuid::now_v7();
    for (leg, account, side, amount) in [
        (0u8, "acquirer_receivable", "D", 10_000i64),
        (1, "customer_receivable", "C", 10_000),
        (2, "merchant_payable", "D", 10_000),
        (3, "fees", "C", 250),
        (4, "payouts", "C", 9_750),
    ] {
        sqlx::query(
            "INSERT INTO ledger_entries (event_id, leg, payment_id, merchant_id, event_type, account, side, \
             amount, currency, occurred_at) VALUES (?, ?, ?, ?, 'PAYOUT', ?, ?, ?, 'KRW', UTC_TIMESTAMP(6))",
        )
        .bind(again)
        .bind(leg)
        .bind(c.payment_id.as_uuid())
        .bind(MERCHANT)
        .bind(account)
        .bind(side)
        .bind(amount)
        .execute(&env.db)
        .await
        .unwrap();
    }
    let paid: i64 = env
        .count(&format!(
            "SELECT CAST(SUM(IF(side = 'C', amount, -amount)) AS SIGNED) FROM ledger_entries \
             WHERE account = 'payouts' AND payment_id = UNHEX(REPLACE('{}', '-', ''))",
            c.payment_id
        ))
        .await;
    assert_eq!(paid, 19_500, "the books now pay this capture out twice");
    // Even the check skipped above (the harness has no outbox rows) would not see it: it skips PAYOUT.
    let all = pay_consumer::invariants::check(&env.db, Duration::ZERO)
        .await
        .unwrap();
    let orphan = all
        .checks
        .iter()
        .find(|c| c.name == "every ledger leg comes from a committed event")
        .unwrap();
    let failing = env.failing_checks().await;
    let named = orphan
        .violations
        .iter()
        .any(|v| v.subject == format!("event {again}"));
    assert!(
        !failing.is_empty() || named,
        "a double payout in the ledger passes every reconcile check"
    );
}

/// Sum of the session's `Handler_read%` counters (rows the server touched) on a one-connection pool.
async fn rows_read(db: &sqlx::MySqlPool) -> i64 {
    let rows: Vec<(String, String)> = sqlx::query_as("SHOW SESSION STATUS LIKE 'Handler_read%'")
        .fetch_all(db)
        .await
        .unwrap();
    rows.iter()
        .map(|(_, v)| v.parse::<i64>().unwrap_or(0))
        .sum()
}

/// Finding 3: records whose event the ledger never holds (it refused them: unknown payment, another
/// merchant's, amount mismatch) stay PENDING and due forever — nothing FAILs or expires them — and sort
/// first by `next_attempt_at`. Every `claim` (each poll, each wake-up of the dispatcher, and the gauges'
/// refresh) re-evaluates SETTLEABLE's correlated subqueries over all of them before it finds the one
/// record it can send: the worker's cost per claim grows without bound with history, and a ledger
/// backlog (thousands PENDING waiting for the ledger) makes every claim a full scan.
#[tokio::test]
async fn review2_f3_claim_work_grows_with_records_waiting_for_the_ledger() {
    let env = env().await;
    const STUCK: i64 = 20_000;
    sqlx::query(&format!(
        "INSERT INTO settlements (event_id, payment_id, merchant_id, type, amount, currency, status, attempts, \
         next_attempt_at, topic, kafka_partition, kafka_offset, payload, created_at, updated_at) \
         SELECT UNHEX(REPLACE(UUID(), '-', '')), UNHEX(REPLACE(UUID(), '-', '')), '{MERCHANT}', 'CAPTURE', 1000, \
         'KRW', 'PENDING', 0, UTC_TIMESTAMP(6) - INTERVAL 1 DAY, 't', 0, seq, '{{}}', \
         UTC_TIMESTAMP(6) - INTERVAL 1 DAY, UTC_TIMESTAMP(6) - INTERVAL 1 DAY FROM seq_1_to_{STUCK}"
    ))
    .execute(&env.db)
    .await
    .unwrap();
    // History: 50 000 captures booked in the ledger and long SETTLED (a few days of a live system).
    const HISTORY: i64 = 50_000;
    for sql in [
        format!("INSERT INTO payments (payment_id, merchant_id, status, amount, captured_amount, currency, created_at, updated_at) \
         SELECT UNHEX(LPAD(HEX(seq), 32, '0')), '{MERCHANT}', 'CAPTURED', 1000, 1000, 'KRW', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) \
         FROM seq_1_to_{HISTORY}"),
        format!("INSERT INTO ledger_entries (event_id, leg, payment_id, merchant_id, event_type, account, side, amount, currency, occurred_at) \
         SELECT UNHEX(CONCAT('AB', LPAD(HEX(seq), 30, '0'))), l.leg, UNHEX(LPAD(HEX(seq), 32, '0')), '{MERCHANT}', 'PAYMENT_CAPTURED', \
         IF(l.leg = 0, 'customer_receivable', 'merchant_payable'), IF(l.leg = 0, 'D', 'C'), 1000, 'KRW', UTC_TIMESTAMP(6) \
         FROM seq_1_to_{HISTORY} JOIN (SELECT 0 AS leg UNION ALL SELECT 1) l"),
        format!("INSERT INTO settlements (event_id, payment_id, merchant_id, type, amount, currency, status, attempts, \
         acquirer_reference, fee, net, settled_at, business_date, next_attempt_at, topic, kafka_partition, kafka_offset, \
         payload, created_at, updated_at) SELECT UNHEX(CONCAT('AB', LPAD(HEX(seq), 30, '0'))), UNHEX(LPAD(HEX(seq), 32, '0')), '{MERCHANT}', \
         'CAPTURE', 1000, 'KRW', 'SETTLED', 1, CONCAT('R', seq), 25, 975, UTC_TIMESTAMP(6), '2026-11-01', UTC_TIMESTAMP(6), \
         't', 0, seq, '{{}}', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) FROM seq_1_to_{HISTORY}"),
    ] {
        sqlx::query(&sql).execute(&env.db).await.unwrap();
    }
    let good = event(EventType::PaymentCaptured, PaymentId::new(), 5_000);
    env.book(std::slice::from_ref(&good)).await;
    for t in ["settlements", "ledger_entries", "payments"] {
        sqlx::query(&format!("ANALYZE TABLE {t}"))
            .execute(&env.db)
            .await
            .unwrap();
    }
    pending(&env, &good).await;

    let one = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(1)
        .connect(&env.db_url)
        .await
        .unwrap();
    // Each claim looks at a bounded batch of due records and puts back those that may not be sent: the
    // stuck ones are cleared a batch at a time and the good record is claimed after them.
    let mut claims = 0;
    let mut most = 0;
    let started = std::time::Instant::now();
    let claimed = loop {
        let before = rows_read(&one).await;
        let (claimed, _) = pay_settlement::store::claim(&one, 8, Duration::from_secs(30))
            .await
            .unwrap();
        most = most.max(rows_read(&one).await - before);
        claims += 1;
        if !claimed.is_empty() || claims > STUCK / 100 {
            break claimed;
        }
    };
    eprintln!(
        "{STUCK} records waiting for the ledger: the good one claimed after {claims} claims, {:?}, at most {most} rows read by one",
        started.elapsed()
    );
    assert_eq!(claimed.len(), 1, "the one settleable record is claimed");
    assert!(claims <= STUCK / 512 + 2, "{claims} claims");
    assert!(most < 20_000, "one claim read {most} rows: it scans every record waiting for the ledger (and the history it joins)");
    // The stuck ones are put back for a while: the next claim finds nothing due and reads next to nothing.
    let before = rows_read(&one).await;
    let (again, _) = pay_settlement::store::claim(&one, 8, Duration::from_secs(30))
        .await
        .unwrap();
    let read = rows_read(&one).await - before;
    assert!(again.is_empty());
    assert!(read < 100, "a claim with nothing due read {read} rows");
    let waiting: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM settlements WHERE status = 'PENDING' AND next_attempt_at > UTC_TIMESTAMP(6) \
         AND last_error = ?",
    )
    .bind(pay_settlement::store::WAITING)
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert_eq!(waiting, STUCK, "every stuck record put back, saying why");
}
