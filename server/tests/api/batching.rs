//! Commit batching: concurrent requests share a transaction, and a request that cannot be written with
//! the others is answered exactly as it would be alone while the others commit.
//!
//! The tests that need two requests in one batch set the batch size to the number of requests sent at
//! once and a long window, so the batch is written the moment the last request arrives; the
//! `payment_commit_batch_*` metrics then show what happened.

use crate::helpers::{spawn_app, spawn_app_with, TestApp};
use futures::future::join_all;
use reqwest::Method;
use serde_json::json;

async fn batched(max: u32) -> TestApp {
    spawn_app_with(|c| {
        c.batch.max = max;
        c.batch.window_ms = 500;
        c.batch.concurrency = 1;
    })
    .await
}

fn commits(app: &TestApp) -> (f64, f64) {
    (
        app.metric("payment_commit_batch_size_count"),
        app.metric("payment_commit_batch_size_sum"),
    )
}

fn splits(app: &TestApp, reason: &str) -> f64 {
    app.metric(&format!(
        "payment_commit_batch_split_total{{reason=\"{reason}\"}}"
    ))
}

#[tokio::test]
async fn concurrent_authorizations_share_commits() {
    let app = spawn_app().await;
    let replies = join_all((0..200).map(|i| {
        let app = &app;
        async move { app.authorize(100 + i, &format!("many-{i}")).await }
    }))
    .await;
    assert!(replies.iter().all(|r| r.status == 200));
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 200);
    assert_eq!(app.count("SELECT COUNT(*) FROM outbox_events").await, 200);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM idempotency_keys WHERE state = 'COMPLETED' AND payment_id IS NOT NULL")
            .await,
        200
    );
    let (count, sum) = commits(&app);
    assert_eq!(sum, 200.0, "every request was written by a batch");
    assert!(count < 200.0, "200 requests at once took {count} commits");
    // Each stored response is the one its client got.
    for (i, r) in replies.iter().enumerate() {
        let again = app.authorize(100 + i as i64, &format!("many-{i}")).await;
        assert_eq!(again.bytes, r.bytes);
    }
}

#[tokio::test]
async fn in_one_batch_a_used_key_replays_and_the_other_request_commits() {
    let app = batched(2).await;
    let first = app.authorize(1000, "used").await;
    assert_eq!(first.status, 200);
    // The replay must reach the database, where the batch's insert collides with the committed key.
    app.forget_cached_responses().await;
    let (before_count, before_sum) = commits(&app);

    let (replay, fresh) = tokio::join!(app.authorize(1000, "used"), app.authorize(2000, "fresh"));

    assert_eq!(splits(&app, "duplicate_key"), 1.0, "both were in one batch");
    assert_eq!((replay.status, &replay.bytes), (200, &first.bytes));
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(fresh.status, 200);
    assert_eq!(fresh.header("idempotent-replayed"), None);
    assert_eq!(fresh.json()["amount"], 2000);
    assert_ne!(fresh.json()["paymentId"], first.json()["paymentId"]);
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 2);
    assert_eq!(app.count("SELECT COUNT(*) FROM outbox_events").await, 2);
    // The fresh request was committed by the batch without the collider.
    let (count, sum) = commits(&app);
    assert_eq!((count - before_count, sum - before_sum), (1.0, 1.0));
}

#[tokio::test]
async fn one_key_twice_in_a_batch_commits_once() {
    let app = batched(3).await;
    let (a, b, c) = tokio::join!(
        app.authorize(1000, "twice"),
        app.authorize(1000, "twice"),
        app.authorize(5000, "twice"),
    );
    let mut statuses = [a.status, b.status, c.status];
    statuses.sort();
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM outbox_events").await, 1);
    // Whichever of the two equal requests came first committed; the other replays it. The different
    // request with the same key is refused, whether it came first or not.
    let amount = app.count("SELECT amount FROM payments").await;
    if amount == 1000 {
        assert_eq!(a.bytes, b.bytes);
        c.assert_error(422, "IDEMPOTENCY_KEY_REUSED");
    } else {
        assert_eq!(amount, 5000);
        a.assert_error(422, "IDEMPOTENCY_KEY_REUSED");
        b.assert_error(422, "IDEMPOTENCY_KEY_REUSED");
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count()
            + statuses.iter().filter(|s| **s == 422).count(),
        3
    );
}

