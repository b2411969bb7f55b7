use crate::helpers::{blocking, spawn_app, spawn_dedicated};
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

/// Refusals of a healthy-but-unwilling database (maintenance, failover, limits, operator mistakes), as a
/// trigger raises them: (error number, SQLSTATE, message). None is the request's fault.
const OPERATIONAL_REFUSALS: [(u16, &str, &str); 8] = [
    (
        1290,
        "HY000",
        "The MariaDB server is running with the --read-only option so it cannot execute this statement",
    ),
    (1836, "HY000", "Running in read-only mode"),
    (1040, "08004", "Too many connections"),
    (1142, "42000", "INSERT command denied to user for table payments"),
    (1317, "70100", "Query execution was interrupted"),
    (
        1969,
        "70100",
        "Query execution was interrupted (max_statement_time exceeded)",
    ),
    (1114, "HY000", "The table payments is full"),
    (1021, "HY000", "Disk full; waiting for someone to free some space"),
];

#[tokio::test]
async fn a_database_refusing_writes_answers_503_commits_nothing_and_the_same_request_succeeds_after(
) {
    let app = spawn_app().await;
    for (errno, sqlstate, message) in OPERATIONAL_REFUSALS {
        sqlx::raw_sql(&format!(
            "CREATE TRIGGER refuse_payments BEFORE INSERT ON payments FOR EACH ROW \
             SIGNAL SQLSTATE '{sqlstate}' SET MYSQL_ERRNO = {errno}, MESSAGE_TEXT = '{message}'"
        ))
        .execute(&app.db)
        .await
        .unwrap();
        let r = app.authorize(1000, "refused-then-accepted").await;
        assert_eq!(
            r.status,
            503,
            "errno {errno}: {}",
            String::from_utf8_lossy(&r.bytes)
        );
        let body = r.assert_error(503, "DATABASE_UNAVAILABLE");
        assert_eq!(r.header("retry-after"), Some("1"), "errno {errno}: {body}");
        assert!(
            !body.to_string().contains(message),
            "errno {errno}: the database's words stay inside: {body}"
        );
        for table in ["payments", "outbox_events", "idempotency_keys"] {
            assert_eq!(
                app.count(&format!("SELECT COUNT(*) FROM {table}")).await,
                0,
                "errno {errno}: nothing committed in {table}"
            );
        }
        sqlx::raw_sql("DROP TRIGGER refuse_payments")
            .execute(&app.db)
            .await
            .unwrap();
    }
    let first = app.authorize(1000, "refused-then-accepted").await;
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.bytes)
    );
    let again = app.authorize(1000, "refused-then-accepted").await;
    assert_eq!((again.status, &again.bytes), (200, &first.bytes));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    for table in ["payments", "outbox_events", "idempotency_keys"] {
        assert_eq!(
            app.count(&format!("SELECT COUNT(*) FROM {table}")).await,
            1,
            "{table}: the request took effect once"
        );
    }
}
