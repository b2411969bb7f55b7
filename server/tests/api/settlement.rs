//! A payment's settlement status (`GET /payments/{id}`) and the merchant's payouts (`GET /payouts`,
//! `GET /payouts/{id}`). The settlement worker and `payctl settle` are not part of pay-server, so these tests
//! write the `settlements` and `payouts` rows themselves, as those two would.

use crate::helpers::{spawn_app, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

/// A payment authorized and captured in full; its id.
async fn captured_payment(app: &TestApp, amount: i64) -> String {
    let id = app.authorized_payment(amount).await;
    let r = app
        .post(&format!("/payments/capture/{id}"), &json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.bytes));
    id
}

/// Records a capture or refund as the worker does when it reads the event: PENDING, attempts 0. `sequence`
/// is the event's, kept in the payload as read.
async fn record(app: &TestApp, payment: &str, event: Uuid, kind: &str, amount: i64, sequence: u32) {
    let payload = json!({"eventId": event.to_string(), "paymentId": payment, "sequence": sequence});
    sqlx::query(
        "INSERT INTO settlements (event_id, payment_id, merchant_id, type, amount, currency, status, \
         next_attempt_at, topic, kafka_partition, kafka_offset, payload, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, 'KRW', 'PENDING', UTC_TIMESTAMP(6), 'payment.captured', 0, 0, ?, \
         UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))",
    )
    .bind(event)
    .bind(Uuid::parse_str(payment).unwrap())
    .bind(app.merchant.id.as_str())
    .bind(kind)
    .bind(amount)
    .bind(payload.to_string())
    .execute(&app.db)
    .await
    .unwrap();
}

async fn set_status(app: &TestApp, event: Uuid, status: &str, attempts: u32) {
    sqlx::query(
        "UPDATE settlements SET status = ?, attempts = ?, last_error = IF(? = 'FAILED', \
         'acquirer at 10.0.0.7:18095 said no', NULL) WHERE event_id = ?",
    )
    .bind(status)
    .bind(attempts)
    .bind(status)
    .bind(event)
    .execute(&app.db)
    .await
    .unwrap();
}

async fn settle(app: &TestApp, event: Uuid, reference: &str, fee: i64, net: i64) {
    sqlx::query(
        "UPDATE settlements SET status = 'SETTLED', acquirer_reference = ?, fee = ?, net = ?, \
         settled_at = '2026-12-05 03:04:05.123456', business_date = '2026-12-05', last_error = NULL \
         WHERE event_id = ?",
    )
    .bind(reference)
    .bind(fee)
    .bind(net)
    .bind(event)
    .execute(&app.db)
    .await
    .unwrap();
}

/// A payout row as `payctl settle` writes it; its id. Amounts: captured, refunded, fees.
async fn payout(
    app: &TestApp,
    merchant: &str,
    date: &str,
    seq: u32,
    currency: &str,
    (captured, refunded, fees): (i64, i64, i64),
) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO payouts (payout_id, merchant_id, currency, business_date, seq, captures, refunds, \
         gross_captured, gross_refunded, fees, net, time_zone, created_at) \
         VALUES (?, ?, ?, ?, ?, 1, 1, ?, ?, ?, ?, 'Asia/Seoul', '2026-12-06 00:00:01.5')",
    )
    .bind(id)
    .bind(merchant)
    .bind(currency)
    .bind(date)
    .bind(seq)
    .bind(captured)
    .bind(refunded)
    .bind(fees)
    .bind(captured - refunded - fees)
    .execute(&app.db)
    .await
    .unwrap();
    id
}

async fn pay_out(app: &TestApp, event: Uuid, payout: Uuid) {
    sqlx::query("UPDATE settlements SET payout_id = ?, payout_event_id = ? WHERE event_id = ?")
        .bind(payout)
        .bind(Uuid::now_v7())
        .bind(event)
        .execute(&app.db)
        .await
        .unwrap();
}

async fn settlement(app: &TestApp, payment: &str) -> Value {
    let r = app.get(&format!("/payments/{payment}")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.bytes));
    r.json()["settlement"].clone()
}

