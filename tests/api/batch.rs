//! Bulk import (`POST /clients/batch`) and keyset paging (`GET /clients?after=`), on SQLite
//! and PostgreSQL.

use std::{
    cell::Cell,
    collections::HashSet,
    rc::Rc,
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use crate::{both_databases, helpers::*};

async fn gateway(db: &TestDb, backend: &TestBackend) -> TestGateway {
    let flags = ["--rate-limit", "true", "--health-interval", "1h"];
    spawn_gateway_db(&[backend.url()], &flags, &db.url()).await
}

async fn admin(gw: &TestGateway, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let req = gw.client.request(method.parse().unwrap(), gw.admin_url(path));
    let mut resp = match body {
        Some(b) => req.send_json(b).await.unwrap(),
        None => req.send().await.unwrap(),
    };
    let bytes = resp.body().limit(64 << 20).await.unwrap();
    (
        resp.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// `POST /clients/batch`, also checking the error body of a refusal.
async fn batch(gw: &TestGateway, items: &Value) -> (u16, Value) {
    let mut resp = gw
        .client
        .post(gw.admin_url("/clients/batch"))
        .send_json(items)
        .await
        .unwrap();
    let bytes = resp.body().limit(64 << 20).await.unwrap();
    let status = resp.status().as_u16();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if status >= 400 {
        let error = body["error"].as_str().unwrap_or("").to_string();
        assert_error_body(&body, resp.headers(), status, &error);
    }
    (status, body)
}

fn count(db: &TestDb, query: &str) -> i64 {
    use diesel::{prelude::*, sql_types::BigInt};
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    diesel::sql_query(query)
        .get_result::<Count>(&mut db.connect())
        .unwrap()
        .n
}

fn stored_clients(db: &TestDb) -> i64 {
    count(db, "SELECT COUNT(*) AS n FROM clients")
}

/// Change-log rows, one per client written (other instances learn the batch from them).
fn stored_changes(db: &TestDb) -> i64 {
    count(
        db,
        "SELECT COUNT(DISTINCT entity_id) AS n FROM changes WHERE entity = 'client' AND op = 'upsert'",
    )
}

fn item(id: &str) -> Value {
    json!({"client_id": id, "capacity": 5, "rate_per_sec": 1})
}

async fn ten_thousand_clients_in_one_request(db: TestDb) {
    let backend = TestBackend::start("a");
    let gw = gateway(&db, &backend).await;
    let mut items: Vec<Value> = (0..10_000).map(|i| item(&format!("bulk{i:05}"))).collect();
    items[7] = json!({"client_id": "bulk00007", "capacity": 9, "rate_per_sec": 2.5,
        "api_key": "given-key-0123456789abcdef", "ips": ["10.7.0.0/16"], "name": "Seventh"});
    let started = Instant::now();
    let (status, body) = batch(&gw, &Value::Array(items)).await;
    let took = started.elapsed();
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["created"], 10_000);
    let created = body["clients"].as_array().unwrap();
    assert_eq!(created.len(), 10_000);
    for (i, c) in created.iter().enumerate() {
        assert_eq!(c["client_id"], format!("bulk{i:05}"), "in request order");
        assert!(c["api_key"].as_str().is_some_and(|k| k.len() >= 16), "{c}");
    }
    assert_eq!(created[7]["api_key"], "given-key-0123456789abcdef");
    assert_eq!(created[7]["ips"], json!(["10.7.0.0/16"]));
    assert_eq!(stored_clients(&db), 10_000);
    assert_eq!(stored_changes(&db), 10_000);
    assert_eq!(db.client_row("bulk00007").unwrap().capacity, 9);
    assert_eq!(
        admin(&gw, "GET", "/clients?limit=1", None).await.1["total"],
        10_000
    );
    eprintln!("10,000 clients in one batch: {took:?}");

    // The table in memory knows them at once: their keys work through the proxy.
    let key = created[1234]["api_key"].as_str().unwrap();
    let (status, headers, _) = gw.get_with_key("/x", key).await;
    assert_eq!(status, 200);
    assert_eq!(headers.get("ratelimit-policy").unwrap(), "\"default\";q=5;w=5");
    let (status, _, _) = gw.get_with_key("/x", "given-key-0123456789abcdef").await;
    assert_eq!(status, 200);
    let (status, body) = admin(&gw, "GET", "/clients/bulk09999", None).await;
    assert_eq!((status, body["capacity"].as_u64()), (200, Some(5)));

    // A second import of the same ids is refused whole.
    let again: Vec<Value> = (9_990..10_010).map(|i| item(&format!("bulk{i:05}"))).collect();
    let (status, body) = batch(&gw, &Value::Array(again)).await;
    assert_eq!(status, 409, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with("items[0].client_id: client bulk09990 already exists"),
        "{message}"
    );
    assert!(
        message.contains("items[9].client_id: client bulk09999 already exists"),
        "{message}"
    );
    assert!(!message.contains("items[10]"), "{message}");
    assert_eq!(
        stored_clients(&db),
        10_000,
        "nothing of the refused batch was stored"
    );
    assert_eq!(stored_changes(&db), 10_000, "nor any change row");
}
both_databases!(ten_thousand_clients_in_one_request);

async fn a_batch_with_a_bad_item_changes_nothing_and_names_it(db: TestDb) {
    let backend = TestBackend::start("a");
    let gw = gateway(&db, &backend).await;
    let existing = json!({"client_id": "existing", "capacity": 5, "rate_per_sec": 1,
        "ips": ["10.9.0.0/16"], "api_key": "existing-key-0123456789"});
    assert_eq!(admin(&gw, "POST", "/clients", Some(&existing)).await.0, 201);

    // Invalid items: 422 naming each by index and field; nothing stored.
    let mut items: Vec<Value> = (0..50).map(|i| item(&format!("new{i:02}"))).collect();
    items[3]["capacity"] = json!(0);
    items[7]["client_id"] = json!("bad id!");
    items[9] = json!({"client_id": "new09", "capacity": 5, "rate_per_sec": 1, "colour": "red"});
    items[11] = json!(42);
    let (status, body) = batch(&gw, &Value::Array(items)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "validation_failed");
    let message = body["message"].as_str().unwrap();
    assert!(message.starts_with("items[3].capacity: "), "{message}");
    for part in ["; items[7].client_id: ", "; items[9].colour: ", "; items[11]: "] {
        assert!(message.contains(part), "{part} in {message}");
    }
    assert_eq!(stored_clients(&db), 1);

    // Items repeating one another: 422.
    let mut items: Vec<Value> = (0..10).map(|i| item(&format!("dup{i}"))).collect();
    items[5]["client_id"] = json!("dup2");
    items[6]["ips"] = json!(["192.0.2.1"]);
    items[8]["ips"] = json!(["192.0.2.1/32"]);
    let (status, body) = batch(&gw, &Value::Array(items)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["message"],
        "items[5].client_id: repeats items[2]; items[8].ips: repeats items[6]"
    );

    // Items taken by a registered client: 409 naming them; the valid ones are not stored.
    let mut items: Vec<Value> = (0..10).map(|i| item(&format!("ok{i}"))).collect();
    items[4]["client_id"] = json!("existing");
    items[6]["ips"] = json!(["10.9.0.0/16"]);
    items[8]["api_key"] = json!("existing-key-0123456789");
    let (status, body) = batch(&gw, &Value::Array(items)).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["message"],
        "items[4].client_id: client existing already exists; \
         items[6].ips: 10.9.0.0/16 is already registered for client existing; \
         items[8].api_key: this API key belongs to another client"
    );
    assert_eq!(stored_clients(&db), 1);
    assert_eq!(admin(&gw, "GET", "/clients/ok0", None).await.0, 404);

    // The shape of the batch itself.
    let mut resp = gw
        .client
        .post(gw.admin_url("/clients/batch"))
        .insert_header(("content-type", "text/plain"))
        .send_body("not json")
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    let _ = resp.body().await;
    for (body, want) in [
        (
            json!({"client_id": "x"}),
            "body: expected a JSON array of clients",
        ),
        (json!([]), "body: from 1 to 10000 clients per batch, got 0"),
        (
            Value::Array((0..10_001).map(|i| item(&format!("n{i}"))).collect()),
            "body: from 1 to 10000 clients per batch, got 10001",
        ),
    ] {
        let (status, resp) = batch(&gw, &body).await;
        assert_eq!((status, resp["message"].as_str()), (422, Some(want)));
    }
    assert_eq!(stored_clients(&db), 1);
    assert_eq!(admin(&gw, "GET", "/clients", None).await.1["total"], 1);
}
both_databases!(a_batch_with_a_bad_item_changes_nothing_and_names_it);

/// Migrates the database and stores `n` clients `c000001`… with one SQL statement (their key
/// hashes differ in both halves, as SHA-256 digests do).
fn insert_clients_directly(db: &TestDb, n: u32) {
    use diesel::connection::SimpleConnection;
    let url = match db {
        TestDb::Sqlite(path) => tollgate::store::DatabaseUrl::Sqlite(path.display().to_string()),
        TestDb::Postgres(_) => tollgate::store::DatabaseUrl::Postgres(db.url().into()),
    };
    drop(tollgate::store::connect_with_retry(&url, Duration::from_secs(5), Duration::from_secs(5)).unwrap());
    let columns = "client_id, name, api_key_hash, key_prefix, ips, capacity, rate_milli, enabled, \
                   created_at, updated_at, admitted, refused";
    let sql = match db {
        TestDb::Sqlite(_) => format!(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {n}) \
             INSERT INTO clients ({columns}) SELECT printf('c%06d', n), NULL, printf('%032d%032d', n, n), \
             'k', '', 10, 1000, 1, 0, 0, 0, 0 FROM g"
        ),
        TestDb::Postgres(_) => format!(
            "INSERT INTO clients ({columns}) SELECT 'c' || lpad(g::text, 6, '0'), NULL, \
             lpad(g::text, 32, '0') || lpad(g::text, 32, '0'), 'k', '', 10, 1000, TRUE, 0, 0, 0, 0 \
             FROM generate_series(1, {n}) AS g"
        ),
    };
    db.connect().batch_execute(&sql).unwrap();
}

