use crate::helpers::spawn_app;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn get_returns_the_payment_and_list_pages_newest_first() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.authorized_payment(1000 + i).await);
    }
    let r = app.get(&format!("/payments/{}", ids[2])).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["amount"], 1002);
    assert!(r.json().get("message").is_none());

    let page1 = app.get("/payments?limit=2").await.json();
    assert_eq!(page1["hasMore"], true);
    let got: Vec<&str> = page1["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["paymentId"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[4].as_str(), ids[3].as_str()]);
    let cursor = page1["nextCursor"].as_str().unwrap();
    let page2 = app
        .get(&format!("/payments?limit=2&startingAfter={cursor}"))
        .await
        .json();
    let got: Vec<&str> = page2["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["paymentId"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[2].as_str(), ids[1].as_str()]);
    let page3 = app
        .get(&format!("/payments?limit=2&startingAfter={}", ids[1]))
        .await
        .json();
    assert_eq!(page3["data"].as_array().unwrap().len(), 1);
    assert_eq!(page3["hasMore"], false);
    assert!(page3["nextCursor"].is_null());

    assert_eq!(
        app.post(&format!("/payments/capture/{}", ids[0]), &json!({}))
            .await
            .status,
        200
    );
    let captured = app.get("/payments?status=CAPTURED").await.json();
    assert_eq!(captured["data"].as_array().unwrap().len(), 1);

    // Another merchant's list is its own.
    let r = app
        .request(
            Method::GET,
            "/payments",
            Some(app.other_merchant.key.expose()),
            None,
            &[],
        )
        .await;
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 0);

    for bad in [
        "/payments?limit=0",
        "/payments?limit=101",
        "/payments?limit=x",
        "/payments?status=PAID",
        "/payments?startingAfter=7",
    ] {
        app.get(bad).await.assert_error(400, "VALIDATION_FAILED");
    }
}

#[tokio::test]
async fn the_ledger_route_shows_the_payments_legs_and_hides_other_merchants() {
    let app = spawn_app().await;
    let id = app.authorized_payment(1000).await;
    let r = app.get(&format!("/payments/{id}/ledger")).await;
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["entries"].as_array().unwrap().len(), 0);
    assert_eq!(body["balanced"], true);
    // Legs as the consumer will write them.
    let event = uuid::Uuid::now_v7();
    let pid = uuid::Uuid::parse_str(&id).unwrap();
    for (leg, account, side) in [(0u8, "customer_funds", "D"), (1, "merchant_payable", "C")] {
        sqlx::query(
            "INSERT INTO ledger_entries (event_id, leg, payment_id, merchant_id, event_type, account, side, amount, currency, occurred_at) \
             VALUES (?, ?, ?, ?, 'PAYMENT_CAPTURED', ?, ?, 1000, 'KRW', UTC_TIMESTAMP(6))",
        )
        .bind(event)
        .bind(leg)
        .bind(pid)
        .bind(app.merchant.id.as_str())
        .bind(account)
        .bind(side)
        .execute(&app.db)
        .await
        .unwrap();
    }
    let body = app.get(&format!("/payments/{id}/ledger")).await.json();
    assert_eq!(body["entries"].as_array().unwrap().len(), 2);
    assert_eq!(
        (body["totalDebits"].as_i64(), body["totalCredits"].as_i64()),
        (Some(1000), Some(1000))
    );
    assert_eq!(body["entries"][0]["side"], "DEBIT");
    let r = app
        .request(
            Method::GET,
            &format!("/payments/{id}/ledger"),
            Some(app.other_merchant.key.expose()),
            None,
            &[],
        )
        .await;
    r.assert_error(404, "PAYMENT_NOT_FOUND");
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_in_the_error_shape() {
    let app = spawn_app().await;
    app.get("/nope").await.assert_error(404, "NOT_FOUND");
    app.get("/payments/authorize")
        .await
        .assert_error(405, "METHOD_NOT_ALLOWED");
    app.get("/payments/not-a-uuid")
        .await
        .assert_error(400, "VALIDATION_FAILED");
    let r = app
        .request(
            Method::DELETE,
            "/payments/authorize",
            Some(app.key()),
            None,
            &[],
        )
        .await;
    r.assert_error(405, "METHOD_NOT_ALLOWED");
}