async fn summary(app: &TestApp, payment: &str) -> String {
    settlement(app, payment).await["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_payment_shows_each_settlement_status_as_the_worker_and_payouts_move_it() {
    let app = spawn_app().await;
    let authorized_only = app.authorized_payment(500).await;
    assert_eq!(
        settlement(&app, &authorized_only).await,
        json!({"status": "NONE", "items": []}),
        "nothing captured, nothing to settle"
    );

    let id = captured_payment(&app, 10_000).await;
    assert_eq!(
        summary(&app, &id).await,
        "NONE",
        "the worker has not read it"
    );

    // The refund's event id is older than the capture's: the order is the events' (`sequence`), not
    // the ids'.
    let refund = Uuid::now_v7();
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let capture = Uuid::now_v7();
    assert!(refund < capture);
    record(&app, &id, capture, "CAPTURE", 10_000, 2).await;
    let s = settlement(&app, &id).await;
    assert_eq!(s["status"], "PENDING");
    assert_eq!(
        s["items"][0],
        json!({
            "eventId": capture.to_string(), "type": "CAPTURE", "amount": 10_000, "currency": "KRW",
            "status": "PENDING", "attempts": 0, "acquirerReference": null, "fee": null, "net": null,
            "settledAt": null, "businessDate": null, "payoutId": null,
        })
    );
    set_status(&app, capture, "SUBMITTED", 1).await;
    assert_eq!(summary(&app, &id).await, "PENDING", "SUBMITTED is pending");

    let r = app
        .post(&format!("/payments/refund/{id}"), &json!({"amount": 4_000}))
        .await;
    assert_eq!(r.status, 200);
    record(&app, &id, refund, "REFUND", 4_000, 3).await;
    set_status(&app, refund, "FAILED", 10).await;
    assert_eq!(
        summary(&app, &id).await,
        "FAILED",
        "a failure wins over a capture still being sent"
    );
    // `payctl dlq replay`: back to PENDING, attempts from 0.
    set_status(&app, refund, "PENDING", 0).await;
    settle(&app, capture, "ACQ-0001", 250, 9_750).await;
    let s = settlement(&app, &id).await;
    assert_eq!(s["status"], "PENDING", "the refund is not settled yet");
    let kinds: Vec<&str> = s["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["CAPTURE", "REFUND"], "in the events' order");
    assert_eq!(
        s["items"][0],
        json!({
            "eventId": capture.to_string(), "type": "CAPTURE", "amount": 10_000, "currency": "KRW",
            "status": "SETTLED", "attempts": 1, "acquirerReference": "ACQ-0001", "fee": 250, "net": 9_750,
            "settledAt": "2026-12-05T03:04:05.123456Z", "businessDate": "2026-12-05", "payoutId": null,
        })
    );

    set_status(&app, refund, "FAILED", 10).await;
    let s = settlement(&app, &id).await;
    assert_eq!(s["status"], "FAILED", "a failure wins over the rest");
    assert!(
        s["items"][1].get("lastError").is_none() && !s.to_string().contains("10.0.0.7"),
        "the worker's error text is for operators: {s}"
    );

    settle(&app, refund, "ACQ-0002", 0, 4_000).await;
    assert_eq!(summary(&app, &id).await, "SETTLED");

    let paid = payout(
        &app,
        app.merchant.id.as_str(),
        "2026-12-05",
        1,
        "KRW",
        (10_000, 4_000, 250),
    )
    .await;
    pay_out(&app, capture, paid).await;
    let s = settlement(&app, &id).await;
    assert_eq!(s["status"], "SETTLED", "the refund is not paid out yet");
    assert_eq!(s["items"][0]["payoutId"], paid.to_string());
    assert!(s["items"][1]["payoutId"].is_null());
    pay_out(&app, refund, paid).await;
    assert_eq!(summary(&app, &id).await, "PAID_OUT");

    // The payment's own fields are as before.
    let p = app.get(&format!("/payments/{id}")).await.json();
    assert_eq!(
        (&p["status"], &p["capturedAmount"], &p["refundedAmount"]),
        (&json!("PARTIALLY_REFUNDED"), &json!(10_000), &json!(4_000))
    );
}

/// The settlement changes after the payment has stopped changing: a read must never answer from anything
/// keyed on the payment (its version, `updatedAt`), nor hand the client a validator to cache it by.
#[tokio::test]
async fn the_settlement_status_is_current_although_the_payment_no_longer_changes() {
    let app = spawn_app().await;
    let id = captured_payment(&app, 3_000).await;
    let capture = Uuid::now_v7();
    record(&app, &id, capture, "CAPTURE", 3_000, 2).await;

    let first = app.get(&format!("/payments/{id}")).await;
    assert_eq!(first.json()["settlement"]["status"], "PENDING");
    for validator in ["etag", "last-modified"] {
        assert!(
            first.header(validator).is_none(),
            "{validator}: {:?}",
            first.headers
        );
    }
    // Reads in a row, as a polling page makes them; then the worker settles it.
    for _ in 0..3 {
        assert_eq!(summary(&app, &id).await, "PENDING");
    }
    settle(&app, capture, "ACQ-7", 75, 2_925).await;
    let second = app.get(&format!("/payments/{id}")).await;
    let body = second.json();
    assert_eq!(
        body["updatedAt"],
        first.json()["updatedAt"],
        "the payment did not change"
    );
    assert_eq!(body["settlement"]["status"], "SETTLED");
    assert_eq!(body["settlement"]["items"][0]["acquirerReference"], "ACQ-7");
    // A conditional request changes nothing either: the answer is the current one, in full.
    let r = app
        .request(
            Method::GET,
            &format!("/payments/{id}"),
            Some(app.key()),
            None,
            &[
                ("if-none-match", "*"),
                ("if-modified-since", "Sun, 06 Dec 2026 00:00:00 GMT"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["settlement"]["status"], "SETTLED");
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("a page: {page}"))
        .iter()
        .map(|p| p["payoutId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn payouts_are_listed_newest_business_date_first_in_pages_and_only_the_merchants_own() {
    let app = spawn_app().await;
    let me = app.merchant.id.as_str().to_owned();
    let other = app.other_merchant.id.as_str().to_owned();
    let a = payout(&app, &me, "2026-12-01", 1, "KRW", (1_000, 0, 25)).await;
    let b = payout(&app, &me, "2026-12-03", 1, "KRW", (2_000, 500, 50)).await;
    let theirs = payout(&app, &other, "2026-12-03", 1, "KRW", (9_000, 0, 225)).await;
    let c = payout(&app, &me, "2026-12-02", 1, "USD", (300, 0, 8)).await;
    // A late settlement of 12-01, paid out after 12-03's: still listed under its own date.
    let d = payout(&app, &me, "2026-12-01", 2, "KRW", (400, 600, 10)).await;
    let e = payout(&app, &me, "2026-12-04", 1, "KRW", (5_000, 0, 125)).await;
    let newest_first: Vec<String> = [e, b, c, d, a].iter().map(Uuid::to_string).collect();

    let all = app.get("/payouts").await.json();
    assert_eq!(ids(&all), newest_first);
    assert_eq!(
        (&all["hasMore"], &all["nextCursor"]),
        (&json!(false), &Value::Null)
    );
    assert_eq!(
        all["data"][3],
        json!({
            "payoutId": d.to_string(), "businessDate": "2026-12-01", "seq": 2, "currency": "KRW",
            "captures": 1, "refunds": 1, "grossCaptured": 400, "grossRefunded": 600, "fees": 10,
            "net": -210, "timeZone": "Asia/Seoul", "createdAt": "2026-12-06T00:00:01.5Z",
        }),
        "a payout whose refunds exceed its captures has a negative net"
    );

    // Page by page with the cursor: every payout once, in the same order.
    let mut walked = Vec::new();
    let mut path = "/payouts?limit=2".to_owned();
    loop {
        let page = app.get(&path).await.json();
        let got = ids(&page);
        assert!(got.len() <= 2);
        walked.extend(got);
        if page["hasMore"] == false {
            assert!(page["nextCursor"].is_null());
            break;
        }
        path = format!(
            "/payouts?limit=2&startingAfter={}",
            page["nextCursor"].as_str().unwrap()
        );
    }
    assert_eq!(walked, newest_first);

    // Business dates, both ends inclusive; a range the wrong way round is empty.
    let range = app
        .get("/payouts?from=2026-12-02&to=2026-12-03")
        .await
        .json();
    assert_eq!(ids(&range), [b.to_string(), c.to_string()]);
    assert_eq!(
        ids(&app.get("/payouts?from=2026-12-04").await.json()),
        [e.to_string()]
    );
    assert_eq!(
        ids(&app.get("/payouts?to=2026-12-01").await.json()),
        [d.to_string(), a.to_string()]
    );
    assert_eq!(
        ids(&app
            .get("/payouts?from=2026-12-04&to=2026-12-01")
            .await
            .json())
        .len(),
        0
    );
    let cursor_in_range = app
        .get(&format!("/payouts?to=2026-12-03&limit=1&startingAfter={b}"))
        .await
        .json();
    assert_eq!(ids(&cursor_in_range), [c.to_string()]);
    assert_eq!(cursor_in_range["hasMore"], true);

    // The other merchant sees its own payout and none of ours; our cursor means nothing to it and its to us.
    let r = app
        .request(
            Method::GET,
            "/payouts",
            Some(app.other_merchant.key.expose()),
            None,
            &[],
        )
        .await;
    assert_eq!(ids(&r.json()), [theirs.to_string()]);
    let r = app.get(&format!("/payouts?startingAfter={theirs}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        ids(&r.json()).len(),
        0,
        "another merchant's payout is no cursor"
    );
    let r = app
        .get(&format!("/payouts?startingAfter={}", Uuid::now_v7()))
        .await;
    assert_eq!(ids(&r.json()).len(), 0, "nor is an unknown id");

    let r = app.get("/payouts?limit=200&unknown=1").await;
    assert_eq!(
        ids(&r.json()).len(),
        5,
        "the largest page; unknown parameters are ignored"
    );
    assert_eq!(
        ids(&app.get("/payouts?limit=1").await.json()),
        [e.to_string()]
    );
}

#[tokio::test]
async fn a_payout_shows_the_settlements_it_covers_and_is_only_its_merchants() {
    let app = spawn_app().await;
    let first = captured_payment(&app, 10_000).await;
    let second = captured_payment(&app, 2_000).await;
    let (c1, c2, r2) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    record(&app, &first, c1, "CAPTURE", 10_000, 2).await;
    record(&app, &second, c2, "CAPTURE", 2_000, 2).await;
    record(&app, &second, r2, "REFUND", 500, 3).await;
    settle(&app, c1, "ACQ-1", 250, 9_750).await;
    settle(&app, c2, "ACQ-2", 50, 1_950).await;
    settle(&app, r2, "ACQ-3", 0, 500).await;
    let id = payout(
        &app,
        app.merchant.id.as_str(),
        "2026-12-05",
        1,
        "KRW",
        (12_000, 500, 300),
    )
    .await;
    for event in [c1, c2, r2] {
        pay_out(&app, event, id).await;
    }

    let r = app.get(&format!("/payouts/{id}")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.bytes));
    let body = r.json();
    assert_eq!(body["payoutId"], id.to_string());
    assert_eq!(
        (&body["net"], &body["fees"], &body["seq"]),
        (&json!(11_200), &json!(300), &json!(1))
    );
    let mut items = body["items"].as_array().unwrap().clone();
    items.sort_by_key(|i| i["acquirerReference"].as_str().unwrap().to_owned());
    assert_eq!(
        items,
        [
            json!({"eventId": c1.to_string(), "paymentId": first, "type": "CAPTURE", "amount": 10_000,
                   "fee": 250, "net": 9_750, "acquirerReference": "ACQ-1"}),
            json!({"eventId": c2.to_string(), "paymentId": second, "type": "CAPTURE", "amount": 2_000,
                   "fee": 50, "net": 1_950, "acquirerReference": "ACQ-2"}),
            json!({"eventId": r2.to_string(), "paymentId": second, "type": "REFUND", "amount": 500,
                   "fee": 0, "net": 500, "acquirerReference": "ACQ-3"}),
        ]
    );
    // The listing shows the same payout without its items.
    let listed = app.get("/payouts").await.json()["data"][0].clone();
    let mut without_items = body.clone();
    without_items.as_object_mut().unwrap().remove("items");
    assert_eq!(listed, without_items);

    // Another merchant's payout, or none at all, is 404 in the error shape.
    let r = app
        .request(
            Method::GET,
            &format!("/payouts/{id}"),
            Some(app.other_merchant.key.expose()),
            None,
            &[],
        )
        .await;
    r.assert_error(404, "PAYOUT_NOT_FOUND");
    let theirs = payout(
        &app,
        app.other_merchant.id.as_str(),
        "2026-12-05",
        1,
        "KRW",
        (1, 0, 0),
    )
    .await;
    app.get(&format!("/payouts/{theirs}"))
        .await
        .assert_error(404, "PAYOUT_NOT_FOUND");
    app.get(&format!("/payouts/{}", Uuid::now_v7()))
        .await
        .assert_error(404, "PAYOUT_NOT_FOUND");
}

#[tokio::test]
async fn bad_payout_parameters_are_400_naming_the_parameter() {
    let app = spawn_app().await;
    let id = Uuid::now_v7();
    for (path, field) in [
        ("/payouts?limit=0".to_owned(), "limit"),
        ("/payouts?limit=201".to_owned(), "limit"),
        ("/payouts?limit=x".to_owned(), "limit"),
        ("/payouts?limit=-1".to_owned(), "limit"),
        ("/payouts?from=2026-13-01".to_owned(), "from"),
        ("/payouts?from=2026-02-30".to_owned(), "from"),
        ("/payouts?to=yesterday".to_owned(), "to"),
        ("/payouts?to=2026-12-05T00:00:00Z".to_owned(), "to"),
        ("/payouts?startingAfter=7".to_owned(), "startingAfter"),
        (
            format!("/payouts?startingAfter={}", id.simple()),
            "startingAfter",
        ),
        ("/payouts?limit=5&limit=6".to_owned(), "query"),
        (
            "/payouts?from=2026-12-01&from=2026-12-02".to_owned(),
            "query",
        ),
        ("/payouts/7".to_owned(), "payoutId"),
        (format!("/payouts/{}", id.braced()), "payoutId"),
        ("/payouts/%FF".to_owned(), "payoutId"),
    ] {
        let r = app.get(&path).await;
        assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
        let err = r.assert_error(400, "VALIDATION_FAILED");
        assert_eq!(err["details"][0]["field"], field, "{path}: {err}");
    }
    for path in ["/payouts".to_owned(), format!("/payouts/{id}")] {
        app.request(Method::GET, &path, None, None, &[])
            .await
            .assert_error(401, "UNAUTHORIZED");
    }
    app.request(
        Method::POST,
        "/payouts",
        Some(app.key()),
        Some(&json!({})),
        &[],
    )
    .await
    .assert_error(405, "METHOD_NOT_ALLOWED");
}

/// schemathesis never sees a payment with settlement records (no API call makes them), so the field names
/// of the document are held to the answers here: every field sent is documented and every documented
/// field is sent and required.
#[tokio::test]
async fn the_document_names_exactly_the_fields_sent() {
    let app = spawn_app().await;
    let id = captured_payment(&app, 1_000).await;
    let capture = Uuid::now_v7();
    record(&app, &id, capture, "CAPTURE", 1_000, 2).await;
    settle(&app, capture, "ACQ-DOC", 25, 975).await;
    let paid = payout(
        &app,
        app.merchant.id.as_str(),
        "2026-12-05",
        1,
        "KRW",
        (1_000, 0, 25),
    )
    .await;
    pay_out(&app, capture, paid).await;

    let doc: Value = serde_json::from_str(pay_server::OPENAPI).unwrap();
    let schema = |name: &str| doc["components"]["schemas"][name].clone();
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let check = |what: &str, sent: &Value, schema: &Value| {
        let mut required: Vec<String> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect();
        required.sort();
        assert_eq!(keys(sent), required, "{what}: sent vs required");
        assert_eq!(
            keys(&schema["properties"]),
            required,
            "{what}: documented vs required"
        );
    };
    let payment = app.get(&format!("/payments/{id}")).await.json();
    check("Settlement", &payment["settlement"], &schema("Settlement"));
    check(
        "SettlementItem",
        &payment["settlement"]["items"][0],
        &schema("SettlementItem"),
    );
    assert_eq!(payment["settlement"]["status"], "PAID_OUT");
    let detail = app.get(&format!("/payouts/{paid}")).await.json();
    check("PayoutItem", &detail["items"][0], &schema("PayoutItem"));
    let mut fields = detail.clone();
    fields.as_object_mut().unwrap().remove("items");
    check("PayoutFields", &fields, &schema("PayoutFields"));
    let listed = app.get("/payouts").await.json();
    check("PayoutPage", &listed, &schema("PayoutPage"));
    check("Payout", &listed["data"][0], &schema("PayoutFields"));
}

/// A paid-out payment's ledger shows its PAYOUT legs: the document's LedgerEntry admits every account
/// and the event type `payctl settle` posts (pay-settlement's payout legs), so a client validating
/// `GET /payments/{id}/ledger` against it does not reject a paid-out payment.
#[test]
fn the_document_admits_every_payout_leg() {
    use payctl_domain::ledger::{payout_legs, PAYOUT_EVENT_TYPE};
    let doc: Value = serde_json::from_str(pay_server::OPENAPI).unwrap();
    let entry = &doc["components"]["schemas"]["LedgerEntry"]["properties"];
    let admits = |field: &str, value: &str| {
        entry[field]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == value)
    };
    assert!(admits("eventType", PAYOUT_EVENT_TYPE));
    for (refund, fee) in [(false, 25), (true, 10)] {
        for leg in payout_legs(refund, 1_000, fee) {
            assert!(admits("account", leg.account), "{}", leg.account);
        }
    }
}
