//! Registered clients on the proxy path, against SQLite and PostgreSQL: limits live without a
//! restart, the exact refusals, anonymous access off, wrong keys rate limited.

use serde_json::{json, Value};

use crate::{
    both_databases,
    clients::{gateway, send},
    helpers::*,
    metrics::{scrape, Metrics},
};

async fn limits_are_live_without_restart(db: TestDb) {
    let backend = TestBackend::start("a");
    let gw = gateway(&db, &backend, &[]).await;
    let key = "live-limits-key-0123456789";
    let body = json!({"client_id": "live", "capacity": 3, "rate_per_sec": 0.001, "api_key": key});
    assert_eq!(send(&gw, "POST", "/clients", Some(body)).await.0, 201);
    let hit = || async { gw.get_with_key("/x", key).await.0 };

    for _ in 0..3 {
        assert_eq!(hit().await, 200);
    }
    assert_eq!(hit().await, 429);

    // A raised capacity adds no tokens.
    assert_eq!(
        send(&gw, "PATCH", "/clients/live", Some(json!({"capacity": 10})))
            .await
            .0,
        200
    );
    assert_eq!(hit().await, 429);
    // A faster rate is live at once: at 1000 tokens/s a token is back within milliseconds.
    assert_eq!(
        send(&gw, "PATCH", "/clients/live", Some(json!({"rate_per_sec": 1000})))
            .await
            .0,
        200
    );
    eventually(
        "a token at the new rate",
        std::time::Duration::from_secs(2),
        || async { hit().await == 200 },
    )
    .await;

    // A lowered capacity clamps the tokens.
    eventually("refilled", std::time::Duration::from_secs(2), || async {
        send(&gw, "GET", "/clients/live", None).await.2["tokens"] == 10
    })
    .await;
    let (_, _, body) = send(
        &gw,
        "PATCH",
        "/clients/live",
        Some(json!({"capacity": 2, "rate_per_sec": 0.001})),
    )
    .await;
    assert_eq!(body["tokens"], 2, "{body}");
    assert_eq!(hit().await, 200);
    assert_eq!(hit().await, 200);
    assert_eq!(hit().await, 429);

    // Disabled: 403 at once; enabled again: back.
    assert_eq!(
        send(
            &gw,
            "PATCH",
            "/clients/live",
            Some(json!({"enabled": false, "capacity": 5}))
        )
        .await
        .0,
        200
    );
    assert_eq!(hit().await, 403);
    assert_eq!(
        send(&gw, "PATCH", "/clients/live", Some(json!({"enabled": true})))
            .await
            .0,
        200
    );
    assert_eq!(hit().await, 429, "the bucket was not reset by the changes");

    // A new key replaces the old one at once.
    let new_key = "the-new-key-for-live-0123456789";
    assert_eq!(
        send(
            &gw,
            "PATCH",
            "/clients/live",
            Some(json!({"api_key": new_key, "capacity": 9, "rate_per_sec": 1000}))
        )
        .await
        .0,
        200
    );
    assert_eq!(gw.get_with_key("/x", key).await.0, 401);

    // Deleted: its key is unknown from the next request on.
    assert_eq!(send(&gw, "DELETE", "/clients/live", None).await.0, 204);
    assert_eq!(gw.get_with_key("/x", new_key).await.0, 401);
}
both_databases!(limits_are_live_without_restart);

async fn refusals_have_exact_bodies_and_headers(db: TestDb) {
    let backend = TestBackend::start("a");
    let gw = gateway(&db, &backend, &[]).await;
    let key = "refusal-test-key-0123456789";
    let body = json!({"client_id": "r", "capacity": 2, "rate_per_sec": 0.2, "api_key": key});
    assert_eq!(send(&gw, "POST", "/clients", Some(body)).await.0, 201);

    let (status, h, _) = gw.get_with_key("/x", key).await;
    assert_eq!(status, 200);
    assert_eq!(h.get("ratelimit-policy").unwrap(), "\"default\";q=2;w=10");
    assert_eq!(h.get("ratelimit").unwrap(), "\"default\";r=1;t=5");
    assert_eq!(gw.get_with_key("/x", key).await.0, 200);

    let (status, h, body) = gw.get_with_key("/x", key).await;
    assert_eq!(status, 429);
    assert_eq!(h.get("retry-after").unwrap(), "5");
    assert_eq!(h.get("ratelimit-policy").unwrap(), "\"default\";q=2;w=10");
    assert_eq!(h.get("ratelimit").unwrap(), "\"default\";r=0;t=10");
    assert_eq!(h.get("content-type").unwrap(), "application/json");
    assert_error_body(&body, &h, 429, "rate_limited");
    assert_eq!(body["message"], "Rate limit exceeded");

    let (status, h, body) = gw.get_with_key("/x", "no-such-key-0000000000").await;
    assert_eq!(status, 401);
    assert_error_body(&body, &h, 401, "unknown_api_key");

    assert_eq!(
        send(&gw, "PATCH", "/clients/r", Some(json!({"enabled": false})))
            .await
            .0,
        200
    );
    let (status, h, body) = gw.get_with_key("/x", key).await;
    assert_eq!(status, 403);
    assert_error_body(&body, &h, 403, "client_disabled");
    assert_eq!(
        backend.proxied().len(),
        2,
        "only the two admitted requests reached the backend"
    );
}
both_databases!(refusals_have_exact_bodies_and_headers);

