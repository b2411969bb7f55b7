//! The acquirer's own SQLite database: opening it (creating the file, and its directory, when missing)
//! and telling "the database is unavailable" apart from other errors.
//!
//! SQLite has one writer at a time. WAL lets readers carry on while a write commits; `busy_timeout`
//! makes a second writer wait for the first instead of failing at once, so concurrent requests queue on
//! the write lock as they queued on InnoDB's row lock before.

use anyhow::Context;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::str::FromStr;
use std::time::Duration;

/// How long a request waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a write waits for another connection's write (the same key, or any other) to commit.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The connect options of a `sqlite:` URL, e.g. `sqlite:///var/lib/acquirer/acquirer.db?mode=rwc`
/// (absolute) or `sqlite://acquirer.db?mode=rwc` (relative to the working directory).
pub fn options(url: &str) -> anyhow::Result<SqliteConnectOptions> {
    if !url.starts_with("sqlite:") {
        anyhow::bail!(
            "{url:?} is not a SQLite URL: expected e.g. sqlite:///var/lib/acquirer/acquirer.db?mode=rwc"
        );
    }
    let options = SqliteConnectOptions::from_str(url)
        .with_context(|| format!("{url:?} is not a SQLite URL"))?;
    Ok(options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true))
}

/// Opens the database at `url` with a pool of at most `pool_size` connections. The file is created
/// when missing, and so is the directory it is in.
pub async fn connect(url: &str, pool_size: u32) -> anyhow::Result<SqlitePool> {
    let options = options(url)?;
    let file = options.get_filename().to_path_buf();
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !file.starts_with("file:") {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the database's directory {}", dir.display()))?;
        }
    }
    SqlitePoolOptions::new()
        .max_connections(pool_size.max(1))
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .with_context(|| format!("opening the acquirer's database {}", file.display()))
}

/// Not the request's fault, and the same request passes later: the pool is closed or exhausted, the
/// file cannot be read or written now, another writer held the lock past `busy_timeout`, the disk is
/// full. Answered 503 with `Retry-After`, never 500.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            // The primary result code is the extended code's low byte.
            .is_some_and(|code| {
                matches!(
                    code & 0xff,
                    // BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL
                    5 | 6 | 8 | 10 | 13 | 14 | 15
                )
            }),
        _ => false,
    }
}
