//! The admin client API against SQLite and PostgreSQL: CRUD, validation, conflicts, auth.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{both_databases, helpers::*};

pub async fn gateway(db: &TestDb, backend: &TestBackend, extra: &[&str]) -> TestGateway {
    let mut flags = vec!["--rate-limit", "true", "--health-interval", "1h"];
    flags.extend_from_slice(extra);
    spawn_gateway_db(&[backend.url()], &flags, &db.url()).await
}

pub async fn send(
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

pub(crate) fn hex_sha256(s: &str) -> String {
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
        enforce: true,
        generation: 0,
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

/// The key index knows a key by the first half of its SHA-256: a stored key that shares it
/// with a new one (a different hash, so the whole-hash constraint lets it by) would make the
/// two keys find the same client. The database refuses the pair, naming the field.
async fn keys_the_key_index_could_not_tell_apart_are_refused(db: TestDb) {
    use diesel::RunQueryDsl;
    let backend = TestBackend::start("a");
    let gw = gateway(&db, &backend, &[]).await;
    let key = "half-hash-key-0123456789abcdef";
    let mut twin = foreign_row("twin", "another-key-0123456789");
    twin.api_key_hash = format!("{}{}", &hex_sha256(key)[..32], "0".repeat(32));
    assert_ne!(twin.api_key_hash, hex_sha256(key));
    diesel::insert_into(tollgate::store::schema::clients::table)
        .values(&twin)
        .execute(&mut db.connect())
        .unwrap();

    let body = json!({"client_id": "mine", "capacity": 1, "rate_per_sec": 1, "api_key": key});
    let (status, headers, resp) = send(&gw, "POST", "/clients", Some(body)).await;
    assert_eq!(status, 409, "{resp}");
    assert_error_body(&resp, &headers, 409, "conflict");
    assert_eq!(resp["message"], "api_key: is taken by another client");
    assert!(db.client_row("mine").is_none());
}
both_databases!(keys_the_key_index_could_not_tell_apart_are_refused);

/// A change that leaves the key alone leaves the stored key alone, hash and prefix, even when
/// memory's view of it is older than the row (rotated by another instance, not applied here
/// yet: simulated by writing the row directly).
async fn a_change_without_a_key_keeps_the_stored_key(db: TestDb) {
    use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};
    use tollgate::store::schema::clients;
    let backend = TestBackend::start("a");
    let gw = gateway(&db, &backend, &[]).await;
    let body =
        json!({"client_id": "c", "capacity": 1, "rate_per_sec": 1, "api_key": "old-key-0123456789abcdef"});
    assert_eq!(send(&gw, "POST", "/clients", Some(body)).await.0, 201);
    let rotated = "new-key-0123456789abcdef";
    diesel::update(clients::table.find("c"))
        .set((
            clients::api_key_hash.eq(hex_sha256(rotated)),
            clients::key_prefix.eq(&rotated[..8]),
        ))
        .execute(&mut db.connect())
        .unwrap();

    let (status, _, resp) = send(&gw, "PATCH", "/clients/c", Some(json!({"name": "renamed"}))).await;
    assert_eq!(status, 200, "{resp}");
    let row = db.client_row("c").unwrap();
    assert_eq!(
        (
            row.api_key_hash.as_str(),
            row.key_prefix.as_str(),
            row.name.as_deref()
        ),
        (hex_sha256(rotated).as_str(), &rotated[..8], Some("renamed"))
    );
}
both_databases!(a_change_without_a_key_keeps_the_stored_key);

async fn a_block_with_host_bits_is_refused_naming_the_network_it_meant(db: TestDb) {
    let backend = TestBackend::start("a");
    let gw = gateway(&db, &backend, &[]).await;
    for (ips, field, meant) in [
        (json!(["10.0.0.0/8", "1.2.3.4/8"]), "ips[1]", "1.0.0.0/8"),
        (json!(["2001:db8::1/32"]), "ips[0]", "2001:db8::/32"),
    ] {
        let create = json!({"client_id": "h", "capacity": 5, "rate_per_sec": 1, "ips": ips});
        let (status, _, body) = send(&gw, "POST", "/clients", Some(create)).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"], "validation_failed");
        let message = body["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{body}");
        assert!(message.contains(&format!("did you mean {meant}?")), "{body}");
    }
    assert!(db.client_row("h").is_none(), "a refused create left a row");
    let ok = json!({"client_id": "h", "capacity": 5, "rate_per_sec": 1, "ips": ["1.0.0.0/8"]});
    assert_eq!(send(&gw, "POST", "/clients", Some(ok)).await.0, 201);
    let (status, _, body) = send(&gw, "PATCH", "/clients/h", Some(json!({"ips": ["1.2.3.4/8"]}))).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("did you mean 1.0.0.0/8?"),
        "{body}"
    );
    let (_, _, view) = send(&gw, "GET", "/clients/h", None).await;
    assert_eq!(view["ips"], json!(["1.0.0.0/8"]), "{view}");
}
both_databases!(a_block_with_host_bits_is_refused_naming_the_network_it_meant);
