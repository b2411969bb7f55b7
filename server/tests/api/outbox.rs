use crate::helpers::{blocking, spawn_app, spawn_dedicated};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[tokio::test]
async fn committed_changes_are_published_with_the_versioned_envelope_keyed_by_payment() {
    let app = spawn_app().await;
    let id = app.authorized_payment(2500).await;
    assert_eq!(
        app.post(&format!("/payments/capture/{id}"), &json!({}))
            .await
            .status,
        200
    );
    app.eventually("outbox drained", Duration::from_secs(30), || async {
        app.unpublished().await == 0
    })
    .await;
    let authorized = app.read_topic("payment.authorized").await;
    let captured = app.read_topic("payment.captured").await;
    assert_eq!((authorized.len(), captured.len()), (1, 1));
    let e = &captured[0];
    assert_eq!(e["eventType"], "PAYMENT_CAPTURED");
    assert_eq!(e["schemaVersion"], 1);
    assert_eq!(e["paymentId"], id.as_str());
    assert_eq!(e["_key"], id.as_str(), "the Kafka key is the payment id");
    assert_eq!(e["merchantId"], app.merchant.id.as_str());
    assert_eq!(
        (e["amount"].as_i64(), e["currency"].as_str()),
        (Some(2500), Some("KRW"))
    );
    assert!(e["eventId"].as_str().is_some() && e["occurredAt"].as_str().is_some());
    // The relay refreshes the gauge on its own tick: await it rather than sample it once.
    app.eventually(
        "the outbox_backlog gauge is back to 0",
        Duration::from_secs(10),
        || async { app.metric("outbox_backlog") == 0.0 },
    )
    .await;
    assert!(app.metric("outbox_published_total") >= 2.0);
}

