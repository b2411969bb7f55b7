//! Requests are read strictly: what the black-box review found accepted must be refused, and nothing may
//! move money when a request is refused (issue 12).

use crate::helpers::{new_merchant, spawn_app, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

async fn captured_payment(app: &TestApp, amount: i64) -> String {
    let id = app.authorized_payment(amount).await;
    let r = app
        .post(&format!("/payments/capture/{id}"), &json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.bytes));
    id
}

async fn payment(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/payments/{id}")).await.json()
}

/// The detail of a 400 names `field`.
fn assert_names(err: &Value, field: &str, why: &str) {
    let details = err["details"]
        .as_array()
        .unwrap_or_else(|| panic!("{why}: no details: {err}"));
    assert!(
        details.iter().any(|d| d["field"] == field),
        "{why}: details {details:?} should name {field}"
    );
}

#[tokio::test]
async fn a_misspelt_refund_amount_is_400_and_refunds_nothing() {
    let app = spawn_app().await;
    let id = captured_payment(&app, 10_000).await;
    for (body, field, why) in [
        (
            json!({"refundAmount": 100}),
            "refundAmount",
            "misspelt amount",
        ),
        (json!({"amount": null}), "amount", "amount null"),
        (
            json!({"amount": 100, "reason": "x", "extra": true}),
            "extra",
            "one unknown field among known ones",
        ),
    ] {
        let r = app.post(&format!("/payments/refund/{id}"), &body).await;
        let err = r.assert_error(400, "VALIDATION_FAILED");
        assert_names(&err, field, why);
        assert_eq!(payment(&app, &id).await["refundedAmount"], 0, "{why}");
    }
    for (route, body, field) in [
        ("capture", json!({"captureAmount": 5}), "captureAmount"),
        ("capture", json!({"amount": null}), "amount"),
        ("void", json!({"voidReason": "x"}), "voidReason"),
    ] {
        let fresh = app.authorized_payment(1000).await;
        let r = app.post(&format!("/payments/{route}/{fresh}"), &body).await;
        let err = r.assert_error(400, "VALIDATION_FAILED");
        assert_names(&err, field, route);
        assert_eq!(
            payment(&app, &fresh).await["status"],
            "AUTHORIZED",
            "{route}"
        );
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox_events WHERE event_type <> 'PAYMENT_AUTHORIZED'")
            .await,
        1,
        "only the capture of the first payment may have happened"
    );
}

#[tokio::test]
async fn an_omitted_amount_still_means_all_that_remains() {
    let app = spawn_app().await;
    let id = captured_payment(&app, 10_000).await;
    let r = app
        .post(&format!("/payments/refund/{id}"), &json!({"amount": 2500}))
        .await;
    assert_eq!(r.status, 200);
    let r = app
        .post(
            &format!("/payments/refund/{id}"),
            &json!({"reason": "rest"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["refundedAmount"], 10_000);
}

#[tokio::test]
async fn unknown_authorize_fields_are_400_naming_the_field() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/payments/authorize",
            &json!({"amount": 1000, "currency": "KRW", "idempotencyKey": "k", "amout": 5}),
        )
        .await;
    let err = r.assert_error(400, "VALIDATION_FAILED");
    assert_names(&err, "amout", "typo beside the real field");
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 0);
}

