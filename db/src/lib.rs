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

/// The server's error number (`ER_*`), if `e` is an error the MariaDB server sent.
pub fn mysql_error_number(e: &sqlx::Error) -> Option<u16> {
    e.as_database_error()
        .and_then(|d| d.try_downcast_ref::<MySqlDatabaseError>())
        .map(|m| m.number())
}

/// Server error numbers that say "not now": the statement was fine, the server could not or would not
/// run it at this moment. An operator or time fixes them; the request is retried unchanged.
fn unavailable_number(n: u16) -> bool {
    matches!(
        n,
        // The server is going away or the connection broke: 1053 shutdown in progress, 1927 connection
        // killed, 1158–1161 network read/write errors and timeouts, 2002/2003/2006/2013 (client-side
        // numbers) connection refused or lost.
        1053 | 1927 | 1158 | 1159 | 1160 | 1161 | 2002 | 2003 | 2006 | 2013
        // Out of connections: 1040 max_connections, 1203 max_user_connections, 1226 an account
        // resource limit (max_queries_per_hour …), 1129 host blocked after connection errors (FLUSH
        // HOSTS), 1637 too many concurrent transactions.
        | 1040 | 1203 | 1226 | 1129 | 1637
        // Writes refused during maintenance or failover: 1290 --read-only (also the other "option
        // prevents statement" cases, all server configuration), 1836 read-only mode, 1792 a read-only
        // transaction (global transaction_read_only, or a proxy routing writes to a replica).
        | 1290 | 1836 | 1792
        // Privileges: an operator's mistake (a revoked grant, a locked or expired account), never the
        // request's fault. 1044 database, 1045/1698 login, 1130 host, 1142 table, 1143 column, 1227
        // global privilege, 1370 routine, 1820/1862 password must be changed, 4151 account locked.
        | 1044 | 1045 | 1698 | 1130 | 1142 | 1143 | 1227 | 1370 | 1820 | 1862 | 4151
        // The statement was stopped, not refused: 1317 KILL QUERY, 1969 max_statement_time (3024 is
        // MySQL's max_execution_time; MariaDB never sends it), 1615 prepared statement needs
        // re-preparing after DDL.
        | 1317 | 1969 | 3024 | 1615
        // Out of resources: 1021 disk full, 1114 table full (tablespace or disk), 1037/1041 out of
        // memory, 1038 out of sort memory, 1206 lock table full.
        | 1021 | 1114 | 1037 | 1041 | 1038 | 1206
        // The storage engine failed: 1030 engine error, 1180/1181 error during COMMIT/ROLLBACK,
        // 1194/1195 a table marked crashed (needs REPAIR).
        | 1030 | 1180 | 1181 | 1194 | 1195
    )
}

/// The database cannot serve us right now (down, restarting, pool exhausted, read-only, out of
/// connections, disk or memory, privileges revoked, statement killed or timed out): the client should
/// retry later, and the server answers 503.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => true,
        _ => mysql_error_number(e).is_some_and(unavailable_number),
    }
}

/// A lock wait timed out or a deadlock was broken: another request holds what we need.
pub fn is_lock_wait(e: &sqlx::Error) -> bool {
    matches!(mysql_error_number(e), Some(1205 | 1213))
}

pub fn is_duplicate_key(e: &sqlx::Error) -> bool {
    matches!(mysql_error_number(e), Some(1062))
}

/// Server error numbers that say "these values are wrong": the same row would be refused by any
/// healthy server, any number of times. Strict mode (MariaDB's default `STRICT_TRANS_TABLES`) turns the
/// conversion warnings into these errors.
fn data_error_number(n: u16) -> bool {
    matches!(
        n,
        // Constraints: 4025 CHECK failed (3819 is MySQL's number for it), 1452/1216 no parent row for a
        // foreign key, 1451/1217 a parent row still referenced.
        4025 | 3819 | 1452 | 1216 | 1451 | 1217
        // A value the column cannot hold: 1048 NULL into NOT NULL, 1264 out of range, 1265 truncated
        // (e.g. not one of an ENUM's values), 1292 incorrect (date)time or number, 1366 incorrect value
        // for the column (e.g. bytes not in its character set), 1406 too long.
        | 1048 | 1264 | 1265 | 1292 | 1366 | 1406
        // Arithmetic on the values: 1365 division by zero, 1690 BIGINT out of range, 1411 incorrect value
        // for a function.
        | 1365 | 1690 | 1411
    )
}

/// The statement's *data* is wrong (a CHECK or foreign key refused the row, a value does not fit its
/// column, a bound value cannot be encoded): retrying the same values can never succeed. The only
/// database errors that may make a consumer give up on an event.
///
/// Deliberately not here, so they are retried instead: 1364 (a column without a default: the schema and
/// the code disagree, which is a deploy's fault and would refuse every event alike), 1644 (a
/// user-defined SIGNAL: a trigger's verdict, which may as well be an operator's maintenance guard),
/// syntax and unknown table or column errors (a deploy, not an event), 1153/1197 (packet or binlog
/// cache too large: the batch, not one event, is too big).
pub fn is_data_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Encode(_) => true,
        _ => mysql_error_number(e).is_some_and(data_error_number),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every number has one class at most, and the classes hold what the comments say.
    #[test]
    fn error_numbers_are_classified_once() {
        let unavailable = [
            1053, 1927, 1158, 1159, 1160, 1161, 2002, 2003, 2006, 2013, 1040, 1203, 1226, 1129,
            1637, 1290, 1836, 1792, 1044, 1045, 1698, 1130, 1142, 1143, 1227, 1370, 1820, 1862,
            4151, 1317, 1969, 3024, 1615, 1021, 1114, 1037, 1041, 1038, 1206, 1030, 1180, 1181,
            1194, 1195,
        ];
        let data = [
            4025, 3819, 1452, 1216, 1451, 1217, 1048, 1264, 1265, 1292, 1366, 1406, 1365, 1690,
            1411,
        ];
        // Neither: duplicate key and lock waits have classes of their own; the rest are the code's or
        // the deploy's fault (syntax, unknown table or column, missing default, a trigger's SIGNAL,
        // packet too large).
        let neither = [
            1062, 1205, 1213, 1064, 1146, 1054, 1364, 1644, 1153, 1197, 0, 9999,
        ];
        for n in unavailable {
            assert!(unavailable_number(n), "{n} is unavailable");
            assert!(!data_error_number(n), "{n} is not a data error");
        }
        for n in data {
            assert!(data_error_number(n), "{n} is a data error");
            assert!(!unavailable_number(n), "{n} is not unavailable");
        }
        for n in neither {
            assert!(!unavailable_number(n), "{n} is not unavailable");
            assert!(!data_error_number(n), "{n} is not a data error");
        }
        // Every number of either class is in the lists above (no silent additions).
        for n in 0..=u16::MAX {
            if unavailable_number(n) {
                assert!(
                    unavailable.contains(&n),
                    "{n} is unavailable but not listed"
                );
            }
            if data_error_number(n) {
                assert!(data.contains(&n), "{n} is a data error but not listed");
            }
        }
    }

    #[test]
    fn errors_without_a_server_number_are_classified_by_kind() {
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(!is_data_error(&sqlx::Error::PoolTimedOut));
        let encode = sqlx::Error::Encode("a value that cannot be sent".into());
        assert!(is_data_error(&encode));
        assert!(!is_unavailable(&encode));
        let decode = sqlx::Error::Decode("a column we cannot read".into());
        assert!(
            !is_data_error(&decode),
            "a decode failure is the code's, not the event's"
        );
        assert!(!is_unavailable(&decode));
    }
}