async fn anonymous_access_can_be_turned_off(db: TestDb) {
    let backend = TestBackend::start("a");
    let gw = gateway(&db, &backend, &["--require-api-key", "true"]).await;
    let mut resp = gw.client.get(gw.url("/x")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let h = resp.headers().clone();
    let body: Value = resp.json().await.unwrap();
    assert_error_body(&body, &h, 401, "api_key_required");
}
both_databases!(anonymous_access_can_be_turned_off);

async fn wrong_keys_are_rate_limited_per_address(db: TestDb) {
    let backend = TestBackend::start("a");
    let gw = gateway(
        &db,
        &backend,
        &["--default-capacity", "3", "--default-rate", "0.001"],
    )
    .await;
    let mut statuses = Vec::new();
    for i in 0..5 {
        statuses.push(
            gw.get_with_key("/x", &format!("guess-number-{i}-0123456789"))
                .await
                .0,
        );
    }
    assert_eq!(statuses, vec![401, 401, 401, 429, 429]);
    assert_eq!(backend.proxied().len(), 0);
}
both_databases!(wrong_keys_are_rate_limited_per_address);

/// Shadow mode: a client with `"enforce": false` at three times its rate gets only 200s, with
/// the RateLimit headers enforcement would send, and its refused count is what enforcement
/// refuses: an enforced twin under the same requests, in step, is refused exactly as often.
async fn a_shadow_client_is_never_refused_and_counts_what_would_have_been(db: TestDb) {
    let backend = TestBackend::start("a");
    let gw = gateway(&db, &backend, &[]).await;
    let (shadow_key, twin_key) = ("shadow-client-key-0123456789", "enforced-twin-key-0123456789");
    for (id, key, enforce) in [("shadow", shadow_key, false), ("twin", twin_key, true)] {
        let body =
            json!({"client_id": id, "capacity": 5, "rate_per_sec": 10, "api_key": key, "enforce": enforce});
        let (status, _, view) = send(&gw, "POST", "/clients", Some(body)).await;
        assert_eq!(status, 201, "{view}");
        assert_eq!(view["enforce"], enforce);
    }
    // 30 requests a second each for 2 s: three times the rate.
    let (mut shadow, mut twin) = (Vec::new(), Vec::new());
    let start = std::time::Instant::now();
    for i in 0..60u32 {
        let due = start + std::time::Duration::from_millis(u64::from(i) * 1000 / 30);
        actix_rt::time::sleep_until(due.into()).await;
        let (s, h, _) = gw.get_with_key("/s", shadow_key).await;
        shadow.push((s, h.get("ratelimit").map(|v| v.to_str().unwrap().to_string())));
        twin.push(gw.get_with_key("/s", twin_key).await.0);
    }
    assert!(shadow.iter().all(|(s, _)| *s == 200), "{shadow:?}");
    assert!(
        shadow.iter().all(|(_, h)| h.is_some()),
        "RateLimit headers on every answer"
    );
    let twin_refused = twin.iter().filter(|s| **s == 429).count() as u64;
    assert!(twin_refused >= 30, "the twin is over its limit: {twin:?}");
    let s = send(&gw, "GET", "/clients/shadow", None).await.2;
    let t = send(&gw, "GET", "/clients/twin", None).await.2;
    let (s_refused, t_refused) = (s["refused"].as_u64().unwrap(), t["refused"].as_u64().unwrap());
    assert_eq!(t_refused, twin_refused, "{t}");
    assert_eq!(s["admitted"].as_u64().unwrap() + s_refused, 60, "{s}");
    // In step with the twin, a refill tick apart at most.
    assert!(
        s_refused.abs_diff(t_refused) <= 2,
        "shadow refused {s_refused}, twin {t_refused}"
    );
    // The metrics label the shadow refusals apart.
    let m = Metrics::parse(&scrape(&gw, None).await.1);
    let refused = |shadow: &str| {
        m.value(
            "tollgate_ratelimit_decisions_total",
            &[("kind", "client"), ("result", "refused"), ("shadow", shadow)],
        )
    };
    assert_eq!(refused("true"), s_refused as f64);
    assert_eq!(refused("false"), t_refused as f64);
    // Enforcing from now on: refused at once.
    let (status, _, _) = send(&gw, "PATCH", "/clients/shadow", Some(json!({"enforce": true}))).await;
    assert_eq!(status, 200);
    let mut refused = 0;
    for _ in 0..10 {
        if gw.get_with_key("/s", shadow_key).await.0 == 429 {
            refused += 1;
        }
    }
    assert!(refused >= 4, "enforced again: {refused} of 10 refused");
}
both_databases!(a_shadow_client_is_never_refused_and_counts_what_would_have_been);
