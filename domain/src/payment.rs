//! The payment state machine: which operation is allowed in which state, and for how much.
//!
//! ```text
//! AUTHORIZED ──capture──▶ CAPTURED ──refund──▶ PARTIALLY_REFUNDED ──refund──▶ REFUNDED
//!     │                     │  ▲ (further partial captures while nothing is refunded or voided)
//!     └──void──▶ VOIDED      └──┘
//! ```
//!
//! Captures add up to at most the authorized amount; refunds add up to at most what was captured. A void
//! releases whatever of the authorization is not captured: all of it from AUTHORIZED (→ VOIDED), the
//! uncaptured rest after a partial capture (the status stays what the captures and refunds make it, and
//! nothing can be captured after it). So `captured + voided ≤ amount` always, and once voided the hold is
//! gone. The server applies these rules while it holds the payment's row lock, and the schema repeats the
//! bounds as CHECK constraints, so neither a bug here nor a concurrent request can move more money than
//! exists.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    Authorized,
    Captured,
    PartiallyRefunded,
    Refunded,
    Voided,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 5] = [
        Self::Authorized,
        Self::Captured,
        Self::PartiallyRefunded,
        Self::Refunded,
        Self::Voided,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorized => "AUTHORIZED",
            Self::Captured => "CAPTURED",
            Self::PartiallyRefunded => "PARTIALLY_REFUNDED",
            Self::Refunded => "REFUNDED",
            Self::Voided => "VOIDED",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operation on an existing payment. `None` as an amount means "all that remains".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Capture(Option<i64>),
    Refund(Option<i64>),
    Void,
}

impl Transition {
    pub fn name(self) -> &'static str {
        match self {
            Self::Capture(_) => "capture",
            Self::Refund(_) => "refund",
            Self::Void => "void",
        }
    }
}

/// Why a transition was refused; each maps to a `409` with its own code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("payment is {status}; only {allowed} payments can be {verb}")]
    WrongState {
        status: PaymentStatus,
        allowed: &'static str,
        verb: &'static str,
    },
    #[error("{verb} of {requested} exceeds the {remaining} that remains")]
    ExceedsRemaining {
        verb: &'static str,
        requested: i64,
        remaining: i64,
    },
}

/// The money state of one payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balances {
    pub status: PaymentStatus,
    pub amount: i64,
    pub captured: i64,
    pub refunded: i64,
    /// The part of the authorization a void released.
    pub voided: i64,
}

/// What a permitted transition does: the amount it moves and the balances after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub moved: i64,
    pub after: Balances,
}

impl Balances {
    pub fn apply(self, transition: Transition) -> Result<Applied, TransitionError> {
        use PaymentStatus::*;
        match transition {
            Transition::Capture(requested) => {
                if !matches!(self.status, Authorized | Captured) || self.uncaptured() == 0 {
                    return Err(TransitionError::WrongState {
                        status: self.status,
                        allowed: "AUTHORIZED or partially captured (and not voided)",
                        verb: "captured",
                    });
                }
                let remaining = self.uncaptured();
                let moved = self.within("capture", requested, remaining)?;
                Ok(Applied {
                    moved,
                    after: Balances {
                        status: Captured,
                        captured: self.captured + moved,
                        ..self
                    },
                })
            }
            Transition::Refund(requested) => {
                if !matches!(self.status, Captured | PartiallyRefunded)
                    || self.refunded == self.captured
                {
                    return Err(TransitionError::WrongState {
                        status: self.status,
                        allowed: "CAPTURED or PARTIALLY_REFUNDED",
                        verb: "refunded",
                    });
                }
                let remaining = self.captured - self.refunded;
                let moved = self.within("refund", requested, remaining)?;
                let refunded = self.refunded + moved;
                Ok(Applied {
                    moved,
                    after: Balances {
                        status: if refunded == self.captured {
                            Refunded
                        } else {
                            PartiallyRefunded
                        },
                        refunded,
                        ..self
                    },
                })
            }
            Transition::Void => {
                if self.status == Voided || self.uncaptured() == 0 {
                    return Err(TransitionError::WrongState {
                        status: self.status,
                        allowed: "AUTHORIZED or partially captured",
                        verb: "voided",
                    });
                }
                let moved = self.uncaptured();
                Ok(Applied {
                    moved,
                    after: Balances {
                        status: if self.status == Authorized {
                            Voided
                        } else {
                            self.status
                        },
                        voided: self.voided + moved,
                        ..self
                    },
                })
            }
        }
    }

    /// What is still held and could be captured or released.
    pub fn uncaptured(self) -> i64 {
        self.amount - self.captured - self.voided
    }

