//! pay-settlement: submits every capture and refund to the acquirer (issue 15), exactly once in effect.
//!
//! Its own consumer group reads `payment.captured` and `payment.refunded` and records each event as a
//! settlement ([`store`], before the offset is stored); the [`dispatch`]er claims due settlements and
//! calls the [`acquirer`] with the event id as Idempotency-Key, retrying with jittered backoff behind a
//! circuit breaker; what fails for good goes to the [`dlq`] once. [`metrics`] and the DB-derived
//! [`gauges`] show how it goes. [`startup`] assembles it, for `main` and the tests alike. [`payout`]
//! closes a business date (`payctl settle`); [`statement`] and [`invariants`] are `payctl reconcile`'s.

pub mod acquirer;
pub mod config;
pub mod consume;
pub mod dispatch;
pub mod dlq;
pub mod gauges;
pub mod invariants;
pub mod metrics;
pub mod payout;
pub mod startup;
pub mod statement;
pub mod store;
