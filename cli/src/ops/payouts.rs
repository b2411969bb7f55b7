//! Closing a business date against the stack's database (`payctl settle`, and `payctl smoke`'s last
//! steps): pay-settlement's payout logic on the stack's own pool.

use crate::stack::health::require_running;
use crate::stack::secrets::database_url;
use crate::stack::Ports;
use pay_settlement::payout::{self, Payout};
use std::path::Path;

/// What one `settle` did and found.
pub struct Settled {
    /// Payouts this run made (empty when everything of the date was already paid out).
    pub made: Vec<Payout>,
    /// Every payout of the date, including those of earlier runs.
    pub all: Vec<Payout>,
    /// Captures and refunds still settling at the acquirer.
    pub unsettled: i64,
}

/// Pays out business date `date` (in `time_zone`) on the stack under `home`.
pub async fn settle(
    home: &Path,
    ports: &Ports,
    date: time::Date,
    time_zone: &str,
) -> anyhow::Result<Settled> {
    require_running(ports.mariadb_port)?;
    let db = sqlx::MySqlPool::connect(&database_url(home, ports)?).await?;
    let made = payout::settle(&db, date, time_zone).await?;
    let all = payout::payouts_of(&db, date).await?;
    let unsettled = payout::unsettled(&db).await?;
    db.close().await;
    Ok(Settled {
        made,
        all,
        unsettled,
    })
}
