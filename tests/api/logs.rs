//! The log formats against a real process: `TOLLGATE_LOG_FORMAT=json` writes one JSON object
//! per line with the access log's fields as keys, and neither format ever holds a secret (the
//! admin token, the database password, a client's API key).

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

const TOKEN: &str = "admin-token-s3cret-4711-abcdef";
const PASSWORD: &str = "db-passw0rd-s3cret";
const API_KEY: &str = "client-key-s3cret-0123456789";

/// Runs a gateway in `format` through a short life (a client created, proxied requests with
/// its key, a wrong key, an admin request without the token, a graceful stop) and returns
/// everything it wrote to stderr.
async fn a_life_in(format: &str) -> String {
    let db = TestDb::postgres();
    let TestDb::Postgres(name) = &db else {
        unreachable!()
    };
    // PostgreSQL trusts local connections here: the password is accepted and ignored, but the
    // gateway has it in its settings all the same.
    let url = format!("postgres://postgres:{PASSWORD}@127.0.0.1:5432/{name}");
    let backend = TestBackend::start("a");
    let mut gw = GatewayProcess::builder()
        .backends(&[backend.url()])
        .database_url(&url)
        .env("TOLLGATE_ADMIN_TOKEN", TOKEN)
        .env("TOLLGATE_LOG_FORMAT", format)
        .capture_stderr()
        .spawn();
    gw.wait_ready().await;
    let c = client();
    let bearer = format!("Bearer {TOKEN}");
    let created = c
        .post(gw.admin_url("/clients"))
        .insert_header(("authorization", bearer.as_str()))
        .send_json(&json!({"client_id": "logged", "capacity": 5, "rate_per_sec": 1, "api_key": API_KEY}))
        .await
        .unwrap()
        .status();
    assert_eq!(created, 201);
    for (key, want) in [(API_KEY, 200), ("wrong-key-s3cret-000000000", 401)] {
        let mut r = c
            .get(gw.url("/logs/x?secret=q"))
            .insert_header(("x-api-key", key))
            .send()
            .await
            .unwrap();
        let _ = r.body().await;
        assert_eq!(r.status(), want);
    }
    let status = c.get(gw.admin_url("/clients")).send().await.unwrap().status();
    assert_eq!(status, 401);
    // The access line is written when the body is done: wait for it before stopping.
    let access = gw
        .wait_log_line("the access line", |l| {
            l.contains("tollgate::access") && l.contains("/logs/x")
        })
        .await;
    assert!(!access.is_empty());
    gw.signal("-TERM");
    assert!(gw.wait_exit(Duration::from_secs(15)).await.success());
    gw.stderr()
}

fn assert_no_secret(log: &str) {
    for secret in [TOKEN, PASSWORD, API_KEY, "wrong-key-s3cret", "secret=q"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

#[actix_web::test]
async fn json_logs_are_one_object_per_line_with_the_access_fields_as_keys() {
    let log = a_life_in("json").await;
    assert_no_secret(&log);
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 5, "{log}");
    for line in &lines {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(line[key].is_string(), "{key} missing: {line}");
        }
    }
    let access: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "tollgate::access" && l["path"] == "/logs/x")
        .collect();
    assert_eq!(access.len(), 2, "one access record per proxied request: {log}");
    let ok = access
        .iter()
        .find(|l| l["status"] == 200)
        .expect("the admitted request");
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["client"], "127.0.0.1");
    assert!(ok["backend"].as_str().unwrap().starts_with("http://127.0.0.1:"));
    assert!(ok["duration_us"].is_u64() && ok["bytes"].is_u64(), "{ok}");
    assert_eq!(ok["request_id"].as_str().unwrap().len(), 32, "{ok}");
    let refused = access.iter().find(|l| l["status"] == 401).expect("the wrong key");
    assert_eq!(refused["backend"], "-");
    // The configuration line is there, its secrets redacted.
    assert!(
        lines
            .iter()
            .any(|l| l["message"].as_str().unwrap().contains("admin_token=(set)")),
        "{log}"
    );
}

#[actix_web::test]
async fn text_logs_hold_no_secret_either() {
    let log = a_life_in("text").await;
    assert_no_secret(&log);
    assert!(log.contains("tollgate::access"), "{log}");
    assert!(serde_json::from_str::<Value>(log.lines().next().unwrap_or("")).is_err());
}
