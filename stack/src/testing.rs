//! The integration-test harness: a MariaDB, a Redis and a tansu on free ports, tied to the test process.
//!
//! [`shared`] starts one set per test binary (tests then isolate themselves by database name, Redis key
//! prefix and topic prefix); [`Services::start`] gives a test private instances it may stop and restart.

use crate::process::pid_alive;
use crate::{free_port, Lifetime, MariaDb, Redis, Tansu};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

pub struct Services {
    pub mariadb: MariaDb,
    pub redis: Redis,
    pub tansu: Tansu,
}

/// Where a test binary keeps its services (under `root`); directories of dead test processes are removed.
fn state_root(root: &Path) -> PathBuf {
    let root = root.join("test-stack");
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            let pid: Option<u32> = e
                .file_name()
                .to_str()
                .and_then(|n| n.split('-').next()?.parse().ok());
            if pid.is_some_and(|p| !pid_alive(p)) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    root
}

impl Services {
    /// Starts a fresh set named `name` under `root` (pass `env!("CARGO_TARGET_TMPDIR")`).
    pub fn start(root: &Path, name: &str) -> anyhow::Result<Services> {
        let dir = state_root(root).join(format!("{}-{name}", std::process::id()));
        let tied = Lifetime::TiedToThisProcess;
        let mut mariadb = MariaDb::new(&dir.join("mariadb"), free_port()?, tied);
        // Test data is throw-away: trade durability for speed.
        mariadb.extra_args = vec!["--innodb-flush-log-at-trx-commit=2".into()];
        let mut redis = Redis::new(&dir.join("redis"), free_port()?, tied);
        let mut tansu = Tansu::new(&dir.join("tansu"), free_port()?, tied);
        std::thread::scope(|s| {
            let m = s.spawn(|| mariadb.start());
            let r = s.spawn(|| redis.start());
            let t = s.spawn(|| tansu.start());
            for h in [m, r, t] {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a start-up thread panicked"))??;
            }
            anyhow::Ok(())
        })?;
        Ok(Services {
            mariadb,
            redis,
            tansu,
        })
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        let _ = self.mariadb.kill();
        let _ = self.redis.kill();
        let _ = self.tansu.kill();
    }
}

/// The services every ordinary test of this binary shares.
pub fn shared(root: &Path) -> &'static Mutex<Services> {
    static SHARED: OnceLock<Mutex<Services>> = OnceLock::new();
    SHARED.get_or_init(|| Mutex::new(Services::start(root, "shared").expect("test services start")))
}

/// Polls `condition` every 50 ms until it holds; panics naming `what` after `timeout`. The one way
/// the integration tests wait: on a condition, never on a fixed sleep.
pub async fn eventually<F, Fut>(what: &str, timeout: std::time::Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + timeout;
    while !condition().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The sum of every sample of metric `name` (all label sets) in a Prometheus text exposition.
pub fn metric_sum(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
