//! Request targets: no path leaves a backend's prefix; CONNECT, `OPTIONS *` and the absolute
//! form are handled as RFC 9110/9112 say (issue 6, defect 5).

use serde_json::Value;

use crate::helpers::*;

/// Status line and JSON body of a raw request's answer.
fn raw_json(port: u16, request: &str) -> (String, String, Value) {
    let resp = raw_request(port, request);
    let status = resp.lines().next().unwrap_or("").to_string();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (
        status,
        head.to_ascii_lowercase(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
}

/// Paths the backend saw below its prefix (health checks of `/v2/` left out).
fn seen_paths(b: &TestBackend) -> Vec<String> {
    b.seen()
        .into_iter()
        .map(|s| s.path)
        .filter(|p| p != "/v2/")
        .collect()
}

// Failed before the fix: the backend saw /v2/../admin, /v2/a/../../admin, /v2/%2e%2e/admin.
#[actix_web::test]
async fn dot_segments_never_leave_the_backend_prefix() {
    let b = TestBackend::start("b");
    let gw = spawn_gateway(&[format!("{}/v2", b.url())], &[]).await;
    for path in [
        "/../admin",
        "/a/../../admin",
        "/%2e%2e/admin",
        "/.%2E/admin",
        "/x/./y/../../admin",
    ] {
        let (status, _, body) = raw_json(gw.port, &get(path));
        assert!(status.contains(" 200 "), "{path}: {status}");
        assert_eq!(body["path"], "/v2/admin", "{path}");
    }
    assert_eq!(seen_paths(&b), vec!["/v2/admin"; 5]);
}

// Failed before the fix: `/..%2fadmin` went to the backend raw.
#[actix_web::test]
async fn dot_segments_hidden_behind_encoded_slashes_are_refused() {
    let b = TestBackend::start("b");
    let gw = spawn_gateway(&[format!("{}/v2", b.url())], &[]).await;
    // `..;` is resolved by Tomcat, Jetty and Spring; `%252e` by anything decoding twice.
    for path in [
        "/..%2fadmin",
        "/%2e%2e%2Fadmin",
        "/a/..%5c..%5cadmin",
        "/..;/admin",
        "/%252e%252e/admin",
        "/a%00b",
    ] {
        let (status, head, body) = raw_json(gw.port, &get(path));
        assert!(status.contains(" 400 "), "{path}: {status}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert_eq!(body["error"], "bad_request_target", "{path}: {body}");
        assert_eq!(body["code"], 400);
    }
    // Encoded slashes that hide no dot segment are an ordinary part of some APIs.
    let (status, _, body) = raw_json(gw.port, &get("/projects/group%2Fname"));
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(body["path"], "/v2/projects/group%2Fname");
    assert_eq!(seen_paths(&b), vec!["/v2/projects/group%2Fname"]);
}

// Failed before the fix: CONNECT was forwarded as `CONNECT /`.
#[actix_web::test]
async fn connect_is_refused_with_405() {
    let b = TestBackend::start("b");
    let gw = spawn_gateway(&[b.url()], &[]).await;
    let (status, head, body) = raw_json(
        gw.port,
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nConnection: close\r\n\r\n",
    );
    assert!(status.contains(" 405 "), "{status}");
    assert!(
        head.contains("\r\nallow: get, head, post, put, delete, patch, options"),
        "{head}"
    );
    assert_eq!(body["error"], "method_not_allowed", "{body}");
    assert!(b.proxied().is_empty());
}

// Failed before the fix: `OPTIONS *` reached a prefixed backend as `/v2*`.
#[actix_web::test]
async fn options_asterisk_is_answered_by_the_gateway() {
    let b = TestBackend::start("b");
    let gw = spawn_gateway(&[format!("{}/v2", b.url())], &[]).await;
    let resp = raw_request(
        gw.port,
        "OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 204"), "{resp}");
    assert!(
        resp.to_ascii_lowercase().contains("\r\nallow: get, head, post"),
        "{resp}"
    );
    assert!(seen_paths(&b).is_empty(), "{:?}", seen_paths(&b));
    let (status, _, body) = raw_json(gw.port, "GET * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert!(status.contains(" 400 "), "{status}");
    assert_eq!(body["error"], "bad_request_target");
}

// Failed before the fix: the backend got the client's `Host: other`.
#[actix_web::test]
async fn absolute_form_target_sets_the_host() {
    let b = TestBackend::start("b");
    let gw = spawn_gateway(&[format!("{}/v2", b.url())], &[]).await;
    let (status, _, body) = raw_json(
        gw.port,
        "GET http://user:secret@api.example:9999/x?q=1 HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n",
    );
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(body["path"], "/v2/x");
    let seen = b.proxied().into_iter().find(|s| s.path == "/v2/x").unwrap();
    assert_eq!(seen.headers["host"], vec!["api.example:9999"]);
    assert_eq!(seen.headers["x-forwarded-host"], vec!["api.example:9999"]);
}
