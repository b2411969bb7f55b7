//! The versioned event envelope the outbox relay publishes and the ledger consumer reads.
//!
//! Unlike the original's bare maps, every event carries its own id (the consumer's dedup key), its type and
//! schema version, the merchant and the currency.
//!
//! # Ordering contract
//!
//! Delivery is at least once, and one payment's events are **not** guaranteed to arrive in order: each
//! event type has its own topic (a consumer reading several topics interleaves them as it likes), and a
//! relay that fails to publish one event retries it after later ones went out. What is guaranteed:
//!
//! * `sequence` numbers one payment's events 1, 2, 3, … in the order their changes committed (the
//!   authorization is 1), with no gaps and no repeats; a redelivered event has the same `eventId` and
//!   `sequence`.
//! * The running totals (`status`, `capturedAmount`, `refundedAmount`, `voidedAmount`) are the payment's
//!   state *after* that event. A consumer that keeps a view of the payment applies an event only if its
//!   `sequence` is higher than the one it holds; otherwise totals could go backwards.
//! * `amount` is what the event moved. Summing `amount` per type gives the same totals in any order, which
//!   is why the ledger consumer (posting per-event legs, unique per `eventId`) needs no ordering at all.
//!
//! The Kafka key is the payment id, so within one topic a payment's events stay on one partition.
//!
//! `PAYMENT_VOIDED` releases what was not captured: after a partial capture its `status` is still
//! `CAPTURED` (or a refund status) and `amount` is the released rest, not the authorization. Events
//! written before sequences existed carry `sequence` 0: order those by `occurredAt`.

use crate::{EventId, PaymentId, PaymentStatus};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub const EVENT_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    PaymentAuthorized,
    PaymentCaptured,
    PaymentRefunded,
    PaymentVoided,
}

impl EventType {
    pub const ALL: [EventType; 4] = [
        Self::PaymentAuthorized,
        Self::PaymentCaptured,
        Self::PaymentRefunded,
        Self::PaymentVoided,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PaymentAuthorized => "PAYMENT_AUTHORIZED",
            Self::PaymentCaptured => "PAYMENT_CAPTURED",
            Self::PaymentRefunded => "PAYMENT_REFUNDED",
            Self::PaymentVoided => "PAYMENT_VOIDED",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == value)
    }

    /// The topic's base name; deployments may put a prefix in front (see the services' configuration).
    pub fn topic(self) -> &'static str {
        match self {
            Self::PaymentAuthorized => "payment.authorized",
            Self::PaymentCaptured => "payment.captured",
            Self::PaymentRefunded => "payment.refunded",
            Self::PaymentVoided => "payment.voided",
        }
    }
}

/// Where poison messages go.
pub const DLQ_TOPIC: &str = "payment.dlq";

/// Every topic the platform uses, DLQ included.
pub fn all_topics() -> impl Iterator<Item = &'static str> {
    EventType::ALL
        .into_iter()
        .map(EventType::topic)
        .chain(std::iter::once(DLQ_TOPIC))
}

/// One payment event as it travels on Kafka (JSON, camelCase).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentEvent {
    pub event_id: EventId,
    pub event_type: EventType,
    pub schema_version: u32,
    pub payment_id: PaymentId,
    /// This event's place among its payment's events: 1 for the authorization, then +1 per change.
    /// (0 only in events written before sequences existed.)
    #[serde(default)]
    pub sequence: u32,
    pub merchant_id: String,
    /// The amount this event moves (the authorized, captured, refunded or voided amount).
    pub amount: i64,
    pub currency: String,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// The payment's state and running totals after this event.
    pub status: PaymentStatus,
    pub authorized_amount: i64,
    pub captured_amount: i64,
    pub refunded_amount: i64,
    /// The part of the authorization released by a void (all of it, or the uncaptured rest).
    #[serde(default)]
    pub voided_amount: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_is_camel_case_and_round_trips() {
        let e = PaymentEvent {
            event_id: EventId::new(),
            event_type: EventType::PaymentCaptured,
            schema_version: EVENT_SCHEMA_VERSION,
            payment_id: PaymentId::new(),
            sequence: 2,
            merchant_id: "M1".into(),
            amount: 500,
            currency: "KRW".into(),
            occurred_at: OffsetDateTime::UNIX_EPOCH,
            status: PaymentStatus::Captured,
            authorized_amount: 1000,
            captured_amount: 500,
            refunded_amount: 0,
            voided_amount: 0,
            reason: None,
        };
        let json = serde_json::to_value(&e).unwrap();
        for field in [
            "eventId",
            "eventType",
            "schemaVersion",
            "paymentId",
            "sequence",
            "merchantId",
            "occurredAt",
        ] {
            assert!(json.get(field).is_some(), "missing {field}");
        }
        assert_eq!(json["eventType"], "PAYMENT_CAPTURED");
        assert_eq!(serde_json::from_value::<PaymentEvent>(json).unwrap(), e);
    }

    #[test]
    fn every_event_type_has_its_own_topic() {
        let topics: std::collections::HashSet<_> = all_topics().collect();
        assert_eq!(topics.len(), 5);
    }
}