#[tokio::test]
async fn trailing_bytes_after_the_json_are_400() {
    let app = spawn_app().await;
    for (body, why) in [
        (
            r#"{"amount":1000,"currency":"KRW","idempotencyKey":"t1"}garbage"#,
            "garbage",
        ),
        (
            r#"{"amount":1000,"currency":"KRW","idempotencyKey":"t2"}{"amount":5}"#,
            "a second object",
        ),
        (
            r#"{"amount":1000,"currency":"KRW","idempotencyKey":"t3","amount":99}"#,
            "a field twice",
        ),
    ] {
        let r = app
            .client
            .post(format!("{}/payments/authorize", app.address))
            .bearer_auth(app.key())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{why}");
        let b: Value = r.json().await.unwrap();
        assert!(
            b["code"] == "BAD_REQUEST" || b["code"] == "VALIDATION_FAILED",
            "{why}: {b}"
        );
    }
    // Whitespace after the value is still fine.
    let r = app
        .client
        .post(format!("{}/payments/authorize", app.address))
        .bearer_auth(app.key())
        .header("content-type", "application/json")
        .body("{\"amount\":1000,\"currency\":\"KRW\",\"idempotencyKey\":\"t4\"}\r\n ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 1);
}

#[tokio::test]
async fn idempotency_keys_differing_only_in_case_are_distinct_payments() {
    let app = spawn_app().await;
    let first = app.authorize(1000, "Order-7aX").await;
    assert_eq!(first.status, 200);
    let second = app.authorize(1000, "order-7Ax").await;
    assert_eq!(
        second.status,
        200,
        "{}",
        String::from_utf8_lossy(&second.bytes)
    );
    assert!(
        second.header("idempotent-replayed").is_none(),
        "a distinct key was swallowed as a replay"
    );
    assert_ne!(first.json()["paymentId"], second.json()["paymentId"]);
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 2);
    // Each key replays its own payment, from the database as well (Redis forgotten).
    app.forget_cached_responses().await;
    for (key, original) in [("Order-7aX", &first), ("order-7Ax", &second)] {
        let again = app.authorize(1000, key).await;
        assert_eq!(again.header("idempotent-replayed"), Some("true"), "{key}");
        assert_eq!(
            again.json()["paymentId"],
            original.json()["paymentId"],
            "{key}"
        );
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 2);
}

#[tokio::test]
async fn merchant_ids_differing_only_in_case_are_distinct_merchants() {
    let app = spawn_app().await;
    let lower = new_merchant(&app.db, "m-case").await;
    let upper = new_merchant(&app.db, "M-CASE").await;
    let body = json!({"amount": 1000, "currency": "KRW", "idempotencyKey": "same-key"});
    let mut ids = Vec::new();
    for m in [&lower, &upper] {
        let r = app
            .request(
                Method::POST,
                "/payments/authorize",
                Some(m.key.expose()),
                Some(&body),
                &[],
            )
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.bytes));
        assert!(r.header("idempotent-replayed").is_none());
        assert_eq!(r.json()["merchantId"], m.id.as_str());
        ids.push(r.json()["paymentId"].as_str().unwrap().to_owned());
    }
    // Neither sees the other's payment.
    let r = app
        .request(
            Method::GET,
            &format!("/payments/{}", ids[0]),
            Some(upper.key.expose()),
            None,
            &[],
        )
        .await;
    r.assert_error(404, "PAYMENT_NOT_FOUND");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM merchants WHERE merchant_id IN ('m-case', 'M-CASE')")
            .await,
        2
    );
}

