//! pay-server: the payment API of payctl.
//!
//! Layout: `routes` (HTTP edge: parsing, auth) → `service` (one command = one transaction) → `storage`,
//! `idempotency`, `outbox` (SQL). `startup` assembles it all; tests build the same application.

pub mod auth;
pub mod breaker;
pub mod config;
pub mod error;
pub mod idempotency;
pub mod kafka;
pub mod metrics;
pub mod outbox;
pub mod ratelimit;
pub mod redis_client;
pub mod routes;
pub mod service;
pub mod startup;
pub mod storage;

/// The OpenAPI 3.1 description of the API, served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");
