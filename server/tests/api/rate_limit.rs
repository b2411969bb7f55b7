use crate::helpers::{blocking, spawn_app_with, spawn_dedicated};
use std::time::{Duration, Instant};

#[tokio::test]
async fn the_request_past_capacity_gets_429_with_retry_after_and_other_merchants_are_unaffected() {
    let app = spawn_app_with(|c| {
        c.rate_limit.authorize_capacity = 5;
        c.rate_limit.authorize_window_seconds = 60;
    })
    .await;
    for i in 0..5 {
        let r = app.authorize(1000, &format!("k{i}")).await;
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.header("ratelimit-limit"), Some("5"));
    }
    let r = app.authorize(1000, "k5").await;
    let body = r.assert_error(429, "RATE_LIMIT_EXCEEDED");
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(
        (1..=12).contains(&retry),
        "one slot frees every 12 s, got {retry}: {body}"
    );
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    // A replay of a completed request is not limited.
    assert_eq!(app.authorize(1000, "k0").await.status, 200);
    // The other merchant has its own budget.
    let other = app
        .request(
            reqwest::Method::POST,
            "/payments/authorize",
            Some(app.other_merchant.key.expose()),
            Some(&serde_json::json!({"amount": 1, "currency": "KRW", "idempotencyKey": "x"})),
            &[],
        )
        .await;
    assert_eq!(other.status, 200);
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 6);
    assert!(app.metric("rate_limited_total") >= 1.0);
}

/// A fixed window lets `capacity` through at the end of one window and `capacity` more at the start of the
/// next. GCRA must never let more than `capacity + elapsed/interval` through in any stretch of time.
#[tokio::test]
async fn no_burst_of_twice_the_capacity_across_a_window_boundary() {
    const CAPACITY: i64 = 10;
    let app = spawn_app_with(|c| {
        c.rate_limit.void_capacity = CAPACITY as u32;
        c.rate_limit.void_window_seconds = 2; // one slot every 200 ms
    })
    .await;
    let unknown = uuid::Uuid::now_v7();
    let path = format!("/payments/void/{unknown}");
    let body = serde_json::json!({});
    let start = Instant::now();
    let mut accepted_at = Vec::new();
    // Hammer for 2.5 s: longer than one window, so a fixed window would reset at least once inside it.
    while start.elapsed() < Duration::from_millis(2500) {
        let batch = futures::future::join_all((0..5).map(|_| app.post(&path, &body))).await;
        for r in batch {
            match r.status {
                404 => accepted_at.push(start.elapsed()),
                429 => {}
                other => panic!("unexpected status {other}"),
            }
        }
    }
    let total = accepted_at.len() as i64;
    // Everything accepted within the run: the initial burst plus one per 200 ms (+1 for edge rounding).
    let bound = CAPACITY + (start.elapsed().as_millis() as i64 / 200) + 1;
    assert!(
        total <= bound,
        "{total} accepted in {:?}, bound {bound}",
        start.elapsed()
    );
    assert!(total < 2 * CAPACITY + 3, "a 2x burst got through: {total}");
    // And in any 1-second stretch at most capacity + 5 (+1).
    for (i, t) in accepted_at.iter().enumerate() {
        let in_window = accepted_at[i..]
            .iter()
            .take_while(|u| **u < *t + Duration::from_secs(1))
            .count() as i64;
        assert!(
            in_window <= CAPACITY + 6,
            "{in_window} accepted within 1 s of {t:?}"
        );
    }
}

#[tokio::test]
async fn with_redis_stopped_requests_still_succeed_and_fail_open_is_counted() {
    let (app, mut services) = spawn_dedicated(|c| {
        c.rate_limit.authorize_capacity = 2;
    })
    .await;
    assert_eq!(app.authorize(1000, "a").await.status, 200);
    let mut services = blocking(move || {
        services.redis.stop().unwrap();
        services
    })
    .await;
    let before = app.metric("ratelimit_fail_open_total");
    let mut took = Vec::new();
    for i in 0..5 {
        let t = Instant::now();
        let r = app.authorize(1000, &format!("b{i}")).await;
        took.push(t.elapsed());
        assert_eq!(
            r.status,
            200,
            "capacity is 2, but the limiter fails open: {}",
            String::from_utf8_lossy(&r.bytes)
        );
    }
    assert!(app.metric("ratelimit_fail_open_total") >= before + 5.0);
    eprintln!("authorize with Redis down, 5 in a row: {took:?}");

    // Redis back: the client reconnects by itself and the limit applies again.
    let _services = blocking(move || {
        services.redis.start().unwrap();
        services
    })
    .await;
    let mut n = 0;
    app.eventually("rate limiting resumes", Duration::from_secs(30), || {
        n += 1;
        let key = format!("c{n}");
        let app = &app;
        async move { app.authorize(1000, &key).await.status == 429 }
    })
    .await;
}

