//! Model-based test of the payment API (issue 12): random sequences of operations run against the real
//! stack (pay-server on MariaDB, Redis and tansu, with the ledger consumer) and compared, answer by
//! answer, with a small reference model of what each answer and each balance must be.
//!
//! Operations: authorize (also above the largest amount, in a lower-case currency, without a key);
//! capture, refund and void, full and partial, too much, in the wrong state, on an unknown or another
//! merchant's payment; reads of a payment and of its ledger; replays of earlier keyed requests (also
//! with the key moved between header and body, `merchantId` added or dropped, other whitespace); an
//! earlier key with another request; keys differing from earlier ones only in case; a key in header and
//! body that disagree; bodies with an unknown field, `amount: null` or trailing bytes; `merchantId` of
//! another merchant; the longest reason and one too long; bursts of different concurrent requests on
//! one payment, unkeyed, each keyed, or all with one key; bursts of one keyed request sent several times
//! at once; two merchants whose ids differ only in case; dropping the Redis replay cache so that replays
//! come from the database.
//!
//! The model is written from the API's rules, not from the server's code: balances per payment (status
//! derived from them), the idempotency records per (merchant, key) with the exact bytes first answered,
//! and the number of effects (outbox events). Operations are generated without looking at the state
//! (`Target::Own(3)` is "the fourth payment of this merchant, wrapping", `Amt::Part(3)` "3/8 of what
//! remains"); the run resolves them against the model, so any sequence, and any part of one, is
//! meaningful. (This is also why the model runs alongside the server rather than ahead of it, as
//! `proptest-state-machine` would have it: after a burst, only the server's answers say which of the
//! allowed serialisations happened.)
//! A burst of concurrent requests is accepted when some serialisation of the requests that got a final
//! answer, run through the model one after another, gives exactly the answers the server gave (retryable
//! `409 IDEMPOTENCY_IN_PROGRESS`/`LOCK_TIMEOUT` answers must have had no effect); the model goes on from
//! that serialisation. A burst of one keyed request must have exactly one original answer; the others
//! replay it byte for byte or are retryable.
//!
//! At the end of each case every payment, read one by one and listed per merchant (in small pages, and
//! per status), equals the model;
//! the outbox holds exactly one event per effect of the model; the ledger consumer (running since the
//! start of the case) catches up, `reconcile`'s invariants are clean, and each payment's ledger nets are
//! what the model says (merchant_payable = captured − refunded, authorization_hold = authorized −
//! captured − voided).
//!
//! Running, and replaying a failure:
//! * `cargo test -p pay-server --test api model -- --nocapture` prints, per case, its seed, how many
//!   operations and HTTP requests it made, and how long it took.
//! * `PROPTEST_CASES` sets the number of cases (default 12, each a sequence of `MODEL_MIN_OPS` to
//!   `MODEL_MAX_OPS` operations, default 150 to 300).
//! * A failure prints the failing case's seed, the failing step with the server's answer, and the
//!   shrunk sequence of operations; the whole first failing sequence goes to a file in the target's
//!   tmp directory (the message names it). `PROPTEST_RNG_SEED=<seed> PROPTEST_CASES=1 cargo test -p
//!   pay-server --test api model -- --nocapture` runs exactly that case again: the same sequence
//!   (only the server's serialisation of a burst may differ from run to run), then the same shrinking.
//! * Proptest generates the sequences (from the seed); the shrinking is our own delta debugging (cut
//!   after the failing step, then drop ever smaller chunks), because every try runs a whole case
//!   against the stack. It is bounded by `MODEL_MAX_SHRINK_RUNS` (default 200) and
//!   `MODEL_MAX_SHRINK_SECONDS` (default 180; 0 turns shrinking off).

use crate::helpers::{new_merchant, spawn_app_with, Reply, TestApp, TestMerchant};
use futures::future::join_all;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as ProptestConfig, RngSeed, TestRunner};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------------
// Operations, as generated: independent of the state, resolved against the model when run.
// ---------------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Capture,
    Refund,
    Void,
}

impl Kind {
    fn route(self) -> &'static str {
        match self {
            Self::Capture => "capture",
            Self::Refund => "refund",
            Self::Void => "void",
        }
    }

    /// The answer's message, given the payment after the change: a void after a partial capture says
    /// that what was captured stays captured.
    fn message(self, after: &Payment) -> &'static str {
        match self {
            Self::Capture => "Payment captured successfully",
            Self::Refund => "Payment refunded successfully",
            Self::Void if after.captured > 0 => {
                "The uncaptured rest of the authorization was released; what was captured stays captured"
            }
            Self::Void => "Payment voided successfully",
        }
    }
}

/// An amount relative to what remains to capture (capture, void) or to refund (refund).
#[derive(Clone, Copy, Debug)]
enum Amt {
    /// No `amount`: all that remains.
    Rest,
    /// k/8 of what remains (at least 1).
    Part(u8),
    One,
    Exact,
    /// One more than remains.
    Over,
    /// 0: refused at the edge.
    Zero,
}

/// Which payment an operation is about.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// One of the requesting merchant's three newest payments, if it has any.
    Recent(u8),
    /// The n-th payment of the requesting merchant (wrapping), if it has any.
    Own(u8),
    /// The n-th payment of either merchant.
    Any(u8),
    /// An id no payment has.
    Unknown(u8),
}

