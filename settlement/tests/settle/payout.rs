//! Payouts (`payctl settle`) and reconcile's settlement checks, on settlements written straight to the
//! database as the worker leaves them (the acquirer is not needed to close a date).

use crate::helpers::{env, event, Env, MERCHANT};
use pay_settlement::payout::{self, Payout};
use payctl_domain::{EventType, PaymentEvent, PaymentId};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::time::Duration;
use time::macros::date;
use time::Date;

const ZONE: &str = "Asia/Seoul";

/// A settlement the acquirer settled on `date` with `fee`, as the worker records it.
async fn settled(env: &Env, e: &PaymentEvent, date: Date, fee: i64) {
    let kind = match e.event_type {
        EventType::PaymentRefunded => "REFUND",
        _ => "CAPTURE",
    };
    sqlx::query(
        "INSERT INTO settlements (event_id, payment_id, merchant_id, type, amount, currency, status, attempts, \
         acquirer_reference, fee, net, settled_at, business_date, next_attempt_at, topic, kafka_partition, \
         kafka_offset, payload, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'SETTLED', 1, ?, ?, ?, \
         UTC_TIMESTAMP(6), ?, UTC_TIMESTAMP(6), 't', 0, 0, '{}', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))",
    )
    .bind(e.event_id.as_uuid())
    .bind(e.payment_id.as_uuid())
    .bind(&e.merchant_id)
    .bind(kind)
    .bind(e.amount)
    .bind(&e.currency)
    .bind(format!("ACQ-{}", e.event_id))
    .bind(fee)
    .bind(e.amount - fee)
    .bind(date)
    .execute(&env.db)
    .await
    .unwrap();
}

fn for_merchant(
    kind: EventType,
    payment: PaymentId,
    amount: i64,
    merchant: &str,
    currency: &str,
) -> PaymentEvent {
    let mut e = event(kind, payment, amount);
    e.merchant_id = merchant.into();
    e.currency = currency.into();
    e
}

fn find<'a>(payouts: &'a [Payout], merchant: &str, currency: &str) -> &'a Payout {
    payouts
        .iter()
        .find(|p| p.merchant_id == merchant && p.currency == currency)
        .unwrap_or_else(|| panic!("no payout for {merchant} {currency}: {payouts:#?}"))
}

