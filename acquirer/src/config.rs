//! Configuration: every setting is a flag and an `APP_ACQUIRER_*` environment variable with a documented
//! default. The defaults reproduce the original system's mock gateway (1–3 s per call, 5 % failures);
//! tests and load runs turn them down here or at run time through `PUT /v1/admin/settings`.

use clap::{Parser, ValueEnum};
use payctl_domain::settlement::{parse_time_zone, FeeSchedule, DEFAULT_TIME_ZONE};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "pay-acquirer",
    version,
    about = "Mock card acquirer: settles captures and refunds and serves daily statements",
    long_about = "Mock card acquirer: a real HTTP service with its own SQLite database file. It settles \
captures and refunds (POST /v1/settlements, idempotent by Idempotency-Key), slowly and sometimes \
failing like a real acquirer, and serves each business day's statement as CSV \
(GET /v1/statements/{date}), optionally with seeded discrepancies for reconciliation tests.",
    after_help = "Examples:\n  \
APP_ACQUIRER_DATABASE_URL='sqlite:///var/lib/acquirer/acquirer.db?mode=rwc' pay-acquirer\n  \
pay-acquirer --database-url 'sqlite://acquirer.db?mode=rwc' --latency-ms 0 --failure-rate 0\n  \
pay-acquirer --fees default=250,m-1=180 --time-zone UTC --seed 42"
)]
pub struct Config {
    /// Address to listen on (port 0: any free port).
    #[arg(long, env = "APP_ACQUIRER_BIND", default_value = "127.0.0.1:18095")]
    pub bind: SocketAddr,

    /// SQLite URL of the acquirer's own database file (not the payments database):
    /// sqlite:///var/lib/acquirer/acquirer.db?mode=rwc is the absolute path /var/lib/acquirer/acquirer.db,
    /// sqlite://acquirer.db?mode=rwc is acquirer.db in the working directory. The file (and its
    /// directory) is created when missing and its migrations are applied at start-up; it is opened in
    /// WAL mode, so keep its directory (the -wal and -shm files beside it) on one persistent volume.
    #[arg(
        long,
        env = "APP_ACQUIRER_DATABASE_URL",
        default_value = "sqlite://acquirer.db?mode=rwc",
        value_parser = parse_database_url
    )]
    pub database_url: String,

    /// Largest number of open database connections.
    #[arg(long, env = "APP_ACQUIRER_DATABASE_POOL_SIZE", default_value_t = 16)]
    pub database_pool_size: u32,

    /// Time each POST /v1/settlements takes, in ms, drawn uniformly from the range "min-max" ("500" is a
    /// fixed 500 ms; "0" or "0-0" is none). Changeable at run time (PUT /v1/admin/settings).
    #[arg(long, env = "APP_ACQUIRER_LATENCY_MS", default_value = "1000-3000")]
    pub latency_ms: LatencyRange,

    /// Share of POST /v1/settlements answered 503 acquirer_unavailable, 0 to 1. Half of these fail before
    /// anything is settled, half after the settlement committed (the caller cannot tell which: it must
    /// retry with the same Idempotency-Key). Changeable at run time (PUT /v1/admin/settings).
    #[arg(long, env = "APP_ACQUIRER_FAILURE_RATE", default_value = "0.05")]
    pub failure_rate: FailureRate,

    /// Fee schedule in basis points: "default=250,m-1=180" charges merchant m-1 1.80 % and everyone else
    /// 2.50 % of a capture (refunds carry no fee). Without a default entry the default is 250.
    #[arg(long, env = "APP_ACQUIRER_FEES", default_value = "default=250")]
    pub fees: FeeSchedule,

    /// Cutoff time zone (IANA name): a settlement belongs to the statement of its calendar date there.
    #[arg(long, env = "APP_ACQUIRER_TIME_ZONE", default_value = DEFAULT_TIME_ZONE, value_parser = parse_time_zone)]
    pub time_zone: jiff::tz::TimeZone,

    /// Seed of the generator that draws latencies and failures, for runs that replay exactly. Unset: from
    /// the OS's entropy. (Statement discrepancies have their own seed, in the statement's query.)
    #[arg(long, env = "APP_ACQUIRER_SEED")]
    pub seed: Option<u64>,

    /// Log format: `text` for people, `json` for containers.
    #[arg(long, env = "APP_ACQUIRER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// A `sqlite:` URL SQLite can open (checked here so a wrong one is a usage error, not a start-up failure).
