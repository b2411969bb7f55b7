//! The dispatcher: claims due settlements and submits them to the acquirer, at most `concurrency` calls
//! at once, through the circuit breaker.
//!
//! A settlement is claimed (SUBMITTED, one more attempt, a lease) and that claim committed *before* the
//! call, so no two workers call for one settlement at once, and a worker that dies mid-call leaves a
//! lease that expires: the next claim calls again with the same Idempotency-Key (the event id), and the
//! acquirer replays what it settled. While the breaker is OPEN nothing is claimed, so an acquirer outage
//! costs each waiting settlement no attempts; only the calls that tripped it and the HALF_OPEN probes
//! count.

use crate::acquirer::{Acquirer, AcquirerError};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{self, Claimed};
use payctl_breaker::CircuitBreaker;
use rand::Rng;
use sqlx::MySqlPool;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The n-th retry's wait ("full jitter"): uniform in [0, min(cap, base × 2ⁿ⁻¹)], so the retries of many
/// settlements that failed together spread out instead of returning together.
pub fn backoff(attempts: u32, base: Duration, cap: Duration, rng: &mut impl Rng) -> Duration {
    let exp = attempts.saturating_sub(1).min(30);
    let ceiling = base.saturating_mul(1u32 << exp).min(cap);
    let ceiling_ms = ceiling.as_millis() as u64;
    Duration::from_millis(rng.gen_range(0..=ceiling_ms))
}

pub struct Dispatcher {
    pub config: Arc<Config>,
    pub db: MySqlPool,
    pub acquirer: Arc<dyn Acquirer>,
    pub breaker: Arc<CircuitBreaker>,
    pub metrics: Arc<Metrics>,
    /// Notified by the consume loop when settlements are recorded.
    pub recorded: Arc<Notify>,
    /// Notifies the DLQ publisher when a settlement is FAILED.
    pub failed: Arc<Notify>,
}