#[derive(Clone, Copy, Debug)]
enum KeyChoice {
    None,
    Fresh,
    /// An earlier key (used by either merchant, for any request).
    Reuse(u8),
    /// An earlier key with the case of one of its letters flipped.
    CaseFlip(u8, u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MerchantField {
    Absent,
    Own,
    /// The other merchant's id: 403.
    Other,
}

/// Where the idempotency key goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyPlace {
    Header,
    /// `idempotencyKey` in the body.
    Body,
    /// The same key in both.
    Both,
    /// The header and the body disagree: 400.
    Conflict,
}

/// How a request is spelt, which must not change what it means.
#[derive(Clone, Copy, Debug)]
struct Form {
    key_place: KeyPlace,
    merchant_field: MerchantField,
    pretty: bool,
}

const PLAIN: Form = Form {
    key_place: KeyPlace::Header,
    merchant_field: MerchantField::Absent,
    pretty: false,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bad {
    UnknownField,
    NullAmount,
    Trailing,
}

#[derive(Clone, Copy, Debug)]
enum BurstKeys {
    None,
    Distinct,
    Shared,
}

#[derive(Clone, Debug)]
enum Op {
    Authorize {
        m: u8,
        amount: i64,
        /// KRW, USD, or `krw` (refused: codes are upper case).
        currency: u8,
        key: KeyChoice,
        form: Form,
    },
    Change {
        m: u8,
        kind: Kind,
        target: Target,
        amount: Amt,
        reason: Option<u8>,
        key: KeyChoice,
        form: Form,
    },
    /// Sends an earlier keyed request (one whose answer was stored) again, perhaps spelt differently.
    Replay {
        nth: u8,
        form: Form,
    },
    /// A body the server must refuse with 400 and no effect; `kind` `None` is authorize.
    Malformed {
        m: u8,
        kind: Option<Kind>,
        target: Target,
        bad: Bad,
        key: KeyChoice,
    },
    Get {
        m: u8,
        target: Target,
    },
    Ledger {
        m: u8,
        target: Target,
    },
    /// The same keyed request (an `Authorize` or `Change`) sent `copies` times at once.
    SameKeyBurst {
        copies: u8,
        request: Box<Op>,
    },
    /// Different requests on one payment at once: unkeyed, each with a fresh key, or all with one
    /// fresh key (one of them is carried out; the others get 422, or replay it if they are the same).
    Burst {
        m: u8,
        target: Target,
        keys: BurstKeys,
        members: Vec<(Kind, Amt)>,
    },
    /// Drops the replay cache in Redis: the next replays come from the database.
    ForgetCache,
}

/// The last two are the longest reason allowed (128 characters) and one too long.
const REASONS: [&str; 5] = [
    "damaged",
    "late delivery",
    "duplicate",
    "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
];
const MAX_REASON: usize = 128;

const CURRENCIES: [&str; 3] = ["KRW", "USD", "krw"];

/// The largest amount the API accepts.
const MAX_AMOUNT: i64 = 99_999_999_999;

fn merchant_index() -> impl Strategy<Value = u8> {
    prop_oneof![3 => Just(0u8), 2 => Just(1u8)]
}

fn key_choice(none: u32) -> BoxedStrategy<KeyChoice> {
    let keyed = prop_oneof![
        40 => Just(KeyChoice::Fresh),
        12 => any::<u8>().prop_map(KeyChoice::Reuse),
        8 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| KeyChoice::CaseFlip(a, b)),
    ];
    if none == 0 {
        keyed.boxed()
    } else {
        prop_oneof![none => Just(KeyChoice::None), 60 => keyed].boxed()
    }
}

fn key_place() -> impl Strategy<Value = KeyPlace> {
    prop_oneof![
        70 => Just(KeyPlace::Header),
        15 => Just(KeyPlace::Body),
        10 => Just(KeyPlace::Both),
        3 => Just(KeyPlace::Conflict),
    ]
}

fn form() -> impl Strategy<Value = Form> {
    (
        key_place(),
        prop_oneof![
            60 => Just(MerchantField::Absent),
            35 => Just(MerchantField::Own),
            3 => Just(MerchantField::Other),
        ],
        prop::bool::weighted(0.2),
    )
        .prop_map(|(key_place, merchant_field, pretty)| Form {
            key_place,
            merchant_field,
            pretty,
        })
}

fn amt() -> impl Strategy<Value = Amt> {
    prop_oneof![
        30 => Just(Amt::Rest),
        30 => (1u8..=7).prop_map(Amt::Part),
        5 => Just(Amt::One),
        10 => Just(Amt::Exact),
        10 => Just(Amt::Over),
        2 => Just(Amt::Zero),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        50 => any::<u8>().prop_map(Target::Recent),
        38 => any::<u8>().prop_map(Target::Own),
        8 => any::<u8>().prop_map(Target::Any),
        4 => any::<u8>().prop_map(Target::Unknown),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![45 => Just(Kind::Capture), 35 => Just(Kind::Refund), 20 => Just(Kind::Void)]
}

fn authorize_op(none: u32) -> impl Strategy<Value = Op> {
    (
        merchant_index(),
        prop_oneof![
            95 => 1i64..=100_000,
            2 => Just(0i64),
            1 => Just(MAX_AMOUNT),
            1 => Just(MAX_AMOUNT + 1),
        ],
        prop_oneof![70 => Just(0u8), 28 => Just(1u8), 2 => Just(2u8)],
        key_choice(none),
        form(),
    )
        .prop_map(|(m, amount, currency, key, form)| Op::Authorize {
            m,
            amount,
            currency,
            key,
            form,
        })
}

fn change_op(none: u32) -> impl Strategy<Value = Op> {
    (
        merchant_index(),
        kind(),
        target(),
        amt(),
        prop::option::weighted(
            0.3,
            prop_oneof![20 => 0u8..3, 1 => Just(3u8), 1 => Just(4u8)],
        ),
        key_choice(none),
        form(),
    )
        .prop_map(|(m, kind, target, amount, reason, key, form)| Op::Change {
            m,
            kind,
            target,
            amount,
            reason,
            key,
            form,
        })
}

fn op() -> impl Strategy<Value = Op> {
    let replay_form = (
        prop_oneof![
            Just(KeyPlace::Header),
            Just(KeyPlace::Body),
            Just(KeyPlace::Both)
        ],
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(k, m, p)| Form {
            key_place: k,
            merchant_field: if m {
                MerchantField::Own
            } else {
                MerchantField::Absent
            },
            pretty: p,
        });
    prop_oneof![
        14 => authorize_op(2),
        40 => change_op(40),
        10 => (any::<u8>(), replay_form).prop_map(|(nth, form)| Op::Replay { nth, form }),
        4 => (
            merchant_index(),
            prop::option::weighted(0.7, kind()),
            target(),
            prop_oneof![Just(Bad::UnknownField), Just(Bad::NullAmount), Just(Bad::Trailing)],
            key_choice(20),
        )
            .prop_map(|(m, kind, target, bad, key)| Op::Malformed { m, kind, target, bad, key }),
        8 => (merchant_index(), target()).prop_map(|(m, target)| Op::Get { m, target }),
        2 => (merchant_index(), target()).prop_map(|(m, target)| Op::Ledger { m, target }),
        5 => (2u8..=6, prop_oneof![1 => authorize_op(0), 3 => change_op(0)])
            .prop_map(|(copies, r)| Op::SameKeyBurst { copies, request: Box::new(r) }),
        6 => (
            merchant_index(),
            prop_oneof![
                12 => any::<u8>().prop_map(Target::Recent),
                6 => any::<u8>().prop_map(Target::Own),
                1 => any::<u8>().prop_map(Target::Any),
            ],
            prop_oneof![
                5 => Just(BurstKeys::None),
                3 => Just(BurstKeys::Distinct),
                2 => Just(BurstKeys::Shared),
            ],
            prop::collection::vec((kind(), amt()), 2..=5),
        )
            .prop_map(|(m, target, keys, members)| Op::Burst { m, target, keys, members }),
        1 => Just(Op::ForgetCache),
    ]
}

// ---------------------------------------------------------------------------------------------------
// The reference model.
// ---------------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Payment {
    id: String,
    merchant: usize,
    currency: &'static str,
    amount: i64,
    captured: i64,
    refunded: i64,
    voided: i64,
}

impl Payment {
    fn uncaptured(&self) -> i64 {
        self.amount - self.captured - self.voided
    }