#[tokio::test]
async fn changes_of_one_payment_in_one_batch_apply_in_turn() {
    let app = batched(3).await;
    let id = app.authorized_payment(1000).await;
    let captured = app
        .post(&format!("/payments/capture/{id}"), &json!({}))
        .await;
    assert_eq!(captured.status, 200, "{}", captured.json());

    let refund = |key: &'static str| {
        let app = &app;
        let path = format!("/payments/refund/{id}");
        async move {
            app.request(
                Method::POST,
                &path,
                Some(app.key()),
                Some(&json!({"amount": 400})),
                &[("Idempotency-Key", key)],
            )
            .await
        }
    };
    let (before_count, _) = commits(&app);
    let replies = join_all([refund("r1"), refund("r2"), refund("r3")]).await;
    let (after_count, _) = commits(&app);
    assert_eq!(after_count - before_count, 1.0, "three refunds, one commit");

    let ok = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(ok, 2, "two refunds of 400 fit into 1000");
    let refused: Vec<_> = replies.iter().filter(|r| r.status != 200).collect();
    assert_eq!(refused.len(), 1);
    refused[0].assert_error(409, "AMOUNT_EXCEEDS_REMAINING");
    let payment = app.get(&format!("/payments/{id}")).await.json();
    assert_eq!(payment["refundedAmount"], 800);
    assert_eq!(payment["status"], "PARTIALLY_REFUNDED");
    // One event per change, each with its own sequence; the refusal is stored for its key.
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(DISTINCT JSON_VALUE(payload, '$.sequence')) FROM outbox_events \
             WHERE payment_id = UNHEX(REPLACE('{id}', '-', '')) AND event_type = 'PAYMENT_REFUNDED'"
        ))
        .await,
        2
    );
    app.forget_cached_responses().await;
    for (key, reply) in ["r1", "r2", "r3"].iter().zip(&replies) {
        let again = refund(key).await;
        assert_eq!((again.status, &again.bytes), (reply.status, &reply.bytes));
    }
}