#[tokio::test]
async fn operational_endpoints_report_health_readiness_metrics_breaker_and_openapi() {
    let app = spawn_app().await;
    let anon = |path: &'static str| app.request(Method::GET, path, None, None, &[]);
    let health = anon("/health").await;
    assert_eq!(
        (health.status, health.json()["status"].as_str()),
        (200, Some("UP"))
    );

    let ready = anon("/ready").await;
    assert_eq!(ready.status, 200);
    let c = &ready.json()["components"];
    assert_eq!(c["database"]["status"], "UP");
    assert_eq!(c["redis"]["status"], "UP");
    assert_eq!(c["kafka"]["status"], "UP");

    app.authorized_payment(10).await;
    let metrics = String::from_utf8(anon("/metrics").await.bytes).unwrap();
    for name in [
        "http_request_duration_seconds_bucket{method=\"POST\",route=\"/payments/authorize\"",
        "http_requests_total{method=\"POST\",route=\"/payments/authorize\",status=\"200\"}",
        "payments_total{operation=\"authorized\"} 1",
        "outbox_backlog",
        "outbox_oldest_unpublished_age_seconds",
        "circuit_breaker_state{name=\"kafka-publisher\",state=\"closed\"} 1",
        "circuit_breaker_state{name=\"kafka-publisher\",state=\"metrics_only\"} 0",
        "circuit_breaker_failure_rate",
    ] {
        assert!(metrics.contains(name), "metrics lack {name}:\n{metrics}");
    }

    let cb = anon("/circuit-breaker/kafka-publisher").await.json();
    for field in [
        "state",
        "failureRate",
        "slowCallRate",
        "numberOfSuccessfulCalls",
        "numberOfFailedCalls",
        "numberOfSlowCalls",
        "numberOfSlowSuccessfulCalls",
        "numberOfSlowFailedCalls",
        "numberOfBufferedCalls",
        "numberOfNotPermittedCalls",
    ] {
        assert!(cb.get(field).is_some(), "breaker lacks {field}: {cb}");
    }
    assert_eq!(cb["state"], "CLOSED");
    assert!(anon("/circuit-breaker/status").await.json()["kafka-publisher"]["state"].is_string());

    let spec = anon("/openapi.json").await.json();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/payments/authorize",
        "/payments/capture/{id}",
        "/payments/refund/{id}",
        "/payments/void/{id}",
        "/payments",
        "/payments/{id}",
        "/payments/{id}/ledger",
        "/circuit-breaker/kafka-publisher",
        "/health",
        "/ready",
        "/metrics",
    ] {
        assert!(spec["paths"].get(path).is_some(), "OpenAPI lacks {path}");
    }
}

#[tokio::test]
async fn listing_pages_read_an_index_in_order_instead_of_sorting_every_payment() {
    let app = spawn_app().await;
    let m = app.merchant.id.as_str();
    sqlx::query(
        "INSERT INTO payments (payment_id, merchant_id, status, amount, voided_amount, currency, \
         created_at, updated_at) \
         SELECT UNHEX(REPLACE(UUID(), '-', '')), ?, IF(seq % 3 = 0, 'VOIDED', 'AUTHORIZED'), 100, \
         IF(seq % 3 = 0, 100, 0), 'KRW', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) FROM seq_1_to_3000",
    )
    .bind(m)
    .execute(&app.db)
    .await
    .unwrap();
    // Most rows belong to someone else, as on a real platform: scanning the primary key in order is
    // no way out.
    sqlx::query(
        "INSERT INTO payments (payment_id, merchant_id, status, amount, currency, created_at, updated_at) \
         SELECT UNHEX(REPLACE(UUID(), '-', '')), ?, 'AUTHORIZED', 100, 'KRW', UTC_TIMESTAMP(6), \
         UTC_TIMESTAMP(6) FROM seq_1_to_30000",
    )
    .bind(app.other_merchant.id.as_str())
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query("ANALYZE TABLE payments")
        .execute(&app.db)
        .await
        .unwrap();
    let cursor = uuid::Uuid::max();
    for (with_status, with_cursor) in [(false, false), (true, false), (false, true), (true, true)] {
        let sql = format!(
            "EXPLAIN {}",
            pay_server::storage::list_sql(with_status, with_cursor)
        );
        let mut q = sqlx::query(&sql).bind(m);
        if with_status {
            q = q.bind("AUTHORIZED");
        }
        if with_cursor {
            q = q.bind(cursor);
        }
        let plan = q.bind(21u32).fetch_all(&app.db).await.unwrap();
        let steps: Vec<(String, String)> = plan
            .iter()
            .map(|r| {
                use sqlx::Row;
                let text = |c: &str| {
                    r.try_get::<Option<String>, _>(c)
                        .unwrap()
                        .unwrap_or_default()
                };
                (text("key"), text("Extra"))
            })
            .collect();
        assert!(
            steps.iter().all(|(key, extra)| key.starts_with("ix_payments_merchant")
                && !extra.contains("filesort")),
            "status {with_status}, cursor {with_cursor}: a merchant index read in order, not {steps:?}"
        );
    }
    // And the pages are still right.
    let page = app.get("/payments?limit=5&status=VOIDED").await.json();
    assert_eq!(page["data"].as_array().unwrap().len(), 5);
    assert!(page["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["status"] == "VOIDED"));
}