    /// The status follows from the balances.
    fn status(&self) -> &'static str {
        if self.refunded > 0 {
            if self.refunded == self.captured {
                "REFUNDED"
            } else {
                "PARTIALLY_REFUNDED"
            }
        } else if self.captured > 0 {
            "CAPTURED"
        } else if self.voided > 0 {
            "VOIDED"
        } else {
            "AUTHORIZED"
        }
    }

    /// What remains for `kind`: to capture or release, or to refund.
    fn remaining(&self, kind: Kind) -> i64 {
        match kind {
            Kind::Capture | Kind::Void => self.uncaptured(),
            Kind::Refund => self.captured - self.refunded,
        }
    }

    /// The rules: capture while nothing is refunded or voided, up to the authorization; refund up to
    /// what was captured; a void releases all that is not captured. Omitted amount = all that remains.
    fn apply(&self, kind: Kind, amount: Option<i64>) -> Result<Payment, &'static str> {
        let remaining = self.remaining(kind);
        let allowed = match kind {
            Kind::Capture => self.refunded == 0 && self.voided == 0 && remaining > 0,
            Kind::Refund | Kind::Void => remaining > 0,
        };
        if !allowed {
            return Err("INVALID_STATE");
        }
        let moved = amount.unwrap_or(remaining);
        if moved > remaining {
            return Err("AMOUNT_EXCEEDS_REMAINING");
        }
        let mut after = self.clone();
        match kind {
            Kind::Capture => after.captured += moved,
            Kind::Refund => after.refunded += moved,
            Kind::Void => after.voided += moved,
        }
        Ok(after)
    }
}

/// What the idempotency fingerprint covers.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Logical {
    Authorize {
        amount: i64,
        currency: &'static str,
    },
    Change {
        kind: Kind,
        payment: String,
        amount: Option<i64>,
        reason: Option<&'static str>,
    },
}

#[derive(Clone, Debug)]
struct Request {
    merchant: usize,
    logical: Logical,
    key: Option<String>,
    form: Form,
    bad: Option<Bad>,
}

#[derive(Clone, Debug)]
struct Stored {
    logical: Logical,
    status: u16,
    body: Vec<u8>,
}

#[derive(Clone, Debug)]
enum Effect {
    Authorized {
        amount: i64,
        currency: &'static str,
    },
    Changed {
        index: usize,
        kind: Kind,
        after: Payment,
    },
}