impl Dispatcher {
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let permits = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let poll = Duration::from_millis(self.config.poll_ms.max(1));
        let mut calls = JoinSet::new();
        while !shutdown.is_cancelled() {
            while calls.try_join_next().is_some() {}
            self.metrics.set_breaker_state(self.breaker.state());
            let free = permits.available_permits();
            if free == 0 {
                // Every slot busy: wait for one to free up.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = calls.join_next() => {}
                }
                continue;
            }
            let (capacity, open_for) = self.breaker.capacity(free as u32);
            if capacity == 0 {
                // OPEN (or HALF_OPEN with every probe out): claim nothing; settlements wait, unburnt.
                let wait = open_for
                    .unwrap_or(poll)
                    .clamp(Duration::from_millis(1), poll);
                sleep_or(&shutdown, wait).await;
                continue;
            }
            let (claimed, unreadable) =
                match store::claim(&self.db, capacity as usize, self.config.lease()).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming settlements failed; retrying");
                        sleep_or(&shutdown, poll.max(Duration::from_millis(500))).await;
                        continue;
                    }
                };
            for u in unreadable {
                tracing::error!(event = %u.event_id, reason = u.reason, "settlement row cannot be sent; FAILED");
                let _ = store::fail(&self.db, u.event_id, u.lease_id, &u.reason).await;
                self.failed.notify_one();
            }
            if claimed.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = self.recorded.notified() => {}
                    _ = tokio::time::sleep(poll) => {}
                }
                continue;
            }
            for c in claimed {
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    // Cannot happen (claimed ≤ free permits, and only this loop takes them); be safe.
                    let _ =
                        store::release(&self.db, c.request.event_id.as_uuid(), c.lease_id).await;
                    continue;
                };
                if !self.breaker.try_acquire() {
                    let _ =
                        store::release(&self.db, c.request.event_id.as_uuid(), c.lease_id).await;
                    continue;
                }
                calls.spawn(self.clone().call(c, permit, shutdown.clone()));
            }
        }
        // Let the calls in flight finish and write their outcomes (bounded by the call timeout);
        // anything cut off keeps its lease and is called again, with the same key, after it expires.
        let deadline = self.config.call_timeout() + Duration::from_secs(2);
        let _ = tokio::time::timeout(deadline, async {
            while calls.join_next().await.is_some() {}
        })
        .await;
        tracing::info!("settlement dispatcher stopped");
    }

    async fn call(
        self: Arc<Self>,
        claimed: Claimed,
        _permit: OwnedSemaphorePermit,
        shutdown: CancellationToken,
    ) {
        let m = &self.metrics;
        m.in_flight.inc();
        let started = Instant::now();
        let result = self.acquirer.settle(&claimed.request).await;
        let elapsed = started.elapsed();
        m.in_flight.dec();
        m.request_duration.observe(elapsed.as_secs_f64());
        self.breaker.record(
            elapsed,
            matches!(&result, Err(e) if e.is_acquirer_failure()),
        );
        let outcome = match &result {
            Ok(s) if s.replayed => "replayed",
            Ok(_) => "settled",
            Err(e) => e.outcome(),
        };
        m.requests.with_label_values(&[outcome]).inc();
        let event_id = claimed.request.event_id.as_uuid();
        let lease = claimed.lease_id;
        match result {
            Ok(settled) => {
                let changed = self
                    .write(&shutdown, || store::settled(&self.db, &settled))
                    .await;
                if changed == Some(false) {
                    tracing::debug!(event = %event_id, "already SETTLED");
                }
            }
            Err(e) if e.is_permanent() => {
                tracing::warn!(event = %event_id, error = %e, "the acquirer refused the settlement; FAILED");
                let message = e.to_string();
                self.write(&shutdown, || {
                    store::fail(&self.db, event_id, lease, &message)
                })
                .await;
                self.failed.notify_one();
            }
            Err(e) if claimed.attempts >= self.config.max_attempts => {
                // The last call failed transiently, but it (or an earlier one) may have settled after
                // all (an answer lost after the acquirer committed): ask before recording "not paid".
                match self.acquirer.lookup(&claimed.request).await {
                    Ok(Some(settled)) => {
                        tracing::info!(event = %event_id, reference = settled.reference, attempts = claimed.attempts, "the acquirer had settled it; SETTLED");
                        self.write(&shutdown, || store::settled(&self.db, &settled))
                            .await;
                    }
                    Ok(None) => {
                        tracing::warn!(event = %event_id, error = %e, attempts = claimed.attempts, "last attempt failed and the acquirer holds no settlement; FAILED");
                        let message = format!("after {} attempts: {e}", claimed.attempts);
                        self.write(&shutdown, || {
                            store::fail(&self.db, event_id, lease, &message)
                        })
                        .await;
                        self.failed.notify_one();
                    }
                    Err(l) if l.is_permanent() => {
                        tracing::warn!(event = %event_id, error = %l, "the acquirer's settlement for it does not match the request; FAILED");
                        let message =
                            format!("after {} attempts: {e}; lookup: {l}", claimed.attempts);
                        self.write(&shutdown, || {
                            store::fail(&self.db, event_id, lease, &message)
                        })
                        .await;
                        self.failed.notify_one();
                    }
                    Err(l) => {
                        // Not knowing whether it settled, it must not be FAILED: try again later.
                        let delay = self.retry_delay(claimed.attempts, &l);
                        tracing::warn!(event = %event_id, error = %e, lookup = %l, ?delay, "last attempt failed and the lookup failed too; will retry");
                        let message = format!("{e}; lookup: {l}");
                        self.write(&shutdown, || {
                            store::retry_later(&self.db, event_id, lease, delay, &message)
                        })
                        .await;
                    }
                }
            }
            Err(e) => {
                let delay = self.retry_delay(claimed.attempts, &e);
                tracing::debug!(event = %event_id, error = %e, attempts = claimed.attempts, ?delay, "will retry");
                let message = e.to_string();
                self.write(&shutdown, || {
                    store::retry_later(&self.db, event_id, lease, delay, &message)
                })
                .await;
            }
        }
    }

    fn retry_delay(&self, attempts: u32, e: &AcquirerError) -> Duration {
        let jittered = backoff(
            attempts,
            Duration::from_millis(self.config.backoff_base_ms),
            Duration::from_millis(self.config.backoff_cap_ms),
            &mut rand::thread_rng(),
        );
        // An outage's Retry-After is the acquirer telling us when to come back.
        jittered.max(e.retry_after().unwrap_or_default())
    }

    /// Writes an outcome, retrying database failures until it is written or the worker stops (then the
    /// lease expires and the settlement is called again with the same key: the acquirer replays).
    async fn write<T, F, Fut>(&self, shutdown: &CancellationToken, mut op: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        let mut backoff = Duration::from_millis(100);
        loop {
            match op().await {
                Ok(v) => return Some(v),
                Err(e) => {
                    self.metrics.db_retries.inc();
                    tracing::warn!(error = %e, "writing a settlement outcome failed; retrying");
                    if !sleep_or(shutdown, backoff).await {
                        return None;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Sleeps `d`; false if shutdown came first.
async fn sleep_or(shutdown: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_ceiling_and_the_cap() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let base = Duration::from_millis(500);
        let cap = Duration::from_secs(30);
        for attempts in 1..=40u32 {
            let ceiling = if attempts >= 7 {
                cap
            } else {
                base * (1 << (attempts - 1))
            };
            let draws: Vec<Duration> = (0..200)
                .map(|_| backoff(attempts, base, cap, &mut rng))
                .collect();
            assert!(
                draws.iter().all(|d| *d <= ceiling),
                "attempt {attempts}: over {ceiling:?}"
            );
            // Full jitter: draws fill the range, not just its top.
            assert!(draws.iter().any(|d| *d < ceiling / 4), "attempt {attempts}");
            assert!(
                draws.iter().any(|d| *d > ceiling * 3 / 4),
                "attempt {attempts}"
            );
        }
    }
}
