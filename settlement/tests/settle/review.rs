//! Adversarial review of the settlement worker: each test reproduces a finding (it failed against the code
//! reviewed) and now guards its fix.

use crate::helpers::{env, event, Env, MERCHANT};
use payctl_domain::{EventType, PaymentEvent, PaymentId};
use payctl_stack::testing::eventually;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(120);

async fn insert_payment(env: &Env, payment: PaymentId, amount: i64) {
    sqlx::query(
        "INSERT INTO payments (payment_id, merchant_id, status, amount, captured_amount, currency, created_at, updated_at) \
         VALUES (?, ?, 'CAPTURED', ?, ?, 'KRW', UTC_TIMESTAMP(6) - INTERVAL 1 MINUTE, UTC_TIMESTAMP(6) - INTERVAL 1 MINUTE)",
    )
    .bind(payment.as_uuid())
    .bind(MERCHANT)
    .bind(amount)
    .bind(amount)
    .execute(&env.db)
    .await
    .unwrap();
}

/// Our record's status for one event, if any.
async fn status(env: &Env, e: &PaymentEvent) -> Option<String> {
    sqlx::query_scalar("SELECT status FROM settlements WHERE event_id = ?")
        .bind(e.event_id.as_uuid())
        .fetch_optional(&env.db)
        .await
        .unwrap()
}

/// Waits up to `limit` for `cond`; returns whether it came true (never panics).
async fn within<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Finding 1: the worker settles whatever a capture/refund event says, without checking it against the
/// payment. The ledger consumer dead-letters events for an unknown payment or that contradict the
/// payment (MerchantMismatch, CurrencyMismatch, AmountMismatch) and posts nothing for them; the settlement
/// worker pays them out at the acquirer anyway — to the merchant the event names, for the amount it names.
#[tokio::test]
async fn review_f1_events_the_ledger_refuses_are_not_paid_out_at_the_acquirer() {
    let env = env().await;
    let payment = PaymentId::new();
    insert_payment(&env, payment, 5_000).await;
    let ledger = pay_consumer::startup::App::build(pay_consumer::config::Config::for_tests(
        &env.db_url,
        &env.bootstrap,
        &env.prefix,
    ))
    .await
    .unwrap();
    let ledger_stop = ledger.shutdown_token();
    let ledger_task = tokio::spawn(ledger.run());
    let worker = env.start(env.config()).await;

    let good = event(EventType::PaymentCaptured, payment, 5_000);
    let mut other_merchant = event(EventType::PaymentCaptured, payment, 5_000);
    other_merchant.merchant_id = "M-INTRUDER".into();
    let mut other_currency = event(EventType::PaymentCaptured, payment, 5_000);
    other_currency.currency = "USD".into();
    let too_much = event(EventType::PaymentCaptured, payment, 5_000_000);
    let unknown_payment = event(EventType::PaymentCaptured, PaymentId::new(), 7_000);
    let bad = [
        &other_merchant,
        &other_currency,
        &too_much,
        &unknown_payment,
    ];
    env.produce_all_unbooked(&[
        good.clone(),
        other_merchant.clone(),
        other_currency.clone(),
        too_much.clone(),
        unknown_payment.clone(),
    ])
    .await;

    eventually("the good capture SETTLED", LONG, || async {
        status(&env, &good).await.as_deref() == Some("SETTLED")
    })
    .await;
    // The ledger consumer has read all five: the good one's legs are posted, the four bad ones refused.
    eventually(
        "the ledger consumer dead-lettered the four",
        LONG,
        || async { env.dlq().await.len() >= 4 },
    )
    .await;
    let legs_of_bad: i64 = {
        let mut n = 0;
        for e in bad {
            n += env
                .count(&format!(
                    "SELECT COUNT(*) FROM ledger_entries WHERE event_id = UNHEX(REPLACE('{}', '-', ''))",
                    e.event_id
                ))
                .await;
        }
        n
    };
    assert_eq!(legs_of_bad, 0, "the ledger refused all four");
    // Give the worker time to do whatever it does with them.
    within(Duration::from_secs(10), || async {
        env.settled().await == 5
    })
    .await;
    let acquirer = env.acquirer_rows().await;
    let paid: Vec<String> = bad
        .iter()
        .filter(|e| acquirer.contains_key(&e.event_id.to_string()))
        .map(|e| {
            format!(
                "{} {} {} for payment {}",
                e.merchant_id, e.amount, e.currency, e.payment_id
            )
        })
        .collect();
    worker.stop().await;
    ledger_stop.cancel();
    let _ = ledger_task.await;
    assert!(
        paid.is_empty(),
        "the acquirer settled {} event(s) the ledger refused: {paid:?}",
        paid.len()
    );
}

