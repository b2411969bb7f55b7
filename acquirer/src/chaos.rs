//! How the acquirer misbehaves on purpose: latency, injected failures and outages, all changeable at
//! run time.
//!
//! Each `POST /v1/settlements` draws a [`Plan`] from one seeded generator: how long to take, and whether
//! to fail. With probability `failure_rate` it answers 503 `acquirer_unavailable`; half of those failures
//! happen *before* anything is written (nothing settled) and half *after* the settlement committed. The
//! second half is the ambiguous case real acquirers produce (a timeout after the money moved): the caller
//! cannot tell the two apart, so it must retry with the same `Idempotency-Key`, and the retry replays the
//! settlement instead of settling twice.
//!
//! An outage (`POST /v1/admin/outage`) makes every `/v1` request except the admin ones answer 503 with
//! `Retry-After` until it ends, like an acquirer's maintenance window.

use crate::config::{FailureRate, LatencyRange};
use crate::metrics::Metrics;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub latency: LatencyRange,
    pub failure_rate: FailureRate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Answer 503 without settling.
    Before,
    /// Settle, commit, then answer 503.
    After,
}

impl Failure {
    pub fn label(self) -> &'static str {
        match self {
            Self::Before => "before",
            Self::After => "after",
        }
    }
}

/// What one settlement request will do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub delay: Duration,
    pub failure: Option<Failure>,
}

#[derive(Debug, Clone, Copy)]
struct Outage {
    until: Instant,
    until_wall: OffsetDateTime,
}

pub struct Chaos {
    settings: Mutex<Settings>,
    rng: Mutex<ChaCha8Rng>,
    outage: Mutex<Option<Outage>>,
    metrics: Arc<Metrics>,
}

/// A poisoned lock only means another request panicked while holding it; the values are still whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Chaos {
    /// The longest outage one call may start: a day.
    pub const MAX_OUTAGE_SECONDS: u64 = 86_400;

    pub fn new(settings: Settings, seed: Option<u64>, metrics: Arc<Metrics>) -> Self {
        let rng = match seed {
            Some(s) => ChaCha8Rng::seed_from_u64(s),
            None => ChaCha8Rng::from_entropy(),
        };
        Self {
            settings: Mutex::new(settings),
            rng: Mutex::new(rng),
            outage: Mutex::new(None),
            metrics,
        }
    }

    pub fn settings(&self) -> Settings {
        *lock(&self.settings)
    }

    pub fn set_settings(&self, settings: Settings) {
        *lock(&self.settings) = settings;
    }

    /// Draws the next request's plan. Always three draws, whatever the settings, so with a seed the n-th
    /// request's fate does not depend on settings changed before it.
    pub fn plan(&self) -> Plan {
        let Settings {
            latency,
            failure_rate,
        } = self.settings();
        let mut rng = lock(&self.rng);
        let delay_ms = rng.gen_range(latency.min_ms..=latency.max_ms);
        let fails = rng.gen::<f64>() < failure_rate.get();
        let after = rng.gen_bool(0.5);
        Plan {
            delay: Duration::from_millis(delay_ms),
            failure: fails.then_some(if after {
                Failure::After
            } else {
                Failure::Before
            }),
        }
    }

    /// Starts an outage of `seconds` from now (0 ends any outage); returns when it ends.
    pub fn start_outage(&self, seconds: u64) -> Option<OffsetDateTime> {
        let mut outage = lock(&self.outage);
        *outage = (seconds > 0).then(|| {
            let length = Duration::from_secs(seconds.min(Self::MAX_OUTAGE_SECONDS));
            Outage {
                until: Instant::now() + length,
                until_wall: OffsetDateTime::now_utc() + length,
            }
        });
        self.metrics.outage_active.set(i64::from(outage.is_some()));
        outage.map(|o| o.until_wall)
    }

    /// The running outage's end and the time left, if one runs (an ended one is cleared here).
    pub fn outage(&self) -> Option<(OffsetDateTime, Duration)> {
        let mut outage = lock(&self.outage);
        let now = Instant::now();
        if outage.is_some_and(|o| o.until <= now) {
            *outage = None;
        }
        self.metrics.outage_active.set(i64::from(outage.is_some()));
        outage.map(|o| (o.until_wall, o.until - now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chaos(latency: &str, rate: f64, seed: u64) -> Chaos {
        Chaos::new(
            Settings {
                latency: LatencyRange::parse(latency).unwrap(),
                failure_rate: FailureRate::new(rate).unwrap(),
            },
            Some(seed),
            Metrics::new(),
        )
    }

    #[test]
    fn plans_follow_the_settings_and_the_seed() {
        let a = chaos("10-20", 0.5, 7);
        let b = chaos("10-20", 0.5, 7);
        let plans: Vec<Plan> = (0..200).map(|_| a.plan()).collect();
        assert_eq!(plans, (0..200).map(|_| b.plan()).collect::<Vec<_>>());
        assert!(plans
            .iter()
            .all(|p| (10..=20).contains(&p.delay.as_millis())));
        let count = |f| plans.iter().filter(|p| p.failure == Some(f)).count();
        let (before, after) = (count(Failure::Before), count(Failure::After));
        assert!((60..=140).contains(&(before + after)), "{before} + {after}");
        assert!(before > 20 && after > 20, "{before} / {after}");

        let none = chaos("0", 0.0, 7);
        assert!((0..100).all(|_| none.plan()
            == Plan {
                delay: Duration::ZERO,
                failure: None
            }));
        let all = chaos("0", 1.0, 7);
        assert!((0..100).all(|_| all.plan().failure.is_some()));
    }

    #[test]
    fn outages_end_by_themselves_or_on_request() {
        let c = chaos("0", 0.0, 1);
        assert!(c.outage().is_none());
        let until = c.start_outage(30).unwrap();
        let (end, left) = c.outage().unwrap();
        assert_eq!(end, until);
        assert!(left <= Duration::from_secs(30) && left > Duration::from_secs(25));
        assert_eq!(c.metrics.outage_active.get(), 1);
        assert!(c.start_outage(0).is_none());
        assert!(c.outage().is_none());
        assert_eq!(c.metrics.outage_active.get(), 0);
    }
}