#[tokio::test]
async fn a_retry_whose_answer_left_redis_gets_its_answer_not_429() {
    let app = spawn_app_with(|c| {
        c.rate_limit.authorize_capacity = 2;
        c.rate_limit.authorize_window_seconds = 600;
    })
    .await;
    let first = app.authorize(1000, "r0").await;
    assert_eq!(first.status, 200);
    assert_eq!(app.authorize(1000, "r1").await.status, 200);
    app.authorize(1000, "r2")
        .await
        .assert_error(429, "RATE_LIMIT_EXCEEDED");
    app.forget_cached_responses().await;
    let again = app.authorize(1000, "r0").await;
    assert_eq!(
        again.status,
        200,
        "{}",
        String::from_utf8_lossy(&again.bytes)
    );
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.bytes, first.bytes);
    // The same key with another request is still refused as a mismatch, and nothing new was charged.
    app.authorize(999, "r0")
        .await
        .assert_error(422, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 2);
}

/// The reads (GET, EVAL, EVALSHA) clients — not scripts — send to Redis while `during` runs, as MONITOR
/// sees them: a marker sent afterwards tells when everything before it has been seen.
async fn redis_round_trips<F: std::future::Future<Output = ()>>(url: &str, during: F) -> usize {
    use futures::StreamExt;
    let client = redis::Client::open(url).unwrap();
    let monitor = client.get_async_monitor().await.unwrap(); // MONITOR is on once this returns
    let mut lines = monitor.into_on_message::<String>();
    during.await;
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: String = redis::cmd("ECHO")
        .arg(&marker)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut reads = 0;
    while let Some(line) = tokio::time::timeout(Duration::from_secs(10), lines.next())
        .await
        .expect("MONITOR shows the marker")
    {
        if line.contains(&marker) {
            return reads;
        }
        let from_script = line.contains(" lua]");
        let command = line.split('"').nth(1).unwrap_or("").to_ascii_uppercase();
        if !from_script && ["GET", "EVAL", "EVALSHA"].contains(&command.as_str()) {
            reads += 1;
        }
    }
    panic!("MONITOR ended before the marker");
}

#[tokio::test]
async fn a_keyed_request_costs_one_redis_round_trip_and_a_cached_replay_is_not_counted() {
    let (app, services) = spawn_dedicated(|c| {
        c.rate_limit.authorize_capacity = 2;
        c.rate_limit.authorize_window_seconds = 600;
    })
    .await;
    let url = services.redis.url();
    let first = app.authorize(1000, "once").await;
    assert_eq!(first.status, 200);
    let trips = redis_round_trips(&url, async {
        assert_eq!(app.authorize(1000, "twice").await.status, 200);
    })
    .await;
    assert_eq!(trips, 1, "cache lookup and rate limit in one script");
    // Cached replays (from Redis) are answered without taking from the limit, one round trip each.
    app.eventually(
        "the response is cached",
        Duration::from_secs(10),
        || async {
            let replayed = std::sync::atomic::AtomicBool::new(false);
            let trips = redis_round_trips(&url, async {
                let r = app.authorize(1000, "once").await;
                replayed.store(
                    r.header("idempotent-replayed") == Some("true"),
                    std::sync::atomic::Ordering::Relaxed,
                );
            })
            .await;
            replayed.into_inner() && trips == 1
        },
    )
    .await;
    for _ in 0..5 {
        let r = app.authorize(1000, "once").await;
        assert_eq!((r.status, &r.bytes), (200, &first.bytes));
    }
    app.authorize(1000, "third")
        .await
        .assert_error(429, "RATE_LIMIT_EXCEEDED");
}
