//! Fuzzing the request parser (issue 12): arbitrary bytes and mangled JSON bodies must never panic it,
//! and whatever it accepts must be a body the route knows — no unknown field, no `null` or fractional
//! amount, nothing after the value. A bounded run in every `cargo test`; `PROPTEST_CASES=1000000 cargo test -p
//! pay-server fuzz` searches longer. A failure prints the input and a seed to replay it.

use super::parse_body;
use super::payments::{AuthorizeBody, ChangeBody};
use proptest::prelude::*;
use serde_json::Value;

const AUTHORIZE_FIELDS: &[&str] = &["merchantId", "amount", "currency", "idempotencyKey"];
const CHANGE_FIELDS: &[&str] = &["merchantId", "amount", "reason", "idempotencyKey"];

/// Field names a client might send, as JSON text: the real ones, near misses, odd ones, and `amount`
/// spelt with an escape.
fn field_name() -> impl Strategy<Value = String> {
    fn quoted(name: &str) -> String {
        serde_json::to_string(name).unwrap_or_default()
    }
    prop_oneof![
        prop::sample::select(vec![
            "amount",
            "currency",
            "idempotencyKey",
            "merchantId",
            "reason",
            "refundAmount",
            "Amount",
            "amount ",
            "",
            "__proto__",
        ])
        .prop_map(quoted),
        "[a-zA-Z]{1,12}".prop_map(|n| quoted(&n)),
        Just(r#""amo\u0075nt""#.to_owned()),
    ]
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("1e400".to_owned()),
        Just("-0".to_owned()),
        Just("99999999999999999999999".to_owned()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        "[ -~]{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
        Just("\"KRW\"".to_owned()),
        Just("[1,2]".to_owned()),
        Just("{\"amount\":1}".to_owned()),
    ]
}

/// A JSON-looking body: an object of fields, then maybe something after it.
fn body() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec((field_name(), scalar()), 0..6),
        prop_oneof![Just(String::new()), Just(" \n".to_owned()), "[ -~]{1,8}"],
        any::<bool>(),
    )
        .prop_map(|(fields, trailing, close)| {
            let inner: Vec<String> = fields.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            let mut s = format!("{{{}", inner.join(","));
            if close {
                s.push('}');
            }
            s.push_str(&trailing);
            s.into_bytes()
        })
}

/// What an accepted body must look like: one JSON object, known fields only, each at most once,
/// `amount` (when present) an integer.
fn assert_sound(bytes: &[u8], known: &[&str]) {
    let text = std::str::from_utf8(bytes).expect("accepted bodies are UTF-8");
    let value: Value =
        serde_json::from_str(text).expect("accepted bodies are exactly one JSON value");
    let object = value.as_object().expect("accepted bodies are objects");
    for (field, v) in object {
        assert!(
            known.contains(&field.as_str()),
            "accepted unknown field {field:?}"
        );
        if field == "amount" {
            // Any spelling of an integral number (1000, 1000.0, 1e3); the handler checks the range.
            let integral = v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0);
            assert!(integral, "accepted amount {v}");
        }
    }
    let mentions = text.matches("\"amount\"").count() + text.matches("amo\\u0075nt").count();
    assert!(mentions <= 1, "accepted amount {mentions} times in {text}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_body::<AuthorizeBody>(&bytes);
        let _ = parse_body::<ChangeBody>(&bytes);
    }

    #[test]
    fn accepted_change_bodies_are_exactly_known_fields(bytes in body()) {
        if parse_body::<ChangeBody>(&bytes).is_ok() {
            assert_sound(&bytes, CHANGE_FIELDS);
        }
    }

    #[test]
    fn accepted_authorize_bodies_are_exactly_known_fields(bytes in body()) {
        if parse_body::<AuthorizeBody>(&bytes).is_ok() {
            assert_sound(&bytes, AUTHORIZE_FIELDS);
        }
    }
}