/// What the server must answer to a request.
#[derive(Clone, Debug)]
enum Outcome {
    /// Refused before idempotency is looked at: not stored, never a replay.
    Edge(u16, &'static str),
    /// 422: the key was used with another request.
    Reused,
    /// The stored answer, byte for byte, marked as a replay.
    Replay(Stored),
    /// Carried out now; stored when keyed.
    Executed(Result<Effect, (u16, &'static str)>),
}

#[derive(Clone, Default)]
struct Model {
    payments: Vec<Payment>,
    /// (merchant, key) → the stored answer.
    keys: HashMap<(usize, String), Stored>,
    /// Every key sent so far, for `Reuse` and `CaseFlip`.
    key_log: Vec<String>,
    /// Keyed requests whose answer was stored, for `Replay`.
    history: Vec<Request>,
    /// Effects so far: one outbox event each.
    effects: usize,
}

impl Model {
    fn payment(&self, merchant: usize, id: &str) -> Option<usize> {
        self.payments
            .iter()
            .position(|p| p.id == id && p.merchant == merchant)
    }

    fn predict(&self, r: &Request) -> Outcome {
        if let Some(bad) = r.bad {
            return Outcome::Edge(
                400,
                match bad {
                    Bad::UnknownField | Bad::NullAmount => "VALIDATION_FAILED",
                    Bad::Trailing => "BAD_REQUEST",
                },
            );
        }
        if r.form.merchant_field == MerchantField::Other {
            return Outcome::Edge(403, "FORBIDDEN");
        }
        let invalid = r.key.is_some() && r.form.key_place == KeyPlace::Conflict
            || match &r.logical {
                Logical::Authorize { amount, currency } => {
                    !(1..=MAX_AMOUNT).contains(amount)
                        || currency.chars().any(|c| c.is_ascii_lowercase())
                        || r.key.is_none()
                }
                Logical::Change {
                    kind,
                    amount,
                    reason,
                    ..
                } => {
                    amount.is_some_and(|a| !(1..=MAX_AMOUNT).contains(&a))
                        || (*kind == Kind::Void && amount.is_some())
                        || reason.is_some_and(|r| r.chars().count() > MAX_REASON)
                }
            };
        if invalid {
            return Outcome::Edge(400, "VALIDATION_FAILED");
        }
        if let Some(key) = &r.key {
            if let Some(stored) = self.keys.get(&(r.merchant, key.clone())) {
                return if stored.logical == r.logical {
                    Outcome::Replay(stored.clone())
                } else {
                    Outcome::Reused
                };
            }
        }
        Outcome::Executed(match &r.logical {
            Logical::Authorize { amount, currency } => Ok(Effect::Authorized {
                amount: *amount,
                currency,
            }),
            Logical::Change {
                kind,
                payment,
                amount,
                ..
            } => match self.payment(r.merchant, payment) {
                None => Err((404, "PAYMENT_NOT_FOUND")),
                Some(index) => self.payments[index]
                    .apply(*kind, *amount)
                    .map(|after| Effect::Changed {
                        index,
                        kind: *kind,
                        after,
                    })
                    .map_err(|code| (409, code)),
            },
        })
    }

    /// Checks `reply` against `outcome`.
    fn check(
        &self,
        merchants: &[String],
        r: &Request,
        outcome: &Outcome,
        reply: &Reply,
    ) -> Result<(), String> {
        if reply.header("content-type") != Some("application/json") {
            return Err(format!("content-type {:?}", reply.header("content-type")));
        }
        let replayed = reply.header("idempotent-replayed") == Some("true");
        match outcome {
            Outcome::Replay(stored) => {
                if reply.status != stored.status || reply.bytes != stored.body {
                    return Err(format!(
                        "expected the replay of {} {}",
                        stored.status,
                        String::from_utf8_lossy(&stored.body)
                    ));
                }
                if !replayed {
                    return Err("a replay without Idempotent-Replayed: true".into());
                }
                return Ok(());
            }
            _ if replayed => return Err("Idempotent-Replayed on an answer that is not one".into()),
            Outcome::Edge(status, code) => expect_error(reply, *status, code)?,
            Outcome::Reused => expect_error(reply, 422, "IDEMPOTENCY_KEY_REUSED")?,
            Outcome::Executed(Err((status, code))) => expect_error(reply, *status, code)?,
            Outcome::Executed(Ok(Effect::Authorized { amount, currency })) => {
                let v = expect_ok(reply)?;
                let id = v["paymentId"].as_str().unwrap_or_default();
                if uuid::Uuid::try_parse(id).is_err() || self.payments.iter().any(|p| p.id == id) {
                    return Err(format!("not a new payment id: {id:?}"));
                }
                let p = Payment {
                    id: id.to_owned(),
                    merchant: r.merchant,
                    currency,
                    amount: *amount,
                    captured: 0,
                    refunded: 0,
                    voided: 0,
                };
                compare_view(&v, &p, merchants, Some("Payment authorized successfully"))?;
            }
            Outcome::Executed(Ok(Effect::Changed { kind, after, .. })) => {
                compare_view(
                    &expect_ok(reply)?,
                    after,
                    merchants,
                    Some(kind.message(after)),
                )?;
            }
        }
        Ok(())
    }

    /// Takes `outcome` (already checked against `reply`) into the model.
    fn commit(&mut self, r: &Request, outcome: &Outcome, reply: &Reply) {
        if let Some(key) = &r.key {
            if !self.key_log.contains(key) {
                self.key_log.push(key.clone());
            }
        }
        let Outcome::Executed(result) = outcome else {
            return;
        };
        match result {
            Ok(Effect::Authorized { amount, currency }) => {
                let v: Value = serde_json::from_slice(&reply.bytes).unwrap();
                self.payments.push(Payment {
                    id: v["paymentId"].as_str().unwrap().to_owned(),
                    merchant: r.merchant,
                    currency,
                    amount: *amount,
                    captured: 0,
                    refunded: 0,
                    voided: 0,
                });
                self.effects += 1;
            }
            Ok(Effect::Changed { index, after, .. }) => {
                self.payments[*index] = after.clone();
                self.effects += 1;
            }
            Err(_) => {}
        }
        if let Some(key) = &r.key {
            self.keys.insert(
                (r.merchant, key.clone()),
                Stored {
                    logical: r.logical.clone(),
                    status: reply.status,
                    body: reply.bytes.clone(),
                },
            );
            self.history.push(r.clone());
        }
    }
}

/// A name for what happened, for the tally of what a run covered.
fn label(r: &Request, outcome: &Outcome) -> String {
    let route = match &r.logical {
        Logical::Authorize { .. } => "authorize",
        Logical::Change { kind, .. } => kind.route(),
    };
    let keyed = if r.key.is_some() { "keyed" } else { "unkeyed" };
    match outcome {
        Outcome::Edge(status, code) => format!("{route} {status} {code}"),
        Outcome::Reused => format!("{route} 422 IDEMPOTENCY_KEY_REUSED"),
        Outcome::Replay(stored) => format!("{route} replay of a {}", stored.status),
        Outcome::Executed(Ok(_)) => format!("{route} 200 ({keyed})"),
        Outcome::Executed(Err((status, code))) => format!("{route} {status} {code} ({keyed})"),
    }
}

fn body_of(reply: &Reply) -> Result<Value, String> {
    serde_json::from_slice(&reply.bytes).map_err(|e| format!("body is not JSON: {e}"))
}

fn expect_error(reply: &Reply, status: u16, code: &str) -> Result<(), String> {
    let v = body_of(reply)?;
    if reply.status != status || v["code"] != code {
        return Err(format!("expected {status} {code}"));
    }
    Ok(())
}

fn expect_ok(reply: &Reply) -> Result<Value, String> {
    if reply.status != 200 {
        return Err("expected 200".into());
    }
    body_of(reply)
}

fn compare_view(
    v: &Value,
    p: &Payment,
    merchants: &[String],
    message: Option<&str>,
) -> Result<(), String> {
    let want = json!({
        "paymentId": p.id,
        "merchantId": merchants[p.merchant],
        "status": p.status(),
        "amount": p.amount,
        "capturedAmount": p.captured,
        "refundedAmount": p.refunded,
        "voidedAmount": p.voided,
        "currency": p.currency,
    });
    for (field, w) in want.as_object().unwrap() {
        if v[field] != *w {
            return Err(format!(
                "{field}: expected {w}, got {}; model {p:?}",
                v[field]
            ));
        }
    }
    if v.get("message").and_then(Value::as_str) != message {
        return Err(format!("message: expected {message:?}"));
    }
    Ok(())
}

fn is_retryable(reply: &Reply) -> bool {
    reply.status == 409
        && body_of(reply)
            .is_ok_and(|v| v["code"] == "IDEMPOTENCY_IN_PROGRESS" || v["code"] == "LOCK_TIMEOUT")
}

fn describe(reply: &Reply) -> String {
    format!(
        "{}{} {}",
        reply.status,
        if reply.header("idempotent-replayed").is_some() {
            " (replayed)"
        } else {
            ""
        },
        String::from_utf8_lossy(&reply.bytes)
    )
}

/// Every ordering of `items`.
fn permutations(items: &[usize]) -> Vec<Vec<usize>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut all = Vec::new();
    for (i, &first) in items.iter().enumerate() {
        let mut rest = items.to_vec();
        rest.remove(i);
        for mut tail in permutations(&rest) {
            tail.insert(0, first);
            all.push(tail);
        }
    }
    all
}

// ---------------------------------------------------------------------------------------------------
// Running a sequence against the stack.
// ---------------------------------------------------------------------------------------------------

struct Run {
    app: TestApp,
    /// Two merchants whose ids differ only in case.
    merchants: Vec<TestMerchant>,
    merchant_ids: Vec<String>,
    model: Model,
    requests: AtomicUsize,
    fresh: usize,
    tally: BTreeMap<String, usize>,
}

impl Run {
    async fn send(
        &self,
        m: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        key_header: Option<&str>,
    ) -> Result<Reply, String> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut req = self
            .app
            .client
            .request(method.clone(), format!("{}{}", self.app.address, path))
            .bearer_auth(self.merchants[m].key.expose());
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        if let Some(k) = key_header {
            req = req.header("Idempotency-Key", k);
        }
        let res = req
            .send()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        Ok(Reply {
            status: res.status().as_u16(),
            headers: res.headers().clone(),
            bytes: res
                .bytes()
                .await
                .map_err(|e| format!("{method} {path}: {e}"))?
                .to_vec(),
        })
    }

    async fn send_request(&self, r: &Request) -> Result<Reply, String> {
        let (path, mut body) = match &r.logical {
            Logical::Authorize { amount, currency } => (
                "/payments/authorize".to_owned(),
                json!({"amount": amount, "currency": currency}),
            ),
            Logical::Change {
                kind,
                payment,
                amount,
                reason,
            } => {
                let mut b = json!({});
                if let Some(a) = amount {
                    b["amount"] = json!(a);
                }
                if let Some(reason) = reason {
                    b["reason"] = json!(reason);
                }
                (format!("/payments/{}/{payment}", kind.route()), b)
            }
        };
        match r.form.merchant_field {
            MerchantField::Absent => {}
            MerchantField::Own => body["merchantId"] = json!(self.merchant_ids[r.merchant]),
            MerchantField::Other => body["merchantId"] = json!(self.merchant_ids[1 - r.merchant]),
        }
        if let Some(k) = &r.key {
            match r.form.key_place {
                KeyPlace::Header => {}
                KeyPlace::Body | KeyPlace::Both => body["idempotencyKey"] = json!(k),
                KeyPlace::Conflict => body["idempotencyKey"] = json!(format!("{k}-other")),
            }
        }
        match r.bad {
            Some(Bad::UnknownField) => body["refundAmount"] = json!(1),
            Some(Bad::NullAmount) => body["amount"] = Value::Null,
            _ => {}
        }
        let mut bytes = if r.form.pretty {
            serde_json::to_vec_pretty(&body).unwrap()
        } else {
            serde_json::to_vec(&body).unwrap()
        };
        if r.bad == Some(Bad::Trailing) {
            bytes.extend_from_slice(b"}x");
        }
        let header = r
            .key
            .as_deref()
            .filter(|_| r.form.key_place != KeyPlace::Body);
        self.send(
            r.merchant,
            reqwest::Method::POST,
            &path,
            Some(bytes),
            header,
        )
        .await
    }

    /// A key not used before: mixed case (for `CaseFlip`), some with characters JSON or a cache key
    /// might trip on, one in eleven as long as allowed (255).
    fn fresh_key(&mut self) -> String {
        const TAILS: [&str; 6] = ["aX", "Qb", "zZ", "Mm", "\"q\\u", ":%7Bx}*"];
        self.fresh += 1;
        let key = format!("Order-{}{}", self.fresh, TAILS[self.fresh % TAILS.len()]);
        if self.fresh.is_multiple_of(11) {
            format!("{key:k<255}")
        } else {
            key
        }
    }

    fn key(&mut self, choice: KeyChoice) -> Option<String> {
        let log = &self.model.key_log;
        match choice {
            KeyChoice::None => None,
            KeyChoice::Reuse(i) if !log.is_empty() => Some(log[i as usize % log.len()].clone()),
            KeyChoice::CaseFlip(i, at) if !log.is_empty() => {
                let mut key = log[i as usize % log.len()].clone().into_bytes();
                let letters: Vec<usize> = (0..key.len())
                    .filter(|&j| key[j].is_ascii_alphabetic())
                    .collect();
                let j = letters[at as usize % letters.len()];
                key[j] ^= 0x20;
                Some(String::from_utf8(key).unwrap())
            }
            _ => Some(self.fresh_key()),
        }
    }

    /// The payment `target` names for merchant `m`: its id, and its index in the model if it exists.
    fn resolve(&self, m: usize, target: Target) -> (String, Option<usize>) {
        let payments = &self.model.payments;
        let pick = |candidates: Vec<usize>, n: u8| {
            (!candidates.is_empty()).then(|| candidates[n as usize % candidates.len()])
        };
        let own = || (0..payments.len()).filter(|&i| payments[i].merchant == m);
        let index = match target {
            Target::Recent(n) => {
                let mut newest: Vec<usize> = own().rev().take(3).collect();
                newest.reverse();
                pick(newest, n)
            }
            Target::Own(n) => pick(own().collect(), n),
            Target::Any(n) => pick((0..payments.len()).collect(), n),
            Target::Unknown(_) => None,
        };
        match index {
            Some(i) => (payments[i].id.clone(), Some(i)),
            None => {
                let n = match target {
                    Target::Recent(n) | Target::Own(n) | Target::Any(n) | Target::Unknown(n) => n,
                };
                (format!("00000000-0000-4000-8000-{n:012x}"), None)
            }
        }
    }

    fn change_request(
        &self,
        m: usize,
        kind: Kind,
        target: Target,
        amount: Amt,
        reason: Option<u8>,
    ) -> Logical {
        let (payment, index) = self.resolve(m, target);
        let remaining = index.map_or(1000, |i| self.model.payments[i].remaining(kind));
        let amount = match (kind, amount) {
            (_, Amt::Rest) => None,
            (Kind::Void, Amt::Over) => Some(remaining + 1),
            (Kind::Void, Amt::Zero) => Some(0),
            (Kind::Void, _) => None,
            (_, Amt::Part(k)) => Some((remaining * i64::from(k) / 8).max(1)),
            (_, Amt::One) => Some(1),
            (_, Amt::Exact) => Some(remaining.max(1)),
            (_, Amt::Over) => Some(remaining + 1),
            (_, Amt::Zero) => Some(0),
        };
        Logical::Change {
            kind,
            payment,
            amount,
            reason: reason.map(|r| REASONS[r as usize % REASONS.len()]),
        }
    }

    /// Turns an `Authorize` or `Change` operation into a request.
    fn request(&mut self, op: &Op) -> Request {
        match *op {
            Op::Authorize {
                m,
                amount,
                currency,
                key,
                form,
            } => Request {
                merchant: m as usize,
                logical: Logical::Authorize {
                    amount,
                    currency: CURRENCIES[currency as usize % CURRENCIES.len()],
                },
                key: self.key(key),
                form,
                bad: None,
            },
            Op::Change {
                m,
                kind,
                target,
                amount,
                reason,
                key,
                form,
            } => Request {
                merchant: m as usize,
                logical: self.change_request(m as usize, kind, target, amount, reason),
                key: self.key(key),
                form,
                bad: None,
            },
            _ => unreachable!("not a single request: {op:?}"),
        }
    }

    /// One request: predicted, sent, compared, taken into the model.
    async fn single(&mut self, r: Request) -> Result<(), String> {
        let outcome = self.model.predict(&r);
        let reply = self.send_request(&r).await?;
        self.model
            .check(&self.merchant_ids, &r, &outcome, &reply)
            .map_err(|e| {
                format!(
                    "{e}\n  request: {r:?}\n  predicted: {outcome:?}\n  answer: {}",
                    describe(&reply)
                )
            })?;
        *self.tally.entry(label(&r, &outcome)).or_default() += 1;
        self.model.commit(&r, &outcome, &reply);
        Ok(())
    }

    async fn step(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::Authorize { .. } | Op::Change { .. } => {
                let r = self.request(op);
                self.single(r).await
            }
            Op::Replay { nth, form } => {
                if self.model.history.is_empty() {
                    return Ok(());
                }
                let mut r = self.model.history[*nth as usize % self.model.history.len()].clone();
                r.form = *form;
                self.single(r).await
            }
            Op::Malformed {
                m,
                kind,
                target,
                bad,
                key,
            } => {
                let m = *m as usize;
                let logical = match kind {
                    None => Logical::Authorize {
                        amount: 1000,
                        currency: "KRW",
                    },
                    Some(kind) => self.change_request(m, *kind, *target, Amt::Rest, None),
                };
                let r = Request {
                    merchant: m,
                    logical,
                    key: self.key(*key),
                    form: PLAIN,
                    bad: Some(*bad),
                };
                self.single(r).await
            }
            Op::Get { m, target } => self.get(*m as usize, *target).await,
            Op::Ledger { m, target } => {
                let m = *m as usize;
                let (id, index) = self.resolve(m, *target);
                let reply = self
                    .send(
                        m,
                        reqwest::Method::GET,
                        &format!("/payments/{id}/ledger"),
                        None,
                        None,
                    )
                    .await?;
                let own = index.is_some_and(|i| self.model.payments[i].merchant == m);
                let checked = if own {
                    expect_ok(&reply).and_then(|v| {
                        (v["paymentId"] == id.as_str() && v["balanced"] == true)
                            .then_some(())
                            .ok_or_else(|| "not this payment's balanced ledger".to_owned())
                    })
                } else {
                    expect_error(&reply, 404, "PAYMENT_NOT_FOUND")
                };
                checked.map_err(|e| format!("{e}\n  answer: {}", describe(&reply)))
            }
            Op::SameKeyBurst { copies, request } => {
                let mut r = self.request(request);
                if r.key.is_none() {
                    r.key = Some(self.fresh_key());
                }
                self.same_key_burst(r, *copies as usize).await
            }
            Op::Burst {
                m,
                target,
                keys,
                members,
            } => {
                let m = *m as usize;
                let mut requests = Vec::new();
                let shared = self.fresh_key();
                for (kind, amount) in members {
                    let key = match keys {
                        BurstKeys::None => None,
                        BurstKeys::Distinct => Some(self.fresh_key()),
                        BurstKeys::Shared => Some(shared.clone()),
                    };
                    requests.push(Request {
                        merchant: m,
                        logical: self.change_request(m, *kind, *target, *amount, None),
                        key,
                        form: PLAIN,
                        bad: None,
                    });
                }
                self.burst(requests).await?;
                self.get(m, *target).await
            }
            Op::ForgetCache => {
                self.app.forget_cached_responses().await;
                Ok(())
            }
        }
    }

