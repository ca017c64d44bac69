//! Backends managed at run time on one instance: added, re-weighted, disabled and deleted
//! through the admin API, validated, persisted (a restart keeps them; `TOLLGATE_BACKENDS`
//! replaces them). Several instances: `backends_cluster`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

/// An admin call on the admin listener at `admin`: status, headers and JSON body (or Null).
pub(crate) async fn call(
    admin: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, awc::http::header::HeaderMap, Value) {
    let req = client().request(method.parse().unwrap(), format!("{admin}{path}"));
    let mut resp = match body {
        Some(b) => req.send_json(&b).await.unwrap(),
        None => req.send().await.unwrap(),
    };
    let body = resp.body().await.unwrap();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (resp.status().as_u16(), resp.headers().clone(), json)
}

/// The admin base URL of a gateway (in-process or child process).
pub(crate) fn admin_of(admin_port: u16) -> String {
    format!("http://127.0.0.1:{admin_port}")
}

pub(crate) async fn listed(admin: &str) -> Vec<Value> {
    let (status, _, body) = call(admin, "GET", "/backends", None).await;
    assert_eq!(status, 200, "{body}");
    body["backends"].as_array().unwrap().clone()
}

pub(crate) async fn entry(admin: &str, url: &str) -> Option<Value> {
    listed(admin).await.into_iter().find(|b| b["url"] == url)
}

/// One proxied GET: the status and the name of the backend that answered (None on failure).
pub(crate) async fn proxied(port: u16) -> (u16, Option<String>) {
    match client().get(format!("http://127.0.0.1:{port}/live")).send().await {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let body: Option<Value> = r.json().await.ok();
            (
                status,
                body.and_then(|b| b["backend"].as_str().map(str::to_string)),
            )
        }
        Err(_) => (0, None),
    }
}