#[tokio::test]
async fn settle_pays_each_merchant_and_currency_its_net_once_and_the_books_reconcile() {
    let env = env().await;
    let d = date!(2026 - 12 - 04);
    let (p1, p2, p3, p4) = (
        PaymentId::new(),
        PaymentId::new(),
        PaymentId::new(),
        PaymentId::new(),
    );
    let c1 = for_merchant(EventType::PaymentCaptured, p1, 10_000, MERCHANT, "KRW");
    let r1 = for_merchant(EventType::PaymentRefunded, p1, 4_000, MERCHANT, "KRW");
    let c2 = for_merchant(EventType::PaymentCaptured, p2, 7_001, MERCHANT, "KRW");
    let c3 = for_merchant(EventType::PaymentCaptured, p3, 1_999, MERCHANT, "USD");
    let c4 = for_merchant(EventType::PaymentCaptured, p4, 50_000, "M-OTHER", "KRW");
    let all = [c1.clone(), r1.clone(), c2.clone(), c3.clone(), c4.clone()];
    env.book(&all).await;
    settled(&env, &c1, d, 250).await;
    settled(&env, &r1, d, 0).await;
    settled(&env, &c2, d, 175).await;
    settled(&env, &c3, d, 50).await;
    settled(&env, &c4, d, 1_250).await;
    // Another date's settlement is not this date's payout.
    let other_day = for_merchant(
        EventType::PaymentCaptured,
        PaymentId::new(),
        3_000,
        MERCHANT,
        "KRW",
    );
    env.book(std::slice::from_ref(&other_day)).await;
    settled(&env, &other_day, date!(2026 - 12 - 05), 75).await;

    let made = payout::settle(&env.db, d, ZONE).await.unwrap();
    assert_eq!(made.len(), 3, "{made:#?}");
    let krw = find(&made, MERCHANT, "KRW");
    assert_eq!(
        (
            krw.captures,
            krw.refunds,
            krw.gross_captured,
            krw.gross_refunded,
            krw.fees,
            krw.net,
            krw.seq
        ),
        (2, 1, 17_001, 4_000, 425, 17_001 - 4_000 - 425, 1)
    );
    let usd = find(&made, MERCHANT, "USD");
    assert_eq!((usd.captures, usd.net, usd.fees), (1, 1_949, 50));
    let other = find(&made, "M-OTHER", "KRW");
    assert_eq!((other.captures, other.net), (1, 48_750));
    assert!(made
        .iter()
        .all(|p| p.business_date == d && p.time_zone == ZONE));

    // Again: nothing.
    assert!(payout::settle(&env.db, d, ZONE).await.unwrap().is_empty());
    assert_eq!(payout::payouts_of(&env.db, d).await.unwrap().len(), 3);
    assert_eq!(
        env.count("SELECT COUNT(*) FROM settlements WHERE payout_id IS NULL")
            .await,
        1,
        "only the other date's settlement is unpaid"
    );
    // The ledger: payouts credit the nets, fees the fees; payable and receivable of paid payments are 0.
    let paid: i64 = env
        .count(
            "SELECT CAST(SUM(IF(side = 'C', amount, -amount)) AS SIGNED) FROM ledger_entries \
             WHERE event_type = 'PAYOUT' AND account = 'payouts' AND currency = 'KRW'",
        )
        .await;
    assert_eq!(paid, krw.net + other.net);
    let payable: i64 = env
        .count(&format!(
            "SELECT CAST(SUM(IF(side = 'C', amount, -amount)) AS SIGNED) FROM ledger_entries \
             WHERE account IN ('merchant_payable', 'customer_receivable') AND payment_id = UNHEX(REPLACE('{p1}', '-', ''))"
        ))
        .await;
    assert_eq!(
        payable, 0,
        "payment {p1}: paid out, nothing payable or receivable"
    );
    assert_eq!(env.failing_checks().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_settlement_after_its_date_was_paid_out_is_the_next_payout_and_a_refund_only_day_pays_negative(
) {
    let env = env().await;
    let d = date!(2026 - 12 - 03);
    let p = PaymentId::new();
    let capture = event(EventType::PaymentCaptured, p, 9_000);
    let refund = event(EventType::PaymentRefunded, p, 9_000);
    env.book(&[capture.clone(), refund.clone()]).await;
    settled(&env, &capture, d, 225).await;
    let first = payout::settle(&env.db, d, ZONE).await.unwrap();
    assert_eq!((first.len(), first[0].seq, first[0].net), (1, 1, 8_775));
    // The refund settles the next day: that day's payout is negative (the merchant owes).
    let next = d.next_day().unwrap();
    settled(&env, &refund, next, 0).await;
    let second = payout::settle(&env.db, next, ZONE).await.unwrap();
    assert_eq!(
        (second.len(), second[0].net, second[0].refunds),
        (1, -9_000, 1)
    );
    // A late settlement of the first date: paid as that date's second payout, once.
    let late = event(EventType::PaymentCaptured, PaymentId::new(), 2_000);
    env.book(std::slice::from_ref(&late)).await;
    settled(&env, &late, d, 50).await;
    let third = payout::settle(&env.db, d, ZONE).await.unwrap();
    assert_eq!(
        (third.len(), third[0].seq, third[0].net, third[0].captures),
        (1, 2, 1_950, 1)
    );
    assert!(payout::settle(&env.db, d, ZONE).await.unwrap().is_empty());
    assert_eq!(env.failing_checks().await, Vec::<String>::new());
}

#[tokio::test]
async fn two_settles_at_once_make_one_payout() {
    let env = env().await;
    let d = date!(2026 - 12 - 02);
    let events: Vec<PaymentEvent> = (0..200)
        .map(|i| event(EventType::PaymentCaptured, PaymentId::new(), 1_000 + i))
        .collect();
    env.book(&events).await;
    for e in &events {
        settled(&env, e, d, 25).await;
    }
    let (a, b) = tokio::join!(
        payout::settle(&env.db, d, ZONE),
        payout::settle(&env.db, d, ZONE)
    );
    let made: Vec<Payout> = a.unwrap().into_iter().chain(b.unwrap()).collect();
    assert_eq!(made.len(), 1, "{made:#?}");
    assert_eq!(made[0].captures, 200);
    assert_eq!(env.count("SELECT COUNT(*) FROM payouts").await, 1);
    assert_eq!(env.failing_checks().await, Vec::<String>::new());
}

/// Reconcile sees a payout that does not add up, a settlement left out of its date's payout, and a
/// capture never settled; a capture FAILED and dead-lettered (and the refund held behind it) is explained.
#[tokio::test]
async fn reconcile_reports_payouts_that_do_not_add_up_and_captures_never_settled() {
    let env = env().await;
    let d = date!(2026 - 12 - 01);
    let paid = event(EventType::PaymentCaptured, PaymentId::new(), 5_000);
    env.book(std::slice::from_ref(&paid)).await;
    settled(&env, &paid, d, 125).await;
    let made = payout::settle(&env.db, d, ZONE).await.unwrap();
    assert_eq!(env.failing_checks().await, Vec::<String>::new());
    let left_out = event(EventType::PaymentCaptured, PaymentId::new(), 6_000);
    env.book(std::slice::from_ref(&left_out)).await;

    sqlx::query("UPDATE payouts SET net = net + 1, fees = fees - 1 WHERE payout_id = ?")
        .bind(made[0].payout_id)
        .execute(&env.db)
        .await
        .unwrap();
    settled(&env, &left_out, d, 150).await;
    sqlx::query(
        "UPDATE settlements SET updated_at = updated_at - INTERVAL 2 HOUR WHERE event_id = ?",
    )
    .bind(left_out.event_id.as_uuid())
    .execute(&env.db)
    .await
    .unwrap();
    let failing = env.failing_checks().await;
    assert!(
        failing.iter().any(
            |f| f.starts_with("every payout equals the net of what it covers")
                && f.contains("net 4876, its ledger legs pay out 4875")
        ),
        "{failing:#?}"
    );
    assert!(
        failing.iter().any(
            |f| f.starts_with("every settlement of a paid-out date is in a payout")
                && f.contains(&left_out.event_id.to_string())
        ),
        "{failing:#?}"
    );

    // Never settled: a capture in the ledger with no record, and one PENDING.
    let env = crate::helpers::env().await;
    let unread = event(EventType::PaymentCaptured, PaymentId::new(), 1_000);
    let failed = event(EventType::PaymentCaptured, PaymentId::new(), 2_000);
    let held = event(EventType::PaymentRefunded, failed.payment_id, 2_000);
    env.book(&[unread.clone(), failed.clone(), held.clone()])
        .await;
    let failing = env.failing_checks().await;
    assert!(
        failing.iter().any(
            |f| f.starts_with("every capture and refund is settled or explained")
                && f.contains("never read by the settlement worker")
        ),
        "{failing:#?}"
    );
    for (e, status, dead) in [
        (&failed, "FAILED", true),
        (&held, "PENDING", false),
        (&unread, "PENDING", false),
    ] {
        sqlx::query(
            "INSERT INTO settlements (event_id, payment_id, merchant_id, type, amount, currency, status, attempts, \
             next_attempt_at, topic, kafka_partition, kafka_offset, payload, dlq_published_at, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, 'KRW', ?, 3, UTC_TIMESTAMP(6), 't', 0, 0, '{}', IF(?, UTC_TIMESTAMP(6), NULL), \
             UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))",
        )
        .bind(e.event_id.as_uuid())
        .bind(e.payment_id.as_uuid())
        .bind(MERCHANT)
        .bind(if e.event_type == EventType::PaymentRefunded { "REFUND" } else { "CAPTURE" })
        .bind(e.amount)
        .bind(status)
        .bind(dead)
        .execute(&env.db)
        .await
        .unwrap();
    }
    let settlement = pay_settlement::invariants::check(&env.db, Duration::ZERO)
        .await
        .unwrap();
    let late: Vec<String> = settlement[0]
        .violations
        .iter()
        .map(|v| v.subject.clone())
        .collect();
    assert_eq!(
        late,
        vec![format!("event {}", unread.event_id)],
        "only the PENDING capture is late; the FAILED one is in the DLQ and its refund waits on it"
    );
    // Within the bound nothing is late yet.
    let settlement = pay_settlement::invariants::check(&env.db, Duration::from_secs(600))
        .await
        .unwrap();
    assert!(settlement[0].violations.is_empty());
}

/// Random days of settlements for a few merchants and currencies, closed in random order with random
/// repeats and settlements arriving between closes, against a model: every settlement is paid out exactly
/// once, in a payout of its own merchant, currency and date, and each payout's net is what it covers.
#[tokio::test]
async fn random_days_closed_in_random_order_pay_every_settlement_exactly_once() {
    let seed: u64 = std::env::var("PAYOUT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("seed {seed} (PAYOUT_SEED={seed} replays it)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let env = env().await;
    let days = [
        date!(2026 - 11 - 20),
        date!(2026 - 11 - 21),
        date!(2026 - 11 - 22),
    ];
    let merchants = [MERCHANT, "M-TWO", "m-two"];
    let currencies = ["KRW", "USD"];
    // Model: event id → (merchant, currency, date, signed net).
    let mut model: HashMap<String, (String, String, Date, i64)> = HashMap::new();
    for round in 0..6 {
        let mut batch = Vec::new();
        for _ in 0..rng.gen_range(0..15) {
            let merchant = merchants[rng.gen_range(0..merchants.len())];
            let currency = currencies[rng.gen_range(0..currencies.len())];
            let day = days[rng.gen_range(0..days.len())];
            let amount = rng.gen_range(1..100_000);
            let fee = amount * 25 / 1000;
            let capture = for_merchant(
                EventType::PaymentCaptured,
                PaymentId::new(),
                amount,
                merchant,
                currency,
            );
            batch.push((capture.clone(), day, fee));
            if rng.gen_bool(0.3) {
                let refund = for_merchant(
                    EventType::PaymentRefunded,
                    capture.payment_id,
                    rng.gen_range(1..=amount),
                    merchant,
                    currency,
                );
                let refund_day = days[rng.gen_range(0..days.len())];
                batch.push((refund, refund_day, 0));
            }
        }
        let events: Vec<PaymentEvent> = batch.iter().map(|(e, _, _)| e.clone()).collect();
        if !events.is_empty() {
            env.book(&events).await;
        }
        for (e, day, fee) in &batch {
            settled(&env, e, *day, *fee).await;
            let signed = if e.event_type == EventType::PaymentRefunded {
                -e.amount - fee
            } else {
                e.amount - fee
            };
            model.insert(
                e.event_id.to_string(),
                (e.merchant_id.clone(), e.currency.clone(), *day, signed),
            );
        }
        for _ in 0..rng.gen_range(1..4) {
            let day = days[rng.gen_range(0..days.len())];
            payout::settle(&env.db, day, ZONE)
                .await
                .unwrap_or_else(|e| panic!("seed {seed} round {round}: {e}"));
        }
    }
    for day in days {
        payout::settle(&env.db, day, ZONE).await.unwrap();
    }
    // Each settlement in exactly one payout, of its own merchant, currency and date.
    let rows: Vec<(uuid::Uuid, Option<uuid::Uuid>)> =
        sqlx::query_as("SELECT event_id, payout_id FROM settlements")
            .fetch_all(&env.db)
            .await
            .unwrap();
    assert_eq!(rows.len(), model.len(), "seed {seed}");
    let mut expected: HashMap<(String, String, Date), i64> = HashMap::new();
    for (event_id, payout_id) in &rows {
        assert!(payout_id.is_some(), "seed {seed}: {event_id} not paid out");
        let (m, c, d, net) = &model[&event_id.to_string()];
        *expected.entry((m.clone(), c.clone(), *d)).or_default() += net;
    }
    let mut actual: HashMap<(String, String, Date), i64> = HashMap::new();
    for day in days {
        for p in payout::payouts_of(&env.db, day).await.unwrap() {
            *actual
                .entry((p.merchant_id.clone(), p.currency.clone(), p.business_date))
                .or_default() += p.net;
        }
    }
    assert_eq!(actual, expected, "seed {seed}");
    assert_eq!(
        env.failing_checks().await,
        Vec::<String>::new(),
        "seed {seed}"
    );
}