#[tokio::test]
async fn made_up_methods_and_paths_add_no_metric_series() {
    let app = spawn_app().await;
    let series = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("http_requests_total{"))
            .count()
    };
    // Warm up the label values any client reaches.
    app.request(Method::GET, "/health", None, None, &[]).await;
    let before = series(&app.state.metrics.render());
    for i in 0..60 {
        let method = Method::from_bytes(format!("X{i}M").as_bytes()).unwrap();
        app.request(method.clone(), "/payments/authorize", None, None, &[])
            .await;
        app.request(method, &format!("/no/such/{i}"), None, None, &[])
            .await;
        app.request(Method::GET, &format!("/random-{i}"), None, None, &[])
            .await;
    }
    let text = app.state.metrics.render();
    let added = series(&text) - before;
    assert!(
        added <= 4,
        "{added} new series from 180 junk requests:\n{}",
        text.lines()
            .filter(|l| l.starts_with("http_requests_total{"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        !text.contains("method=\"X1M\""),
        "a made-up method became a label value"
    );
    assert!(text.contains("method=\"OTHER\""));
}

/// axum's own rejections are plain text; every refusal must be in the API's shape (found by schemathesis).
#[tokio::test]
async fn malformed_ids_and_query_strings_are_400_in_the_error_shape() {
    let app = spawn_app().await;
    let id = uuid::Uuid::now_v7();
    for (method, path, field) in [
        (Method::GET, "/payments/%FF".to_owned(), "paymentId"),
        (Method::GET, "/payments/%FF/ledger".to_owned(), "paymentId"),
        (
            Method::POST,
            "/payments/capture/%C3%28".to_owned(),
            "paymentId",
        ),
        // One spelling per id: the hyphenated one (`format: uuid`), not the others Uuid reads.
        (
            Method::GET,
            format!("/payments/{}", id.simple()),
            "paymentId",
        ),
        (
            Method::GET,
            format!("/payments/{}", id.braced()),
            "paymentId",
        ),
        (
            Method::POST,
            format!("/payments/void/{}", id.urn()),
            "paymentId",
        ),
        (
            Method::GET,
            "/payments?status=CAPTURED&status=VOIDED".to_owned(),
            "query",
        ),
        (Method::GET, "/payments?limit=5&limit=6".to_owned(), "query"),
    ] {
        let r = app.request(method, &path, Some(app.key()), None, &[]).await;
        assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
        let err = r.assert_error(400, "VALIDATION_FAILED");
        assert_names(&err, field, &path);
    }
    // The hyphenated id in either case is a payment id (here: nobody's).
    let upper = id.hyphenated().to_string().to_ascii_uppercase();
    app.get(&format!("/payments/{upper}"))
        .await
        .assert_error(404, "PAYMENT_NOT_FOUND");
}

#[tokio::test]
async fn a_body_over_2_mib_is_413() {
    let app = spawn_app().await;
    let id = app.authorized_payment(1000).await;
    let body = format!(r#"{{"reason": "{}"}}"#, "x".repeat(3 << 20));
    let r = app
        .client
        .post(format!("{}/payments/void/{id}", app.address))
        .bearer_auth(app.key())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["code"], "PAYLOAD_TOO_LARGE", "{b}");
    assert_eq!(payment(&app, &id).await["status"], "AUTHORIZED");
}

/// `1000`, `1000.0` and `1e3` are one JSON number, and JSON Schema's `type: integer` (the document's)
/// accepts all three, so the server does; a fraction is still refused.
#[tokio::test]
async fn an_integral_amount_is_accepted_in_any_json_spelling() {
    let app = spawn_app().await;
    for (i, amount) in [json!(1000), json!(1000.0), json!(1e3)]
        .into_iter()
        .enumerate()
    {
        let r = app
            .post(
                "/payments/authorize",
                &json!({"amount": amount, "currency": "KRW", "idempotencyKey": format!("n{i}")}),
            )
            .await;
        assert_eq!(
            r.status,
            200,
            "{amount}: {}",
            String::from_utf8_lossy(&r.bytes)
        );
        assert_eq!(r.json()["amount"], 1000, "{amount}");
    }
    // The same request spelt differently is the same request: a replay, not a 422.
    let again = app
        .post(
            "/payments/authorize",
            &json!({"amount": 1000, "currency": "KRW", "idempotencyKey": "n1"}),
        )
        .await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let id = app.authorized_payment(1000).await;
    let r = app
        .post(
            &format!("/payments/capture/{id}"),
            &json!({"amount": 2.5e2}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.bytes));
    assert_eq!(r.json()["capturedAmount"], 250);
    for bad in [json!(1000.5), json!("1000"), json!(1e12)] {
        let r = app
            .post(
                "/payments/authorize",
                &json!({"amount": bad, "currency": "KRW", "idempotencyKey": "frac"}),
            )
            .await;
        let err = r.assert_error(400, "VALIDATION_FAILED");
        assert_names(&err, "amount", &bad.to_string());
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 4);
}
