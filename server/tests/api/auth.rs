//! Unknown API keys cost the database at most once per key and a bounded number of times per client,
//! so a flood of junk tokens cannot starve real merchants.

use crate::helpers::{spawn_app, spawn_app_with};
use reqwest::Method;
use serde_json::json;

fn lookups(app: &crate::helpers::TestApp, result: &str) -> f64 {
    payctl_stack::testing::metric_sum(
        &app.state.metrics.render(),
        &format!("auth_key_lookups_total{{result=\"{result}\"}}"),
    )
}

#[tokio::test]
async fn the_same_unknown_key_is_looked_up_once() {
    let app = spawn_app().await;
    for _ in 0..30 {
        app.request(Method::GET, "/payments", Some("sk_junk_token"), None, &[])
            .await
            .assert_error(401, "UNAUTHORIZED");
    }
    assert_eq!(lookups(&app, "unknown"), 1.0);
    // A real key is looked up once, then served from memory.
    for _ in 0..5 {
        assert_eq!(app.get("/payments").await.status, 200);
    }
    assert_eq!(lookups(&app, "known"), 1.0);
}

#[tokio::test]
async fn a_client_flooding_junk_keys_gets_429_and_others_go_on() {
    let app = spawn_app_with(|c| c.auth.lookups_per_second = 5).await;
    let flood = [("x-forwarded-for", "10.9.9.9")];
    let mut statuses = Vec::new();
    for i in 0..40 {
        let r = app
            .request(
                Method::GET,
                "/payments",
                Some(&format!("sk_junk_{i}")),
                None,
                &flood,
            )
            .await;
        statuses.push(r.status);
    }
    let unauthorized = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(unauthorized + limited, 40, "{statuses:?}");
    assert!(limited >= 1, "the flood was never limited: {statuses:?}");
    // At most the budget per elapsed second reached the database.
    assert!(
        lookups(&app, "unknown") < 40.0,
        "{} lookups for 40 junk keys",
        lookups(&app, "unknown")
    );
    // Another client, and a real merchant, are unaffected.
    let r = app
        .request(
            Method::POST,
            "/payments/authorize",
            Some(app.key()),
            Some(&json!({"amount": 1000, "currency": "KRW", "idempotencyKey": "real"})),
            &[("x-forwarded-for", "10.1.1.1")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.bytes));
    let r = app
        .request(
            Method::GET,
            "/payments",
            Some("sk_other_junk"),
            None,
            &[("x-forwarded-for", "10.2.2.2")],
        )
        .await;
    r.assert_error(401, "UNAUTHORIZED");
    assert_eq!(
        payctl_stack::testing::metric_sum(
            &app.state.metrics.render(),
            "rate_limited_total{action=\"authentication\"}"
        ),
        limited as f64
    );
}

#[tokio::test]
async fn junk_from_a_merchants_address_does_not_lock_its_valid_key_out() {
    let app = spawn_app_with(|c| {
        c.auth.lookups_per_second = 2;
        c.auth.known_key_ttl_seconds = 0; // every request looks the key up again
    })
    .await;
    let shared = [("x-forwarded-for", "10.5.5.5")];
    let get = |key: String| {
        let app = &app;
        async move {
            app.request(Method::GET, "/payments", Some(&key), None, &shared)
                .await
                .status
        }
    };
    assert_eq!(get(app.key().to_owned()).await, 200);
    let mut junk = Vec::new();
    for i in 0..10 {
        junk.push(get(format!("sk_junk_{i}")).await);
    }
    assert!(
        junk.contains(&429),
        "the address's budget ran out: {junk:?}"
    );
    // The merchant's key was valid before: it is looked up again (revocation still works) but never
    // refused for its address's budget.
    for _ in 0..5 {
        assert_eq!(get(app.key().to_owned()).await, 200);
    }
}

#[tokio::test]
async fn a_rotated_key_is_refused_once_the_cache_lets_it_go_and_a_taken_id_keeps_its_key() {
    use pay_server::auth::{register_merchant, rotate_key};
    use payctl_domain::MerchantId;
    // No key cache: rotation reaches this instance at once (the gauge says so to `payctl`).
    let app = spawn_app_with(|c| c.auth.known_key_ttl_seconds = 0).await;
    assert_eq!(
        payctl_stack::testing::metric_sum(
            &app.state.metrics.render(),
            "auth_known_key_ttl_seconds"
        ),
        0.0
    );
    let status = |key: String| {
        let app = &app;
        async move {
            app.request(Method::GET, "/payments", Some(&key), None, &[])
                .await
                .status
        }
    };
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let id = MerchantId::parse("merchantId", &format!("rot-{}", &unique[..12])).unwrap();
    let old = register_merchant(&app.db, &id, "Rotating")
        .await
        .unwrap()
        .expect("a new id");
    assert_eq!(status(old.expose().to_owned()).await, 200);
    // The id is taken: no key is made and the merchant's key is left alone.
    assert!(register_merchant(&app.db, &id, "Again")
        .await
        .unwrap()
        .is_none());
    assert_eq!(status(old.expose().to_owned()).await, 200);

    let new = rotate_key(&app.db, &id)
        .await
        .unwrap()
        .expect("a known merchant");
    assert_ne!(new.expose(), old.expose());
    assert_eq!(status(new.expose().to_owned()).await, 200);
    assert_eq!(status(old.expose().to_owned()).await, 401, "the old key");
    let nobody = MerchantId::parse("merchantId", &format!("nobody-{}", &unique[..12])).unwrap();
    assert!(rotate_key(&app.db, &nobody).await.unwrap().is_none());
}
