use crate::helpers::{spawn_app, spawn_app_with};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

const PATH: &str = "/circuit-breaker/kafka-publisher/state";

#[tokio::test]
async fn breaker_control_needs_the_admin_token_and_is_off_without_one() {
    let app = spawn_app().await;
    let r = app
        .request(
            Method::POST,
            PATH,
            Some("anything"),
            Some(&json!({"state": "FORCED_OPEN"})),
            &[],
        )
        .await;
    r.assert_error(403, "FORBIDDEN");

    let app = spawn_app_with(|c| c.admin_token = Some("admin-secret".into())).await;
    let body = json!({"state": "FORCED_OPEN"});
    app.request(Method::POST, PATH, None, Some(&body), &[])
        .await
        .assert_error(401, "UNAUTHORIZED");
    app.request(Method::POST, PATH, Some(app.key()), Some(&body), &[])
        .await
        .assert_error(401, "UNAUTHORIZED");
    app.request(
        Method::POST,
        PATH,
        Some("admin-secret"),
        Some(&json!({"state": "HALF_OPEN"})),
        &[],
    )
    .await
    .assert_error(400, "VALIDATION_FAILED");
}

#[tokio::test]
async fn forced_open_holds_events_in_the_outbox_and_reset_releases_them() {
    let app = spawn_app_with(|c| c.admin_token = Some("admin-secret".into())).await;
    let r = app
        .request(
            Method::POST,
            PATH,
            Some("admin-secret"),
            Some(&json!({"state": "FORCED_OPEN"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["state"], "FORCED_OPEN");
    for i in 0..3 {
        assert_eq!(
            app.authorize(100, &format!("f{i}")).await.status,
            200,
            "payments go on while forced open"
        );
    }
    // Give the relay several polls: it must publish nothing.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(app.unpublished().await, 3);

    let r = app
        .request(
            Method::POST,
            PATH,
            Some("admin-secret"),
            Some(&json!({"state": "CLOSED"})),
            &[],
        )
        .await;
    assert_eq!(r.json()["state"], "CLOSED");
    let seen: Vec<String> = r.json()["recentTransitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, ["FORCED_OPEN", "CLOSED"]);
    app.eventually(
        "outbox drained after reset",
        Duration::from_secs(30),
        || async { app.unpublished().await == 0 },
    )
    .await;
    assert_eq!(app.read_topic("payment.authorized").await.len(), 3);
}