/// CI (stop 21): a batch that failed before its commit left its transaction to be rolled back when its
/// connection was next used. With other connections idle in the pool, the orphan's alone path took one of
/// them and its key INSERT waited on the batch's uncommitted key row until the lock-wait timeout:
/// 409 IDEMPOTENCY_IN_PROGRESS instead of the 500 it gets without batching.
#[tokio::test]
async fn a_failed_batch_is_rolled_back_before_its_requests_go_on_alone() {
    let app = batched(2).await;
    let other = &app.other_merchant;
    // Several connections in the pool, idle: the orphan's alone path need not get the batch's one.
    let warm = join_all((0..8).map(|_| {
        app.request(
            Method::GET,
            "/payments",
            Some(other.key.expose()),
            None,
            &[],
        )
    }))
    .await;
    assert!(warm.iter().all(|r| r.status == 200));
    sqlx::query("DELETE FROM merchants WHERE merchant_id = ?")
        .bind(other.id.as_str())
        .execute(&app.db)
        .await
        .unwrap();
    let body = json!({"amount": 700, "currency": "USD"});
    let orphan = app.request(
        Method::POST,
        "/payments/authorize",
        Some(other.key.expose()),
        Some(&body),
        &[("Idempotency-Key", "orphan")],
    );
    let (bad, good) = tokio::join!(orphan, app.authorize(900, "good"));
    assert_eq!(splits(&app, "error"), 1.0, "both were in one batch");
    assert_eq!(good.status, 200, "{}", good.json());
    assert_eq!(
        (bad.status, bad.json()["code"].clone()),
        (500, json!("INTERNAL_ERROR")),
        "as without batching"
    );
    // Nothing of the failed batch is left open, holding its rows (on this test's database: the server
    // is shared with the other tests).
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM information_schema.innodb_trx t \
             JOIN information_schema.processlist p ON p.ID = t.trx_mysql_thread_id \
             WHERE p.DB = DATABASE() AND t.trx_mysql_thread_id <> CONNECTION_ID()"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_request_that_fails_in_its_batch_is_answered_as_alone_and_the_other_commits() {
    let app = batched(2).await;
    // The other merchant authenticates (its key is then cached), then disappears from the database: its
    // payment now breaks the merchant foreign key, which only the database sees.
    let other = &app.other_merchant;
    let seen = app
        .request(
            Method::GET,
            "/payments",
            Some(other.key.expose()),
            None,
            &[],
        )
        .await;
    assert_eq!(seen.status, 200);
    sqlx::query("DELETE FROM merchants WHERE merchant_id = ?")
        .bind(other.id.as_str())
        .execute(&app.db)
        .await
        .unwrap();
    let body = json!({"amount": 700, "currency": "USD"});
    let orphan = app.request(
        Method::POST,
        "/payments/authorize",
        Some(other.key.expose()),
        Some(&body),
        &[("Idempotency-Key", "orphan")],
    );

    let (bad, good) = tokio::join!(orphan, app.authorize(900, "good"));

    assert_eq!(
        splits(&app, "error"),
        1.0,
        "both were in one batch, which failed"
    );
    assert_eq!(good.status, 200, "{}", good.json());
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM outbox_events").await, 1);
    // What the orphan got is what it gets from a server that does not batch.
    let alone = spawn_app_with(|c| c.batch.disabled = true).await;
    let reference = {
        let other = &alone.other_merchant;
        alone
            .request(
                Method::GET,
                "/payments",
                Some(other.key.expose()),
                None,
                &[],
            )
            .await;
        sqlx::query("DELETE FROM merchants WHERE merchant_id = ?")
            .bind(other.id.as_str())
            .execute(&alone.db)
            .await
            .unwrap();
        alone
            .request(
                Method::POST,
                "/payments/authorize",
                Some(other.key.expose()),
                Some(&json!({"amount": 700, "currency": "USD"})),
                &[("Idempotency-Key", "orphan")],
            )
            .await
    };
    assert_eq!(
        (bad.status, bad.json()["code"].clone()),
        (reference.status, reference.json()["code"].clone())
    );
    assert_ne!(bad.status, 200);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM idempotency_keys WHERE idempotency_key = 'orphan'")
            .await,
        0,
        "a failed request leaves its key free"
    );
}

