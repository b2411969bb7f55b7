//! Adversarial review (branch `review`): each test demonstrated a finding and failed against the code under
//! review; they pass since the findings were fixed.

use crate::helpers::{settlement, spawn_app};
use serde_json::json;

/// Finding 8: idempotency keys are global, not scoped to the merchant. Merchant B's first request with a
/// key merchant A has used is refused 422 `idempotency_key_reused` (forever: the key can never settle
/// for B), and B learns that A used that key. A real acquirer scopes keys to the account that sent them.
#[tokio::test]
async fn review_f8_a_key_used_by_one_merchant_does_not_block_another() {
    let app = spawn_app().await;
    let a = settlement("CAPTURE", "merchant-a", 10_000, "KRW");
    assert_eq!(app.settle("order-1", &a).await.status, 201);
    let b = settlement("CAPTURE", "merchant-b", 10_000, "KRW");
    let reply = app.settle("order-1", &b).await;
    assert_eq!(
        reply.status,
        201,
        "merchant-b's first request with its own key \"order-1\" was answered {}: {}",
        reply.status,
        reply.text()
    );
    assert_eq!(reply.json()["merchantId"], json!("merchant-b"));
    assert_eq!(app.rows().await, 2);
}

/// Finding 5: the damaged statement and its ground truth (`/discrepancies`) are computed by two separate
/// requests, each from the day's lines *as they are then* (`payctl acquirer statement` makes exactly these
/// two calls). The seeded choice of lines depends on how many there are, so one settlement landing in
/// between (any statement of the current business day while the worker runs) makes the manifest name
/// lines the CSV does not have damaged that way: a reconciliation graded against it is graded wrongly.
/// Fixed: the CSV names its `Statement-Version`, and `/discrepancies?version=` describes that statement
/// (as `payctl acquirer statement` asks).
#[tokio::test]
async fn review_f5_the_manifest_describes_the_statement_that_was_fetched() {
    use payctl_domain::settlement::{parse_statement, Injected, InjectedKind};
    use time::macros::datetime;
    let app = spawn_app().await;
    let day_start = datetime!(2026-03-01 00:00:00 UTC);
    let settle_at = |n: i64| {
        let app = &app;
        async move {
            app.state
                .clock
                .fix(Some(day_start + time::Duration::minutes(n)));
            let r = app
                .settle(
                    &uuid::Uuid::now_v7().to_string(),
                    &settlement("CAPTURE", "m-1", 10_000 + n, "KRW"),
                )
                .await;
            app.state.clock.fix(None);
            assert_eq!(r.status, 201, "{}", r.text());
        }
    };
    for n in 0..10 {
        settle_at(n).await;
    }
    let mut wrong = Vec::new();
    for seed in 0..8u64 {
        let query = format!("drop=1&amount=1&seed={seed}");
        let reply = app.get(&format!("/v1/statements/2026-03-01?{query}")).await;
        let csv = reply.text();
        let version = reply.headers["statement-version"]
            .to_str()
            .unwrap()
            .to_owned();
        // A settlement of the same business date lands between the two calls.
        settle_at(100 + seed as i64).await;
        let manifest: Vec<Injected> = serde_json::from_slice(
            &app.get(&format!(
                "/v1/statements/2026-03-01/discrepancies?{query}&version={version}"
            ))
            .await
            .bytes,
        )
        .unwrap();
        let lines = parse_statement(&csv).unwrap();
        for m in &manifest {
            let present = lines
                .iter()
                .any(|l| l.acquirer_reference == m.acquirer_reference);
            if m.kind == InjectedKind::Drop && present {
                wrong.push(format!(
                    "seed {seed}: manifest says {} dropped, the CSV has it",
                    m.acquirer_reference
                ));
            }
            if m.kind == InjectedKind::Amount && !present {
                wrong.push(format!(
                    "seed {seed}: manifest says {} amount-changed, the CSV has no such line",
                    m.acquirer_reference
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} manifest entries contradict the CSV: {wrong:#?}",
        wrong.len()
    );
}