async fn keyset_paging_walks_100000_clients_while_writes_go_on(db: TestDb) {
    const N: u32 = 100_000;
    insert_clients_directly(&db, N);
    let backend = TestBackend::start("a");
    // A process of its own: a write rebuilds the client table (O(n) until the table becomes
    // incremental), and in-process that would stall this test's thread.
    let gw = GatewayProcess::builder()
        .backends(&[backend.url()])
        .args(&["--health-interval", "1h"])
        .database_url(&db.url())
        .spawn();
    gw.wait_ready().await;
    let client = client();
    let get = |path: String| {
        let req = client.get(gw.admin_url(&path));
        async move {
            let mut resp = req.send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 200, "{path}");
            serde_json::from_slice::<Value>(&resp.body().limit(64 << 20).await.unwrap()).unwrap()
        }
    };
    assert_eq!(get("/clients?limit=0".into()).await["total"], N);

    // Other ids created and deleted meanwhile: before, between and after the walked ones.
    let done = Rc::new(Cell::new(false));
    let writes = Rc::new(Cell::new(0u32));
    let writer = {
        let (done, writes) = (done.clone(), writes.clone());
        let client = client.clone();
        let base = gw.admin_url("/clients");
        actix_rt::spawn(async move {
            let mut i = 0u32;
            while !done.get() {
                let id = match i % 3 {
                    0 => format!("a{i}"),
                    1 => format!("c{:06}x", (i * 7_919) % N),
                    _ => format!("z{i}"),
                };
                let body = json!({"client_id": id, "capacity": 1, "rate_per_sec": 1});
                let created = client.post(&base).send_json(&body).await.unwrap();
                assert_eq!(created.status().as_u16(), 201);
                writes.set(writes.get() + 1);
                let deleted = client.delete(format!("{base}/{id}")).send().await.unwrap();
                assert_eq!(deleted.status().as_u16(), 204);
                writes.set(writes.get() + 1);
                i += 1;
            }
        })
    };

    let started = Instant::now();
    let mut seen = HashSet::new();
    let mut walked = Vec::with_capacity(N as usize);
    let mut last = String::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &after {
            Some(a) => format!("/clients?limit=500&after={a}"),
            None => "/clients?limit=500".to_string(),
        };
        let body = get(path).await;
        pages += 1;
        for c in body["clients"].as_array().unwrap() {
            let id = c["client_id"].as_str().unwrap().to_string();
            assert!(id > last, "{id} after {last}: out of order");
            assert!(seen.insert(id.clone()), "{id} seen twice");
            last = id.clone();
            if id.len() == 7 && id.starts_with('c') {
                walked.push(id);
            }
        }
        match body["next_after"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    let during = writes.get();
    done.set(true);
    writer.await.unwrap();
    let expected: Vec<String> = (1..=N).map(|i| format!("c{i:06}")).collect();
    assert!(
        walked == expected,
        "{} walked of {N}: a gap or an extra",
        walked.len()
    );
    assert!(pages >= 200, "{pages} pages");
    assert!(during > 0, "no write ran during the walk");
    eprintln!(
        "walked {N} clients in {pages} pages in {:?} during {during} writes",
        started.elapsed()
    );
}
both_databases!(keyset_paging_walks_100000_clients_while_writes_go_on);