/// Finding 2: a refund was settled with no regard to its capture. Here the capture FAILED for good (the
/// acquirer refuses it: its key was used for another amount), yet the refund of the same payment settled:
/// the merchant debited 5,000 at the acquirer that was never credited. (The same happens transiently
/// whenever the refund event is read before the capture — they are on different topics, so no order is
/// guaranteed.) Now a refund waits until the payment's settled captures cover it.
#[tokio::test]
async fn review_f2_a_refund_is_not_settled_before_its_capture() {
    let env = env().await;
    env.acquirer_settings("0", 0.0).await;
    let mut config = env.config();
    config.max_attempts = 1;
    let worker = env.start(config).await;
    let payment = PaymentId::new();
    let capture = event(EventType::PaymentCaptured, payment, 5_000);
    let refund = event(EventType::PaymentRefunded, payment, 5_000);

    // Someone settled another amount under the capture's key: the acquirer refuses the capture for good.
    let conflicting = pay_settlement::acquirer::SettlementRequest {
        kind: payctl_domain::settlement::SettlementType::Capture,
        merchant_id: payctl_domain::MerchantId::parse("merchant_id", MERCHANT).unwrap(),
        payment_id: payment,
        event_id: capture.event_id,
        amount: 4_999,
        currency: payctl_domain::Currency::parse("currency", "KRW").unwrap(),
    };
    let acquirer =
        pay_settlement::acquirer::HttpAcquirer::new(&env.acquirer.url, Duration::from_secs(10))
            .unwrap();
    use pay_settlement::acquirer::Acquirer as _;
    acquirer.settle(&conflicting).await.unwrap();
    env.produce_with(&capture, OwnedHeaders::new()).await;
    eventually("the capture FAILED", LONG, || async {
        status(&env, &capture).await.as_deref() == Some("FAILED")
    })
    .await;

    env.produce_with(&refund, OwnedHeaders::new()).await;
    let refund_settled = within(Duration::from_secs(15), || async {
        status(&env, &refund).await.as_deref() == Some("SETTLED")
    })
    .await;
    let acquirer = env.acquirer_rows().await;
    let refund_status = status(&env, &refund).await;
    worker.stop().await;
    assert_eq!(
        refund_status.as_deref(),
        Some("PENDING"),
        "the refund is recorded and waits for its capture"
    );
    assert!(
        !(refund_settled || acquirer.contains_key(&refund.event_id.to_string())),
        "refund {} of 5000 SETTLED at the acquirer while its capture {} is FAILED and was never settled",
        refund.event_id,
        capture.event_id
    );
}