    fn within(
        self,
        verb: &'static str,
        requested: Option<i64>,
        remaining: i64,
    ) -> Result<i64, TransitionError> {
        let moved = requested.unwrap_or(remaining);
        if moved > remaining || remaining == 0 {
            return Err(TransitionError::ExceedsRemaining {
                verb,
                requested: moved,
                remaining,
            });
        }
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PaymentStatus::*;

    fn authorized(amount: i64) -> Balances {
        Balances {
            status: Authorized,
            amount,
            captured: 0,
            refunded: 0,
            voided: 0,
        }
    }

    #[test]
    fn full_lifecycle_capture_partial_refund_then_rest() {
        let captured = authorized(1000).apply(Transition::Capture(None)).unwrap();
        assert_eq!((captured.moved, captured.after.status), (1000, Captured));
        let part = captured.after.apply(Transition::Refund(Some(300))).unwrap();
        assert_eq!((part.moved, part.after.status), (300, PartiallyRefunded));
        let rest = part.after.apply(Transition::Refund(None)).unwrap();
        assert_eq!(
            (rest.moved, rest.after.status, rest.after.refunded),
            (700, Refunded, 1000)
        );
        assert!(matches!(
            rest.after.apply(Transition::Refund(None)),
            Err(TransitionError::WrongState { .. })
        ));
    }

    #[test]
    fn partial_captures_never_exceed_the_authorized_amount() {
        let first = authorized(1000)
            .apply(Transition::Capture(Some(600)))
            .unwrap();
        assert_eq!(first.after.captured, 600);
        assert!(matches!(
            first.after.apply(Transition::Capture(Some(401))),
            Err(TransitionError::ExceedsRemaining { remaining: 400, .. })
        ));
        let second = first.after.apply(Transition::Capture(None)).unwrap();
        assert_eq!((second.moved, second.after.captured), (400, 1000));
        assert!(matches!(
            second.after.apply(Transition::Capture(None)),
            Err(TransitionError::WrongState { .. })
        ));
    }

    #[test]
    fn refunds_are_bounded_by_what_was_captured_not_authorized() {
        let c = authorized(1000)
            .apply(Transition::Capture(Some(500)))
            .unwrap();
        assert!(matches!(
            c.after.apply(Transition::Refund(Some(501))),
            Err(TransitionError::ExceedsRemaining { remaining: 500, .. })
        ));
        // Once something is refunded, no further capture.
        let r = c.after.apply(Transition::Refund(Some(100))).unwrap();
        assert!(matches!(
            r.after.apply(Transition::Capture(None)),
            Err(TransitionError::WrongState { .. })
        ));
    }

    #[test]
    fn wrong_state_transitions_are_refused() {
        assert!(matches!(
            authorized(10).apply(Transition::Refund(None)),
            Err(TransitionError::WrongState { .. })
        ));
        let voided = authorized(10).apply(Transition::Void).unwrap().after;
        assert_eq!(voided.status, Voided);
        for t in [
            Transition::Capture(None),
            Transition::Refund(None),
            Transition::Void,
        ] {
            assert!(
                matches!(voided.apply(t), Err(TransitionError::WrongState { .. })),
                "{t:?} on a voided payment"
            );
        }
        let captured = authorized(10)
            .apply(Transition::Capture(None))
            .unwrap()
            .after;
        assert!(matches!(
            captured.apply(Transition::Void),
            Err(TransitionError::WrongState { .. })
        ));
    }

    #[test]
    fn a_void_after_a_partial_capture_releases_the_rest_and_ends_capturing() {
        let part = authorized(1000)
            .apply(Transition::Capture(Some(600)))
            .unwrap()
            .after;
        let refunded = part.apply(Transition::Refund(Some(100))).unwrap().after;
        for from in [part, refunded] {
            let void = from.apply(Transition::Void).unwrap();
            assert_eq!(void.moved, 400, "{from:?}");
            assert_eq!(void.after.status, from.status, "captures keep their status");
            assert_eq!((void.after.voided, void.after.uncaptured()), (400, 0));
            assert!(matches!(
                void.after.apply(Transition::Capture(None)),
                Err(TransitionError::WrongState { .. })
            ));
            assert!(matches!(
                void.after.apply(Transition::Void),
                Err(TransitionError::WrongState { .. })
            ));
            // Refunds of what was captured go on.
            let rest = void.after.apply(Transition::Refund(None)).unwrap();
            assert_eq!(rest.after.status, Refunded);
        }
        // A full void moves the whole amount; nothing left to void after a full capture.
        let full = authorized(1000).apply(Transition::Void).unwrap();
        assert_eq!((full.moved, full.after.voided), (1000, 1000));
        let captured = authorized(10).apply(Transition::Capture(None)).unwrap();
        assert!(matches!(
            captured.after.apply(Transition::Void),
            Err(TransitionError::WrongState { .. })
        ));
    }

    #[test]
    fn status_names_round_trip() {
        for s in PaymentStatus::ALL {
            assert_eq!(PaymentStatus::parse(s.as_str()), Some(s));
        }
    }
}
