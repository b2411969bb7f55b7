//! Adversarial review of `payctl_domain::settlement` (branch `review`). Every test here demonstrated a
//! finding and failed against the code under review; they pass since the findings were fixed.

use payctl_domain::settlement::{
    fee_and_net, format_statement, inject, parse_statement, InjectedKind, Injection,
    SettlementType, StatementLine, STATEMENT_HEADER,
};
use time::OffsetDateTime;
use uuid::Uuid;

fn line(n: u32, gross: i64) -> StatementLine {
    let (fee, net) = fee_and_net(SettlementType::Capture, gross, 250);
    StatementLine {
        acquirer_reference: format!("ACQ-{n:04}"),
        payment_id: Uuid::from_u128(u128::from(n)),
        event_id: Uuid::from_u128(1_000_000 + u128::from(n)),
        merchant_id: "m-1".into(),
        kind: SettlementType::Capture,
        gross,
        fee,
        net,
        currency: "KRW".into(),
        settled_at: OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000),
    }
}

fn row(gross: &str, fee: &str, net: &str, merchant: &str, currency: &str) -> String {
    format!(
        "{STATEMENT_HEADER}\nACQ-1,00000000-0000-0000-0000-000000000001,\
         00000000-0000-0000-0000-0000000003e9,{merchant},CAPTURE,{gross},{fee},{net},{currency},\
         2026-03-01T03:00:00.5Z\n"
    )
}

/// Finding 6a: the module doc says "Amounts on a statement are never negative" (and the acquirer's own
/// table CHECKs gross > 0, fee >= 0), yet a line of negative amounts parses as a valid settlement: a
/// reconciliation then sums a capture of -10,000 as if money moved the other way.
#[test]
fn review_f6_parse_statement_refuses_negative_amounts() {
    let text = row("-10000", "-250", "-9750", "m-1", "KRW");
    let parsed = parse_statement(&text);
    assert!(
        parsed.is_err(),
        "a capture of gross -10000 was accepted: {parsed:?}"
    );
}

/// Finding 6b: net ≠ gross − fee is accepted silently (the acquirer's table forbids it, the worker's
/// check_answer refuses it in a live answer, but a statement line carrying it is read as-is).
#[test]
fn review_f6_parse_statement_refuses_net_other_than_gross_minus_fee() {
    let text = row("10000", "250", "9999", "m-1", "KRW");
    let parsed = parse_statement(&text);
    assert!(
        parsed.is_err(),
        "net 9999 for gross 10000 fee 250 was accepted: {parsed:?}"
    );
}

/// Finding 6c: padded and signed fields are accepted and kept verbatim: `" KRW"`/`"m-1 "` are then
/// different currencies/merchants from `KRW`/`m-1` for any comparison, and `+10000` is a spelling
/// format_statement never writes (so the file does not round-trip).
#[test]
fn review_f6_parse_statement_refuses_padded_or_signed_fields() {
    for (text, what) in [
        (
            row("10000", "250", "9750", "m-1", " KRW"),
            "currency ' KRW'",
        ),
        (
            row("10000", "250", "9750", "m-1 ", "KRW"),
            "merchant 'm-1 '",
        ),
        (row("+10000", "250", "9750", "m-1", "KRW"), "gross '+10000'"),
        (row("10000", "250", "9750", "m-1", "krw"), "currency 'krw'"),
    ] {
        let parsed = parse_statement(&text);
        assert!(parsed.is_err(), "{what} was accepted: {parsed:?}");
    }
}

/// Finding 7: an injected `amount` discrepancy moves gross and net down by up to 1,000 while keeping only
/// gross positive, so a line can come out with net < 0 and fee > gross — a line no acquirer can write
/// (its table CHECKs net = gross − fee with fee ≥ 0, gross > 0). A reconciliation tested against it sees
/// an impossible line, not the plain amount mismatch the manifest promises; and a stricter parser
/// (finding 6) cannot even read the statement back.
#[test]
fn review_f7_injected_amount_changes_keep_the_line_possible() {
    let lines: Vec<StatementLine> = (0..100).map(|n| line(n, 1_000)).collect();
    for seed in 0..20u64 {
        let spec = Injection {
            amount: 100,
            ..Injection::default()
        };
        let (out, manifest) = inject(lines.clone(), spec, seed).unwrap();
        assert_eq!(manifest.len(), 100);
        assert!(manifest.iter().all(|m| m.kind == InjectedKind::Amount));
        for l in &out {
            assert!(
                l.net >= 0 && l.fee <= l.gross,
                "seed {seed}: injected line {} has gross {} fee {} net {}",
                l.acquirer_reference,
                l.gross,
                l.fee,
                l.net
            );
        }
        // And what was written can be read back as a statement.
        let _ = format_statement(&out).unwrap();
    }
}
