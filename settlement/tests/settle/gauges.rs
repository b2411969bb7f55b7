//! The payout gauges: what `payctl settle` paid out per currency, and the SETTLED records of a day that
//! is over that no payout covers yet.

use crate::helpers::{env, Env, MERCHANT};
use payctl_domain::settlement::{business_date, parse_time_zone};
use payctl_stack::testing::eventually;
use std::time::Duration;
use uuid::Uuid;

const LONG: Duration = Duration::from_secs(60);

/// A SETTLED record of `date`, paid out by `payout` (with its PAYOUT event) or not.
async fn insert_settled(env: &Env, date: time::Date, payout: Option<Uuid>) {
    sqlx::query(
        "INSERT INTO settlements (event_id, payment_id, merchant_id, type, amount, currency, status, \
         acquirer_reference, fee, net, settled_at, business_date, payout_id, payout_event_id, \
         next_attempt_at, topic, kafka_partition, kafka_offset, payload, created_at, updated_at) \
         VALUES (?, ?, ?, 'CAPTURE', 10000, 'KRW', 'SETTLED', ?, 250, 9750, UTC_TIMESTAMP(6), ?, ?, ?, \
         UTC_TIMESTAMP(6), 'payment.captured', 0, 0, '{}', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))",
    )
    .bind(Uuid::now_v7())
    .bind(Uuid::now_v7())
    .bind(MERCHANT)
    .bind(format!("ACQ-{}", Uuid::now_v7().simple()))
    .bind(date)
    .bind(payout)
    .bind(payout.map(|_| Uuid::now_v7()))
    .execute(&env.db)
    .await
    .unwrap();
}

async fn insert_payout(env: &Env, currency: &str, date: time::Date, net: i64) -> Uuid {
    let id = Uuid::now_v7();
    let gross = net.max(0) + 250;
    let refunded = gross - 250 - net;
    sqlx::query(
        "INSERT INTO payouts (payout_id, merchant_id, currency, business_date, seq, captures, refunds, \
         gross_captured, gross_refunded, fees, net, time_zone, created_at) \
         VALUES (?, ?, ?, ?, 1, 1, 0, ?, ?, 250, ?, 'Asia/Seoul', UTC_TIMESTAMP(6))",
    )
    .bind(id)
    .bind(MERCHANT)
    .bind(currency)
    .bind(date)
    .bind(gross)
    .bind(refunded)
    .bind(net)
    .execute(&env.db)
    .await
    .unwrap();
    id
}

#[tokio::test]
async fn payout_gauges_count_payouts_by_currency_and_yesterdays_settled_records_not_paid_out() {
    let env = env().await;
    let seoul = parse_time_zone("Asia/Seoul").unwrap();
    let today = business_date(time::OffsetDateTime::now_utc(), &seoul);
    let yesterday = today.previous_day().unwrap();
    let paid = insert_payout(&env, "KRW", yesterday, 9750).await;
    insert_payout(&env, "KRW", yesterday.previous_day().unwrap(), 100).await;
    insert_payout(&env, "USD", yesterday, -30).await;
    // Counted: settled yesterday, no payout. Not counted: paid out, or of today (not closed yet).
    insert_settled(&env, yesterday, None).await;
    insert_settled(&env, yesterday, Some(paid)).await;
    insert_settled(&env, today, None).await;
    let worker = env.start(env.config()).await;
    eventually("the payout gauges are read", LONG, || async {
        worker.sample("settlement_payouts{currency=\"KRW\"}") == 2.0
    })
    .await;
    assert_eq!(worker.sample("settlement_payouts{currency=\"USD\"}"), 1.0);
    assert_eq!(
        worker.sample("settlement_payout_net{currency=\"KRW\"}"),
        9850.0
    );
    assert_eq!(
        worker.sample("settlement_payout_net{currency=\"USD\"}"),
        -30.0
    );
    assert_eq!(worker.sample("settlement_unpaid_settled_records"), 1.0);

    // `payctl settle` pays yesterday's record out: nothing unpaid is left.
    sqlx::query(
        "UPDATE settlements SET payout_id = ?, payout_event_id = ? \
         WHERE payout_id IS NULL AND business_date = ?",
    )
    .bind(paid)
    .bind(Uuid::now_v7())
    .bind(yesterday)
    .execute(&env.db)
    .await
    .unwrap();
    eventually("no unpaid settled record", LONG, || async {
        worker.sample("settlement_unpaid_settled_records") == 0.0
    })
    .await;
    worker.stop().await;
}
