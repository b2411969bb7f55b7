use crate::helpers::spawn_app;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn authorize_returns_200_with_the_payment_and_one_outbox_row() {
    let app = spawn_app().await;
    let r = app.authorize(50_000, "order-1").await;
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["status"], "AUTHORIZED");
    assert_eq!(body["amount"], 50_000);
    assert_eq!(body["capturedAmount"], 0);
    assert_eq!(body["currency"], "KRW");
    assert_eq!(body["merchantId"], app.merchant.id.as_str());
    assert!(r.header("idempotent-replayed").is_none());
    assert!(r.header("ratelimit-remaining").is_some());
    let id = body["paymentId"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox_events WHERE event_type = 'PAYMENT_AUTHORIZED'")
            .await,
        1
    );
}

#[tokio::test]
async fn authorize_without_merchant_id_in_the_body_uses_the_key_and_header_key_works() {
    let app = spawn_app().await;
    let r = app
        .request(
            Method::POST,
            "/payments/authorize",
            Some(app.key()),
            Some(&json!({"amount": 1000, "currency": "USD"})),
            &[("Idempotency-Key", "hdr-1")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.bytes));
    assert_eq!(r.json()["merchantId"], app.merchant.id.as_str());
}

#[tokio::test]
async fn authorize_returns_400_with_field_details_for_invalid_bodies() {
    let app = spawn_app().await;
    let m = app.merchant.id.as_str();
    let cases = [
        (
            json!({"merchantId": m, "amount": 0, "currency": "KRW", "idempotencyKey": "k"}),
            "amount",
            "zero amount",
        ),
        (
            json!({"merchantId": m, "amount": -5, "currency": "KRW", "idempotencyKey": "k"}),
            "amount",
            "negative amount",
        ),
        (
            json!({"merchantId": m, "amount": 100_000_000_000i64, "currency": "KRW", "idempotencyKey": "k"}),
            "amount",
            "amount over the maximum",
        ),
        (
            json!({"merchantId": m, "amount": "1000", "currency": "KRW", "idempotencyKey": "k"}),
            "amount",
            "amount as a string",
        ),
        (
            json!({"merchantId": m, "amount": 1000.7, "currency": "KRW", "idempotencyKey": "k"}),
            "amount",
            "fractional amount",
        ),
        (
            json!({"merchantId": m, "currency": "KRW", "idempotencyKey": "k"}),
            "amount",
            "missing amount",
        ),
        (
            json!({"merchantId": m, "amount": 1000, "currency": "XXX", "idempotencyKey": "k"}),
            "currency",
            "unknown currency",
        ),
        (
            json!({"merchantId": m, "amount": 1000, "currency": "krw", "idempotencyKey": "k"}),
            "currency",
            "lower-case currency",
        ),
        (
            json!({"merchantId": m, "amount": 1000, "currency": "a", "idempotencyKey": "k"}),
            "currency",
            "one-letter currency",
        ),
        (
            json!({"merchantId": m, "amount": 1000, "currency": "KRW"}),
            "idempotencyKey",
            "no idempotency key",
        ),
        (
            json!({"merchantId": m, "amount": 1000, "currency": "KRW", "idempotencyKey": ""}),
            "idempotencyKey",
            "empty idempotency key",
        ),
        (
            json!({"merchantId": m, "amount": 1000, "currency": "KRW", "idempotencyKey": "has space"}),
            "idempotencyKey",
            "key with a space",
        ),
    ];
    for (body, field, why) in cases {
        let r = app.post("/payments/authorize", &body).await;
        let err = r.assert_error(400, "VALIDATION_FAILED");
        let details = err["details"]
            .as_array()
            .unwrap_or_else(|| panic!("{why}: no details: {err}"));
        assert!(
            details
                .iter()
                .any(|d| d["field"].as_str().unwrap().contains(field)
                    || d["reason"].as_str().unwrap().contains(field)),
            "{why}: details {details:?} should name {field}"
        );
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM payments").await,
        0,
        "nothing may be written"
    );
}

#[tokio::test]
async fn malformed_json_is_400_and_wrong_content_type_is_415() {
    let app = spawn_app().await;
    let send = |body: &'static str, content_type: &'static str| {
        app.client
            .post(format!("{}/payments/authorize", app.address))
            .bearer_auth(app.key())
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let r = send("{\"amount\": 10,", "application/json").await.unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "BAD_REQUEST");

    let r = send("amount=10", "application/x-www-form-urlencoded")
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "UNSUPPORTED_MEDIA_TYPE");
}

#[tokio::test]
async fn missing_or_invalid_api_keys_get_401() {
    let app = spawn_app().await;
    let body = json!({"amount": 1000, "currency": "KRW", "idempotencyKey": "k"});
    for (key, why) in [
        (None, "no key"),
        (Some("sk_not_a_real_key"), "unknown key"),
        (Some(""), "empty key"),
    ] {
        let r = app
            .request(Method::POST, "/payments/authorize", key, Some(&body), &[])
            .await;
        r.assert_error(401, "UNAUTHORIZED");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{why}");
    }
    let r = app
        .request(
            Method::GET,
            "/payments",
            None,
            None,
            &[("authorization", "Basic Zm9vOmJhcg==")],
        )
        .await;
    r.assert_error(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn a_body_merchant_id_that_differs_from_the_key_is_403() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/payments/authorize",
            &json!({"merchantId": app.other_merchant.id.as_str(), "amount": 1000, "currency": "KRW", "idempotencyKey": "k"}),
        )
        .await;
    r.assert_error(403, "FORBIDDEN");
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 0);
}