/// Finding 3: when the acquirer settles but answers 503 (its "after commit" failure: the money moved, the
/// answer was lost) on every attempt, the worker marks the settlement FAILED and dead-letters it — though
/// the acquirer holds a settlement for it. It never asks the acquirer (`GET /v1/settlements?eventId=`,
/// documented as "the worker's recovery") before giving up, so our records say "not paid" for money that
/// was paid; anyone acting on the DLQ record other than by a replay (e.g. paying manually) pays twice.
#[tokio::test]
async fn review_f3_a_settlement_the_acquirer_made_is_not_recorded_failed() {
    let env = env().await;
    env.acquirer_settings("0", 1.0).await;
    let mut config = env.config();
    config.max_attempts = 2;
    let worker = env.start(config).await;
    // Captures only: a refund waits for its capture to settle, and here every call fails.
    let events: Vec<PaymentEvent> = (0..6)
        .map(|i| event(EventType::PaymentCaptured, PaymentId::new(), 1_000 + i))
        .collect();
    env.produce_all(&events).await;
    // Every call fails, so each ends FAILED and dead-lettered, or SETTLED when the acquirer holds it.
    eventually("all six FAILED and dead-lettered, or SETTLED", LONG, || async {
        env.count(
            "SELECT COUNT(*) FROM settlements WHERE (status = 'FAILED' AND dlq_published_at IS NOT NULL) \
             OR status = 'SETTLED'",
        )
        .await
            == 6
    })
    .await;
    let acquirer = env.acquirer_rows().await;
    let records = env.records().await;
    worker.stop().await;
    assert!(
        events
            .iter()
            .any(|e| acquirer.contains_key(&e.event_id.to_string())),
        "the acquirer settled none of them (no failure after commit): nothing was tested"
    );
    // What the acquirer settled is SETTLED with its reference, fee and net; the rest it never settled.
    for e in &events {
        let id = e.event_id.to_string();
        if let Some((count, reference, fee, net)) = acquirer.get(&id) {
            assert_eq!(*count, 1, "{id} settled {count} times");
            let r = &records[&id];
            assert_eq!(r.status, "SETTLED", "{id}: {r:?}");
            assert_eq!(r.reference.as_deref(), Some(reference.as_str()), "{id}");
            assert_eq!((r.fee, r.net), (Some(*fee), Some(*net)), "{id}");
        }
    }
    let contradicted: Vec<String> = events
        .iter()
        .map(|e| e.event_id.to_string())
        .filter(|id| acquirer.contains_key(id) && records[id].status != "SETTLED")
        .map(|id| format!("{id} (acquirer reference {})", acquirer[&id].1))
        .collect();
    assert!(
        contradicted.is_empty(),
        "{} settlement(s) recorded FAILED and sent to the DLQ although the acquirer settled them: {contradicted:?}",
        contradicted.len()
    );
}

/// Finding 4: an event the settlements table refuses for its data is skipped for good: counted in
/// `settlement_unparseable_messages_total`, its offset stored, no record, no DLQ record. A capture the
/// ledger posted (the ledger does not store the Kafka key) is then never settled. Here: a Kafka key longer
/// than `kafka_key VARCHAR(255)` — a column that only exists for the DLQ record.
#[tokio::test]
async fn review_f4_a_valid_capture_is_never_skipped_for_a_bookkeeping_column() {
    let env = env().await;
    let worker = env.start(env.config()).await;
    let capture = event(EventType::PaymentCaptured, PaymentId::new(), 4_000);
    let long_key = "k".repeat(300);
    let topic = format!("{}payment.captured", env.prefix);
    let payload = serde_json::to_vec(&capture).unwrap();
    env.producer
        .send(
            FutureRecord::to(&topic).key(&long_key).payload(&payload),
            Timeout::After(Duration::from_secs(10)),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let control = event(EventType::PaymentCaptured, PaymentId::new(), 4_100);
    env.produce_with(&control, OwnedHeaders::new()).await;
    eventually("the control SETTLED and the capture read", LONG, || async {
        status(&env, &control).await.as_deref() == Some("SETTLED")
            && (status(&env, &capture).await.is_some()
                || worker.metric("settlement_unparseable_messages_total") >= 1.0)
    })
    .await;
    let st = status(&env, &capture).await;
    let skipped = worker.metric("settlement_unparseable_messages_total");
    worker.stop().await;
    assert!(
        st.is_some(),
        "capture {} (a valid event, key of 300 bytes) has no settlement record; skipped ({skipped} counted as unparseable), offset stored, nothing in the DLQ",
        capture.event_id
    );
}
