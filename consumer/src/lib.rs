//! pay-consumer: applies payment events to the double-entry ledger (chart of accounts in
//! `payctl_domain::ledger`), exactly once in effect, with retries for transient failures and an
//! acknowledged DLQ for poison messages. [`invariants::check`] is the ledger's reconciliation.

pub mod apply;
pub mod config;
pub mod invariants;
pub mod metrics;
pub mod startup;
pub mod topics;
pub mod worker;
