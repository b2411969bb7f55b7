//! The migrations carry existing data forward: run 0001, write the rows an older version could have
//! written, then every later migration in order.

use crate::helpers::spawn_app;
use payctl_db::MIGRATOR;
use sqlx::MySqlPool;

async fn fresh_database(app: &crate::helpers::TestApp) -> MySqlPool {
    let name = format!("m_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&app.db)
        .await
        .unwrap();
    let url = app
        .state
        .config
        .database_url
        .rsplit_once('/')
        .unwrap()
        .0
        .to_owned();
    MySqlPool::connect(&format!("{url}/{name}")).await.unwrap()
}

#[tokio::test]
async fn later_migrations_apply_over_rows_an_older_version_wrote() {
    let app = spawn_app().await;
    let db = fresh_database(&app).await;
    let migrations = &MIGRATOR.migrations;
    assert_eq!(migrations[0].version, 1);
    sqlx::raw_sql(&migrations[0].sql)
        .execute(&db)
        .await
        .unwrap();
    // A merchant, a payment naming it in another case (the old collation let the foreign key accept
    // it), its ledger legs, and a voided payment.
    sqlx::raw_sql(
        "INSERT INTO merchants (merchant_id, name, api_key_hash, api_key_prefix) \
           VALUES ('m-case', 'old', REPEAT('a', 32), 'sk_x'); \
         INSERT INTO payments (payment_id, merchant_id, amount, currency, status, created_at, updated_at) \
           VALUES (UNHEX(REPEAT('01', 16)), 'M-CASE', 1000, 'KRW', 'AUTHORIZED', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6)), \
                  (UNHEX(REPEAT('02', 16)), 'm-case', 500, 'KRW', 'VOIDED', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6)); \
         INSERT INTO ledger_entries (event_id, leg, payment_id, merchant_id, event_type, account, side, amount, currency, occurred_at) \
           VALUES (UNHEX(REPEAT('0a', 16)), 0, UNHEX(REPEAT('01', 16)), 'M-Case', 'PAYMENT_AUTHORIZED', 'authorization_hold', 'D', 1000, 'KRW', UTC_TIMESTAMP(6));",
    )
    .execute(&db)
    .await
    .unwrap();
    for m in migrations.iter().skip(1) {
        sqlx::raw_sql(&m.sql)
            .execute(&db)
            .await
            .unwrap_or_else(|e| panic!("migration {} ({}): {e}", m.version, m.description));
    }
    let spelt: Vec<String> = sqlx::query_scalar(
        "SELECT merchant_id FROM payments UNION SELECT merchant_id FROM ledger_entries",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(
        spelt,
        vec!["m-case".to_owned()],
        "ids take their merchant's spelling"
    );
    let voided: (i64, i64) = sqlx::query_as(
        "SELECT amount, voided_amount FROM payments WHERE payment_id = UNHEX(REPEAT('02', 16))",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(voided, (500, 500), "a voided payment released all of it");
    db.close().await;
}
