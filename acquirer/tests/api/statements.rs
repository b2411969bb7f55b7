//! Statements: one business date's settlements as CSV, and seeded discrepancies with their ground truth.

use crate::helpers::{settlement, spawn_app, TestApp};
use payctl_domain::settlement::{inject, parse_statement, Injected, Injection, SettlementType};
use time::macros::datetime;
use time::OffsetDateTime;

/// Settles at a fixed time; returns the reference.
async fn settle_at(app: &TestApp, at: OffsetDateTime, kind: &str, amount: i64) -> String {
    app.state.clock.fix(Some(at));
    let r = app
        .settle(
            &uuid::Uuid::now_v7().to_string(),
            &settlement(kind, "m-1", amount, "KRW"),
        )
        .await;
    app.state.clock.fix(None);
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["reference"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_statement_holds_exactly_its_business_dates_settlements() {
    let app = spawn_app().await;
    // Seoul is UTC+9: 2026-03-01 runs from 2026-02-28T15:00Z to 2026-03-01T15:00Z.
    let first = settle_at(&app, datetime!(2026-02-28 15:00:00 UTC), "CAPTURE", 10_000).await;
    let last = settle_at(
        &app,
        datetime!(2026-03-01 14:59:59.999999 UTC),
        "REFUND",
        3_000,
    )
    .await;
    let next_day = settle_at(&app, datetime!(2026-03-01 15:00:00 UTC), "CAPTURE", 20_020).await;
    let day_before = settle_at(&app, datetime!(2026-02-28 14:59:59 UTC), "CAPTURE", 1).await;

    let r = app.get("/v1/statements/2026-03-01").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    let lines = parse_statement(&r.text()).unwrap();
    let refs: Vec<&str> = lines
        .iter()
        .map(|l| l.acquirer_reference.as_str())
        .collect();
    assert_eq!(
        refs,
        [first.as_str(), last.as_str()],
        "ordered by settled_at"
    );
    assert_eq!(lines[0].kind, SettlementType::Capture);
    assert_eq!(
        (lines[0].gross, lines[0].fee, lines[0].net),
        (10_000, 250, 9_750)
    );
    assert_eq!(lines[0].settled_at, datetime!(2026-02-28 15:00:00 UTC));
    assert_eq!(lines[1].kind, SettlementType::Refund);
    assert_eq!(
        (lines[1].gross, lines[1].fee, lines[1].net),
        (3_000, 0, 3_000)
    );
    assert_eq!(
        lines[1].settled_at,
        datetime!(2026-03-01 14:59:59.999999 UTC)
    );

    let next = parse_statement(&app.get("/v1/statements/2026-03-02").await.text()).unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].acquirer_reference, next_day);
    assert_eq!(
        (next[0].fee, next[0].net),
        (501, 19_519),
        "2.5 % of 20,020 = 500.5 → 501"
    );
    let before = parse_statement(&app.get("/v1/statements/2026-02-28").await.text()).unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].acquirer_reference, day_before);
    assert_eq!(before[0].fee, 0, "2.5 % of ₩1 rounds to ₩0");
    let empty = app.get("/v1/statements/2026-03-03").await;
    assert_eq!(empty.status, 200);
    assert_eq!(parse_statement(&empty.text()).unwrap(), vec![]);

    for bad in ["2026-13-01", "yesterday", "2026-3-1"] {
        let err = app
            .get(&format!("/v1/statements/{bad}"))
            .await
            .assert_error(400, "validation_failed");
        assert_eq!(err["details"][0]["field"], "date", "{bad}: {err}");
    }
}

#[tokio::test]
async fn injected_discrepancies_match_their_manifest() {
    let app = spawn_app().await;
    for i in 0..8 {
        let at = datetime!(2026-03-01 01:00 UTC) + time::Duration::minutes(i);
        settle_at(
            &app,
            at,
            if i % 3 == 0 { "REFUND" } else { "CAPTURE" },
            1_000 + i,
        )
        .await;
    }
    let clean = parse_statement(&app.get("/v1/statements/2026-03-01").await.text()).unwrap();
    assert_eq!(clean.len(), 8);

    let query = "drop=2&amount=1&duplicate=1&unknown=3&seed=7";
    let damaged = app.get(&format!("/v1/statements/2026-03-01?{query}")).await;
    assert_eq!(damaged.status, 200, "{}", damaged.text());
    let lines = parse_statement(&damaged.text()).unwrap();
    let manifest: Vec<Injected> = serde_json::from_slice(
        &app.get(&format!("/v1/statements/2026-03-01/discrepancies?{query}"))
            .await
            .bytes,
    )
    .unwrap();
    // The service applies exactly the domain's injection to exactly the clean statement.
    let spec = Injection::parse("drop=2,amount=1,duplicate=1,unknown=3").unwrap();
    let (want_lines, want_manifest) = inject(clean.clone(), spec, 7).unwrap();
    assert_eq!(lines, want_lines);
    assert_eq!(manifest, want_manifest);
    assert_eq!(lines.len(), 8 - 2 + 1 + 3);
    assert_eq!(manifest.len(), 2 + 1 + 1 + 3);
    // Deterministic for the seed; another seed, another damage.
    let again = app.get(&format!("/v1/statements/2026-03-01?{query}")).await;
    assert_eq!(again.bytes, damaged.bytes);
    let other = app
        .get("/v1/statements/2026-03-01?drop=2&amount=1&duplicate=1&unknown=3&seed=8")
        .await;
    assert_ne!(other.bytes, damaged.bytes);

    app.get("/v1/statements/2026-03-01?drop=5&amount=4")
        .await
        .assert_error(422, "unprocessable");
    app.get("/v1/statements/2026-03-01/discrepancies?duplicate=9")
        .await
        .assert_error(422, "unprocessable");
    let err = app
        .get("/v1/statements/2026-03-01?dropp=1")
        .await
        .assert_error(400, "validation_failed");
    assert!(err.to_string().contains("dropp"), "{err}");
    app.get("/v1/statements/2026-03-01?drop=-1")
        .await
        .assert_error(400, "validation_failed");

    // Unknown lines on an empty day still fall on that day.
    let tz = payctl_domain::settlement::parse_time_zone("Asia/Seoul").unwrap();
    let only_unknown = parse_statement(
        &app.get("/v1/statements/2026-04-01?unknown=2&seed=1")
            .await
            .text(),
    )
    .unwrap();
    assert_eq!(only_unknown.len(), 2);
    for l in only_unknown {
        assert_eq!(
            payctl_domain::settlement::business_date(l.settled_at, &tz),
            time::macros::date!(2026 - 04 - 01)
        );
    }
}
