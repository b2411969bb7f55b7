use crate::helpers::spawn_app;
use futures::future::join_all;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn a_replay_returns_the_original_status_and_identical_bytes() {
    let app = spawn_app().await;
    let first = app.authorize(1000, "same-key").await;
    assert_eq!(first.status, 200);
    let second = app.authorize(1000, "same-key").await;
    assert_eq!(second.status, 200);
    assert_eq!(second.bytes, first.bytes, "a replay is byte-identical");
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM outbox_events").await, 1);
    assert!(app.metric("idempotent_replays_total") >= 1.0);
}

#[tokio::test]
async fn a_replay_from_the_database_when_redis_lost_the_entry_is_identical_too() {
    let app = spawn_app().await;
    let first = app.authorize(1000, "db-key").await;
    app.forget_cached_responses().await;
    let second = app.authorize(1000, "db-key").await;
    assert_eq!((second.status, &second.bytes), (200, &first.bytes));
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
}

#[tokio::test]
async fn the_same_key_with_a_different_request_is_422() {
    let app = spawn_app().await;
    assert_eq!(app.authorize(1000, "k1").await.status, 200);
    app.authorize(2000, "k1")
        .await
        .assert_error(422, "IDEMPOTENCY_KEY_REUSED");
    let r = app
        .post(
            "/payments/authorize",
            &json!({"amount": 1000, "currency": "USD", "idempotencyKey": "k1"}),
        )
        .await;
    r.assert_error(422, "IDEMPOTENCY_KEY_REUSED");
    // The same key on another route is another request too.
    let id = app.authorized_payment(500).await;
    let r = app
        .request(
            Method::POST,
            &format!("/payments/capture/{id}"),
            Some(app.key()),
            Some(&json!({})),
            &[("Idempotency-Key", "k1")],
        )
        .await;
    r.assert_error(422, "IDEMPOTENCY_KEY_REUSED");
    // Keys are per merchant: the other merchant may use k1 freely.
    let r = app
        .request(
            Method::POST,
            "/payments/authorize",
            Some(app.other_merchant.key.expose()),
            Some(&json!({"amount": 2000, "currency": "KRW", "idempotencyKey": "k1"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 3);
}

#[tokio::test]
async fn header_and_body_keys_must_agree() {
    let app = spawn_app().await;
    let r = app
        .request(
            Method::POST,
            "/payments/authorize",
            Some(app.key()),
            Some(&json!({"amount": 1000, "currency": "KRW", "idempotencyKey": "body-key"})),
            &[("Idempotency-Key", "header-key")],
        )
        .await;
    r.assert_error(400, "VALIDATION_FAILED");
}

#[tokio::test]
async fn fifty_concurrent_requests_with_one_key_make_one_payment_and_one_event() {
    let app = spawn_app().await;
    let replies = join_all((0..50).map(|_| app.authorize(7777, "race-key"))).await;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "no 5xx, nothing else: {statuses:?}"
    );
    let created: Vec<_> = replies.iter().filter(|r| r.status == 200).collect();
    assert!(!created.is_empty());
    let first = created
        .iter()
        .find(|r| r.header("idempotent-replayed").is_none())
        .expect("one original");
    for r in &created {
        assert_eq!(r.bytes, first.bytes, "every 200 carries the original body");
    }
    assert_eq!(
        created
            .iter()
            .filter(|r| r.header("idempotent-replayed").is_none())
            .count(),
        1
    );
    for r in replies.iter().filter(|r| r.status == 409) {
        r.assert_error(409, "IDEMPOTENCY_IN_PROGRESS");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM outbox_events").await, 1);
}

#[tokio::test]
async fn keyed_captures_replay_instead_of_conflicting() {
    let app = spawn_app().await;
    let id = app.authorized_payment(1000).await;
    let path = format!("/payments/capture/{id}");
    let body = json!({"amount": 400});
    let send = || {
        app.request(
            Method::POST,
            &path,
            Some(app.key()),
            Some(&body),
            &[("Idempotency-Key", "cap-1")],
        )
    };
    let first = send().await;
    assert_eq!(first.status, 200);
    let again = send().await;
    assert_eq!((again.status, &again.bytes), (200, &first.bytes));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        app.count("SELECT captured_amount FROM payments").await,
        400,
        "captured once"
    );
}

#[tokio::test]
async fn a_refused_keyed_request_replays_its_refusal() {
    let app = spawn_app().await;
    let id = app.authorized_payment(1000).await;
    let path = format!("/payments/refund/{id}");
    let body = json!({});
    let send = || {
        app.request(
            Method::POST,
            &path,
            Some(app.key()),
            Some(&body),
            &[("Idempotency-Key", "ref-1")],
        )
    };
    let first = send().await;
    first.assert_error(409, "INVALID_STATE");
    assert_eq!(
        app.post(&format!("/payments/capture/{id}"), &json!({}))
            .await
            .status,
        200
    );
    let again = send().await;
    assert_eq!(
        (again.status, &again.bytes),
        (409, &first.bytes),
        "same key, same answer"
    );
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
}

#[tokio::test]
async fn an_expired_key_may_be_used_again() {
    let app = spawn_app().await;
    assert_eq!(app.authorize(1000, "old").await.status, 200);
    sqlx::query("UPDATE idempotency_keys SET created_at = created_at - INTERVAL 2 DAY, expires_at = UTC_TIMESTAMP(6) - INTERVAL 1 SECOND")
        .execute(&app.db)
        .await
        .unwrap();
    app.forget_cached_responses().await;
    let r = app.authorize(2000, "old").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.bytes));
    assert!(r.header("idempotent-replayed").is_none());
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 2);
}

#[tokio::test]
async fn a_replay_while_the_first_request_still_runs_gets_409_not_a_second_payment() {
    let app = crate::helpers::spawn_app_with(|c| c.database_lock_wait_timeout_seconds = 1).await;
    // Play the first request: its transaction has claimed the key and has not committed yet.
    let mut first = app.db.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO idempotency_keys (merchant_id, idempotency_key, request_fingerprint, state, created_at, expires_at) \
         VALUES (?, 'slow-key', REPEAT('x', 32), 'IN_PROGRESS', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) + INTERVAL 1 DAY)",
    )
    .bind(app.merchant.id.as_str())
    .execute(&mut *first)
    .await
    .unwrap();
    let r = app.authorize(1000, "slow-key").await;
    r.assert_error(409, "IDEMPOTENCY_IN_PROGRESS");
    first.rollback().await.unwrap();
    // Once the first gave up, the key is free and the retry goes through.
    assert_eq!(app.authorize(1000, "slow-key").await.status, 200);
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 1);
}
