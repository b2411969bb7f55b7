//! `pay-acquirer`: a mock card acquirer, run as a real HTTP service with its own SQLite database file
//! (see [`db`]), for settlement and reconciliation (issue 15).
//!
//! Our settlement worker submits each captured or refunded payment to it (`POST /v1/settlements`); it
//! answers like the original system's mock gateway (1–3 s per call, 5 % failures, some of them after the
//! money moved; see [`chaos`]) and keeps every settlement, so `payctl reconcile` can compare its daily
//! statement (`GET /v1/statements/{date}`) with our books. The fee, business-date and statement rules are
//! in [`payctl_domain::settlement`], shared with the worker and the reconciler.

pub mod chaos;
pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod metrics;
pub mod routes;
pub mod startup;
pub mod store;