    /// Reads a payment and compares it with the model (or expects 404).
    async fn get(&self, m: usize, target: Target) -> Result<(), String> {
        let (id, index) = self.resolve(m, target);
        let reply = self
            .send(
                m,
                reqwest::Method::GET,
                &format!("/payments/{id}"),
                None,
                None,
            )
            .await?;
        let checked = match index.map(|i| &self.model.payments[i]) {
            Some(p) if p.merchant == m => {
                expect_ok(&reply).and_then(|v| compare_view(&v, p, &self.merchant_ids, None))
            }
            _ => expect_error(&reply, 404, "PAYMENT_NOT_FOUND"),
        };
        checked.map_err(|e| format!("GET {id}: {e}\n  answer: {}", describe(&reply)))
    }

    /// Different requests at once: some serialisation of those with a final answer must explain every
    /// answer.
    async fn burst(&mut self, requests: Vec<Request>) -> Result<(), String> {
        let replies = join_all(requests.iter().map(|r| self.send_request(r)))
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        let settled: Vec<usize> = (0..requests.len())
            .filter(|&i| !is_retryable(&replies[i]))
            .collect();
        if settled.len() < requests.len() {
            *self.tally.entry("burst: retryable 409".into()).or_default() +=
                requests.len() - settled.len();
        }
        'orders: for order in permutations(&settled) {
            let mut model = self.model.clone();
            let mut labels = Vec::new();
            for &i in &order {
                let outcome = model.predict(&requests[i]);
                if model
                    .check(&self.merchant_ids, &requests[i], &outcome, &replies[i])
                    .is_err()
                {
                    continue 'orders;
                }
                labels.push(format!("burst: {}", label(&requests[i], &outcome)));
                model.commit(&requests[i], &outcome, &replies[i]);
            }
            if order != settled {
                labels.push("burst: served in another order than sent".into());
            }
            for l in labels {
                *self.tally.entry(l).or_default() += 1;
            }
            for r in &requests {
                if let Some(key) = &r.key {
                    if !model.key_log.contains(key) {
                        model.key_log.push(key.clone());
                    }
                }
            }
            self.model = model;
            return Ok(());
        }
        let mut report = String::from("no serialisation of the burst explains its answers:");
        for (r, reply) in requests.iter().zip(&replies) {
            let _ = write!(report, "\n  {:?}\n    → {}", r.logical, describe(reply));
        }
        let _ = write!(
            report,
            "\n  state before: {:?}",
            self.state_of(&requests[0])
        );
        Err(report)
    }

    fn state_of(&self, r: &Request) -> Option<Payment> {
        match &r.logical {
            Logical::Change { payment, .. } => self
                .model
                .payments
                .iter()
                .find(|p| &p.id == payment)
                .cloned(),
            Logical::Authorize { .. } => None,
        }
    }

    /// One keyed request several times at once: one original answer, the others its replays or
    /// retryable refusals.
    async fn same_key_burst(&mut self, r: Request, copies: usize) -> Result<(), String> {
        let outcome = self.model.predict(&r);
        let before = self.state_of(&r);
        let replies = join_all((0..copies).map(|_| self.send_request(&r)))
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        let fail = |e: String| {
            let mut report = format!(
                "{e}\n  request ×{copies}: {r:?}\n  predicted: {outcome:?}\n  state before: {before:?}"
            );
            for reply in &replies {
                let _ = write!(report, "\n    → {}", describe(reply));
            }
            report
        };
        if !matches!(outcome, Outcome::Executed(_)) {
            for reply in &replies {
                self.model
                    .check(&self.merchant_ids, &r, &outcome, reply)
                    .map_err(&fail)?;
            }
            self.model.commit(&r, &outcome, &replies[0]);
            return Ok(());
        }
        let originals: Vec<&Reply> = replies
            .iter()
            .filter(|reply| reply.header("idempotent-replayed").is_none() && !is_retryable(reply))
            .collect();
        let [original] = originals[..] else {
            return Err(fail(format!(
                "expected exactly one original answer, got {}",
                originals.len()
            )));
        };
        self.model
            .check(&self.merchant_ids, &r, &outcome, original)
            .map_err(&fail)?;
        let original = original.clone();
        *self
            .tally
            .entry(format!("same key: original {}", label(&r, &outcome)))
            .or_default() += 1;
        self.model.commit(&r, &outcome, &original);
        let replay = self.model.predict(&Request {
            form: PLAIN,
            ..r.clone()
        });
        for reply in &replies {
            if is_retryable(reply) {
                *self
                    .tally
                    .entry("same key: retryable 409".into())
                    .or_default() += 1;
            }
            if is_retryable(reply) || reply.header("idempotent-replayed").is_none() {
                continue;
            }
            *self.tally.entry("same key: replay".into()).or_default() += 1;
            self.model
                .check(&self.merchant_ids, &r, &replay, reply)
                .map_err(&fail)?;
        }
        Ok(())
    }

    /// Every payment, read one by one and listed per merchant, equals the model; the outbox has one
    /// event per effect.
    async fn final_checks(&self) -> Result<(), String> {
        for p in &self.model.payments {
            let reply = self
                .send(
                    p.merchant,
                    reqwest::Method::GET,
                    &format!("/payments/{}", p.id),
                    None,
                    None,
                )
                .await?;
            expect_ok(&reply)
                .and_then(|v| compare_view(&v, p, &self.merchant_ids, None))
                .map_err(|e| format!("final read: {e}"))?;
        }
        const STATUSES: [&str; 5] = [
            "AUTHORIZED",
            "CAPTURED",
            "PARTIALLY_REFUNDED",
            "REFUNDED",
            "VOIDED",
        ];
        for m in 0..self.merchants.len() {
            // All of them in small pages, then each status.
            for status in std::iter::once(None).chain(STATUSES.map(Some)) {
                let listed = self.list(m, status).await?;
                let expected: BTreeSet<String> = self
                    .model
                    .payments
                    .iter()
                    .filter(|p| p.merchant == m && status.is_none_or(|s| p.status() == s))
                    .map(|p| p.id.clone())
                    .collect();
                if listed != expected {
                    return Err(format!(
                        "merchant {m} lists {} payments with status {status:?}, the model has {}",
                        listed.len(),
                        expected.len()
                    ));
                }
            }
        }
        let events = self.app.count("SELECT COUNT(*) FROM outbox_events").await;
        if events != self.model.effects as i64 {
            return Err(format!(
                "{events} outbox events, the model counts {} effects",
                self.model.effects
            ));
        }
        Ok(())
    }

    /// The ids of merchant `m`'s payments (of `status`), page by page, each view compared with the
    /// model.
    async fn list(&self, m: usize, status: Option<&str>) -> Result<BTreeSet<String>, String> {
        let mut listed = BTreeSet::new();
        let mut after: Option<String> = None;
        loop {
            let mut path = match status {
                None => "/payments?limit=7".to_owned(),
                Some(s) => format!("/payments?limit=100&status={s}"),
            };
            if let Some(a) = &after {
                path.push_str(&format!("&startingAfter={a}"));
            }
            let page = expect_ok(
                &self
                    .send(m, reqwest::Method::GET, &path, None, None)
                    .await?,
            )
            .map_err(|e| format!("{path}: {e}"))?;
            for v in page["data"].as_array().into_iter().flatten() {
                let id = v["paymentId"].as_str().unwrap_or_default().to_owned();
                let Some(i) = self.model.payment(m, &id) else {
                    return Err(format!(
                        "{path}: merchant {m} lists a payment the model does not know as its own: {v}"
                    ));
                };
                compare_view(v, &self.model.payments[i], &self.merchant_ids, None)
                    .map_err(|e| format!("{path}: {e}"))?;
                if !listed.insert(id) {
                    return Err(format!("{path}: listed twice: {v}"));
                }
            }
            match page["nextCursor"].as_str() {
                Some(c) if page["hasMore"] == true => after = Some(c.to_owned()),
                _ => break,
            }
        }
        Ok(listed)
    }

    /// Waits (bounded) for the consumer to post every event, then checks the invariants and each
    /// payment's ledger against the model.
    async fn ledger_checks(&self) -> Result<(), String> {
        let effects = self.model.effects as i64;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let unpublished = self.app.unpublished().await;
            let posted = self
                .app
                .count("SELECT COUNT(DISTINCT event_id) FROM ledger_entries")
                .await;
            if posted > effects {
                return Err(format!(
                    "{posted} events in the ledger, the model counts {effects}"
                ));
            }
            if unpublished == 0 && posted == effects {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the ledger did not catch up in 120 s: {posted} of {effects} events posted, \
                     {unpublished} unpublished"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut problems = Vec::new();
        for p in &self.model.payments {
            let reply = self
                .send(
                    p.merchant,
                    reqwest::Method::GET,
                    &format!("/payments/{}/ledger", p.id),
                    None,
                    None,
                )
                .await?;
            let v = expect_ok(&reply).map_err(|e| format!("ledger of {}: {e}", p.id))?;
            let net = |account: &str, credit_normal: bool| -> i64 {
                v["entries"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|e| e["account"] == account)
                    .map(|e| {
                        let amount = e["amount"].as_i64().unwrap_or(0);
                        if (e["side"] == "CREDIT") == credit_normal {
                            amount
                        } else {
                            -amount
                        }
                    })
                    .sum()
            };
            let payable = net("merchant_payable", true);
            let hold = net("authorization_hold", false);
            if v["balanced"] != true || payable != p.captured - p.refunded || hold != p.uncaptured()
            {
                problems.push(format!(
                    "ledger of {}: merchant_payable {payable}, authorization_hold {hold}, balanced {}; \
                     the model says {} and {} ({p:?})",
                    p.id,
                    v["balanced"],
                    p.captured - p.refunded,
                    p.uncaptured()
                ));
            }
        }
        let report = pay_consumer::invariants::check(&self.app.db, Duration::ZERO)
            .await
            .map_err(|e| format!("reconcile: {e}"))?;
        for check in &report.checks {
            for v in &check.violations {
                problems.push(format!(
                    "reconcile: {}: {}: {}",
                    check.name, v.subject, v.detail
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the ledger does not match the model:\n  {}",
                problems.join("\n  ")
            ))
        }
    }
}

struct CaseStats {
    tally: BTreeMap<String, usize>,
    ops: usize,
    requests: usize,
    payments: usize,
    effects: usize,
}

/// Why a case failed; `step` is the operation whose answer differed from the model's, if one did (and
/// not the checks after the sequence).
struct Failure {
    step: Option<usize>,
    message: String,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self {
            step: None,
            message,
        }
    }
}