fn parse_database_url(url: &str) -> Result<String, String> {
    crate::db::options(url)
        .map(|_| url.to_owned())
        .map_err(|e| format!("{e:#}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// A configuration for tests: any free port, no latency, no failures, otherwise the defaults.
    pub fn for_tests(database_url: &str) -> Self {
        Config::parse_from([
            "pay-acquirer",
            "--database-url",
            database_url,
            "--bind",
            "127.0.0.1:0",
            "--latency-ms",
            "0",
            "--failure-rate",
            "0",
        ])
    }
}

/// A latency range in milliseconds, `min-max` inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyRange {
    pub min_ms: u64,
    pub max_ms: u64,
}

impl LatencyRange {
    /// Ten minutes: far beyond any client's timeout, still a bound on what a typo can do.
    pub const MAX_MS: u64 = 600_000;
    pub const NONE: Self = Self {
        min_ms: 0,
        max_ms: 0,
    };

    pub fn parse(s: &str) -> Result<Self, String> {
        let number = |v: &str| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| format!("{s:?} is not a latency in ms: expected \"min-max\" such as \"1000-3000\", or one number"))
        };
        let (min_ms, max_ms) = match s.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => {
                let v = number(s)?;
                (v, v)
            }
        };
        if min_ms > max_ms {
            return Err(format!("{s:?}: the minimum is above the maximum"));
        }
        if max_ms > Self::MAX_MS {
            return Err(format!("{s:?}: at most {} ms", Self::MAX_MS));
        }
        Ok(Self { min_ms, max_ms })
    }

    pub fn min(&self) -> Duration {
        Duration::from_millis(self.min_ms)
    }
}

impl std::str::FromStr for LatencyRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl fmt::Display for LatencyRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.min_ms, self.max_ms)
    }
}

/// A probability, 0 to 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailureRate(f64);

impl FailureRate {
    pub fn new(rate: f64) -> Result<Self, String> {
        if (0.0..=1.0).contains(&rate) {
            Ok(Self(rate))
        } else {
            Err(format!("{rate} is not a failure rate between 0 and 1"))
        }
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl std::str::FromStr for FailureRate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let rate: f64 = s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a number between 0 and 1"))?;
        Self::new(rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_ranges_parse() {
        assert_eq!(
            LatencyRange::parse("1000-3000"),
            Ok(LatencyRange {
                min_ms: 1000,
                max_ms: 3000
            })
        );
        assert_eq!(LatencyRange::parse("0"), Ok(LatencyRange::NONE));
        assert_eq!(LatencyRange::parse("0-0"), Ok(LatencyRange::NONE));
        assert_eq!(
            LatencyRange::parse("250").map(|r| r.to_string()),
            Ok("250-250".into())
        );
        for bad in ["", "a-b", "3000-1000", "-1", "1-", "1-2-3", "700000"] {
            assert!(LatencyRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn failure_rates_are_probabilities() {
        assert_eq!(
            "0.05".parse::<FailureRate>().map(FailureRate::get),
            Ok(0.05)
        );
        assert!("1".parse::<FailureRate>().is_ok());
        for bad in ["-0.1", "1.5", "NaN", "x", "inf"] {
            assert!(bad.parse::<FailureRate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_are_the_original_gateway() {
        let c = Config::parse_from(["pay-acquirer"]);
        assert_eq!(c.database_url, "sqlite://acquirer.db?mode=rwc");
        assert_eq!(c.bind.to_string(), "127.0.0.1:18095");
        assert_eq!(c.latency_ms.to_string(), "1000-3000");
        assert_eq!(c.failure_rate.get(), 0.05);
        assert_eq!(c.fees, FeeSchedule::default());
        assert_eq!(c.time_zone.iana_name(), Some("Asia/Seoul"));
        assert_eq!(c.seed, None);
    }

    #[test]
    fn database_urls_are_sqlite_urls() {
        let c = Config::try_parse_from([
            "pay-acquirer",
            "--database-url",
            "sqlite:///var/lib/acquirer/acquirer.db?mode=rwc",
        ])
        .unwrap();
        let options = crate::db::options(&c.database_url).unwrap();
        assert_eq!(
            options.get_filename(),
            std::path::Path::new("/var/lib/acquirer/acquirer.db")
        );
        let relative = crate::db::options("sqlite://acquirer.db?mode=rwc").unwrap();
        assert_eq!(relative.get_filename(), std::path::Path::new("acquirer.db"));
        for bad in ["mysql://root@127.0.0.1:13306/acquirer", "acquirer.db", ""] {
            assert!(
                Config::try_parse_from(["pay-acquirer", "--database-url", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn help_explains_every_setting() {
        use clap::CommandFactory;
        let help = Config::command().render_long_help().to_string();
        for env in [
            "APP_ACQUIRER_BIND",
            "APP_ACQUIRER_DATABASE_URL",
            "APP_ACQUIRER_DATABASE_POOL_SIZE",
            "APP_ACQUIRER_LATENCY_MS",
            "APP_ACQUIRER_FAILURE_RATE",
            "APP_ACQUIRER_FEES",
            "APP_ACQUIRER_TIME_ZONE",
            "APP_ACQUIRER_SEED",
            "APP_ACQUIRER_LOG_FORMAT",
            "sqlite:///var/lib/acquirer/acquirer.db?mode=rwc",
        ] {
            assert!(help.contains(env), "{env} missing from --help:\n{help}");
        }
    }
}
