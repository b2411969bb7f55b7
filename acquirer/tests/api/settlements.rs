//! Settling: fees, idempotent replays, key reuse, strict bodies, concurrency, reads.

use crate::helpers::{settlement, spawn_app, spawn_app_on, spawn_app_with, TempDb};
use payctl_domain::settlement::FeeSchedule;
use serde_json::{json, Value};

#[tokio::test]
async fn a_capture_settles_with_the_scheduled_fee_rounded_to_a_whole_won() {
    let app = spawn_app_with(|c| c.fees = FeeSchedule::parse("default=250,m-1=180").unwrap()).await;
    // 2.5 % of ₩10,020 is ₩250.5: half-up makes it ₩251.
    let body = settlement("CAPTURE", "m-2", 10_020, "KRW");
    let r = app.settle("k-1", &body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let got = r.json();
    assert!(
        got["reference"].as_str().unwrap().starts_with("ACQ-"),
        "{got}"
    );
    assert_eq!(got["status"], "SETTLED");
    assert_eq!(got["type"], "CAPTURE");
    assert_eq!(got["merchantId"], "m-2");
    assert_eq!(got["paymentId"], body["paymentId"]);
    assert_eq!(got["eventId"], body["eventId"]);
    assert_eq!(got["amount"], 10_020);
    assert_eq!(got["fee"], 251);
    assert_eq!(got["net"], 9_769);
    assert_eq!(got["currency"], "KRW");
    let settled_at = time::OffsetDateTime::parse(
        got["settledAt"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let seoul = payctl_domain::settlement::parse_time_zone("Asia/Seoul").unwrap();
    assert_eq!(
        got["businessDate"],
        payctl_domain::settlement::business_date(settled_at, &seoul).to_string()
    );

    // Merchant m-1 has its own rate: 1.8 % of 10,020 = 180.36 → 180.
    let r = app
        .settle("k-2", &settlement("CAPTURE", "m-1", 10_020, "KRW"))
        .await;
    assert_eq!(
        (r.json()["fee"].clone(), r.json()["net"].clone()),
        (json!(180), json!(9_840))
    );
    // A refund carries no fee.
    let r = app
        .settle("k-3", &settlement("REFUND", "m-1", 5_000, "USD"))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        (r.json()["fee"].clone(), r.json()["net"].clone()),
        (json!(0), json!(5_000))
    );
    assert_eq!(app.rows().await, 3);
}

#[tokio::test]
async fn the_same_request_again_replays_the_first_answer_byte_for_byte() {
    let app = spawn_app().await;
    let body = settlement("CAPTURE", "m-1", 12_345, "KRW");
    let first = app.settle("replay-1", &body).await;
    assert_eq!(first.status, 201);
    assert_eq!(first.header("idempotent-replayed"), None);
    // The same request spelt differently (upper-case ids, other field order) is the same request.
    let mut respelt = serde_json::Map::new();
    for k in [
        "currency",
        "amount",
        "eventId",
        "paymentId",
        "merchantId",
        "type",
    ] {
        let v = match &body[k] {
            Value::String(s) if k.ends_with("Id") && k != "merchantId" => json!(s.to_uppercase()),
            v => v.clone(),
        };
        respelt.insert(k.into(), v);
    }
    for again in [body.clone(), Value::Object(respelt)] {
        let r = app.settle("replay-1", &again).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("idempotent-replayed"), Some("true"));
        assert_eq!(r.bytes, first.bytes, "byte-identical replay");
    }
    assert_eq!(app.rows().await, 1);
    assert_eq!(app.metric("acquirer_settlements_total"), 1.0);
}

#[tokio::test]
async fn another_request_with_a_used_key_is_refused_and_writes_nothing() {
    let app = spawn_app().await;
    let body = settlement("CAPTURE", "m-1", 1_000, "KRW");
    assert_eq!(app.settle("reused", &body).await.status, 201);
    let mut other = body.clone();
    other["amount"] = json!(1_001);
    app.settle("reused", &other)
        .await
        .assert_error(422, "idempotency_key_reused");
    let mut refund = body.clone();
    refund["type"] = json!("REFUND");
    app.settle("reused", &refund)
        .await
        .assert_error(422, "idempotency_key_reused");
    assert_eq!(app.rows().await, 1);
}

#[tokio::test]
async fn invalid_requests_are_400s_naming_the_field() {
    let app = spawn_app().await;
    let good = settlement("CAPTURE", "m-1", 1_000, "KRW");
    let with = |k: &str, v: Value| {
        let mut b = good.clone();
        b[k] = v;
        b
    };
    let mut misspelt = good.clone();
    let amount = misspelt.as_object_mut().unwrap().remove("amount").unwrap();
    misspelt["amout"] = amount;
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("eventId");
    for (body, field, why) in [
        (misspelt, "amout", "a misspelt field is named, not ignored"),
        (with("extra", json!(1)), "extra", "an unknown field"),
        (missing, "body", "a missing field"),
        (with("type", json!("SALE")), "type", "not CAPTURE or REFUND"),
        (
            with("merchantId", json!("m,1")),
            "merchantId",
            "a comma in a merchant",
        ),
        (with("paymentId", json!("42")), "paymentId", "not a UUID"),
        (with("eventId", json!("nope")), "eventId", "not a UUID"),
        (with("amount", json!(0)), "amount", "zero"),
        (with("amount", json!(1.5)), "amount", "a fraction"),
        (with("currency", json!("krw")), "currency", "lower case"),
    ] {
        let r = app.settle("k", &body).await;
        let err = r.assert_error(400, "validation_failed");
        let fields: Vec<&str> = err["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["field"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&field), "{why}: {err}");
        if field == "body" {
            assert!(err.to_string().contains("eventId"), "{why}: {err}");
        }
    }
    // No Idempotency-Key at all.
    let r = app.post("/v1/settlements", &good).await;
    let err = r.assert_error(400, "validation_failed");
    assert_eq!(err["details"][0]["field"], "Idempotency-Key", "{err}");
    // Malformed JSON and a body that is not JSON.
    let raw = app
        .client
        .post(format!("{}/v1/settlements", app.address))
        .header("Idempotency-Key", "k")
        .header("content-type", "application/json")
        .body("{\"type\":")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let raw = app
        .client
        .post(format!("{}/v1/settlements", app.address))
        .header("Idempotency-Key", "k")
        .body(good.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 415);
    assert_eq!(app.rows().await, 0);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_settle_once() {
    let app = spawn_app().await;
    let body = settlement("CAPTURE", "m-1", 77_777, "KRW");
    let replies = futures::future::join_all((0..20).map(|_| app.settle("race", &body))).await;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [200, 201].contains(s)),
        "{statuses:?}"
    );
    let first = &replies.iter().find(|r| r.status == 201).unwrap().bytes;
    assert!(
        replies.iter().all(|r| &r.bytes == first),
        "every answer is the one settlement"
    );
    assert_eq!(app.rows().await, 1);
}

#[tokio::test]
async fn settlements_are_read_by_reference_and_by_event() {
    let app = spawn_app().await;
    let body = settlement("CAPTURE", "m-1", 5_000, "KRW");
    let created = app.settle("read-1", &body).await;
    let reference = created.json()["reference"].as_str().unwrap().to_owned();
    let r = app.get(&format!("/v1/settlements/{reference}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.bytes, created.bytes);
    app.get("/v1/settlements/ACQ-NOPE")
        .await
        .assert_error(404, "not_found");

    // A refund of the same payment under the same event id is listed too (the worker's recovery).
    let mut refund = body.clone();
    refund["type"] = json!("REFUND");
    let refunded = app.settle("read-2", &refund).await;
    let event = body["eventId"].as_str().unwrap();
    let list = app.get(&format!("/v1/settlements?eventId={event}")).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json(), json!([created.json(), refunded.json()]));
    let none = app
        .get(&format!("/v1/settlements?eventId={}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(none.json(), json!([]));
    app.get("/v1/settlements?eventId=bad")
        .await
        .assert_error(400, "validation_failed");
    let r = app.get(&format!("/v1/settlements?eventID={event}")).await;
    let err = r.assert_error(400, "validation_failed");
    assert!(err.to_string().contains("eventID"), "{err}");
}

#[tokio::test]
async fn keys_that_differ_only_in_case_are_different_keys() {
    let app = spawn_app().await;
    let a = app
        .settle("Key-1", &settlement("CAPTURE", "m-1", 100, "KRW"))
        .await;
    let b = app
        .settle("key-1", &settlement("CAPTURE", "m-1", 200, "KRW"))
        .await;
    assert_eq!(
        (a.status, b.status),
        (201, 201),
        "{} / {}",
        a.text(),
        b.text()
    );
    assert_eq!(app.rows().await, 2);
}

#[tokio::test]
async fn settlements_survive_a_restart_on_the_same_file() {
    let file = TempDb::new();
    let app = spawn_app_on(&file.url, |_| {}).await;
    let body = settlement("CAPTURE", "m-1", 10_020, "KRW");
    // 2026-03-01 10:00 in Seoul.
    app.state.clock.fix(Some(
        time::macros::datetime!(2026-03-01 01:00:00.123456 UTC),
    ));
    let first = app.settle("restart-1", &body).await;
    assert_eq!(first.status, 201, "{}", first.text());
    let statement = app.get("/v1/statements/2026-03-01").await;
    assert_eq!(statement.status, 200, "{}", statement.text());
    assert_eq!(statement.text().lines().count(), 2, "{}", statement.text());
    app.stop().await;

    let again = spawn_app_on(&file.url, |_| {}).await;
    let r = again.settle("restart-1", &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        r.bytes, first.bytes,
        "byte-identical replay after the restart"
    );
    let reference = first.json()["reference"].as_str().unwrap().to_owned();
    assert_eq!(
        again
            .get(&format!("/v1/settlements/{reference}"))
            .await
            .bytes,
        first.bytes
    );
    let after = again.get("/v1/statements/2026-03-01").await;
    assert_eq!(after.status, 200);
    assert_eq!(after.bytes, statement.bytes, "the statement is unchanged");
    let lines = payctl_domain::settlement::parse_statement(&after.text()).unwrap();
    assert_eq!(
        lines[0].settled_at,
        time::macros::datetime!(2026-03-01 01:00:00.123456 UTC),
        "settled_at kept to the microsecond"
    );
    assert_eq!(again.rows().await, 1);
}
