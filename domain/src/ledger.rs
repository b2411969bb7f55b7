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
//!
//! ## Payouts
//!
//! `payctl settle` pays out what the acquirer settled: per settled capture or refund it posts `PAYOUT`
//! legs under an event id of their own (see [`payout_legs`]), with three more accounts:
//!
//! | account | kind | balance means |
//! |---|---|---|
//! | `acquirer_receivable` | asset | settled at the acquirer: what it remits (net to merchants, fees to itself) |
//! | `fees` | credit-normal | acquirer fees charged to merchants |
//! | `payouts` | credit-normal | paid out to merchants (net of fees; refunds paid back in) |
//!
//! | settled (gross x, fee f) | debit | credit |
//! |---|---|---|
//! | capture | `acquirer_receivable` x, `merchant_payable` x | `customer_receivable` x, `fees` f, `payouts` x − f |
//! | refund | `customer_receivable` x, `payouts` x + f | `acquirer_receivable` x, `merchant_payable` x, `fees` f |
//!
//! So once a payment's captures and refunds are paid out its `merchant_payable` and `customer_receivable`
//! are zero, and for every payout: `payouts` (credits − debits) = its net, `fees` = its fees.

use crate::EventType;

pub const AUTHORIZATION_HOLD: &str = "authorization_hold";
pub const AUTHORIZATION_HOLD_OFFSET: &str = "authorization_hold_offset";
pub const CUSTOMER_RECEIVABLE: &str = "customer_receivable";
pub const MERCHANT_PAYABLE: &str = "merchant_payable";
pub const ACQUIRER_RECEIVABLE: &str = "acquirer_receivable";
pub const FEES: &str = "fees";
pub const PAYOUTS: &str = "payouts";

/// `ledger_entries.event_type` of payout legs (not a payment event: no outbox row, no Kafka message).
pub const PAYOUT_EVENT_TYPE: &str = "PAYOUT";

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

/// The legs that pay out one settled capture (`refund` false) or refund of `gross` (≥ 0) with the
/// acquirer's `fee`: see the module doc. A leg of zero is left out and a negative one (a fee above the
/// gross, so less than nothing is paid out; a rebate, a negative fee) is posted on the other side, since
/// `ledger_entries` holds only positive amounts; leg numbers stay fixed, so a leg's number always names
/// the same account.
pub fn payout_legs(refund: bool, gross: i64, fee: i64) -> Vec<Leg> {
    use Side::*;
    let (d, c) = if refund {
        (Credit, Debit)
    } else {
        (Debit, Credit)
    };
    // A refund's fee is charged too: it is paid back in with the refund.
    let paid = if refund { gross + fee } else { gross - fee };
    [
        (ACQUIRER_RECEIVABLE, d, gross),
        (CUSTOMER_RECEIVABLE, c, gross),
        (MERCHANT_PAYABLE, d, gross),
        (FEES, Credit, fee),
        (PAYOUTS, c, paid),
    ]
    .into_iter()
    .enumerate()
    .filter(|(_, (_, _, amount))| *amount != 0)
    .map(|(i, (account, side, amount))| Leg {
        leg: i as u8,
        account,
        side: match (amount < 0, side) {
            (false, side) => side,
            (true, Debit) => Credit,
            (true, Credit) => Debit,
        },
        amount: amount.abs(),
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(legs: &[Leg], account: &str) -> i64 {
        legs.iter()
            .filter(|l| l.account == account)
            .map(|l| {
                if l.side == Side::Credit {
                    l.amount
                } else {
                    -l.amount
                }
            })
            .sum()
    }

    #[test]
    fn payout_legs_balance_and_pay_out_exactly_the_net() {
        for (refund, gross, fee) in [
            (false, 10_000, 250),
            (true, 4_000, 0),
            (true, 4_000, 30),
            (false, 1, 1),
            (false, 7, 0),
        ] {
            let legs = payout_legs(refund, gross, fee);
            let all: i64 = legs
                .iter()
                .map(|l| {
                    if l.side == Side::Credit {
                        l.amount
                    } else {
                        -l.amount
                    }
                })
                .sum();
            assert_eq!(all, 0, "balanced: {refund} {gross} {fee}");
            assert!(legs.iter().all(|l| l.amount > 0));
            let sign = if refund { -1 } else { 1 };
            assert_eq!(
                net(&legs, PAYOUTS),
                sign * gross - fee,
                "{refund} {gross} {fee}"
            );
            assert_eq!(net(&legs, FEES), fee);
            assert_eq!(net(&legs, MERCHANT_PAYABLE), -sign * gross);
            assert_eq!(net(&legs, CUSTOMER_RECEIVABLE), sign * gross);
            assert_eq!(net(&legs, ACQUIRER_RECEIVABLE), -sign * gross);
        }
    }

    #[test]
    fn a_paid_out_capture_and_refund_leave_nothing_payable_or_receivable() {
        let mut all = legs(EventType::PaymentCaptured, 10_000);
        all.extend(legs(EventType::PaymentRefunded, 3_000));
        all.extend(payout_legs(false, 10_000, 250));
        all.extend(payout_legs(true, 3_000, 0));
        assert_eq!(net(&all, MERCHANT_PAYABLE), 0);
        assert_eq!(net(&all, CUSTOMER_RECEIVABLE), 0);
        assert_eq!(net(&all, PAYOUTS), 10_000 - 250 - 3_000);
        // The acquirer owes what it settled: the payout plus its fee.
        assert_eq!(-net(&all, ACQUIRER_RECEIVABLE), 10_000 - 3_000);
    }

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