/// Whether nothing holds the payment's row lock (nor waits for it, to be granted it next).
async fn row_free(app: &TestApp, id: &str) -> bool {
    let mut tx = app.db.begin().await.unwrap();
    let locked = sqlx::query(
        "SELECT 1 FROM payments WHERE payment_id = UNHEX(REPLACE(?, '-', '')) FOR UPDATE NOWAIT",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await;
    tx.rollback().await.unwrap();
    locked.is_ok()
}

/// Scenario: the handler of an unkeyed refund is dropped (the client hung up, a gateway timed out) while
/// its batch waits for the payment's row lock. Alone, dropping the handler drops its transaction, which
/// rolls back: nothing was refunded, and the client, who was told nothing, may send the refund again.
/// Batched, the job stays in its batch and is committed after the requester is gone: money moves that no
/// one was told about, and the client's retry refunds a second time.
/// Expected: a job whose requester is gone before its batch commits is left out of the batch (its key, if
/// any, deleted in the same transaction), as its own transaction would have been rolled back.
async fn dropped_refund_leaves(tweak: impl FnOnce(&mut pay_server::config::Config)) -> i64 {
    use pay_server::service::{execute, Command};
    use payctl_domain::{PaymentId, Transition};
    use std::time::Duration;

    let app = spawn_app_with(tweak).await;
    let id = app.authorized_payment(1000).await;
    let captured = app
        .post(&format!("/payments/capture/{id}"), &json!({}))
        .await;
    assert_eq!(captured.status, 200);
    let holder = app.hold_payment_lock(&id).await;
    let refund = Command::Change {
        payment_id: PaymentId::parse("paymentId", &id).unwrap(),
        transition: Transition::Refund(Some(300)),
        reason: None,
    };
    let handler = execute(&app.state, &app.merchant.id, refund, None);
    // The handler is dropped while it waits for the row lock (as hyper drops it when the client goes).
    assert!(
        tokio::time::timeout(Duration::from_millis(300), handler)
            .await
            .is_err(),
        "the refund waits for the row lock"
    );
    holder.rollback().await.unwrap();
    // Whatever was waiting for the row lock has got it and finished: committed or rolled back.
    app.eventually(
        "the payment's row lock is free",
        Duration::from_secs(15),
        || row_free(&app, &id),
    )
    .await;
    app.count(&format!(
        "SELECT refunded_amount FROM payments WHERE payment_id = UNHEX(REPLACE('{id}', '-', ''))"
    ))
    .await
}

#[tokio::test]
async fn a_request_dropped_while_its_batch_waits_is_not_committed() {
    // The reference: without batching the dropped refund is rolled back.
    assert_eq!(dropped_refund_leaves(|c| c.batch.disabled = true).await, 0);
    assert_eq!(
        dropped_refund_leaves(|c| c.batch.window_ms = 1).await,
        0,
        "a refund whose requester was gone before the commit was committed"
    );
}

/// Scenario: the statement of a batch that waits for one request's payment row is stopped (`KILL QUERY`
/// by an operator or a watchdog, `max_statement_time`, or its connection lost): an error the code calls
/// "unavailable", so every request of the batch is answered 503 on the grounds that "alone they would
/// get the same 503". They would not: alone, only the request whose statement was stopped fails; an
/// authorization that happened to share the batch is refused although nothing was wrong with it or with
/// the database. Expected: an error of the batch's own connection or statement sends the requests on
/// alone, as any other failure before the commit does.
#[tokio::test]
async fn a_stopped_batch_statement_does_not_fail_its_other_requests() {
    use std::time::Duration;

    let app = batched(2).await;
    let id = app.authorized_payment(1000).await;
    let holder = app.hold_payment_lock(&id).await;
    let (path, empty) = (format!("/payments/capture/{id}"), json!({}));
    let capture = app.post(&path, &empty);
    let authorize = app.authorize(700, "innocent");
    let stop = async {
        // The batch's lock of the payment waits behind `holder`: stop that statement.
        let waiting = || {
            sqlx::query_scalar::<_, i64>(
                "SELECT id FROM information_schema.processlist WHERE db = DATABASE() \
                 AND info LIKE 'SELECT payment_id%FOR UPDATE'",
            )
            .fetch_optional(&app.db)
        };
        app.eventually(
            "the batch waits for the payment's row lock",
            Duration::from_secs(10),
            || async { waiting().await.unwrap().is_some() },
        )
        .await;
        let connection = waiting().await.unwrap().unwrap();
        sqlx::query(&format!("KILL QUERY {connection}"))
            .execute(&app.db)
            .await
            .unwrap();
    };
    let (_, authorized, ()) = tokio::join!(capture, authorize, stop);
    holder.rollback().await.unwrap();

    assert_eq!(
        authorized.status,
        200,
        "the authorization was not the stopped statement's: {}",
        String::from_utf8_lossy(&authorized.bytes)
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM payments WHERE amount = 700")
            .await,
        1
    );
}

/// Bursts of 1, 2, … 24 concurrent authorizations on a private MariaDB whose `max_prepared_stmt_count`
/// is 80, from a server with a pool of 4 connections; the statuses answered.
async fn bursts_under_a_prepared_statement_limit(batching: bool) -> Vec<u16> {
    let (app, _services) = crate::helpers::spawn_dedicated(|c| {
        c.batch.disabled = !batching;
        c.batch.window_ms = 30;
        c.batch.concurrency = 1;
        c.database_pool_size = 4;
    })
    .await;
    sqlx::query("SET GLOBAL max_prepared_stmt_count = 80")
        .execute(&app.db)
        .await
        .unwrap();
    let mut statuses = Vec::new();
    for n in 1..=24 {
        let replies = join_all((0..n).map(|i| {
            let app = &app;
            async move { app.authorize(100 + i, &format!("burst-{n}-{i}")).await }
        }))
        .await;
        statuses.extend(replies.iter().map(|r| r.status));
    }
    statuses
}

/// Scenario: prepared statements. sqlx prepares every distinct SQL text once per connection and keeps up
/// to `statement_cache_capacity` (256) of them on the server. Alone, a connection needs about ten texts;
/// a batch's multi-row INSERTs and IN lists have one text per batch size, for keys (claimed and
/// completed), payments, events, row locks and the taken-keys read: up to ~6 × commit-batch-max, so
/// every connection soon holds its 256. With the defaults that is 32 × 256 = 8,192 statements per
/// instance: two instances exceed MariaDB's default `max_prepared_stmt_count` (16,382), with the
/// consumer's own on top. Past it every new prepare fails (1461), the batches fail and their requests go
/// alone, whose statements the LRU cache has meanwhile evicted: 500 for requests that alone get 200.
/// Scaled down here (pool of 4, limit 80; alone the server needs about 40).
/// Expected: batch statements that do not multiply per batch size (e.g. not persistent —
/// `.persistent(false)` — or padded to a few fixed sizes), so batching stays within what alone uses.
#[tokio::test]
async fn batch_statements_do_not_exhaust_the_servers_prepared_statements() {
    let alone = bursts_under_a_prepared_statement_limit(false).await;
    assert!(alone.iter().all(|s| *s == 200), "alone: {alone:?}");
    let batched = bursts_under_a_prepared_statement_limit(true).await;
    let failed = batched.iter().filter(|s| **s != 200).count();
    assert_eq!(
        failed,
        0,
        "{failed} of {} authorizations refused: {batched:?}",
        batched.len()
    );
}

/// Two instances on one database, both batching (up to 4 batches at once each), with 120 keyed changes
/// of four payments each sent one to three times at once to either instance (a client retrying on
/// another instance) and some unkeyed ones: no 5xx, every answer of one key is the same bytes, each
/// payment's totals are the sum of what its original 200s moved, and it has one event per change.
#[tokio::test]
async fn two_batching_instances_share_keys_and_payments() {
    use rand::{Rng, SeedableRng};
    use std::collections::{BTreeMap, HashMap};

    let a = spawn_app_with(|c| {
        c.batch.window_ms = 3;
        c.batch.concurrency = 4;
    })
    .await;
    let b = a.peer(|_| {}).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let id = a.authorized_payment(100_000).await;
        let captured = a
            .post(
                &format!("/payments/capture/{id}"),
                &json!({"amount": 60_000}),
            )
            .await;
        assert_eq!(captured.status, 200);
        ids.push(id);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    // (instance a?, payment, kind, amount, key)
    let mut requests = Vec::new();
    for k in 0..120 {
        let id = rng.gen_range(0..ids.len());
        let kind = ["capture", "refund", "refund"][rng.gen_range(0..3)];
        let amount: i64 = rng.gen_range(1..3000);
        for _ in 0..rng.gen_range(1..4) {
            requests.push((
                rng.gen_bool(0.5),
                id,
                kind,
                amount,
                Some(format!("key-{k}")),
            ));
        }
        if rng.gen_bool(0.3) {
            requests.push((rng.gen_bool(0.5), id, kind, amount, None));
        }
    }
    let replies = join_all(requests.iter().map(|(on_a, id, kind, amount, key)| {
        let app = if *on_a { &a } else { &b };
        let path = format!("/payments/{kind}/{}", ids[*id]);
        async move {
            let headers: Vec<(&str, &str)> = key
                .iter()
                .map(|k| ("Idempotency-Key", k.as_str()))
                .collect();
            app.request(
                Method::POST,
                &path,
                Some(app.key()),
                Some(&json!({ "amount": amount })),
                &headers,
            )
            .await
        }
    }))
    .await;

    let mut by_key: HashMap<&str, Vec<&crate::helpers::Reply>> = HashMap::new();
    // Per payment: (captured, refunded) moved by original 200s.
    let mut moved: BTreeMap<usize, (i64, i64)> = BTreeMap::new();
    for ((_, id, kind, amount, key), r) in requests.iter().zip(&replies) {
        assert!(r.status < 500, "{}", String::from_utf8_lossy(&r.bytes));
        let code = r.json()["code"].as_str().unwrap_or("").to_owned();
        if code == "IDEMPOTENCY_IN_PROGRESS" || code == "LOCK_TIMEOUT" {
            continue;
        }
        if let Some(k) = key {
            by_key.entry(k.as_str()).or_default().push(r);
        }
        if r.status == 200 && r.header("idempotent-replayed").is_none() {
            let m = moved.entry(*id).or_default();
            if *kind == "capture" {
                m.0 += amount;
            } else {
                m.1 += amount;
            }
        }
    }
    for (key, answers) in &by_key {
        let first = answers[0];
        assert!(
            answers
                .iter()
                .all(|r| (r.status, &r.bytes) == (first.status, &first.bytes)),
            "{key}: {:?}",
            answers
                .iter()
                .map(|r| String::from_utf8_lossy(&r.bytes))
                .collect::<Vec<_>>()
        );
    }
    for (i, id) in ids.iter().enumerate() {
        let payment = a.get(&format!("/payments/{id}")).await.json();
        let (captured, refunded) = moved.get(&i).copied().unwrap_or_default();
        assert_eq!(payment["capturedAmount"], 60_000 + captured, "{payment}");
        assert_eq!(payment["refundedAmount"], refunded, "{payment}");
        let row = format!("payment_id = UNHEX(REPLACE('{id}', '-', ''))");
        let version = a
            .count(&format!(
                "SELECT CAST(version AS SIGNED) FROM payments WHERE {row}"
            ))
            .await;
        let events = a
            .count(&format!("SELECT COUNT(*) FROM outbox_events WHERE {row}"))
            .await;
        assert_eq!(events, version + 1, "one event per change of {id}");
    }
}

/// Scenario: head-of-line blocking. A batch keeps its writer (one of `commit-batch-concurrency`) while it
/// waits for a row lock, up to the lock-wait timeout. Changes of one busy payment (its row held by a
/// long transaction, or hammered by one merchant's retries) fill every writer, and every other request of
/// the instance — other payments, other merchants, plain authorizations that lock nothing — waits behind
/// them, then is answered late or times out at its client. Alone, only the requests for the busy payment
/// wait. Expected: an authorization touching nothing busy is answered while the busy row is still held.
#[tokio::test]
async fn a_busy_payment_does_not_hold_up_unrelated_requests() {
    use std::time::Duration;

    let app = spawn_app_with(|c| {
        c.batch.window_ms = 1;
        c.batch.concurrency = 2;
        c.database_lock_wait_timeout_seconds = 25;
    })
    .await;
    let id = app.authorized_payment(1000).await;
    let holder = app.hold_payment_lock(&id).await;
    let waiting = || async {
        app.count(
            "SELECT COUNT(*) FROM information_schema.processlist WHERE db = DATABASE() \
             AND info LIKE 'SELECT payment_id%FOR UPDATE'",
        )
        .await
    };
    // Two captures of the busy payment, one after the other, so each is a batch of its own.
    let path = format!("/payments/capture/{id}");
    let body = json!({"amount": 100});
    let first = tokio::spawn({
        let (client, url, key) = (
            app.client.clone(),
            format!("{}{path}", app.address),
            app.key().to_owned(),
        );
        let body = body.clone();
        async move {
            client
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    app.eventually("one batch waits", Duration::from_secs(10), || async {
        waiting().await == 1
    })
    .await;
    let second = tokio::spawn({
        let (client, url, key) = (
            app.client.clone(),
            format!("{}{path}", app.address),
            app.key().to_owned(),
        );
        async move {
            client
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    app.eventually("two batches wait", Duration::from_secs(10), || async {
        waiting().await == 2
    })
    .await;

    // A bound, not a synchronisation: alone this answers in milliseconds; here it would wait for the
    // 25 s lock wait of the two batches.
    let unrelated =
        tokio::time::timeout(Duration::from_secs(10), app.authorize(500, "unrelated")).await;
    holder.rollback().await.unwrap();
    let _ = (first.await, second.await);
    let unrelated = unrelated.expect("an authorization waited behind the busy payment's batches");
    assert_eq!(unrelated.status, 200);
}
