//! Health, metrics, unknown routes.

use crate::helpers::{settlement, spawn_app, spawn_app_with};
use serde_json::json;

#[tokio::test]
async fn health_says_up_when_the_database_answers() {
    let app = spawn_app().await;
    let r = app.get("/health").await;
    assert_eq!((r.status, r.json()), (200, json!({"status": "UP"})));
    // /ready (the Docker image's HEALTHCHECK) answers as /health does.
    let r = app.get("/ready").await;
    assert_eq!((r.status, r.json()), (200, json!({"status": "UP"})));
    app.db.close().await;
    app.state.db.close().await;
    let r = app.get("/health").await;
    assert_eq!((r.status, r.json()), (503, json!({"status": "DOWN"})));
    let r = app.get("/ready").await;
    assert_eq!((r.status, r.json()), (503, json!({"status": "DOWN"})));
}

#[tokio::test]
async fn metrics_count_requests_settlements_and_injected_failures() {
    let app = spawn_app_with(|c| c.seed = Some(3)).await;
    app.settle("m-a", &settlement("CAPTURE", "m-1", 100, "KRW"))
        .await;
    app.settle("m-b", &settlement("REFUND", "m-1", 100, "KRW"))
        .await;
    app.settle("m-b", &settlement("REFUND", "m-1", 100, "KRW"))
        .await;
    app.put("/v1/admin/settings", &json!({"failureRate": 1.0}))
        .await;
    app.settle("m-c", &settlement("CAPTURE", "m-1", 100, "KRW"))
        .await;
    app.post("/v1/admin/outage", &json!({"seconds": 30})).await;

    let r = app.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let text = r.text();
    for line in [
        "acquirer_requests_total{outcome=\"ok\",route=\"POST /v1/settlements\"} 2",
        "acquirer_requests_total{outcome=\"client_error\",route=\"POST /v1/settlements\"} 1",
        "acquirer_requests_total{outcome=\"unavailable\",route=\"POST /v1/settlements\"} 1",
        "acquirer_settlements_total{type=\"REFUND\"} 1",
        "acquirer_outage_active 1",
    ] {
        assert!(text.contains(line), "{line} not in:\n{text}");
    }
    // The first REFUND was written; the replay with the same key was not counted again, but `m-b`'s
    // second body differs (new ids): 422, a client error.
    let captures =
        payctl_stack::testing::metric_sum(&text, "acquirer_settlements_total{type=\"CAPTURE\"}");
    let failures = payctl_stack::testing::metric_sum(&text, "acquirer_failures_injected_total");
    let after = payctl_stack::testing::metric_sum(
        &text,
        "acquirer_failures_injected_total{when=\"after\"}",
    );
    assert_eq!(failures, 1.0);
    assert_eq!(
        captures,
        1.0 + after,
        "m-a, and m-c only if it failed after the commit"
    );
    assert!(
        text.contains("acquirer_request_duration_seconds_bucket{route=\"POST /v1/settlements\"")
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let app = spawn_app().await;
    app.get("/v1/nothing").await.assert_error(404, "not_found");
    app.send(reqwest::Method::DELETE, "/v1/settlements", None, &[])
        .await
        .assert_error(405, "method_not_allowed");
}
