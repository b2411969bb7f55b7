//! Identifiers: merchants, payments, events, payouts and idempotency keys.
//!
//! Payment ids are UUIDv7, not the original's sequential integers (which anyone could enumerate); v7 keeps
//! them time-ordered so the primary-key index still grows at its right edge.

use crate::FieldError;
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// A merchant's id: 1–32 characters of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct MerchantId(String);

impl MerchantId {
    pub const MAX_LEN: usize = 32;

    pub fn parse(field: &'static str, value: &str) -> Result<Self, FieldError> {
        if value.is_empty() || value.len() > Self::MAX_LEN {
            return Err(FieldError::new(
                field,
                format!("must be 1 to {} characters", Self::MAX_LEN),
            ));
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(FieldError::new(
                field,
                "may contain only letters, digits, '_' and '-'",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MerchantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client-chosen idempotency key: 1–255 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 255;

    pub fn parse(field: &'static str, value: &str) -> Result<Self, FieldError> {
        if value.is_empty() || value.len() > Self::MAX_LEN {
            return Err(FieldError::new(
                field,
                format!("must be 1 to {} characters", Self::MAX_LEN),
            ));
        }
        if !value.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(FieldError::new(
                field,
                "may contain only printable ASCII without spaces",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Parses the hyphenated form (`0192e4c8-…`, either case), the one ids are shown in. The
            /// other spellings `Uuid` reads (32 bare digits, braces, `urn:uuid:`) are refused, so an id
            /// has one spelling and the API document's `format: uuid` is exactly what is accepted.
            pub fn parse(field: &'static str, value: &str) -> Result<Self, FieldError> {
                Some(value)
                    .filter(|v| v.len() == 36)
                    .and_then(|v| Uuid::try_parse(v).ok())
                    .map(Self)
                    .ok_or_else(|| {
                        FieldError::new(field, concat!("is not a valid ", $what, " (a hyphenated UUID)"))
                    })
            }

            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }
    };
}

uuid_id!(
    /// A payment's public id.
    PaymentId,
    "payment id"
);
uuid_id!(
    /// An event's id: the consumer's deduplication key.
    EventId,
    "event id"
);
uuid_id!(
    /// A payout's id (`payouts.payout_id`): one merchant's net of one currency and business date.
    PayoutId,
    "payout id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merchant_id_rules() {
        assert!(MerchantId::parse("merchantId", "M-123_x").is_ok());
        for bad in ["", " ", "a b", "é", &"x".repeat(33), "a;drop"] {
            assert!(MerchantId::parse("merchantId", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn idempotency_key_rules() {
        assert!(IdempotencyKey::parse("k", "order-1:retry").is_ok());
        for bad in ["", "has space", "tab\t", &"k".repeat(256)] {
            assert!(IdempotencyKey::parse("k", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn payment_ids_are_time_ordered_and_round_trip() {
        let a = PaymentId::new();
        let b = PaymentId::new();
        assert!(a < b);
        assert_eq!(PaymentId::parse("id", &a.to_string()).unwrap(), a);
        let upper = a.to_string().to_ascii_uppercase();
        assert_eq!(PaymentId::parse("id", &upper).unwrap(), a);
        let simple = a.as_uuid().simple().to_string();
        let braced = a.as_uuid().braced().to_string();
        let urn = a.as_uuid().urn().to_string();
        for other in ["42", "", simple.as_str(), braced.as_str(), urn.as_str()] {
            assert!(PaymentId::parse("id", other).is_err(), "{other:?}");
        }
    }
}
