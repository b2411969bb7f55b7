//! pay-server: the payment API of payctl.
//!
//! Layout: `routes` (HTTP edge: parsing, auth) → `service` (replay, rate limit, then the writes: shared
//! with concurrent requests in `batch`, or alone) → `effect` (what a command does, in memory) → `storage`,
//! `idempotency`, `outbox` (SQL). Reads go from `routes` to `storage` directly; `settlement` is what a
//! payment's settlement and a merchant's payouts look like to the API. `startup` assembles it all; tests
//! build the same application.

pub mod auth;
pub mod batch;
pub mod breaker;
pub mod config;
pub mod effect;
pub mod error;
pub mod idempotency;
pub mod kafka;
pub mod metrics;
pub mod outbox;
pub mod ratelimit;
pub mod redis_client;
pub mod routes;
pub mod service;
pub mod settlement;
pub mod startup;
pub mod storage;

/// The OpenAPI 3.1 description of the API, served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

#[cfg(test)]
mod tests {
    //! The document repeats rules of the code; these tests keep the two equal.

    use super::OPENAPI;
    use payctl_domain::{Amount, Currency, IdempotencyKey, PaymentStatus};
    use serde_json::Value;

    fn schema(name: &str) -> Value {
        let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        doc["components"]["schemas"][name].clone()
    }

    fn strings(v: &Value) -> Vec<String> {
        v.as_array()
            .expect("an array")
            .iter()
            .map(|s| s.as_str().expect("a string").to_owned())
            .collect()
    }

    #[test]
    fn the_currency_enum_is_exactly_what_the_server_accepts() {
        let listed = strings(&schema("Currency")["enum"]);
        let letters = b'A'..=b'Z';
        let mut accepted = Vec::new();
        for a in letters.clone() {
            for b in letters.clone() {
                for c in letters.clone() {
                    let code = String::from_utf8(vec![a, b, c]).expect("ASCII");
                    if Currency::parse("currency", &code).is_ok() {
                        accepted.push(code);
                    }
                }
            }
        }
        assert_eq!(listed, accepted);
    }

    #[test]
    fn amounts_keys_and_statuses_match_the_domain() {
        let amount = schema("Amount");
        assert_eq!(amount["type"], "integer");
        assert_eq!(amount["minimum"], 1);
        assert_eq!(amount["maximum"], Amount::MAX);
        assert!(Amount::parse("amount", Amount::MAX).is_ok());
        let key = schema("IdempotencyKey");
        assert_eq!(key["maxLength"], IdempotencyKey::MAX_LEN);
        assert!(IdempotencyKey::parse("k", &"!".repeat(IdempotencyKey::MAX_LEN)).is_ok());
        assert!(IdempotencyKey::parse("k", "~").is_ok());
        let statuses: Vec<String> = PaymentStatus::ALL
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect();
        assert_eq!(strings(&schema("Status")["enum"]), statuses);
        let states: Vec<Value> = crate::breaker::State::ALL
            .iter()
            .map(|s| serde_json::to_value(s).expect("serialises"))
            .collect();
        assert_eq!(schema("BreakerState")["enum"], Value::Array(states));
    }

    #[test]
    fn settlement_statuses_match_the_code() {
        use crate::settlement::{ItemStatus, Summary};
        let listed = strings(&schema("SettlementStatus")["enum"]);
        for name in &listed {
            let status = ItemStatus::parse(name).expect("a status the code knows");
            assert_eq!(
                serde_json::to_value(status).expect("serialises"),
                name.as_str()
            );
        }
        assert_eq!(listed.len(), 4);
        let summaries: Vec<Value> = [
            Summary::None,
            Summary::Pending,
            Summary::Settled,
            Summary::PaidOut,
            Summary::Failed,
        ]
        .iter()
        .map(|s| serde_json::to_value(s).expect("serialises"))
        .collect();
        assert_eq!(schema("SettlementSummary")["enum"], Value::Array(summaries));
        let types: Vec<Value> = [
            payctl_domain::settlement::SettlementType::Capture,
            payctl_domain::settlement::SettlementType::Refund,
        ]
        .iter()
        .map(|t| serde_json::to_value(t).expect("serialises"))
        .collect();
        assert_eq!(schema("SettlementType")["enum"], Value::Array(types));
    }
}