#[actix_web::test]
async fn the_keyset_cursor_is_checked_and_ends_with_null() {
    let db = TestDb::sqlite();
    let backend = TestBackend::start("a");
    let gw = gateway(&db, &backend).await;
    let items: Vec<Value> = ["b", "d", "f"].iter().map(|id| item(id)).collect();
    assert_eq!(batch(&gw, &Value::Array(items)).await.0, 201);
    let ids = |body: &Value| -> Vec<String> {
        body["clients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["client_id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, body) = admin(&gw, "GET", "/clients?limit=2&after=a", None).await;
    assert_eq!(
        (ids(&body), body["next_after"].as_str()),
        (vec!["b".into(), "d".into()], Some("d"))
    );
    assert_eq!(body["after"], "a");
    assert!(body.get("offset").is_none(), "{body}");
    // A cursor need not exist: the page starts after where it would sort.
    let (_, body) = admin(&gw, "GET", "/clients?limit=2&after=c", None).await;
    assert_eq!(
        (ids(&body), &body["next_after"]),
        (vec!["d".into(), "f".into()], &Value::Null)
    );
    let (_, body) = admin(&gw, "GET", "/clients?after=f", None).await;
    assert_eq!((ids(&body).len(), &body["next_after"]), (0, &Value::Null));
    // Offset paging goes on, and tells the cursor of the next page too.
    let (_, body) = admin(&gw, "GET", "/clients?limit=1&offset=1", None).await;
    assert_eq!(
        (ids(&body), body["next_after"].as_str(), &body["offset"]),
        (vec!["d".into()], Some("d"), &json!(1))
    );
    for (path, field) in [
        ("/clients?after=no%20spaces", "after"),
        ("/clients?after=b&offset=1", "offset"),
    ] {
        let (status, body) = admin(&gw, "GET", path, None).await;
        assert_eq!(status, 422, "{path}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{field}: ")),
            "{body}"
        );
    }
}

