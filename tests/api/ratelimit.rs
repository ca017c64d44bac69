//! Rate limiting end to end: exactness under concurrency, spoofing, persistence, outages.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::{both_databases, helpers::*};

async fn create(client: &awc::Client, admin: String, body: Value) -> u16 {
    client
        .post(admin)
        .send_json(&body)
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn exactly_the_bound_under_64_connections(db: TestDb) {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway_db(&[backend.url()], &["--rate-limit", "true"], &db.url()).await;
    let key = "concurrency-key-0123456789";
    let body = json!({"client_id": "hot", "capacity": 50, "rate_per_sec": 0.001, "api_key": key});
    assert_eq!(create(&gw.client, gw.admin_url("/clients"), body).await, 201);

    // 64 connections at once, 4 requests each: 256 requests for 50 tokens (and 0.001/s refill).
    let tasks = (0..64).map(|_| {
        let url = gw.url("/hot");
        async move {
            let c = client();
            let mut statuses = Vec::new();
            for _ in 0..4 {
                statuses.push(
                    c.get(&url)
                        .insert_header(("x-api-key", key))
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16(),
                );
            }
            statuses
        }
    });
    let statuses: Vec<u16> = join_all(tasks).await.into_iter().flatten().collect();
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let limited = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!((ok, limited), (50, 206), "{statuses:?}");
    assert_eq!(backend.proxied().len(), 50);
    let mut resp = gw.client.get(gw.admin_url("/clients/hot")).send().await.unwrap();
    let view: Value = resp.json().await.unwrap();
    assert_eq!(
        (view["admitted"].as_u64(), view["refused"].as_u64()),
        (Some(50), Some(206))
    );
}
both_databases!(exactly_the_bound_under_64_connections);

async fn a_spoofed_forwarded_for_buys_no_tokens(db: TestDb) {
    let backend = TestBackend::start("a");
    let flags = [
        "--rate-limit",
        "true",
        "--default-capacity",
        "5",
        "--default-rate",
        "0.001",
    ];
    let gw = spawn_gateway_db(&[backend.url()], &flags, &db.url()).await;
    let mut ok = 0;
    for i in 0..20 {
        let resp = gw
            .client
            .get(gw.url("/s"))
            .insert_header(("x-forwarded-for", format!("198.51.100.{i}")))
            .send()
            .await
            .unwrap();
        ok += usize::from(resp.status() == 200);
    }
    assert_eq!(
        ok, 5,
        "an untrusted peer's X-Forwarded-For must not pick the bucket"
    );

    // Behind a trusted proxy, the forwarded address is the client: each gets its own bucket.
    let db2 = TestDb::sqlite();
    let mut trusted = flags.to_vec();
    trusted.extend_from_slice(&["--trusted-proxies", "127.0.0.1/32"]);
    let gw = spawn_gateway_db(&[backend.url()], &trusted, &db2.url()).await;
    for i in 0..20 {
        let resp = gw
            .client
            .get(gw.url("/t"))
            .insert_header(("x-forwarded-for", format!("198.51.100.{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = gw
            .client
            .get(gw.url("/t"))
            .insert_header(("x-forwarded-for", "6.6.6.6, 198.51.100.77"))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, vec![200, 200, 200, 200, 200, 429]);
}
both_databases!(a_spoofed_forwarded_for_buys_no_tokens);

async fn clients_and_buckets_survive_a_graceful_restart(db: TestDb) {
    let backend = TestBackend::start("a");
    // Write-behind far apart: what survives was written by the shutdown flush.
    let flags = [
        "--rate-limit",
        "true",
        "--health-interval",
        "1h",
        "--flush-interval",
        "1h",
    ];
    let mut gw = GatewayProcess::builder()
        .backends(&[backend.url()])
        .args(&flags)
        .database_url(&db.url())
        .capture_stderr()
        .spawn();
    gw.wait_ready().await;
    let c = client();
    let key = "restart-key-0123456789abc";
    let body =
        json!({"client_id": "keep", "capacity": 10, "rate_per_sec": 0.001, "api_key": key, "name": "Before"});
    assert_eq!(create(&c, gw.admin_url("/clients"), body).await, 201);
    // A change that leaves the key alone must leave its stored hash alone (memory keeps only
    // part of it).
    let patched = c
        .patch(gw.admin_url("/clients/keep"))
        .send_json(&json!({"name": "Kept"}))
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    for _ in 0..4 {
        assert_eq!(
            c.get(gw.url("/r"))
                .insert_header(("x-api-key", key))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    gw.signal("-TERM");
    let status = gw.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", gw.stderr());

    let row = db.client_row("keep").unwrap();
    assert_eq!((row.admitted, row.refused), (4, 0));
    assert_eq!(row.api_key_hash, crate::clients::hex_sha256(key));
    assert_eq!(row.name.as_deref(), Some("Kept"));
    let tokens = row.bucket_level.unwrap() as f64 / 1e12;
    assert!((6.0..6.1).contains(&tokens), "stored {tokens} tokens");

    let gw = GatewayProcess::spawn_db(&[backend.url()], &flags, &db.url());
    gw.wait_ready().await;
    let mut resp = c.get(gw.admin_url("/clients/keep")).send().await.unwrap();
    let view: Value = resp.json().await.unwrap();
    assert_eq!(
        (view["tokens"].as_u64(), view["admitted"].as_u64()),
        (Some(6), Some(4)),
        "{view}"
    );
    assert_eq!(view["name"], "Kept");
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(
            c.get(gw.url("/r"))
                .insert_header(("x-api-key", key))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(
        statuses,
        vec![200, 200, 200, 200, 200, 200, 429],
        "the restart reset or tightened the limit"
    );
}
both_databases!(clients_and_buckets_survive_a_graceful_restart);

#[actix_web::test]
async fn a_database_outage_keeps_the_proxy_serving_and_admin_writes_answer_503() {
    let db = TestDb::postgres();
    let relay = Relay::to_postgres();
    let backend = TestBackend::start("a");
    let flags = [
        "--rate-limit",
        "true",
        "--db-timeout",
        "500ms",
        "--flush-interval",
        "100ms",
    ];
    let gw = spawn_gateway_db(&[backend.url()], &flags, &db.url_via(relay.port)).await;
    let key = "outage-key-0123456789abcd";
    let body = json!({"client_id": "before", "capacity": 1000, "rate_per_sec": 1, "api_key": key});
    assert_eq!(create(&gw.client, gw.admin_url("/clients"), body).await, 201);

    relay.cut();
    for _ in 0..20 {
        let resp = gw
            .client
            .get(gw.url("/o"))
            .insert_header(("x-api-key", key))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "the proxy must go on from memory");
    }
    let mut resp = gw
        .client
        .post(gw.admin_url("/clients"))
        .send_json(&json!({"client_id": "during", "capacity": 1, "rate_per_sec": 1}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let h = resp.headers().clone();
    let body: Value = resp.json().await.unwrap();
    assert_error_body(&body, &h, 503, "database_unavailable");
    let resp = gw
        .client
        .patch(gw.admin_url("/clients/before"))
        .send_json(&json!({"capacity": 1}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    // Memory unchanged: no new client, the old limits still in force.
    assert_eq!(
        gw.client
            .get(gw.admin_url("/clients/during"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let mut resp = gw
        .client
        .get(gw.admin_url("/clients/before"))
        .send()
        .await
        .unwrap();
    let view: Value = resp.json().await.unwrap();
    assert_eq!(view["capacity"], 1000);

    relay.restore();
    let c = gw.client.clone();
    let url = gw.admin_url("/clients");
    eventually("admin writes recover", Duration::from_secs(10), || {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let r = c
                .post(url)
                .send_json(&json!({"client_id": "after", "capacity": 1, "rate_per_sec": 1}))
                .await;
            matches!(r, Ok(r) if r.status() == 201)
        }
    })
    .await;
    assert!(db.client_row("after").is_some());
    assert!(db.client_row("during").is_none());
    // The write-behind caught up too.
    eventually(
        "bucket counts written behind",
        Duration::from_secs(10),
        || async { db.client_row("before").is_some_and(|r| r.admitted == 20) },
    )
    .await;
}

#[test]
fn an_unreachable_database_at_start_exits_non_zero_naming_it() {
    let nowhere = RefusingPort::new();
    let url = format!("postgres://postgres:hunter2@127.0.0.1:{}/nowhere", nowhere.port());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .current_dir(std::env::temp_dir())
        .args([
            "--backends",
            "http://127.0.0.1:9",
            "--database-url",
            &url,
            "--db-startup-timeout",
            "1s",
        ])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the database postgres://postgres:***@127.0.0.1"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "password leaked: {err}");
}