/// One case on a fresh app (its own database, Redis prefix and topics) with its own ledger consumer.
async fn run_case(ops: &[Op]) -> Result<CaseStats, Failure> {
    let app = spawn_app_with(|c| {
        // The model has no rate limits.
        c.rate_limit.authorize_capacity = 0;
        c.rate_limit.capture_capacity = 0;
        c.rate_limit.refund_capacity = 0;
        c.rate_limit.void_capacity = 0;
    })
    .await;
    // The second merchant's id differs from the first's only in case.
    let second = new_merchant(&app.db, &app.merchant.id.as_str().to_lowercase()).await;
    let consumer = start_consumer(&app).await.map_err(Failure::from)?;
    let merchants = vec![
        TestMerchant {
            id: app.merchant.id.clone(),
            key: app.merchant.key.clone(),
        },
        second,
    ];
    let mut run = Run {
        merchant_ids: merchants.iter().map(|m| m.id.as_str().to_owned()).collect(),
        merchants,
        app,
        model: Model::default(),
        requests: AtomicUsize::new(0),
        fresh: 0,
        tally: BTreeMap::new(),
    };
    let outcome = async {
        for (i, op) in ops.iter().enumerate() {
            run.step(op).await.map_err(|e| Failure {
                step: Some(i),
                message: format!("step {i} of {}: {op:?}\n{e}", ops.len()),
            })?;
        }
        run.final_checks().await?;
        Ok(run.ledger_checks().await?)
    }
    .await;
    consumer.0.cancel();
    let _ = consumer.1.await;
    let stats = CaseStats {
        tally: std::mem::take(&mut run.tally),
        ops: ops.len(),
        requests: run.requests.load(Ordering::Relaxed),
        payments: run.model.payments.len(),
        effects: run.model.effects,
    };
    run.app.stop().await;
    outcome.map(|()| stats)
}