#[actix_web::test]
async fn a_batch_the_database_does_not_take_answers_503_and_leaves_memory_unchanged() {
    let db = TestDb::postgres();
    let relay = Relay::to_postgres();
    let backend = TestBackend::start("a");
    let flags = [
        "--rate-limit",
        "true",
        "--health-interval",
        "1h",
        "--db-timeout",
        "500ms",
    ];
    let gw = spawn_gateway_db(&[backend.url()], &flags, &db.url_via(relay.port)).await;
    let items: Vec<Value> = (0..100).map(|i| item(&format!("out{i:03}"))).collect();

    relay.cut();
    let (status, body) = batch(&gw, &Value::Array(items.clone())).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "database_unavailable");
    assert_eq!(admin(&gw, "GET", "/clients", None).await.1["total"], 0);
    assert_eq!(admin(&gw, "GET", "/clients/out000", None).await.0, 404);

    relay.restore();
    let created = Rc::new(Cell::new(0));
    eventually(
        "the batch taken once the database is back",
        Duration::from_secs(10),
        || {
            let (gw, items, created) = (&gw, &items, created.clone());
            async move {
                let (status, body) = batch(gw, &Value::Array(items.clone())).await;
                created.set(body["created"].as_u64().unwrap_or(0));
                status == 201
            }
        },
    )
    .await;
    assert_eq!(created.get(), 100);
    assert_eq!(admin(&gw, "GET", "/clients", None).await.1["total"], 100);
    assert_eq!(stored_clients(&db), 100);
}
