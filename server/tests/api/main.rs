//! Integration tests of pay-server against real MariaDB, Redis and tansu. One file per feature.

mod admin;
mod auth;
mod authorize;
mod batching;
mod changes;
mod contract;
mod helpers;
mod idempotency;
mod migrations;
mod model;
mod outbox;
mod rate_limit;
mod reads;
mod resilience;
mod retention;
mod settlement;
mod strict;
