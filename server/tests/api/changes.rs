use crate::helpers::spawn_app;
use futures::future::join_all;
use serde_json::json;

#[tokio::test]
async fn capture_partial_refund_then_full_refund_moves_through_the_states() {
    let app = spawn_app().await;
    let id = app.authorized_payment(10_000).await;
    let m = app.merchant.id.as_str();

    let r = app
        .post(
            &format!("/payments/capture/{id}"),
            &json!({"merchantId": m}),
        )
        .await;
    assert_eq!(r.status, 200);
    let b = r.json();
    assert_eq!(
        (b["status"].as_str(), b["capturedAmount"].as_i64()),
        (Some("CAPTURED"), Some(10_000))
    );

    let r = app
        .post(
            &format!("/payments/refund/{id}"),
            &json!({"merchantId": m, "reason": "damaged", "amount": 2500}),
        )
        .await;
    assert_eq!(r.status, 200);
    let b = r.json();
    assert_eq!(
        (b["status"].as_str(), b["refundedAmount"].as_i64()),
        (Some("PARTIALLY_REFUNDED"), Some(2500))
    );

    let r = app
        .post(
            &format!("/payments/refund/{id}"),
            &json!({"merchantId": m, "reason": "rest"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let b = r.json();
    assert_eq!(
        (b["status"].as_str(), b["refundedAmount"].as_i64()),
        (Some("REFUNDED"), Some(10_000))
    );

    let r = app
        .post(
            &format!("/payments/refund/{id}"),
            &json!({"merchantId": m, "reason": "again"}),
        )
        .await;
    r.assert_error(409, "INVALID_STATE");

    let events: Vec<(String, i64)> = sqlx::query_as(
        "SELECT event_type, CAST(JSON_EXTRACT(payload, '$.amount') AS SIGNED) FROM outbox_events ORDER BY id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    let events: Vec<(&str, i64)> = events.iter().map(|(a, b)| (a.as_str(), *b)).collect();
    assert_eq!(
        events,
        vec![
            ("PAYMENT_AUTHORIZED", 10_000),
            ("PAYMENT_CAPTURED", 10_000),
            ("PAYMENT_REFUNDED", 2500),
            ("PAYMENT_REFUNDED", 7500),
        ]
    );
}

#[tokio::test]
async fn state_conflicts_are_409_and_change_nothing() {
    let app = spawn_app().await;
    let id = app.authorized_payment(1000).await;
    app.post(
        &format!("/payments/refund/{id}"),
        &json!({"reason": "early"}),
    )
    .await
    .assert_error(409, "INVALID_STATE");
    app.post(&format!("/payments/capture/{id}"), &json!({"amount": 1001}))
        .await
        .assert_error(409, "AMOUNT_EXCEEDS_REMAINING");
    assert_eq!(
        app.post(&format!("/payments/capture/{id}"), &json!({}))
            .await
            .status,
        200
    );
    app.post(&format!("/payments/capture/{id}"), &json!({}))
        .await
        .assert_error(409, "INVALID_STATE");
    app.post(&format!("/payments/void/{id}"), &json!({}))
        .await
        .assert_error(409, "INVALID_STATE");
    app.post(&format!("/payments/refund/{id}"), &json!({"amount": 1001}))
        .await
        .assert_error(409, "AMOUNT_EXCEEDS_REMAINING");
    assert_eq!(app.count("SELECT COUNT(*) FROM outbox_events").await, 2);
}

#[tokio::test]
async fn void_releases_an_authorization_and_blocks_capture() {
    let app = spawn_app().await;
    let id = app.authorized_payment(1000).await;
    let r = app
        .post(
            &format!("/payments/void/{id}"),
            &json!({"reason": "customer cancelled"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "VOIDED");
    app.post(&format!("/payments/capture/{id}"), &json!({}))
        .await
        .assert_error(409, "INVALID_STATE");
    app.post(&format!("/payments/void/{id}"), &json!({"amount": 5}))
        .await
        .assert_error(400, "VALIDATION_FAILED");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox_events WHERE event_type = 'PAYMENT_VOIDED'")
            .await,
        1
    );
}

#[tokio::test]
async fn unknown_other_merchants_and_malformed_ids() {
    let app = spawn_app().await;
    let id = app.authorized_payment(1000).await;
    let unknown = uuid::Uuid::now_v7();
    app.post(&format!("/payments/capture/{unknown}"), &json!({}))
        .await
        .assert_error(404, "PAYMENT_NOT_FOUND");
    app.post("/payments/capture/42", &json!({}))
        .await
        .assert_error(400, "VALIDATION_FAILED");
    app.post(&format!("/payments/capture/{id}"), &json!({"amount": 0}))
        .await
        .assert_error(400, "VALIDATION_FAILED");
    let long_reason = "x".repeat(129);
    app.post(
        &format!("/payments/refund/{id}"),
        &json!({"reason": long_reason}),
    )
    .await
    .assert_error(400, "VALIDATION_FAILED");
    // Another merchant's key sees nothing: 404, exactly like a missing payment.
    let other = app.other_merchant.key.expose();
    for path in [
        format!("/payments/capture/{id}"),
        format!("/payments/void/{id}"),
        format!("/payments/refund/{id}"),
    ] {
        let r = app
            .request(
                reqwest::Method::POST,
                &path,
                Some(other),
                Some(&json!({})),
                &[],
            )
            .await;
        r.assert_error(404, "PAYMENT_NOT_FOUND");
    }
    let r = app
        .request(
            reqwest::Method::GET,
            &format!("/payments/{id}"),
            Some(other),
            None,
            &[],
        )
        .await;
    r.assert_error(404, "PAYMENT_NOT_FOUND");
    assert_eq!(
        app.get(&format!("/payments/{id}")).await.json()["status"],
        "AUTHORIZED"
    );
}

#[tokio::test]
async fn fifty_concurrent_captures_of_one_payment_succeed_exactly_once() {
    let app = spawn_app().await;
    let id = app.authorized_payment(5000).await;
    let path = format!("/payments/capture/{id}");
    let body = json!({});
    let replies = join_all((0..50).map(|_| app.post(&path, &body))).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let conflicts = replies.iter().filter(|r| r.status == 409).count();
    assert_eq!(
        (ok, conflicts),
        (1, 49),
        "statuses: {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox_events WHERE event_type = 'PAYMENT_CAPTURED'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT captured_amount FROM payments").await,
        5000
    );
}

#[tokio::test]
async fn concurrent_partial_captures_and_refunds_never_exceed_the_amount() {
    let app = spawn_app().await;
    let id = app.authorized_payment(1000).await;
    let capture = format!("/payments/capture/{id}");
    let part = json!({"amount": 30});
    let replies = join_all((0..50).map(|_| app.post(&capture, &part))).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    assert!(replies.iter().all(|r| r.status == 200 || r.status == 409));
    assert_eq!(ok, 33, "1000 / 30 = 33 partial captures fit");
    assert_eq!(app.count("SELECT captured_amount FROM payments").await, 990);

    let refund = format!("/payments/refund/{id}");
    let part = json!({"amount": 40});
    let replies = join_all((0..50).map(|_| app.post(&refund, &part))).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    assert!(replies.iter().all(|r| r.status == 200 || r.status == 409));
    assert_eq!(ok, 24, "990 / 40 = 24 partial refunds fit");
    assert_eq!(app.count("SELECT refunded_amount FROM payments").await, 960);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox_events WHERE event_type = 'PAYMENT_REFUNDED'")
            .await,
        24
    );
}

#[tokio::test]
async fn a_row_lock_held_too_long_is_lock_timeout_not_idempotency_in_progress() {
    let app = crate::helpers::spawn_app_with(|c| c.database_lock_wait_timeout_seconds = 1).await;
    let id = app.authorized_payment(1000).await;
    let holder = app.hold_payment_lock(&id).await;
    // Unkeyed: there is no idempotency key to be "in progress".
    let r = app
        .post(&format!("/payments/capture/{id}"), &json!({}))
        .await;
    r.assert_error(409, "LOCK_TIMEOUT");
    assert_eq!(r.header("retry-after"), Some("1"));
    // Keyed: the key is not what was busy, and it stays free for the retry.
    async fn keyed(app: &crate::helpers::TestApp, id: &str) -> crate::helpers::Reply {
        app.request(
            reqwest::Method::POST,
            &format!("/payments/capture/{id}"),
            Some(app.key()),
            Some(&json!({"amount": 400})),
            &[("Idempotency-Key", "cap-1")],
        )
        .await
    }
    keyed(&app, &id).await.assert_error(409, "LOCK_TIMEOUT");
    holder.rollback().await.unwrap();
    let r = keyed(&app, &id).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.bytes));
    assert!(r.header("idempotent-replayed").is_none());
    assert_eq!(r.json()["capturedAmount"], 400);
}

#[tokio::test]
async fn void_after_a_partial_capture_releases_the_rest_and_events_are_sequenced() {
    let app = spawn_app().await;
    let id = app.authorized_payment(1000).await;
    let r = app
        .post(&format!("/payments/capture/{id}"), &json!({"amount": 600}))
        .await;
    assert_eq!(r.status, 200);
    let r = app
        .post(&format!("/payments/refund/{id}"), &json!({"amount": 100}))
        .await;
    assert_eq!(r.status, 200);
    let r = app.post(&format!("/payments/void/{id}"), &json!({})).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.bytes));
    let b = r.json();
    assert_eq!(
        (
            b["status"].as_str(),
            b["capturedAmount"].as_i64(),
            b["refundedAmount"].as_i64(),
            b["voidedAmount"].as_i64()
        ),
        (Some("PARTIALLY_REFUNDED"), Some(600), Some(100), Some(400))
    );
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("captured stays captured"),
        "a 200 from void must not read as 'nothing was charged': {b}"
    );
    // Nothing is left to capture or to void; refunds of what was captured go on.
    app.post(&format!("/payments/capture/{id}"), &json!({}))
        .await
        .assert_error(409, "INVALID_STATE");
    app.post(&format!("/payments/void/{id}"), &json!({}))
        .await
        .assert_error(409, "INVALID_STATE");
    let r = app
        .post(&format!("/payments/refund/{id}"), &json!({}))
        .await;
    assert_eq!(r.json()["status"], "REFUNDED");

    let events: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT event_type, CAST(JSON_EXTRACT(payload, '$.amount') AS SIGNED), \
         CAST(JSON_EXTRACT(payload, '$.sequence') AS SIGNED), \
         CAST(JSON_EXTRACT(payload, '$.voidedAmount') AS SIGNED) FROM outbox_events ORDER BY id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        events,
        vec![
            ("PAYMENT_AUTHORIZED".into(), 1000, 1, 0),
            ("PAYMENT_CAPTURED".into(), 600, 2, 0),
            ("PAYMENT_REFUNDED".into(), 100, 3, 0),
            ("PAYMENT_VOIDED".into(), 400, 4, 400),
            ("PAYMENT_REFUNDED".into(), 500, 5, 400),
        ]
    );
}