#[tokio::test]
async fn kafka_outage_the_api_stays_fast_the_breaker_opens_and_the_backlog_drains_exactly_once() {
    let (app, mut services) = spawn_dedicated(|c| {
        c.kafka.delivery_timeout_ms = 1500;
        c.breaker.minimum_calls = 5;
        c.breaker.wait_in_open_ms = 1000;
        c.relay.batch_size = 50;
    })
    .await;
    // Before: a few payments published normally.
    for i in 0..5 {
        assert_eq!(
            app.authorize(1000, &format!("before-{i}")).await.status,
            200
        );
    }
    app.eventually(
        "pre-outage events published",
        Duration::from_secs(30),
        || async { app.unpublished().await == 0 },
    )
    .await;

    let mut services = blocking(move || {
        services.tansu.stop().unwrap();
        services
    })
    .await;

    // During: the API answers at database speed and never waits on Kafka.
    let mut latencies = Vec::new();
    for i in 0..60 {
        let t = Instant::now();
        let r = app.authorize(1000 + i, &format!("during-{i}")).await;
        latencies.push(t.elapsed());
        assert_eq!(
            r.status, 200,
            "authorize must keep working while Kafka is down"
        );
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100 - 1];
    let max = *latencies.last().unwrap();
    eprintln!(
        "authorize while Kafka is down: p50 {:?}, p99 {:?}, max {:?}",
        latencies[latencies.len() / 2],
        p99,
        max
    );
    assert!(
        max < Duration::from_secs(1),
        "a request waited on Kafka: {max:?}"
    );

    let breaker = || async { app.get("/circuit-breaker/kafka-publisher").await.json() };
    app.eventually("breaker OPEN", Duration::from_secs(30), || async {
        breaker().await["state"] == "OPEN"
    })
    .await;
    let b = breaker().await;
    assert!(b["numberOfFailedCalls"].as_u64().unwrap() >= 5, "{b}");
    assert_eq!(
        app.unpublished().await,
        60,
        "the outbox holds every event of the outage"
    );
    // The relay refreshes the gauge on its own tick: await it rather than sample it once.
    app.eventually(
        "the outbox_backlog gauge counts the held events",
        Duration::from_secs(10),
        || async { app.metric("outbox_backlog") >= 1.0 },
    )
    .await;

    // After: Kafka returns, the breaker probes, closes, and the backlog drains.
    let _services = blocking(move || {
        services.tansu.start().unwrap();
        services
    })
    .await;
    app.eventually("backlog drained", Duration::from_secs(90), || async {
        app.unpublished().await == 0
    })
    .await;
    assert_eq!(breaker().await["state"], "CLOSED");

    let events = app.read_topic("payment.authorized").await;
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for e in &events {
        *by_id
            .entry(e["eventId"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let outbox_ids: Vec<String> =
        sqlx::query_scalar::<_, uuid::Uuid>("SELECT event_id FROM outbox_events")
            .fetch_all(&app.db)
            .await
            .unwrap()
            .iter()
            .map(|u| u.hyphenated().to_string())
            .collect();
    assert_eq!(outbox_ids.len(), 65);
    for id in &outbox_ids {
        assert_eq!(
            by_id.get(id).copied(),
            Some(1),
            "event {id} must appear exactly once"
        );
    }
    assert_eq!(
        events.len(),
        65,
        "no extra messages: {:?}",
        by_id.values().filter(|n| **n > 1).count()
    );
    let _: Vec<Value> = events;
}

#[tokio::test]
async fn graceful_shutdown_publishes_what_was_committed_then_stops_accepting() {
    let app = spawn_app().await;
    let keys: Vec<String> = (0..20).map(|i| format!("s{i}")).collect();
    let replies = futures::future::join_all(
        keys.iter()
            .enumerate()
            .map(|(i, k)| app.authorize(100 + i as i64, k)),
    )
    .await;
    assert!(replies.iter().all(|r| r.status == 200));
    let address = app.address.clone();
    let client = app.client.clone();
    let db = app.db.clone();
    let reader = crate::helpers::TopicReader::of(&app);
    app.stop().await;
    let unpublished: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM outbox_events WHERE published_at IS NULL")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(unpublished, 0, "a clean stop leaves nothing in the outbox");
    assert_eq!(reader.read("payment.authorized").await.len(), 20);
    assert!(
        client
            .get(format!("{address}/health"))
            .send()
            .await
            .is_err(),
        "no longer accepting"
    );
}

/// Three API instances on one database, each with its relay (`payctl up --scale ingest=3`): under
/// writes through all three at once, every committed event is published exactly once — no relay takes
/// a row another one holds — and each relay publishes a share.
#[tokio::test]
async fn several_relays_share_the_outbox_and_publish_each_event_once() {
    const PAYMENTS: usize = 60;
    let a = spawn_app().await;
    let b = a.peer(|_| {}).await;
    let c = a.peer(|_| {}).await;
    let apps = [&a, &b, &c];
    let ids = futures::future::join_all((0..PAYMENTS).map(|i| async move {
        let id = apps[i % 3].authorized_payment(1000 + i as i64).await;
        let captured = apps[(i + 1) % 3]
            .post(&format!("/payments/capture/{id}"), &json!({}))
            .await;
        assert_eq!(captured.status, 200, "{:?}", captured.json());
        id
    }))
    .await;
    a.eventually("outbox drained", Duration::from_secs(30), || async {
        a.unpublished().await == 0
    })
    .await;
    for topic in ["payment.authorized", "payment.captured"] {
        let events = a.read_topic(topic).await;
        let mut seen: HashMap<String, usize> = HashMap::new();
        for e in &events {
            *seen
                .entry(e["eventId"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(doubled.is_empty(), "{topic}: published twice: {doubled:?}");
        assert_eq!(seen.len(), PAYMENTS, "{topic}: every event, once");
        for id in &ids {
            assert!(
                events.iter().any(|e| e["paymentId"] == id.as_str()),
                "{topic}: {id}"
            );
        }
    }
    let shares: Vec<f64> = apps
        .iter()
        .map(|app| app.metric("outbox_published_total"))
        .collect();
    assert_eq!(
        shares.iter().sum::<f64>(),
        (2 * PAYMENTS) as f64,
        "the relays' counts add up to the events: {shares:?}"
    );
    assert!(
        shares.iter().all(|n| *n > 0.0),
        "each relay publishes: {shares:?}"
    );
    c.stop().await;
    b.stop().await;
}

/// `up --partitions` on topics that exist with fewer: pay-server asks the broker for more partitions.
/// tansu cannot add any (Kafka can); that is said in the log, not fatal — the instance still publishes
/// to the partitions there are, and nothing waits for ever.
#[tokio::test]
async fn asking_for_more_partitions_than_the_broker_can_add_still_publishes() {
    let app = spawn_app().await;
    let first = app.authorized_payment(1200).await;
    let more = app.peer(|c| c.kafka.partitions = 6).await;
    // Only the new instance's relay is left to publish.
    app.stop().await;
    let second = more.authorized_payment(1300).await;
    more.eventually("the outbox drained", Duration::from_secs(30), || async {
        more.unpublished().await == 0
    })
    .await;
    let published = more.read_topic("payment.authorized").await;
    for id in [&first, &second] {
        assert!(
            published.iter().any(|e| e["paymentId"] == id.as_str()),
            "{id} published"
        );
    }
    more.stop().await;
}
