//! Registered clients on the proxy path, against SQLite and PostgreSQL: limits live without a
//! restart, the exact refusals, anonymous access off, wrong keys rate limited.

use serde_json::{json, Value};

use crate::{
    both_databases,
    clients::{gateway, send},
    helpers::*,
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
