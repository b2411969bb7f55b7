//! The fault schedule of a chaos run: which service, which fault, when and for how long — derived only
//! from the seed and the run's shape, so the same command replays exactly the same faults.
//!
//! ChaCha8 rather than `StdRng`: its output is fixed by its specification, so a seed printed by one
//! payctl version replays the same schedule in the next.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// What happens to a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    /// `kill -9` (Docker: `docker kill`), then start it again on its data.
    Kill,
    /// SIGSTOP, then SIGCONT (Docker: pause, unpause): alive but answering nothing.
    Pause,
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Kill => "kill",
            Self::Pause => "pause",
        })
    }
}

/// One fault: at `at` after the load starts, `kind` on `service` for `down` (then restart or thaw).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    #[serde(serialize_with = "as_secs")]
    pub at: Duration,
    pub service: String,
    pub kind: FaultKind,
    #[serde(serialize_with = "as_secs")]
    pub down: Duration,
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// The shape of a run the schedule is drawn for.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    pub seed: u64,
    pub duration: Duration,
    pub kinds: &'a [FaultKind],
    pub services: &'a [String],
}

/// Load runs this long before the first fault, and after the last recovery, so every fault is seen
/// under load and the run ends with the platform whole.
pub const QUIET_START: Duration = Duration::from_secs(3);
pub const QUIET_END: Duration = Duration::from_secs(3);
/// The least time between a service being back and the next fault, whatever the schedule says.
pub const MIN_GAP: Duration = Duration::from_secs(3);
/// Each fault lasts 2–5 s; between the end of one and the start of the next the platform gets 3–5 s
/// (and the run waits for a killed service to be healthy again before it counts on).
const DOWN: (u64, u64) = (2_000, 5_000);
const GAP: (u64, u64) = (3_000, 5_000);

/// Draws the schedule: first every service once with the first kind asked for (`kill` when it is
/// asked for), in a seeded order; then every service again with the next kind, and so on while time
/// remains. Faults come one after another with time to recover between them; a fault that would not
/// end `QUIET_END` before the run does is left out, and so is everything after it.
pub fn draw(plan: &Plan<'_>) -> Vec<Fault> {
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
    let mut faults = Vec::new();
    let mut kinds: Vec<FaultKind> = plan.kinds.to_vec();
    kinds.sort_by_key(|k| *k != FaultKind::Kill);
    kinds.dedup();
    if kinds.is_empty() || plan.services.is_empty() {
        return faults;
    }
    let end = plan.duration.saturating_sub(QUIET_END);
    let mut at = QUIET_START;
    for round in 0.. {
        let kind = kinds[round % kinds.len()];
        let mut order: Vec<&String> = plan.services.iter().collect();
        order.shuffle(&mut rng);
        for service in order {
            let down = Duration::from_millis(rng.gen_range(DOWN.0..=DOWN.1));
            if at + down > end {
                return faults;
            }
            faults.push(Fault {
                at,
                service: service.clone(),
                kind,
                down,
            });
            at += down + Duration::from_millis(rng.gen_range(GAP.0..=GAP.1));
        }
    }
    faults
}

/// A run long enough for `faults` faults even if each takes its longest.
pub fn duration_for(faults: usize) -> Duration {
    QUIET_START + QUIET_END + Duration::from_millis((DOWN.1 + GAP.1) * faults as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services() -> Vec<String> {
        ["ingest", "consumer", "kafka", "redis", "mariadb"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn the_same_seed_draws_the_same_schedule_and_another_seed_another() {
        let s = services();
        let kinds = [FaultKind::Kill, FaultKind::Pause];
        let plan = |seed| Plan {
            seed,
            duration: Duration::from_secs(120),
            kinds: &kinds,
            services: &s,
        };
        assert_eq!(draw(&plan(7)), draw(&plan(7)));
        assert_ne!(draw(&plan(7)), draw(&plan(8)));
    }

    #[test]
    fn a_seed_keeps_its_schedule_across_versions() {
        // Pinned: if this changes, seeds printed by earlier versions no longer replay.
        let s = services();
        let faults = draw(&Plan {
            seed: 42,
            duration: Duration::from_secs(60),
            kinds: &[FaultKind::Kill, FaultKind::Pause],
            services: &s,
        });
        let shown: Vec<String> = faults
            .iter()
            .map(|f| {
                format!(
                    "{}ms {} {} {}ms",
                    f.at.as_millis(),
                    f.kind,
                    f.service,
                    f.down.as_millis()
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                "3000ms kill ingest 2866ms",
                "9166ms kill kafka 2924ms",
                "16698ms kill mariadb 4314ms",
                "24489ms kill redis 3521ms",
                "32814ms kill consumer 3779ms",
                "41051ms pause mariadb 3332ms",
                "47535ms pause redis 2961ms",
            ]
        );
    }

    #[test]
    fn every_service_is_killed_then_paused_as_time_allows() {
        let s = services();
        let kinds = [FaultKind::Pause, FaultKind::Kill];
        for seed in 0..50 {
            let faults = draw(&Plan {
                seed,
                duration: duration_for(s.len() + 1),
                kinds: &kinds,
                services: &s,
            });
            let killed: std::collections::HashSet<&str> = faults
                .iter()
                .filter(|f| f.kind == FaultKind::Kill)
                .map(|f| f.service.as_str())
                .collect();
            assert_eq!(killed.len(), s.len(), "seed {seed}: {faults:?}");
            assert!(faults[..s.len()].iter().all(|f| f.kind == FaultKind::Kill));
            assert!(
                faults.iter().any(|f| f.kind == FaultKind::Pause),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn faults_never_overlap_and_end_before_the_run_does() {
        let s = services();
        for seed in 0..50 {
            let duration = Duration::from_secs(20 + seed);
            let faults = draw(&Plan {
                seed,
                duration,
                kinds: &[FaultKind::Kill],
                services: &s,
            });
            let mut free_from = QUIET_START;
            for f in &faults {
                assert!(f.at >= free_from, "seed {seed}: {faults:?}");
                assert!(f.at + f.down <= duration - QUIET_END, "seed {seed}");
                free_from = f.at + f.down;
            }
        }
    }
}