type Consumer = (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
);

/// The ledger consumer on the app's database and topics, started once the topics exist.
async fn start_consumer(app: &TestApp) -> Result<Consumer, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !app
        .state
        .topics_ready
        .load(std::sync::atomic::Ordering::Acquire)
    {
        if Instant::now() > deadline {
            return Err("the app did not create its topics in 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let config = pay_consumer::config::Config::for_tests(
        &app.state.config.database_url,
        &app.kafka_bootstrap,
        &app.topic_prefix,
    );
    let consumer = pay_consumer::startup::App::build(config)
        .await
        .map_err(|e| format!("consumer: {e:#}"))?;
    let token = consumer.shutdown_token();
    Ok((token, tokio::spawn(consumer.run())))
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

fn format_ops(ops: &[Op]) -> String {
    ops.iter()
        .enumerate()
        .map(|(i, op)| format!("  {i:>3}: {op:?}\n"))
        .collect()
}

/// Shrinks a failing sequence by delta debugging: cut everything after the failing step, then remove
/// ever smaller chunks of operations as long as the rest still fails. Each try runs a whole case
/// against the stack, so the tries are bounded in number and time. Returns the smallest failing
/// sequence found, its failure, and how many tries it took.
fn shrink(
    runtime: &tokio::runtime::Runtime,
    ops: Vec<Op>,
    failure: Failure,
    max_runs: u64,
    budget: Duration,
) -> (Vec<Op>, Failure, u64) {
    let started = Instant::now();
    let cut = |ops: Vec<Op>, failure: &Failure| match failure.step {
        Some(step) => ops[..=step].to_vec(),
        None => ops,
    };
    let mut best = cut(ops, &failure);
    let mut best_failure = failure;
    let mut runs = 0;
    let mut chunk = best.len().div_ceil(2).max(1);
    'sizes: loop {
        let mut removed = false;
        let mut at = 0;
        while at < best.len() {
            if runs >= max_runs || started.elapsed() > budget {
                break 'sizes;
            }
            let mut candidate = best.clone();
            candidate.drain(at..(at + chunk).min(best.len()));
            runs += 1;
            match runtime.block_on(run_case(&candidate)) {
                Err(f) => {
                    best = cut(candidate, &f);
                    best_failure = f;
                    removed = true;
                }
                Ok(_) => at += chunk,
            }
        }
        if chunk == 1 && !removed {
            break;
        }
        if !removed {
            chunk = chunk.div_ceil(2);
        }
        chunk = chunk.min(best.len().div_ceil(2)).max(1);
    }
    (best, best_failure, runs)
}

#[test]
fn model_based_sequences_match_the_reference_model() {
    let cases = env_number("PROPTEST_CASES", 12);
    let min_ops = env_number("MODEL_MIN_OPS", 150) as usize;
    let max_ops = env_number("MODEL_MAX_OPS", 300).max(min_ops as u64) as usize;
    let shrink_runs = env_number("MODEL_MAX_SHRINK_RUNS", 200);
    let shrink_secs = env_number("MODEL_MAX_SHRINK_SECONDS", 180);
    let base_seed = match std::env::var("PROPTEST_RNG_SEED") {
        Ok(_) => env_number("PROPTEST_RNG_SEED", 0),
        Err(_) => uuid::Uuid::new_v4().as_u64_pair().0 >> 1,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sequences = prop::collection::vec(op(), min_ops..=max_ops);
    let started = Instant::now();
    let (mut total_ops, mut total_requests) = (0, 0);
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for case in 0..cases {
        let seed = base_seed.wrapping_add(case);
        let mut runner = TestRunner::new(ProptestConfig {
            rng_seed: RngSeed::Fixed(seed),
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        let ops = sequences
            .new_tree(&mut runner)
            .expect("a sequence")
            .current();
        let case_started = Instant::now();
        let s = match runtime.block_on(run_case(&ops)) {
            Ok(s) => s,
            Err(failure) => {
                let first = format!("{}\n\nthe sequence:\n{}", failure.message, format_ops(&ops));
                let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                    .join(format!("model-failure-{seed}.txt"));
                let _ = std::fs::write(&file, &first);
                let first_message = failure.message.clone();
                let (shrunk, why, runs) = shrink(
                    &runtime,
                    ops.clone(),
                    failure,
                    if shrink_secs == 0 { 0 } else { shrink_runs },
                    Duration::from_secs(shrink_secs),
                );
                panic!(
                    "model-based test failed: case {case}, seed {seed}\n\
                     replay: PROPTEST_RNG_SEED={seed} PROPTEST_CASES=1 cargo test -p pay-server \
                     --test api model -- --nocapture\n\n\
                     first failure (its whole sequence of {} operations is in {}):\n{first_message}\n\n\
                     shrunk to {} operations in {runs} runs; it fails with:\n{}\n\n\
                     the shrunk sequence:\n{}",
                    ops.len(),
                    file.display(),
                    shrunk.len(),
                    why.message,
                    format_ops(&shrunk)
                )
            }
        };
        eprintln!(
            "model case {case} (PROPTEST_RNG_SEED={seed}): {} operations, {} HTTP requests, \
             {} payments, {} effects, {:.1} s",
            s.ops,
            s.requests,
            s.payments,
            s.effects,
            case_started.elapsed().as_secs_f64()
        );
        for (k, n) in s.tally {
            *tally.entry(k).or_default() += n;
        }
        total_ops += s.ops;
        total_requests += s.requests;
    }
    let mut covered = String::new();
    for (k, n) in &tally {
        let _ = writeln!(covered, "  {n:>6}  {k}");
    }
    eprintln!("model: what the answers were\n{covered}");
    eprintln!(
        "model: {cases} cases, {total_ops} operations, {total_requests} HTTP requests in {:.1} s \
         (base seed {base_seed})",
        started.elapsed().as_secs_f64()
    );
}
