//! The chart of accounts and the legs each payment event posts.
//!
//! Every event posts balanced legs in the payment's currency (sum of debits = sum of credits). Accounts:
//!
//! | account | kind | balance means |
//! |---|---|---|
//! | `authorization_hold` | memo (debit-normal) | authorized and not yet captured or voided |
//! | `authorization_hold_offset` | memo (credit-normal) | its contra account, so memo legs balance |
//! | `customer_receivable` | asset | captured money due from the customer's card network |
//! | `merchant_payable` | liability | what is owed to the merchant: captured − refunded |
//!
//! | event (amount x) | debit | credit |
//! |---|---|---|
//! | `PAYMENT_AUTHORIZED` | `authorization_hold` x | `authorization_hold_offset` x |
//! | `PAYMENT_CAPTURED` | `authorization_hold_offset` x, `customer_receivable` x | `authorization_hold` x, `merchant_payable` x |
//! | `PAYMENT_REFUNDED` | `merchant_payable` x | `customer_receivable` x |
//! | `PAYMENT_VOIDED` | `authorization_hold_offset` x | `authorization_hold` x |
//!
//! So for every payment: `merchant_payable` (credits − debits) = captured − refunded, and
//! `authorization_hold` (debits − credits) = authorized − captured − voided.

use crate::EventType;

pub const AUTHORIZATION_HOLD: &str = "authorization_hold";
pub const AUTHORIZATION_HOLD_OFFSET: &str = "authorization_hold_offset";
pub const CUSTOMER_RECEIVABLE: &str = "customer_receivable";
pub const MERCHANT_PAYABLE: &str = "merchant_payable";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Debit,
    Credit,
}

impl Side {
    /// `D` or `C`, as stored.
    pub fn code(self) -> &'static str {
        match self {
            Self::Debit => "D",
            Self::Credit => "C",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leg {
    /// Position within the event: with the event id, the leg's unique key.
    pub leg: u8,
    pub account: &'static str,
    pub side: Side,
    pub amount: i64,
}

/// The legs `event_type` posts for `amount`.
pub fn legs(event_type: EventType, amount: i64) -> Vec<Leg> {
    use Side::*;
    let pairs: &[(&'static str, Side)] = match event_type {
        EventType::PaymentAuthorized => &[
            (AUTHORIZATION_HOLD, Debit),
            (AUTHORIZATION_HOLD_OFFSET, Credit),
        ],
        EventType::PaymentCaptured => &[
            (AUTHORIZATION_HOLD_OFFSET, Debit),
            (AUTHORIZATION_HOLD, Credit),
            (CUSTOMER_RECEIVABLE, Debit),
            (MERCHANT_PAYABLE, Credit),
        ],
        EventType::PaymentRefunded => &[(MERCHANT_PAYABLE, Debit), (CUSTOMER_RECEIVABLE, Credit)],
        EventType::PaymentVoided => &[
            (AUTHORIZATION_HOLD_OFFSET, Debit),
            (AUTHORIZATION_HOLD, Credit),
        ],
    };
    pairs
        .iter()
        .enumerate()
        .map(|(i, &(account, side))| Leg {
            leg: i as u8,
            account,
            side,
            amount,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_posts_balanced_legs_with_distinct_leg_numbers() {
        for t in EventType::ALL {
            let legs = legs(t, 700);
            let debit: i64 = legs
                .iter()
                .filter(|l| l.side == Side::Debit)
                .map(|l| l.amount)
                .sum();
            let credit: i64 = legs
                .iter()
                .filter(|l| l.side == Side::Credit)
                .map(|l| l.amount)
                .sum();
            assert_eq!(debit, credit, "{t:?}");
            let mut numbers: Vec<u8> = legs.iter().map(|l| l.leg).collect();
            numbers.dedup();
            assert_eq!(numbers.len(), legs.len());
        }
    }

    #[test]
    fn merchant_payable_nets_to_captured_minus_refunded() {
        let mut net = 0;
        for (t, x) in [
            (EventType::PaymentAuthorized, 1000),
            (EventType::PaymentCaptured, 1000),
            (EventType::PaymentRefunded, 300),
        ] {
            for l in legs(t, x) {
                if l.account == MERCHANT_PAYABLE {
                    net += if l.side == Side::Credit {
                        l.amount
                    } else {
                        -l.amount
                    };
                }
            }
        }
        assert_eq!(net, 700);
    }
}
