//! The shared model of payctl: the types the ingest service (`pay-server`) and the ledger consumer
//! (`pay-consumer`) must agree on, and nothing that does I/O.
//!
//! Everything here follows "parse, don't validate": a value of [`Amount`], [`Currency`], [`MerchantId`],
//! [`IdempotencyKey`] or [`PaymentId`] can only be built through its `parse`, so code that holds one may
//! trust it. [`settlement`] holds what the mock acquirer, the settlement worker and reconciliation share
//! (fees, business dates, the statement format). The SQL schema lives beside this crate in `migrations/`; both services apply it at start-up.

pub mod event;
pub mod ids;
pub mod ledger;
pub mod money;
pub mod payment;
pub mod settlement;

pub use event::{EventType, PaymentEvent, EVENT_SCHEMA_VERSION};
pub use ids::{EventId, IdempotencyKey, MerchantId, PaymentId, PayoutId};
pub use money::{Amount, Currency};
pub use payment::{PaymentStatus, Transition, TransitionError};

/// A field-level reason why input was rejected, for the API's `400` details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
