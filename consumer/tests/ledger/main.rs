//! Integration tests of pay-consumer against real tansu and MariaDB.

mod helpers;

use helpers::{blocking, dedicated, env, event, MERCHANT};
use pay_consumer::invariants;
use payctl_domain::ledger::{
    AUTHORIZATION_HOLD, AUTHORIZATION_HOLD_OFFSET, CUSTOMER_RECEIVABLE, MERCHANT_PAYABLE,
};
use payctl_domain::{EventType, PaymentStatus};
use payctl_stack::process::Supervised;
use payctl_stack::Lifetime;
use std::time::Duration;

type LegRow = (String, String, String, i64);

async fn legs_of(env: &helpers::Env, e: &payctl_domain::PaymentEvent) -> Vec<LegRow> {
    sqlx::query_as("SELECT event_type, account, side, amount FROM ledger_entries WHERE event_id = ? ORDER BY leg")
        .bind(e.event_id.as_uuid())
        .fetch_all(&env.db)
        .await
        .unwrap()
}

fn row(t: &str, account: &str, side: &str, amount: i64) -> LegRow {
    (t.into(), account.into(), side.into(), amount)
}

#[tokio::test]
async fn each_event_type_posts_its_balanced_legs_and_the_invariants_hold() {
    let env = env().await;
    let consumer = env.start_consumer().await;
    let paid = env
        .payment(1000, 1000, 300, PaymentStatus::PartiallyRefunded)
        .await;
    let voided = env.payment(500, 0, 0, PaymentStatus::Voided).await;
    let events = [
        event(EventType::PaymentAuthorized, paid, 1000),
        event(EventType::PaymentCaptured, paid, 1000),
        event(EventType::PaymentRefunded, paid, 300),
        event(EventType::PaymentAuthorized, voided, 500),
        event(EventType::PaymentVoided, voided, 500),
    ];
    for e in &events {
        env.outbox(e).await;
        env.produce(e).await;
    }
    env.eventually("12 legs", Duration::from_secs(60), || async {
        env.legs().await == 12
    })
    .await;

    assert_eq!(
        legs_of(&env, &events[0]).await,
        vec![
            row("PAYMENT_AUTHORIZED", AUTHORIZATION_HOLD, "D", 1000),
            row("PAYMENT_AUTHORIZED", AUTHORIZATION_HOLD_OFFSET, "C", 1000)
        ]
    );
    assert_eq!(
        legs_of(&env, &events[1]).await,
        vec![
            row("PAYMENT_CAPTURED", AUTHORIZATION_HOLD_OFFSET, "D", 1000),
            row("PAYMENT_CAPTURED", AUTHORIZATION_HOLD, "C", 1000),
            row("PAYMENT_CAPTURED", CUSTOMER_RECEIVABLE, "D", 1000),
            row("PAYMENT_CAPTURED", MERCHANT_PAYABLE, "C", 1000),
        ]
    );
    assert_eq!(
        legs_of(&env, &events[2]).await,
        vec![
            row("PAYMENT_REFUNDED", MERCHANT_PAYABLE, "D", 300),
            row("PAYMENT_REFUNDED", CUSTOMER_RECEIVABLE, "C", 300)
        ]
    );
    assert_eq!(
        legs_of(&env, &events[4]).await,
        vec![
            row("PAYMENT_VOIDED", AUTHORIZATION_HOLD_OFFSET, "D", 500),
            row("PAYMENT_VOIDED", AUTHORIZATION_HOLD, "C", 500)
        ]
    );
    let (debits, credits): (i64, i64) = sqlx::query_as(
        "SELECT CAST(SUM(IF(side='D', amount, 0)) AS SIGNED), CAST(SUM(IF(side='C', amount, 0)) AS SIGNED) FROM ledger_entries WHERE currency = 'KRW'",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert_eq!(debits, credits);
    let report = invariants::check(&env.db, Duration::ZERO).await.unwrap();
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(consumer.metric("ledger_legs_written_total"), 12.0);
    let http = reqwest::Client::new();
    let ready = http
        .get(format!("{}/ready", consumer.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(
        http.get(format!("{}/health", consumer.address))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let metrics = http
        .get(format!("{}/metrics", consumer.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "consumer_events_consumed_total",
        "ledger_legs_written_total",
        "ledger_lag_seconds",
        "consumer_batch_processing_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "metrics lack {name}");
    }
    consumer.stop().await;
}

#[tokio::test]
async fn the_same_event_delivered_three_times_is_written_once() {
    let env = env().await;
    let consumer = env.start_consumer().await;
    let p = env.payment(800, 800, 0, PaymentStatus::Captured).await;
    let captured = event(EventType::PaymentCaptured, p, 800);
    for _ in 0..3 {
        env.produce(&captured).await;
    }
    // Once a later event for the same payment (same key, same partition, so after them) is in, all
    // three copies have been processed.
    let marker = event(EventType::PaymentAuthorized, p, 800);
    env.produce_raw(
        "payment.captured",
        &p.to_string(),
        &serde_json::to_vec(&captured).unwrap(),
    )
    .await;
    env.produce(&marker).await;
    env.eventually("marker applied", Duration::from_secs(60), || async {
        !legs_of(&env, &marker).await.is_empty()
    })
    .await;
    env.eventually(
        "all four copies consumed",
        Duration::from_secs(30),
        || async { consumer.metric("consumer_events_consumed_total") >= 5.0 },
    )
    .await;
    assert_eq!(
        legs_of(&env, &captured).await.len(),
        4,
        "the captured event's legs exist once"
    );
    assert_eq!(env.legs().await, 6);
    assert!(consumer.metric("consumer_duplicate_events_total") >= 3.0);
    consumer.stop().await;
}

#[tokio::test]
async fn poison_messages_go_to_the_dlq_with_their_metadata_and_the_consumer_goes_on() {
    let env = env().await;
    let consumer = env.start_consumer().await;
    let p = env.payment(1000, 0, 0, PaymentStatus::Authorized).await;
    env.produce_raw("payment.captured", "k-json", b"{not json")
        .await;
    env.produce_raw(
        "payment.authorized",
        "k-type",
        br#"{"eventType":"PAYMENT_TELEPORTED","schemaVersion":1}"#,
    )
    .await;
    let ghost = event(
        EventType::PaymentCaptured,
        payctl_domain::PaymentId::new(),
        10,
    );
    env.produce(&ghost).await;
    let good = event(EventType::PaymentAuthorized, p, 1000);
    env.produce(&good).await;

    env.eventually(
        "the good event applied",
        Duration::from_secs(60),
        || async { !legs_of(&env, &good).await.is_empty() },
    )
    .await;
    env.eventually("three DLQ records", Duration::from_secs(30), || async {
        env.dlq().await.len() >= 3
    })
    .await;
    let dlq = env.dlq().await;
    assert_eq!(dlq.len(), 3, "{dlq:#?}");
    let (bootstrap, topic) = (env.bootstrap.clone(), format!("{}payment.dlq", env.prefix));
    let held = blocking(move || {
        pay_consumer::topics::records_held(&bootstrap, &topic, Duration::from_secs(10)).unwrap()
    })
    .await;
    assert_eq!(held, 3, "the broker holds what was dead-lettered");
    let by_type = |t: &str| {
        dlq.iter()
            .find(|r| r["errorType"] == t)
            .unwrap_or_else(|| panic!("no {t} in {dlq:#?}"))
    };
    let invalid = by_type("InvalidJson");
    assert_eq!(
        invalid["originalTopic"],
        format!("{}payment.captured", env.prefix)
    );
    assert_eq!(invalid["key"], "k-json");
    assert_eq!(invalid["payload"], "{not json");
    for r in &dlq {
        for field in [
            "originalTopic",
            "partition",
            "offset",
            "key",
            "payload",
            "errorType",
            "errorMessage",
            "timestamp",
            "attempts",
        ] {
            assert!(!r[field].is_null(), "DLQ record lacks {field}: {r}");
        }
    }
    by_type("UnknownEventType");
    let unknown = by_type("UnknownPayment");
    assert_eq!(unknown["key"], ghost.payment_id.to_string());
    assert_eq!(env.legs().await, 2, "nothing from the poison messages");
    assert!(consumer.metric("consumer_dlq_sent_total") >= 3.0);
    consumer.stop().await;
}

#[tokio::test]
async fn database_down_for_ten_seconds_while_1000_events_arrive_loses_and_dead_letters_nothing() {
    let (env, mut services) = dedicated().await;
    let ids = env.payments(1000, 5000).await;
    let consumer = env.start_consumer().await;
    services = blocking(move || {
        services.mariadb.stop().unwrap();
        services
    })
    .await;
    let events: Vec<_> = ids
        .iter()
        .map(|id| event(EventType::PaymentAuthorized, *id, 5000))
        .collect();
    env.produce_all(&events).await;
    // The outage itself is the scenario: the database stays away for ten seconds.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let _services = blocking(move || {
        services.mariadb.start().unwrap();
        services
    })
    .await;
    let back = std::time::Instant::now();
    env.eventually("every event applied", Duration::from_secs(120), || async {
        env.legs().await == 2000
    })
    .await;
    eprintln!(
        "after the database returned, the 1000 held events were applied within {:?}",
        back.elapsed()
    );
    assert_eq!(
        env.count("SELECT COUNT(DISTINCT event_id) FROM ledger_entries")
            .await,
        1000
    );
    assert!(
        consumer.metric("consumer_retries_total") >= 1.0,
        "the outage was retried"
    );
    assert_eq!(consumer.metric("consumer_dlq_sent_total"), 0.0);
    assert!(
        env.dlq().await.is_empty(),
        "transient failures never reach the DLQ"
    );
    consumer.stop().await;
}

#[tokio::test]
async fn kill_minus_nine_in_the_middle_of_5000_events_then_restart_matches_the_events_exactly() {
    let env = env().await;
    let ids = env.payments(5000, 100).await;
    let events: Vec<_> = ids
        .iter()
        .map(|id| event(EventType::PaymentAuthorized, *id, 100))
        .collect();
    env.produce_all(&events).await;

    let start = |name: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pay-consumer"));
        cmd.env("APP_DATABASE_URL", &env.db_url)
            .env("KAFKA_BOOTSTRAP_SERVERS", &env.bootstrap)
            .env("APP_KAFKA_TOPIC_PREFIX", &env.prefix)
            .env("APP_CONSUMER_GROUP", format!("{}crash", env.prefix))
            .env("APP_CONSUMER_BATCH_SIZE", "50")
            .env("APP_CONSUMER_INSTANCE_ID", "ledger-1")
            .env(
                "APP_KAFKA_DEBUG",
                std::env::var("TEST_KAFKA_DEBUG").unwrap_or_default(),
            )
            .env(
                "RUST_LOG",
                std::env::var("TEST_CONSUMER_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("APP_LISTEN", "127.0.0.1:0");
        let log = helpers::root().join(format!("{}{name}.log", env.prefix));
        Supervised::spawn(name, cmd, &log, Lifetime::TiedToThisProcess).unwrap()
    };
    let mut first = start("consumer-1");
    env.eventually(
        "part of the events applied",
        Duration::from_secs(120),
        || async { env.legs().await >= 1000 },
    )
    .await;
    blocking(move || first.kill().unwrap()).await;
    let at_kill = env.legs().await;
    assert!(
        at_kill < 10_000,
        "the consumer was killed in the middle ({at_kill} legs)"
    );

    let mut second = start("consumer-2");
    let restarted = std::time::Instant::now();
    env.eventually(
        "every event applied after the restart",
        Duration::from_secs(180),
        || async { env.legs().await >= 10_000 },
    )
    .await;
    assert_eq!(env.legs().await, 10_000);
    assert_eq!(
        env.count("SELECT COUNT(*) FROM (SELECT event_id FROM ledger_entries GROUP BY event_id HAVING COUNT(*) <> 2) x").await,
        0
    );
    assert_eq!(
        env.count("SELECT COUNT(DISTINCT payment_id) FROM ledger_entries")
            .await,
        5000
    );
    let applied = (10_000 - at_kill) / 2;
    let took = restarted.elapsed();
    eprintln!(
        "kill -9 after {at_kill} legs; the restarted consumer (batch 50, debug build) applied the remaining {applied} events in {took:?} ({:.0} events/s incl. group join)",
        applied as f64 / took.as_secs_f64()
    );
    blocking(move || second.stop(Duration::from_secs(10)).unwrap()).await;
}

#[tokio::test]
async fn the_invariants_report_a_corrupted_ledger_row() {
    let env = env().await;
    let consumer = env.start_consumer().await;
    let p = env.payment(1000, 1000, 0, PaymentStatus::Captured).await;
    let events = [
        event(EventType::PaymentAuthorized, p, 1000),
        event(EventType::PaymentCaptured, p, 1000),
    ];
    for e in &events {
        env.outbox(e).await;
        env.produce(e).await;
    }
    env.eventually("6 legs", Duration::from_secs(60), || async {
        env.legs().await == 6
    })
    .await;
    consumer.stop().await;
    assert!(invariants::check(&env.db, Duration::ZERO)
        .await
        .unwrap()
        .is_clean());

    sqlx::query("UPDATE ledger_entries SET amount = amount + 1 WHERE account = ? LIMIT 1")
        .bind(MERCHANT_PAYABLE)
        .execute(&env.db)
        .await
        .unwrap();
    let report = invariants::check(&env.db, Duration::ZERO).await.unwrap();
    assert!(!report.is_clean());
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| !c.violations.is_empty())
        .map(|c| c.name)
        .collect();
    for expected in [
        "debits equal credits in every currency",
        "every event's legs balance",
        "ledger net equals captured − refunded for every payment",
    ] {
        assert!(
            failed.contains(&expected),
            "{expected} should fail: {report:#?}"
        );
    }
    // A missing event's legs are caught too.
    sqlx::query("DELETE FROM ledger_entries WHERE event_type = 'PAYMENT_AUTHORIZED'")
        .execute(&env.db)
        .await
        .unwrap();
    let report = invariants::check(&env.db, Duration::ZERO).await.unwrap();
    assert!(report.checks.iter().any(|c| c.name
        == "every published event has exactly its ledger legs"
        && !c.violations.is_empty()));
    let _ = MERCHANT;
}

#[tokio::test]
async fn a_graceful_stop_commits_offsets_so_the_next_consumer_resumes_without_redelivery() {
    let env = env().await;
    let first_ids = env.payments(10, 100).await;
    let first: Vec<_> = first_ids
        .iter()
        .map(|id| event(EventType::PaymentAuthorized, *id, 100))
        .collect();
    env.produce_all(&first).await;
    let consumer = env.start_consumer().await;
    env.eventually("first 10 applied", Duration::from_secs(60), || async {
        env.legs().await == 20
    })
    .await;
    consumer.stop().await;
    // The broker's own account of the group (what `payctl top` shows): nothing behind once it stopped,
    // then exactly what arrives while no member reads.
    let lag = || {
        let (bootstrap, config) = (env.bootstrap.clone(), env.config());
        blocking(move || {
            pay_consumer::topics::group_lag(
                &bootstrap,
                &config.group_id,
                &config.event_topics(),
                Duration::from_secs(10),
            )
            .unwrap()
            .iter()
            .map(|(_, lag)| lag)
            .sum::<i64>()
        })
    };
    assert_eq!(lag().await, 0);

    let second_ids = env.payments(10, 100).await;
    let second: Vec<_> = second_ids
        .iter()
        .map(|id| event(EventType::PaymentAuthorized, *id, 100))
        .collect();
    env.produce_all(&second).await;
    assert_eq!(lag().await, 10);
    let consumer = env.start_consumer().await;
    env.eventually("next 10 applied", Duration::from_secs(60), || async {
        env.legs().await == 40
    })
    .await;
    assert_eq!(
        consumer.metric("consumer_duplicate_events_total"),
        0.0,
        "the first consumer committed its offsets when it stopped, so nothing was read twice"
    );
    assert_eq!(consumer.metric("consumer_events_consumed_total"), 10.0);
    consumer.stop().await;
    assert_eq!(lag().await, 0);
}

#[tokio::test]
async fn a_dead_lettered_event_whose_cause_is_fixed_is_reported_until_it_is_replayed() {
    let env = env().await;
    let consumer = env.start_consumer().await;
    let early = payctl_domain::PaymentId::new();
    let e = event(EventType::PaymentAuthorized, early, 500);
    env.produce(&e).await; // its payment does not exist (yet)
    env.eventually("dead-lettered", Duration::from_secs(60), || async {
        env.dlq().await.len() == 1
    })
    .await;
    let records: Vec<(String, serde_json::Value)> = env
        .dlq()
        .await
        .into_iter()
        .map(|v| ("0:0".to_owned(), v))
        .collect();
    let check = invariants::dlq_check(&env.db, &records).await.unwrap();
    assert!(
        check.violations.is_empty(),
        "an unknown payment is explained: {check:?}"
    );

    // The cause is fixed: the payment now exists. The DLQ record is no longer explained.
    env.payment_with_id(early, 500, 0, 0, PaymentStatus::Authorized)
        .await;
    let check = invariants::dlq_check(&env.db, &records).await.unwrap();
    assert_eq!(check.violations.len(), 1, "{check:?}");
    assert!(check.violations[0].detail.contains("replay"));

    // Replayed to its original topic, it applies, and the DLQ is explained again.
    let record = &records[0].1;
    let topic = record["originalTopic"]
        .as_str()
        .unwrap()
        .strip_prefix(&env.prefix)
        .unwrap()
        .to_owned();
    env.produce_raw(
        &topic,
        record["key"].as_str().unwrap(),
        record["payload"].as_str().unwrap().as_bytes(),
    )
    .await;
    env.eventually(
        "replayed event applied",
        Duration::from_secs(60),
        || async { legs_of(&env, &e).await.len() == 2 },
    )
    .await;
    assert!(invariants::dlq_check(&env.db, &records)
        .await
        .unwrap()
        .violations
        .is_empty());
    consumer.stop().await;
}

#[tokio::test]
async fn a_void_after_a_partial_capture_releases_the_rest_of_the_hold() {
    let env = env().await;
    let consumer = env.start_consumer().await;
    let p = env
        .payment(1000, 600, 100, PaymentStatus::PartiallyRefunded)
        .await;
    sqlx::query("UPDATE payments SET voided_amount = 400 WHERE payment_id = ?")
        .bind(p.as_uuid())
        .execute(&env.db)
        .await
        .unwrap();
    let events = [
        event(EventType::PaymentAuthorized, p, 1000),
        event(EventType::PaymentCaptured, p, 600),
        event(EventType::PaymentRefunded, p, 100),
        event(EventType::PaymentVoided, p, 400),
    ];
    for e in &events {
        env.outbox(e).await;
        env.produce(e).await;
    }
    env.eventually("10 legs", Duration::from_secs(60), || async {
        env.legs().await == 10
    })
    .await;
    consumer.stop().await;
    let hold: i64 = sqlx::query_scalar(
        "SELECT CAST(SUM(IF(side = 'D', amount, -amount)) AS SIGNED) FROM ledger_entries WHERE account = ?",
    )
    .bind(AUTHORIZATION_HOLD)
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert_eq!(hold, 0, "the hold nets to zero");
    let report = invariants::check(&env.db, Duration::ZERO).await.unwrap();
    assert!(report.is_clean(), "{report:#?}");

    // Without the void's legs the hold is 400 too high, and the new check names the payment.
    sqlx::query("DELETE FROM ledger_entries WHERE event_type = 'PAYMENT_VOIDED'")
        .execute(&env.db)
        .await
        .unwrap();
    let report = invariants::check(&env.db, Duration::ZERO).await.unwrap();
    let hold_check = report
        .checks
        .iter()
        .find(|c| c.name.starts_with("authorization hold"))
        .expect("the hold check runs");
    assert_eq!(hold_check.violations.len(), 1, "{report:#?}");
    assert!(hold_check.violations[0]
        .detail
        .contains("expected 0 held, ledger holds 400"));
}

/// How many records the DLQ holds, and the first one's type and message.
async fn dlq_summary(env: &helpers::Env) -> String {
    let dlq = env.dlq().await;
    match dlq.first() {
        None => "the DLQ is empty".into(),
        Some(r) => format!(
            "{} record(s), the first {}: {}",
            dlq.len(),
            r["errorType"],
            r["errorMessage"]
        ),
    }
}

/// Refusals of a healthy-but-unwilling database (maintenance, failover, limits, operator mistakes), as a
/// trigger raises them: (error number, SQLSTATE, message). None says anything about the event.
const OPERATIONAL_REFUSALS: [(u16, &str, &str); 8] = [
    (
        1290,
        "HY000",
        "The MariaDB server is running with the --read-only option so it cannot execute this statement",
    ),
    (1836, "HY000", "Running in read-only mode"),
    (1040, "08004", "Too many connections"),
    (1142, "42000", "INSERT command denied to user for table ledger_entries"),
    (1317, "70100", "Query execution was interrupted"),
    (
        1969,
        "70100",
        "Query execution was interrupted (max_statement_time exceeded)",
    ),
    (1114, "HY000", "The table ledger_entries is full"),
    (1021, "HY000", "Disk full; waiting for someone to free some space"),
];

#[tokio::test]
async fn valid_events_the_database_refuses_for_operational_reasons_are_held_and_never_dead_lettered(
) {
    let env = env().await;
    let consumer = env.start_consumer().await;
    let mut applied = 0;
    for (errno, sqlstate, message) in OPERATIONAL_REFUSALS {
        sqlx::raw_sql(&format!(
            "CREATE TRIGGER refuse_legs BEFORE INSERT ON ledger_entries FOR EACH ROW \
             SIGNAL SQLSTATE '{sqlstate}' SET MYSQL_ERRNO = {errno}, MESSAGE_TEXT = '{message}'"
        ))
        .execute(&env.db)
        .await
        .unwrap();
        let p = env.payment(1000, 1000, 0, PaymentStatus::Captured).await;
        let events = [
            event(EventType::PaymentAuthorized, p, 1000),
            event(EventType::PaymentCaptured, p, 1000),
        ];
        for e in &events {
            env.outbox(e).await;
        }
        let retries = consumer.metric("consumer_retries_total");
        env.produce_all(&events).await;
        env.eventually(
            &format!("errno {errno}: the events retried (or dead-lettered)"),
            Duration::from_secs(60),
            || async {
                consumer.metric("consumer_retries_total") >= retries + 3.0
                    || consumer.metric("consumer_dlq_sent_total") > 0.0
            },
        )
        .await;
        assert_eq!(
            consumer.metric("consumer_dlq_sent_total"),
            0.0,
            "errno {errno}: valid events were dead-lettered: {}",
            dlq_summary(&env).await
        );
        assert_eq!(
            env.legs().await,
            applied,
            "errno {errno}: nothing written while refused"
        );
        assert!(
            consumer.metric("consumer_stalled_seconds") > 0.0,
            "errno {errno}: the stall shows"
        );
        sqlx::raw_sql("DROP TRIGGER refuse_legs")
            .execute(&env.db)
            .await
            .unwrap();
        applied += 6;
        env.eventually(
            &format!("errno {errno}: the held events applied once the refusal ends"),
            Duration::from_secs(60),
            || async { env.legs().await == applied },
        )
        .await;
        env.eventually(
            &format!("errno {errno}: the stall gauge back at zero"),
            Duration::from_secs(10),
            || async { consumer.metric("consumer_stalled_seconds") == 0.0 },
        )
        .await;
    }
    assert!(env.dlq().await.is_empty(), "nothing dead-lettered");
    let report = invariants::check(&env.db, Duration::ZERO).await.unwrap();
    assert!(report.is_clean(), "{report:#?}");
    consumer.stop().await;
}

#[tokio::test]
async fn a_check_violation_dead_letters_only_its_event_and_the_rest_of_the_batch_is_applied() {
    let env = env().await;
    // A real constraint, so the database itself says "this row is wrong" (4025).
    sqlx::raw_sql(
        "ALTER TABLE ledger_entries ADD CONSTRAINT ck_test_not_777 CHECK (amount <> 777)",
    )
    .execute(&env.db)
    .await
    .unwrap();
    let ids = env.payments(5, 1000).await;
    let bad = event(EventType::PaymentAuthorized, ids[2], 777);
    let events: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            if i == 2 {
                bad.clone()
            } else {
                event(EventType::PaymentAuthorized, *id, 1000)
            }
        })
        .collect();
    // Produced before the consumer starts, so they arrive in one batch.
    env.produce_all(&events).await;
    let consumer = env.start_consumer().await;
    env.eventually(
        "the other events applied",
        Duration::from_secs(60),
        || async { env.legs().await == 8 },
    )
    .await;
    env.eventually(
        "the bad event dead-lettered",
        Duration::from_secs(30),
        || async { !env.dlq().await.is_empty() },
    )
    .await;
    let dlq = env.dlq().await;
    assert_eq!(dlq.len(), 1, "{dlq:#?}");
    assert_eq!(dlq[0]["errorType"], "DatabaseRejected", "{dlq:#?}");
    assert_eq!(dlq[0]["key"], bad.payment_id.to_string());
    let message = dlq[0]["errorMessage"].as_str().unwrap_or_default();
    assert!(
        message.contains("4025") && message.contains("ck_test_not_777"),
        "{message}"
    );
    assert!(legs_of(&env, &bad).await.is_empty());
    assert_eq!(
        consumer.metric("consumer_retries_total"),
        0.0,
        "data errors are not retried"
    );
    consumer.stop().await;
}

#[tokio::test]
async fn half_a_minute_of_read_only_holds_the_events_and_the_ledger_catches_up_after() {
    // read_only is global to the server: only on a private instance.
    let (env, _services) = dedicated().await;
    // root (SUPER) ignores read_only; the consumer connects as an account with every privilege on its
    // own database and none global, as in production.
    sqlx::raw_sql(&format!(
        "CREATE USER 'ledger'@'%' IDENTIFIED BY 'ledger-pw'; \
         GRANT ALL PRIVILEGES ON {}.* TO 'ledger'@'%'",
        env.database()
    ))
    .execute(&env.db)
    .await
    .unwrap();
    let mut config = env.config();
    config.database_url = env.db_url.replacen("root@", "ledger:ledger-pw@", 1);
    let consumer = env.start_consumer_with(config).await;
    let ids = env.payments(50, 700).await;
    let events: Vec<_> = ids
        .iter()
        .map(|id| event(EventType::PaymentAuthorized, *id, 700))
        .collect();

    sqlx::raw_sql("SET GLOBAL read_only = ON")
        .execute(&env.db)
        .await
        .unwrap();
    env.produce_all(&events).await;
    env.eventually(
        "the refused batch retried",
        Duration::from_secs(60),
        || async {
            consumer.metric("consumer_retries_total") >= 5.0
                || consumer.metric("consumer_dlq_sent_total") > 0.0
        },
    )
    .await;
    // The scenario: a failover's read-only window, longer than max.poll.interval.ms (20 s), so the
    // stalled worker also drops out of its group and must rejoin.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let held_legs = env.legs().await;
    let dlq_sent = consumer.metric("consumer_dlq_sent_total");
    sqlx::raw_sql("SET GLOBAL read_only = OFF")
        .execute(&env.db)
        .await
        .unwrap();
    assert_eq!(
        dlq_sent,
        0.0,
        "valid events were dead-lettered: {}",
        dlq_summary(&env).await
    );
    assert_eq!(held_legs, 0, "nothing written while read-only");
    assert!(consumer.metric("consumer_stalled_seconds") >= 20.0);

    env.eventually("the ledger caught up", Duration::from_secs(120), || async {
        env.legs().await == 100
    })
    .await;
    assert_eq!(
        env.count("SELECT COUNT(DISTINCT event_id) FROM ledger_entries")
            .await,
        50
    );
    assert!(env.dlq().await.is_empty(), "nothing dead-lettered");
    consumer.stop().await;
}

#[tokio::test]
async fn apply_returns_an_operational_refusal_for_retry_and_isolates_a_data_error_in_its_batch() {
    let env = env().await;
    sqlx::raw_sql(
        "ALTER TABLE ledger_entries ADD CONSTRAINT ck_test_not_777 CHECK (amount <> 777)",
    )
    .execute(&env.db)
    .await
    .unwrap();
    let ids = env.payments(3, 1000).await;
    let batch = [
        event(EventType::PaymentAuthorized, ids[0], 1000),
        event(EventType::PaymentAuthorized, ids[1], 777),
        event(EventType::PaymentAuthorized, ids[2], 1000),
    ];

    // Refused for a reason that is not the data's: the whole batch comes back as an error to retry.
    sqlx::raw_sql(
        "CREATE TRIGGER refuse_legs BEFORE INSERT ON ledger_entries FOR EACH ROW \
         SIGNAL SQLSTATE 'HY000' SET MYSQL_ERRNO = 1290, MESSAGE_TEXT = 'read-only'",
    )
    .execute(&env.db)
    .await
    .unwrap();
    let held = pay_consumer::apply::apply(&env.db, &batch).await;
    let Err(e) = held else {
        panic!(
            "a read-only refusal must be retried, not judged: {:?}",
            held.map(|o| o.verdicts)
        );
    };
    assert_eq!(payctl_db::mysql_error_number(&e), Some(1290));
    assert_eq!(env.legs().await, 0);
    sqlx::raw_sql("DROP TRIGGER refuse_legs")
        .execute(&env.db)
        .await
        .unwrap();

    // A CHECK violation is the data's fault: only that event is rejected, the others are applied.
    let outcome = pay_consumer::apply::apply(&env.db, &batch).await.unwrap();
    assert_eq!(outcome.legs_written, 4);
    assert!(outcome.verdicts[0].is_none() && outcome.verdicts[2].is_none());
    let rejected = outcome.verdicts[1]
        .as_ref()
        .expect("the 777 event is rejected");
    assert_eq!(rejected.error_type, "DatabaseRejected");
    assert!(rejected.message.contains("4025"), "{}", rejected.message);
    assert_eq!(legs_of(&env, &batch[1]).await, vec![]);
}

/// The partitions a running consumer reads, by topic, from its `/ready`.
async fn assigned(c: &helpers::Running) -> std::collections::BTreeMap<String, Vec<i32>> {
    let ready: serde_json::Value = reqwest::get(format!("{}/ready", c.address))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    serde_json::from_value(ready["components"]["kafka"]["partitions"].clone()).unwrap()
}

/// Two consumers with fixed partition shares (how the native runtime runs several): each reads only
/// its share, together they apply every event once; one stopped and started again goes on from the
/// group's committed offsets, and the ledger ends with every event exactly once.
#[tokio::test]
async fn consumers_with_partition_shares_split_the_partitions_and_resume_after_a_restart() {
    let env = &env().await;
    let share = |s: &str| {
        let mut c = env.config();
        c.partition_share = Some(s.parse().unwrap());
        c
    };
    let first = env.start_consumer_with(share("1/2")).await;
    let second = env.start_consumer_with(share("2/2")).await;
    let (a, b) = (assigned(&first).await, assigned(&second).await);
    assert_eq!(a.len(), EventType::ALL.len(), "every topic: {a:?}");
    for (topic, partitions) in &a {
        assert_eq!(partitions, &[0], "{topic}");
        assert_eq!(b[topic], [1], "{topic}");
    }
    let batch = |n: usize| async move {
        let ids = env.payments(n, 700).await;
        let events: Vec<_> = ids
            .iter()
            .map(|id| event(EventType::PaymentAuthorized, *id, 700))
            .collect();
        env.produce_all(&events).await;
    };
    batch(300).await;
    env.eventually(
        "the first batch applied",
        Duration::from_secs(60),
        || async { env.legs().await == 600 },
    )
    .await;
    let read = |c: &helpers::Running| c.metric("consumer_events_consumed_total");
    assert!(
        read(&first) > 0.0 && read(&second) > 0.0,
        "both read a share: {} and {}",
        read(&first),
        read(&second)
    );
    assert_eq!(read(&first) + read(&second), 300.0, "each event read once");
    second.stop().await;
    batch(300).await;
    let second = env.start_consumer_with(share("2/2")).await;
    env.eventually(
        "the second batch applied",
        Duration::from_secs(60),
        || async { env.legs().await == 1200 },
    )
    .await;
    assert_eq!(
        env.count("SELECT COUNT(DISTINCT event_id) FROM ledger_entries")
            .await,
        600
    );
    assert!(env.dlq().await.is_empty());
    first.stop().await;
    second.stop().await;
}
