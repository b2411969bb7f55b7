//! Retention keeps up: every expired idempotency record and every published outbox row past its
//! retention goes in one purge, and nothing live is touched.

use crate::helpers::spawn_app_with;
use std::time::Duration;

#[tokio::test]
async fn one_purge_removes_every_expired_key_and_no_live_one() {
    let app = spawn_app_with(|_| {}).await;
    let m = app.merchant.id.as_str();
    sqlx::query(
        "INSERT INTO idempotency_keys (merchant_id, idempotency_key, request_fingerprint, state, \
         response_status, response_body, created_at, expires_at) \
         SELECT ?, CONCAT('old-', seq), REPEAT('x', 32), 'COMPLETED', 200, '{}', \
         UTC_TIMESTAMP(6) - INTERVAL 2 DAY, UTC_TIMESTAMP(6) - INTERVAL 1 SECOND FROM seq_1_to_5000",
    )
    .bind(m)
    .execute(&app.db)
    .await
    .unwrap();
    for key in ["live-1", "live-2", "live-3"] {
        assert_eq!(app.authorize(1000, key).await.status, 200);
    }
    let purged = pay_server::idempotency::purge_expired(&app.db, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(purged, 5000);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM idempotency_keys").await,
        3,
        "only the live keys remain"
    );
    // And a live key still replays.
    app.forget_cached_responses().await;
    let again = app.authorize(1000, "live-1").await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
}

#[tokio::test]
async fn published_outbox_rows_past_retention_are_purged_and_the_watermark_recorded() {
    let app = spawn_app_with(|c| c.relay.disabled = true).await;
    for i in 0..4 {
        assert_eq!(app.authorize(1000, &format!("o{i}")).await.status, 200);
    }
    let ids: Vec<u64> = sqlx::query_scalar("SELECT id FROM outbox_events ORDER BY id")
        .fetch_all(&app.db)
        .await
        .unwrap();
    // Two published long ago, one just now, one never (and old).
    for (id, sql) in [
        (ids[0], "UPDATE outbox_events SET published_at = UTC_TIMESTAMP(6) - INTERVAL 8 DAY, created_at = UTC_TIMESTAMP(6) - INTERVAL 9 DAY WHERE id = ?"),
        (ids[1], "UPDATE outbox_events SET published_at = UTC_TIMESTAMP(6) - INTERVAL 8 DAY, created_at = UTC_TIMESTAMP(6) - INTERVAL 8 DAY WHERE id = ?"),
        (ids[2], "UPDATE outbox_events SET published_at = UTC_TIMESTAMP(6) WHERE id = ?"),
        (ids[3], "UPDATE outbox_events SET created_at = UTC_TIMESTAMP(6) - INTERVAL 30 DAY WHERE id = ?"),
    ] {
        sqlx::query(sql).bind(id).execute(&app.db).await.unwrap();
    }
    let newest_purged: time::PrimitiveDateTime =
        sqlx::query_scalar("SELECT created_at FROM outbox_events WHERE id = ?")
            .bind(ids[1])
            .fetch_one(&app.db)
            .await
            .unwrap();
    let purged = pay_server::outbox::purge_published(
        &app.db,
        time::Duration::days(7),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(purged, 2);
    let left: Vec<u64> = sqlx::query_scalar("SELECT id FROM outbox_events ORDER BY id")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(
        left,
        vec![ids[2], ids[3]],
        "the recent and the unpublished rows stay"
    );
    let through: time::PrimitiveDateTime =
        sqlx::query_scalar("SELECT purged_through FROM outbox_purged WHERE id = 1")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(through, newest_purged);
}
