//! MariaDB access shared by every part of payctl: the pool with its session settings, the schema
//! migrations (from `domain/migrations`), time conversions and the classes of database errors that decide
//! between "answer 503 / retry later" and "this request is wrong".

use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlPoolOptions};
use sqlx::{MySql, MySqlPool, Transaction};
use std::str::FromStr;
use std::time::Duration;
use time::{OffsetDateTime, PrimitiveDateTime};

pub use sqlx;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../domain/migrations");

pub type Tx = Transaction<'static, MySql>;

/// Opens the pool. Every connection uses READ COMMITTED (no gap locks; a statement sees what others
/// committed before it) and a bounded lock wait, so a request never queues for long behind another.
pub fn pool(
    url: &str,
    size: u32,
    acquire_timeout: Duration,
    lock_wait_secs: u32,
) -> anyhow::Result<MySqlPool> {
    let options = MySqlConnectOptions::from_str(url)?
        .charset("utf8mb4")
        .timezone(Some(String::from("+00:00")))
        .statement_cache_capacity(256);
    let pool = MySqlPoolOptions::new()
        .max_connections(size)
        .min_connections(0)
        .acquire_timeout(acquire_timeout)
        .test_before_acquire(false)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                sqlx::query("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(&format!(
                    "SET SESSION innodb_lock_wait_timeout = {lock_wait_secs}"
                ))
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        })
        .connect_lazy_with(options);
    Ok(pool)
}

fn mysql_error_number(e: &sqlx::Error) -> Option<u16> {
    e.as_database_error()
        .and_then(|d| d.try_downcast_ref::<MySqlDatabaseError>())
        .map(|m| m.number())
}

/// The database cannot be reached (down, restarting, pool exhausted): the client should retry later.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => true,
        // 1053 server shutdown, 1927 connection killed, 2002/2003/2006/2013 connection lost or refused.
        _ => matches!(
            mysql_error_number(e),
            Some(1053 | 1927 | 2002 | 2003 | 2006 | 2013)
        ),
    }
}

/// A lock wait timed out or a deadlock was broken: another request holds what we need.
pub fn is_lock_wait(e: &sqlx::Error) -> bool {
    matches!(mysql_error_number(e), Some(1205 | 1213))
}

pub fn is_duplicate_key(e: &sqlx::Error) -> bool {
    matches!(mysql_error_number(e), Some(1062))
}

/// Now, truncated to the microseconds DATETIME(6) keeps, so what we answer equals what we stored.
pub fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000)
        .unwrap_or(t)
}

pub fn to_db(t: OffsetDateTime) -> PrimitiveDateTime {
    let utc = t.to_offset(time::UtcOffset::UTC);
    PrimitiveDateTime::new(utc.date(), utc.time())
}

pub fn from_db(t: PrimitiveDateTime) -> OffsetDateTime {
    t.assume_utc()
}

/// Applies the migrations, waiting (up to about a minute) for the database to come up first.
pub async fn migrate_when_available(db: &MySqlPool) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(200);
    let mut attempt = 0;
    loop {
        match MIGRATOR.run(db).await {
            Ok(()) => return Ok(()),
            Err(sqlx::migrate::MigrateError::Execute(e)) if is_unavailable(&e) && attempt < 30 => {
                tracing::warn!(error = %e, "database not reachable yet; retrying");
            }
            Err(e) => return Err(e.into()),
        }
        attempt += 1;
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}
