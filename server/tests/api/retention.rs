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

/// One ledger leg for outbox row `id`, recorded `days_ago`.
async fn leg_for(app: &crate::helpers::TestApp, id: u64, days_ago: u32) {
    sqlx::query(
        "INSERT INTO ledger_entries (event_id, leg, payment_id, merchant_id, event_type, account, side, \
         amount, currency, occurred_at, recorded_at) \
         SELECT event_id, 0, payment_id, ?, event_type, 'authorization_hold', 'D', 1000, 'KRW', created_at, \
         UTC_TIMESTAMP(6) - INTERVAL ? DAY FROM outbox_events WHERE id = ?",
    )
    .bind(app.merchant.id.as_str())
    .bind(days_ago)
    .bind(id)
    .execute(&app.db)
    .await
    .unwrap();
}

fn orphans(report: &pay_consumer::invariants::Report) -> usize {
    report
        .checks
        .iter()
        .find(|c| c.name == "every ledger leg comes from a committed event")
        .expect("the orphan check runs")
        .violations
        .len()
}

#[tokio::test]
async fn published_outbox_rows_in_the_ledger_past_retention_are_purged_and_reconcile_follows() {
    let app = spawn_app_with(|c| c.relay.disabled = true).await;
    for i in 0..5 {
        assert_eq!(app.authorize(1000, &format!("o{i}")).await.status, 200);
    }
    let ids: Vec<u64> = sqlx::query_scalar("SELECT id FROM outbox_events ORDER BY id")
        .fetch_all(&app.db)
        .await
        .unwrap();
    let long_ago = "UPDATE outbox_events SET published_at = UTC_TIMESTAMP(6) - INTERVAL 8 DAY, \
                    created_at = UTC_TIMESTAMP(6) - INTERVAL 9 DAY WHERE id = ?";
    // 0 and 1: published long ago and in the ledger → purged. 2: published just now. 3: never
    // published. 4: published long ago but never applied (say, dead-lettered) → kept.
    for (id, sql) in [
        (ids[0], long_ago),
        (ids[1], long_ago),
        (
            ids[2],
            "UPDATE outbox_events SET published_at = UTC_TIMESTAMP(6) WHERE id = ?",
        ),
        (
            ids[3],
            "UPDATE outbox_events SET created_at = UTC_TIMESTAMP(6) - INTERVAL 30 DAY WHERE id = ?",
        ),
        (ids[4], long_ago),
    ] {
        sqlx::query(sql).bind(id).execute(&app.db).await.unwrap();
    }
    leg_for(&app, ids[0], 8).await;
    leg_for(&app, ids[1], 7).await;
    let newest_leg: time::PrimitiveDateTime =
        sqlx::query_scalar("SELECT MAX(recorded_at) FROM ledger_entries")
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
        vec![ids[2], ids[3], ids[4]],
        "the recent, the unpublished and the never-applied rows stay"
    );
    let through: time::PrimitiveDateTime =
        sqlx::query_scalar("SELECT purged_through FROM outbox_purged WHERE id = 1")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(through, newest_leg);

    // The purged events' legs are not orphans; a leg posted now for an event nobody committed is, even
    // when it claims to have happened long ago.
    let report = pay_consumer::invariants::check(&app.db, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(orphans(&report), 0, "{report:#?}");
    sqlx::query(
        "INSERT INTO ledger_entries (event_id, leg, payment_id, merchant_id, event_type, account, side, \
         amount, currency, occurred_at) SELECT UNHEX(REPEAT('ab', 16)), 0, payment_id, ?, event_type, \
         'authorization_hold', 'D', 5, 'KRW', UTC_TIMESTAMP(6) - INTERVAL 10 DAY FROM outbox_events WHERE id = ?",
    )
    .bind(app.merchant.id.as_str())
    .bind(ids[2])
    .execute(&app.db)
    .await
    .unwrap();
    let report = pay_consumer::invariants::check(&app.db, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(orphans(&report), 1, "{report:#?}");
}
