//! Misbehaviour on purpose: latency, failures before and after the commit, outages.

use crate::helpers::{settlement, spawn_app, spawn_app_with};
use pay_acquirer::config::FailureRate;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn failures_after_the_commit_are_settled_and_a_retry_replays_them() {
    let app = spawn_app_with(|c| {
        c.failure_rate = FailureRate::new(1.0).unwrap();
        c.seed = Some(42);
    })
    .await;
    let bodies: Vec<_> = (0..12)
        .map(|_| settlement("CAPTURE", "m-1", 10_000, "KRW"))
        .collect();
    for (i, body) in bodies.iter().enumerate() {
        let r = app.settle(&format!("flaky-{i}"), body).await;
        r.assert_error(503, "acquirer_unavailable");
        assert!(r.header("retry-after").is_some());
    }
    let before = app.metric("acquirer_failures_injected_total{when=\"before\"}");
    let after = app.metric("acquirer_failures_injected_total{when=\"after\"}");
    assert_eq!(before + after, 12.0);
    assert!(
        before > 0.0 && after > 0.0,
        "seed 42 gives both kinds: {before} / {after}"
    );
    // Exactly the after-commit failures settled, though every caller saw 503.
    assert_eq!(app.rows().await as f64, after);

    let r = app
        .put("/v1/admin/settings", &json!({"failureRate": 0.0}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (mut replayed, mut created) = (0, 0);
    for (i, body) in bodies.iter().enumerate() {
        let r = app.settle(&format!("flaky-{i}"), body).await;
        match r.status {
            200 => {
                replayed += 1;
                let reference = r.json()["reference"].as_str().unwrap().to_owned();
                let stored: String = sqlx::query_scalar(
                    "SELECT reference FROM acquirer_settlements WHERE idempotency_key = ?",
                )
                .bind(format!("flaky-{i}"))
                .fetch_one(&app.db)
                .await
                .unwrap();
                assert_eq!(reference, stored);
            }
            201 => created += 1,
            s => panic!("retry {i}: {s} {}", r.text()),
        }
    }
    assert_eq!((replayed as f64, created as f64), (after, before));
    assert_eq!(app.rows().await, 12, "never settled twice");
}

#[tokio::test]
async fn each_settlement_takes_the_configured_latency() {
    let app = spawn_app().await;
    let r = app
        .put("/v1/admin/settings", &json!({"latencyMs": "200-300"}))
        .await;
    assert_eq!(
        r.json(),
        json!({"latencyMs": "200-300", "failureRate": 0.0})
    );
    assert_eq!(app.get("/v1/admin/settings").await.json(), r.json());
    let start = Instant::now();
    let s = app
        .settle("slow", &settlement("CAPTURE", "m-1", 100, "KRW"))
        .await;
    assert_eq!(s.status, 201);
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
    // Reads are not slowed.
    let start = Instant::now();
    assert_eq!(app.get("/v1/statements/2026-01-01").await.status, 200);
    assert!(start.elapsed() < Duration::from_millis(200));

    for (bad, field) in [
        (json!({"latencyMs": "3-1"}), "latencyMs"),
        (json!({"failureRate": 1.5}), "failureRate"),
        (json!({"failurerate": 0.5}), "failurerate"),
    ] {
        let err = app
            .put("/v1/admin/settings", &bad)
            .await
            .assert_error(400, "validation_failed");
        assert_eq!(err["details"][0]["field"], field, "{err}");
    }
}

#[tokio::test]
async fn an_outage_refuses_every_request_until_it_is_ended() {
    let app = spawn_app().await;
    let r = app.post("/v1/admin/outage", &json!({"seconds": 60})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let until = r.json()["outageUntil"].as_str().unwrap().to_owned();

    let body = settlement("CAPTURE", "m-1", 1_000, "KRW");
    let refused = app.settle("during-outage", &body).await;
    refused.assert_error(503, "acquirer_unavailable");
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((55..=60).contains(&retry_after), "{retry_after}");
    app.get("/v1/statements/2026-01-01")
        .await
        .assert_error(503, "acquirer_unavailable");
    app.get("/v1/settlements/ACQ-X")
        .await
        .assert_error(503, "acquirer_unavailable");
    // The admin routes and health still answer.
    assert_eq!(app.get("/v1/admin/settings").await.status, 200);
    let health = app.get("/health").await;
    assert_eq!(health.json(), json!({"status": "UP", "outageUntil": until}));
    assert_eq!(app.metric("acquirer_outage_active"), 1.0);
    assert_eq!(app.rows().await, 0);

    let r = app.post("/v1/admin/outage", &json!({"seconds": 0})).await;
    assert_eq!(r.json(), json!({"outageUntil": null}));
    assert_eq!(app.settle("during-outage", &body).await.status, 201);
    assert_eq!(app.metric("acquirer_outage_active"), 0.0);
    assert_eq!(app.get("/health").await.json(), json!({"status": "UP"}));

    app.post("/v1/admin/outage", &json!({"seconds": 86_401}))
        .await
        .assert_error(400, "validation_failed");
    app.post("/v1/admin/outage", &json!({"secs": 5}))
        .await
        .assert_error(400, "validation_failed");
}

#[tokio::test]
async fn a_short_outage_ends_by_itself() {
    let app = spawn_app().await;
    app.post("/v1/admin/outage", &json!({"seconds": 1})).await;
    let body = settlement("CAPTURE", "m-1", 1_000, "KRW");
    app.settle("short", &body)
        .await
        .assert_error(503, "acquirer_unavailable");
    payctl_stack::testing::eventually("the outage ends", Duration::from_secs(5), || async {
        app.settle("short", &body).await.status == 201
    })
    .await;
}