#[actix_web::test]
async fn a_backend_is_added_reweighted_disabled_and_deleted_at_run_time() {
    let first = TestBackend::start("first");
    let added = TestBackend::start("added");
    let gw = spawn_gateway(&[first.url()], &["--health-interval", "1h"]).await;
    let admin = admin_of(gw.admin_port);

    let start = listed(&admin).await;
    assert_eq!(start.len(), 1);
    let first_id = start[0]["id"].as_str().unwrap().to_string();
    assert!(first_id.starts_with("b-"), "{first_id}");
    assert_eq!(
        (&start[0]["url"], &start[0]["enabled"], &start[0]["state"]),
        (&json!(first.url()), &json!(true), &json!("healthy"))
    );

    let (status, headers, body) = call(&admin, "POST", "/backends", Some(json!({"url": added.url()}))).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("b-") && id != first_id, "{body}");
    assert_eq!(headers.get("location").unwrap(), &format!("/backends/{id}"));
    assert_eq!(
        (&body["url"], &body["weight"], &body["enabled"]),
        (&json!(added.url()), &json!(1), &json!(true))
    );
    let (status, _, one) = call(&admin, "GET", &format!("/backends/{id}"), None).await;
    assert_eq!((status, &one["id"]), (200, &json!(id)));

    // Routed once its first check passed.
    eventually(
        "the added backend takes traffic",
        Duration::from_secs(5),
        || async { proxied(gw.port).await.1.as_deref() == Some("added") },
    )
    .await;

    // Weight 3 against 1: exactly 3 of every 4 requests.
    let (status, _, body) = call(
        &admin,
        "PATCH",
        &format!("/backends/{id}"),
        Some(json!({"weight": 3})),
    )
    .await;
    assert_eq!((status, &body["weight"]), (200, &json!(3)), "{body}");
    let before = (first.hits(), added.hits());
    for _ in 0..40 {
        assert_eq!(proxied(gw.port).await.0, 200);
    }
    assert_eq!((first.hits() - before.0, added.hits() - before.1), (10, 30));

    // Disabled: listed, no traffic.
    let (status, _, body) = call(
        &admin,
        "PATCH",
        &format!("/backends/{id}"),
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(
        (status, &body["enabled"], &body["state"]),
        (200, &json!(false), &json!("disabled")),
        "{body}"
    );
    let hits = added.hits();
    for _ in 0..20 {
        assert_eq!(proxied(gw.port).await, (200, Some("first".to_string())));
    }
    assert_eq!(added.hits(), hits);
    let (status, _, body) = call(
        &admin,
        "PATCH",
        &format!("/backends/{id}"),
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!((status, &body["state"]), (200, &json!("healthy")), "{body}");
    eventually("traffic again once enabled", Duration::from_secs(5), || async {
        proxied(gw.port).await.1.as_deref() == Some("added")
    })
    .await;

    // Deleted: 204, gone once idle, no traffic after.
    let (status, _, _) = call(&admin, "DELETE", &format!("/backends/{id}"), None).await;
    assert_eq!(status, 204);
    eventually("deleted backend unlisted", Duration::from_secs(5), || async {
        entry(&admin, &added.url()).await.is_none()
    })
    .await;
    let hits = added.hits();
    for _ in 0..20 {
        assert_eq!(proxied(gw.port).await, (200, Some("first".to_string())));
    }
    assert_eq!(added.hits(), hits);
    let (status, headers, body) = call(&admin, "DELETE", &format!("/backends/{id}"), None).await;
    assert_error_body(&body, &headers, 404, "not_found");
    assert_eq!(status, 404);

    // The same URL again is a new backend.
    let (status, _, body) = call(&admin, "POST", "/backends", Some(json!({"url": added.url()}))).await;
    assert_eq!(status, 201, "{body}");
    assert_ne!(body["id"], json!(id));
}

#[actix_web::test]
async fn backend_writes_are_validated_with_json_errors() {
    let first = TestBackend::start("first");
    let gw = spawn_gateway(&[first.url()], &[]).await;
    let admin = admin_of(gw.admin_port);
    let cases: Vec<(&str, &str, Value, u16, &str, &str)> = vec![
        // method, path, body, status, error, field named first in the message
        (
            "POST",
            "/backends",
            json!({"url": "ftp://x:1"}),
            422,
            "validation_failed",
            "url",
        ),
        (
            "POST",
            "/backends",
            json!({"url": "http://u:p@x:1"}),
            422,
            "validation_failed",
            "url",
        ),
        (
            "POST",
            "/backends",
            json!({"url": "http://x:1", "weight": 0}),
            422,
            "validation_failed",
            "weight",
        ),
        (
            "POST",
            "/backends",
            json!({"url": "http://x:1", "weight": 1001}),
            422,
            "validation_failed",
            "weight",
        ),
        (
            "POST",
            "/backends",
            json!({"url": "http://x:1", "weight": -1}),
            422,
            "validation_failed",
            "weight",
        ),
        (
            "POST",
            "/backends",
            json!({"url": "http://x:1", "weight": null}),
            422,
            "validation_failed",
            "weight",
        ),
        (
            "POST",
            "/backends",
            json!({"url": "http://x:1", "colour": "red"}),
            422,
            "validation_failed",
            "colour",
        ),
        (
            "POST",
            "/backends",
            json!({"weight": 2}),
            422,
            "validation_failed",
            "url",
        ),
        (
            "POST",
            "/backends",
            json!({"url": first.url()}),
            409,
            "conflict",
            "url",
        ),
        (
            "POST",
            "/backends",
            json!({"url": format!("{}/", first.url())}),
            409,
            "conflict",
            "url",
        ),
        (
            "PATCH",
            "/backends/b-nope",
            json!({"weight": 2}),
            404,
            "not_found",
            "no backend",
        ),
        (
            "DELETE",
            "/backends/b-nope",
            Value::Null,
            404,
            "not_found",
            "no backend",
        ),
        (
            "GET",
            "/backends/b-nope",
            Value::Null,
            404,
            "not_found",
            "no backend",
        ),
    ];
    for (method, path, body, status, error, field) in cases {
        let sent = (!body.is_null()).then(|| body.clone());
        let (got, headers, answer) = call(&admin, method, path, sent).await;
        assert_eq!(got, status, "{method} {path} {body}: {answer}");
        assert_error_body(&answer, &headers, status, error);
        let message = answer["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{method} {path} {body}: {message}");
    }
    let id = listed(&admin).await[0]["id"].as_str().unwrap().to_string();
    let path = format!("/backends/{id}");
    for (body, field) in [
        (json!({}), "body"),
        (json!({"weight": 0}), "weight"),
        (json!({"url": "http://y:1"}), "url"),
        (json!({"enabled": "no"}), "enabled"),
    ] {
        let (got, headers, answer) = call(&admin, "PATCH", &path, Some(body.clone())).await;
        assert_error_body(&answer, &headers, 422, "validation_failed");
        assert_eq!(got, 422);
        assert!(
            answer["message"].as_str().unwrap().starts_with(field),
            "{body}: {answer}"
        );
    }
    // Repeated keys are refused, not read as the last one.
    let mut resp = client()
        .post(format!("{admin}/backends"))
        .insert_header(("content-type", "application/json"))
        .send_body(r#"{"url": "http://x:1", "url": "http://y:1"}"#)
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    let answer: Value = resp.json().await.unwrap();
    assert!(answer["message"].as_str().unwrap().starts_with("url"), "{answer}");
    // Nothing was added by any of them.
    assert_eq!(listed(&admin).await.len(), 1);
}

#[actix_web::test]
async fn the_stored_list_survives_a_restart_and_a_named_list_replaces_it() {
    let db = TestDb::sqlite();
    let (a, b, c) = (
        TestBackend::start("a"),
        TestBackend::start("b"),
        TestBackend::start("c"),
    );
    let ids = |list: &[Value]| -> Vec<(String, String)> {
        list.iter()
            .map(|e| {
                (
                    e["url"].as_str().unwrap().to_string(),
                    e["id"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };

    let gw = GatewayProcess::builder()
        .backends(&[a.url()])
        .database_url(&db.url())
        .spawn();
    gw.wait_ready().await;
    let admin = admin_of(gw.admin_port);
    let (status, _, body) = call(
        &admin,
        "POST",
        "/backends",
        Some(json!({"url": b.url(), "weight": 2})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let before = ids(&listed(&admin).await);
    assert_eq!(before.len(), 2);
    drop(gw);

    // No list named: the stored one, ids and weights kept.
    let gw = GatewayProcess::builder().database_url(&db.url()).spawn();
    gw.wait_ready().await;
    let admin = admin_of(gw.admin_port);
    let now = listed(&admin).await;
    assert_eq!(ids(&now), before);
    assert_eq!(now[1]["weight"], 2);
    eventually(
        "traffic to the stored backends",
        Duration::from_secs(5),
        || async { proxied(gw.port).await.1.as_deref() == Some("b") },
    )
    .await;
    drop(gw);

    // A named list replaces it: a keeps its id, b goes, c comes.
    let named = |list: &[String]| {
        GatewayProcess::builder()
            .backends(list)
            .database_url(&db.url())
            .capture_stderr()
            .spawn()
    };
    let gw = named(&[a.url(), c.url()]);
    gw.wait_ready().await;
    let admin = admin_of(gw.admin_port);
    let now = ids(&listed(&admin).await);
    assert_eq!(now.len(), 2, "{now:?}");
    assert_eq!(now[0], before[0]);
    assert_eq!(now[1].0, c.url());
    gw.wait_log_line("the replacement logged", |l| {
        l.contains("TOLLGATE_BACKENDS replaces the stored backend list") && l.contains("1 added")
    })
    .await;
    drop(gw);

    // The same list again writes nothing and keeps every id.
    let gw = named(&[a.url(), c.url()]);
    gw.wait_ready().await;
    assert_eq!(ids(&listed(&admin_of(gw.admin_port)).await), now);
    gw.wait_log_line("no-op logged", |l| l.contains("unchanged"))
        .await;
}

#[actix_web::test]
async fn a_gateway_starts_with_no_backend_and_answers_503_until_one_is_added() {
    let backend = TestBackend::start("late");
    let gw = GatewayProcess::builder()
        .args(&["--rate-limit", "false"])
        .capture_stderr()
        .spawn();
    gw.wait_ready().await;
    gw.wait_log_line("empty list warned", |l| l.contains("no backend is configured"))
        .await;
    let mut resp = client().get(gw.url("/x")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "no_healthy_backend", "{body}");
    let admin = admin_of(gw.admin_port);
    let (status, _, _) = call(&admin, "POST", "/backends", Some(json!({"url": backend.url()}))).await;
    assert_eq!(status, 201);
    eventually("the added backend answers", Duration::from_secs(5), || async {
        proxied(gw.port).await == (200, Some("late".to_string()))
    })
    .await;
}

/// A `--demo` run against a database with a stored backend list routes to its own demo
/// backends only and leaves the stored list as it was (it would otherwise replace it, and so
/// drain it on every instance sharing the database).
#[actix_web::test]
async fn a_demo_run_leaves_the_stored_backend_list_alone() {
    let db = TestDb::sqlite();
    let stored = TestBackend::start("stored");
    let gw = GatewayProcess::builder()
        .backends(&[stored.url()])
        .database_url(&db.url())
        .spawn();
    gw.wait_ready().await;
    let before = listed(&admin_of(gw.admin_port)).await;
    assert_eq!(before.len(), 1);
    drop(gw);

    let demo = GatewayProcess::builder()
        .args(&["--demo"])
        .database_url(&db.url())
        .capture_stderr()
        .spawn();
    demo.wait_ready().await;
    let mut ids: Vec<String> = listed(&admin_of(demo.admin_port))
        .await
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["demo-1", "demo-2", "demo-3"]);
    demo.wait_log_line("the stored list left alone", |l| {
        l.contains("WARN") && l.contains("1 stored backend(s) are left alone")
    })
    .await;
    drop(demo);

    let gw = GatewayProcess::builder().database_url(&db.url()).spawn();
    gw.wait_ready().await;
    let after = listed(&admin_of(gw.admin_port)).await;
    assert_eq!(
        (after.len(), &after[0]["id"], &after[0]["url"]),
        (1, &before[0]["id"], &before[0]["url"]),
        "{after:?}"
    );
    let mut resp = client().get(gw.url("/x")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["backend"], "stored");
}
