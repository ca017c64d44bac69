//! The admin client API against SQLite and PostgreSQL: CRUD, validation, live limits.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{both_databases, helpers::*};

async fn gateway(db: &TestDb, backend: &TestBackend, extra: &[&str]) -> TestGateway {
    let mut flags = vec!["--rate-limit", "true", "--health-interval", "1h"];
    flags.extend_from_slice(extra);
    spawn_gateway_db(&[backend.url()], &flags, &db.url()).await
}

async fn send(
    gw: &TestGateway,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, awc::http::header::HeaderMap, Value) {
    let req = gw.client.request(method.parse().unwrap(), gw.admin_url(path));
    let mut resp = match body {
        Some(b) => req.send_json(&b).await.unwrap(),
        None => req.send().await.unwrap(),
    };
    let bytes = resp.body().await.unwrap();
    (
        resp.status().as_u16(),
        resp.headers().clone(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn raw_admin(
    gw: &TestGateway,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, Value) {
    let mut resp = gw
        .client
        .request(method.parse().unwrap(), gw.admin_url(path))
        .insert_header(("content-type", content_type))
        .send_body(body.to_string())
        .await
        .unwrap();
    let bytes = resp.body().await.unwrap();
    (
        resp.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn hex_sha256(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn crud_round_trip(db: TestDb) {
    let backend = TestBackend::start("a");
    let gw = gateway(&db, &backend, &[]).await;

    // Create with a generated key: 201, Location, the key shown once.
    let (status, headers, body) = send(
        &gw,
        "POST",
        "/clients",
        Some(json!({"client_id": "user1", "capacity": 100, "rate_per_sec": 10})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(headers.get("location").unwrap(), "/clients/user1");
    let key = body["api_key"].as_str().unwrap().to_string();
    assert_eq!(key.len(), 43, "32 random bytes, URL-safe base64: {key}");
    assert!(key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(body["capacity"], 100);
    assert_eq!(body["rate_per_sec"], 10.0);
    assert_eq!(body["tokens"], 100);
    assert_eq!(body["key_prefix"], &key[..8]);

    // Stored hashed, never in clear.
    let row = db.client_row("user1").unwrap();
    assert_eq!(row.api_key_hash, hex_sha256(&key));
    assert_eq!((row.capacity, row.rate_milli, row.enabled), (100, 10_000, true));

    // Read: no key any more.
    let (status, _, body) = send(&gw, "GET", "/clients/user1", None).await;
    assert_eq!(status, 200);
    assert!(body.get("api_key").is_none(), "{body}");
    assert_eq!(
        (body["admitted"].as_u64(), body["refused"].as_u64()),
        (Some(0), Some(0))
    );

    // The key works on the proxy, is charged to user1, and is not passed to the backend.
    assert_eq!(gw.get_with_key("/x", &key).await.0, 200);
    assert!(
        !backend.proxied()[0].headers.contains_key("x-api-key"),
        "the API key reached the backend"
    );
    assert_eq!(send(&gw, "GET", "/clients/user1", None).await.2["admitted"], 1);

    // Duplicates: id, then key.
    let (status, headers, body) = send(
        &gw,
        "POST",
        "/clients",
        Some(json!({"client_id": "user1", "capacity": 5, "rate_per_sec": 1})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_error_body(&body, &headers, 409, "conflict");
    let (status, _, body) = send(
        &gw,
        "POST",
        "/clients",
        Some(json!({"client_id": "user2", "capacity": 5, "rate_per_sec": 1, "api_key": key})),
    )
    .await;
    assert_eq!(status, 409);
    assert!(body["message"].as_str().unwrap().starts_with("api_key"), "{body}");

    // Validation: 422 naming the field; 400, 415.
    for (bad, field) in [
        (
            json!({"client_id": "u3", "capacity": 0, "rate_per_sec": 1}),
            "capacity",
        ),
        (
            json!({"client_id": "u3", "capacity": 1.5, "rate_per_sec": 1}),
            "capacity",
        ),
        (
            json!({"client_id": "u3", "capacity": 5, "rate_per_sec": 0}),
            "rate_per_sec",
        ),
        (
            json!({"client_id": "u3", "capacity": 5, "rate_per_sec": "fast"}),
            "rate_per_sec",
        ),
        (json!({"client_id": "u3", "capacity": 5}), "rate_per_sec"),
        (
            json!({"client_id": "bad id!", "capacity": 5, "rate_per_sec": 1}),
            "client_id",
        ),
        (
            json!({"client_id": "u3", "capacity": 5, "rate_per_sec": 1, "colour": "red"}),
            "colour",
        ),
        (
            json!({"client_id": "u3", "capacity": 5, "rate_per_sec": 1, "name": "a\u{7}b"}),
            "name",
        ),
        (
            json!({"client_id": "u3", "capacity": 5, "rate_per_sec": 1, "api_key": "short"}),
            "api_key",
        ),
        (
            json!({"client_id": "u3", "capacity": 5, "rate_per_sec": 1, "ips": ["10.0.0.0/8", "nope"]}),
            "ips[1]",
        ),
    ] {
        let (status, _, body) = send(&gw, "POST", "/clients", Some(bad.clone())).await;
        assert_eq!(status, 422, "{bad} -> {body}");
        assert_eq!(body["error"], "validation_failed");
        assert!(
            body["message"].as_str().unwrap().starts_with(field),
            "{bad} -> {body}"
        );
    }
    let (status, body) = raw_admin(&gw, "POST", "/clients", "application/json", "{\"client_id\": ").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("malformed_json")));
    let (status, body) = raw_admin(&gw, "POST", "/clients", "text/plain", "{}").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    assert!(db.client_row("u3").is_none(), "a refused create left a row");

    // PUT: create (201), replace (200) keeping the key, idempotent.
    let put = json!({"capacity": 7, "rate_per_sec": 0.5, "name": "Second", "ips": ["192.0.2.0/24"]});
    let (status, headers, body) = send(&gw, "PUT", "/clients/user2", Some(put.clone())).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(headers.get("location").unwrap(), "/clients/user2");
    let key2 = body["api_key"].as_str().unwrap().to_string();
    for _ in 0..2 {
        let (status, _, body) = send(&gw, "PUT", "/clients/user2", Some(put.clone())).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("api_key").is_none());
        assert_eq!(body["name"], "Second");
    }
    assert_eq!(db.client_row("user2").unwrap().api_key_hash, hex_sha256(&key2));
    let (status, _, _) = send(
        &gw,
        "PUT",
        "/clients/user2",
        Some(json!({"client_id": "other", "capacity": 7, "rate_per_sec": 1})),
    )
    .await;
    assert_eq!(status, 422);

    // PATCH: partial.
    let (status, _, body) = send(
        &gw,
        "PATCH",
        "/clients/user2",
        Some(json!({"rate_per_sec": 2, "name": null})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["capacity"].as_u64(), body["rate_per_sec"].as_f64()),
        (Some(7), Some(2.0))
    );
    assert_eq!(body["name"], Value::Null);
    assert_eq!(db.client_row("user2").unwrap().rate_milli, 2000);
    let (status, _, _) = send(&gw, "PATCH", "/clients/nobody", Some(json!({"capacity": 3}))).await;
    assert_eq!(status, 404);

    // List with paging and the total.
    for i in 0..3 {
        let body = json!({"client_id": format!("z{i}"), "capacity": 1, "rate_per_sec": 1});
        assert_eq!(send(&gw, "POST", "/clients", Some(body)).await.0, 201);
    }
    let (status, _, body) = send(&gw, "GET", "/clients?limit=2&offset=1", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["total"], 5);
    let ids: Vec<&str> = body["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["user2", "z0"]);
    assert_eq!(send(&gw, "GET", "/clients?limit=501", None).await.0, 422);
    assert_eq!(send(&gw, "GET", "/clients", None).await.2["limit"], 50);

    // Delete: 204, then 404, and gone from the database.
    assert_eq!(send(&gw, "DELETE", "/clients/user2", None).await.0, 204);
    assert_eq!(send(&gw, "DELETE", "/clients/user2", None).await.0, 404);
    assert_eq!(send(&gw, "GET", "/clients/user2", None).await.0, 404);
    assert!(db.client_row("user2").is_none());
}
both_databases!(crud_round_trip);

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

async fn the_client_api_needs_the_admin_token(db: TestDb) {
    let backend = TestBackend::start("a");
    let token = "admin-token-for-clients-0123";
    let gw = gateway(&db, &backend, &["--admin-token", token]).await;
    let body = json!({"client_id": "t", "capacity": 1, "rate_per_sec": 1});
    for (method, path) in [
        ("GET", "/clients"),
        ("POST", "/clients"),
        ("GET", "/clients/t"),
        ("DELETE", "/clients/t"),
    ] {
        let (status, headers, resp) = send(&gw, method, path, Some(body.clone())).await;
        assert_eq!(status, 401, "{method} {path}");
        assert!(headers.contains_key("www-authenticate"));
        assert_eq!(resp["error"], "unauthorized");
    }
    assert!(db.client_row("t").is_none());
    let resp = gw
        .client
        .post(gw.admin_url("/clients"))
        .bearer_auth(token)
        .send_json(&body)
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}
both_databases!(the_client_api_needs_the_admin_token);

async fn repeated_keys_and_wrong_nulls_are_refused_naming_the_field(db: TestDb) {
    let backend = TestBackend::start("a");
    let gw = gateway(&db, &backend, &[]).await;
    let json = "application/json";

    // A key given twice: serde_json would keep the last one silently.
    let twice = r#"{"client_id": "d", "capacity": 5, "rate_per_sec": 1, "capacity": 500}"#;
    let (status, body) = raw_admin(&gw, "POST", "/clients", json, twice).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "validation_failed");
    assert!(
        body["message"].as_str().unwrap().starts_with("capacity"),
        "{body}"
    );
    assert!(db.client_row("d").is_none(), "a refused create left a row");

    let ok = r#"{"client_id": "d", "capacity": 5, "rate_per_sec": 1, "name": "D"}"#;
    assert_eq!(raw_admin(&gw, "POST", "/clients", json, ok).await.0, 201);
    let (status, body) = raw_admin(&gw, "PATCH", "/clients/d", json, r#"{"name": "x", "name": "y"}"#).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["message"].as_str().unwrap().starts_with("name"), "{body}");

    // `null` where the field cannot be null: 422 naming it, nothing changed.
    for (field, patch) in [
        ("capacity", r#"{"capacity": null}"#),
        ("rate_per_sec", r#"{"rate_per_sec": null}"#),
        ("enabled", r#"{"enabled": null}"#),
        ("ips", r#"{"ips": null}"#),
        ("api_key", r#"{"api_key": null}"#),
    ] {
        let (status, body) = raw_admin(&gw, "PATCH", "/clients/d", json, patch).await;
        assert_eq!(status, 422, "{patch} -> {body}");
        assert!(
            body["message"].as_str().unwrap().starts_with(field),
            "{patch} -> {body}"
        );
    }
    let put = r#"{"capacity": null, "rate_per_sec": 1}"#;
    assert_eq!(raw_admin(&gw, "PUT", "/clients/d", json, put).await.0, 422);
    let row = db.client_row("d").unwrap();
    assert_eq!((row.capacity, row.name.as_deref()), (5, Some("D")));

    // `"name": null` still clears the name.
    let (status, body) = raw_admin(&gw, "PATCH", "/clients/d", json, r#"{"name": null}"#).await;
    assert_eq!((status, &body["name"]), (200, &Value::Null), "{body}");
}
both_databases!(repeated_keys_and_wrong_nulls_are_refused_naming_the_field);

/// A row the gateway's memory does not know (written by another process on the same
/// database), as the database's unique constraints see it.
fn foreign_row(id: &str, key: &str) -> tollgate::store::ClientRow {
    tollgate::store::ClientRow {
        client_id: id.into(),
        name: None,
        api_key_hash: hex_sha256(key),
        key_prefix: key[..8].into(),
        ips: String::new(),
        capacity: 1,
        rate_milli: 1000,
        enabled: true,
        created_at: 0,
        updated_at: 0,
        bucket_level: None,
        bucket_at: None,
        admitted: 0,
        refused: 0,
    }
}

async fn a_conflict_the_database_finds_names_the_field_in_plain_words(db: TestDb) {
    use diesel::RunQueryDsl;
    let backend = TestBackend::start("a");
    let gw = gateway(&db, &backend, &[]).await;
    let key = "foreign-key-0123456789abcdef";
    diesel::insert_into(tollgate::store::schema::clients::table)
        .values(&foreign_row("elsewhere", key))
        .execute(&mut db.connect())
        .unwrap();

    let cases = [
        (
            json!({"client_id": "elsewhere", "capacity": 1, "rate_per_sec": 1}),
            "client_id: \"elsewhere\" is taken",
        ),
        (
            json!({"client_id": "mine", "capacity": 1, "rate_per_sec": 1, "api_key": key}),
            "api_key: is taken by another client",
        ),
    ];
    for (body, message) in cases {
        let (status, headers, resp) = send(&gw, "POST", "/clients", Some(body.clone())).await;
        assert_eq!(status, 409, "{body} -> {resp}");
        assert_error_body(&resp, &headers, 409, "conflict");
        assert_eq!(resp["message"], message, "{body}");
    }
    // The same for a change: PATCH to a key that another process's client holds.
    let body = json!({"client_id": "mine", "capacity": 1, "rate_per_sec": 1});
    assert_eq!(send(&gw, "POST", "/clients", Some(body)).await.0, 201);
    let (status, _, resp) = send(&gw, "PATCH", "/clients/mine", Some(json!({"api_key": key}))).await;
    assert_eq!(status, 409, "{resp}");
    assert_eq!(resp["message"], "api_key: is taken by another client");
    assert!(db
        .client_row("mine")
        .is_some_and(|r| r.api_key_hash != hex_sha256(key)));
}
both_databases!(a_conflict_the_database_finds_names_the_field_in_plain_words);
