use crate::helpers::{blocking, spawn_dedicated};
use std::time::Duration;

#[tokio::test]
async fn database_down_answers_503_in_the_error_shape_and_recovers_by_itself() {
    let (app, mut services) = spawn_dedicated(|c| {
        c.database_acquire_timeout_ms = 1000;
    })
    .await;
    let id = app.authorized_payment(1000).await;
    let mut services = blocking(move || {
        services.mariadb.stop().unwrap();
        services
    })
    .await;

    let r = app.authorize(1000, "while-down").await;
    let body = r.assert_error(503, "DATABASE_UNAVAILABLE");
    assert!(r.header("retry-after").is_some(), "{body}");
    app.get(&format!("/payments/{id}"))
        .await
        .assert_error(503, "DATABASE_UNAVAILABLE");
    let ready = app
        .request(reqwest::Method::GET, "/ready", None, None, &[])
        .await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["components"]["database"]["status"], "DOWN");
    // Liveness is not readiness: the process itself is fine.
    assert_eq!(
        app.request(reqwest::Method::GET, "/health", None, None, &[])
            .await
            .status,
        200
    );

    let _services = blocking(move || {
        services.mariadb.start().unwrap();
        services
    })
    .await;
    app.eventually("service recovers", Duration::from_secs(30), || async {
        app.authorize(1000, "after").await.status == 200
    })
    .await;
    assert_eq!(app.get(&format!("/payments/{id}")).await.status, 200);
    // The request made while the database was down left nothing behind.
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 2);
}
