//! What docs/forwarding.md promises about forwarding that the other files do not cover: `Expect`,
//! a broken client body, 204, `Content-Length: 0`, a backend path prefix, readiness.

use std::{
    io::{Read, Write},
    net::IpAddr,
    net::TcpStream,
    time::Duration,
};

use serde_json::Value;

use crate::helpers::*;

/// Reads from `s` until `\r\n\r\n` (one response head) or EOF / timeout.
fn read_head(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[actix_web::test]
async fn expect_100_continue_is_answered_by_the_gateway_and_not_forwarded() {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(&[backend.url()], &["--health-interval", "1h"]).await;
    let port = gw.port;
    let (interim, rest) = actix_rt::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\
              Connection: close\r\n\r\n",
        )
        .unwrap();
        // The client waits for the interim answer before it sends its body.
        let interim = read_head(&mut s);
        s.write_all(b"hello").unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        (interim, String::from_utf8_lossy(&rest).into_owned())
    })
    .await
    .unwrap();
    assert!(interim.starts_with("HTTP/1.1 100 Continue\r\n"), "{interim:?}");
    assert_eq!(raw_status(&rest), 200, "{rest}");
    let body: Value = serde_json::from_str(raw_body(&rest)).unwrap();
    assert_eq!(body["body_bytes"], 5);
    let seen = backend.proxied();
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].headers.contains_key("expect"), "{:?}", seen[0].headers);
}

#[actix_web::test]
async fn a_204_passes_through_and_ends_at_once() {
    // The raw backend closes each connection after its answer, so it says so: otherwise the
    // gateway may reuse the closed connection before it sees the close (a race under load).
    let backend = RawBackend::start(
        Script::new().write("HTTP/1.1 204 No Content\r\nx-backend: raw\r\nconnection: close\r\n\r\n"),
    );
    let gw = spawn_gateway(&[backend.url()], &["--health-interval", "1h"]).await;
    // Two requests on one keep-alive connection of the client: the first ended cleanly.
    for _ in 0..2 {
        let mut resp = gw.client.delete(gw.url("/things/1")).send().await.unwrap();
        assert_eq!(resp.status(), 204);
        assert_eq!(resp.headers().get("x-backend").unwrap(), "raw");
        assert!(resp.headers().get("content-length").is_none());
        assert!(resp.body().await.unwrap().is_empty());
    }
    assert_eq!(backend.received(), 2);
}

#[actix_web::test]
async fn a_post_with_content_length_0_reaches_the_backend_as_such() {
    let backend = RawBackend::start(
        Script::new().write("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"),
    );
    let gw = spawn_gateway(&[backend.url()], &["--health-interval", "1h"]).await;
    let port = gw.port;
    let answer = actix_rt::task::spawn_blocking(move || {
        raw_request(
            port,
            "POST /empty HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
    })
    .await
    .unwrap();
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(raw_body(&answer), "ok");
    let got = backend.requests();
    assert_eq!(got.len(), 1);
    assert!(
        got[0].head.starts_with("POST /empty HTTP/1.1\r\n"),
        "{}",
        got[0].head
    );
    assert_eq!(got[0].header("content-length"), vec!["0"], "{}", got[0].head);
    assert!(got[0].header("transfer-encoding").is_empty(), "{}", got[0].head);
}

#[actix_web::test]
async fn a_backend_path_prefix_is_put_before_the_request_path() {
    let backend = TestBackend::start("v2");
    let gw = spawn_gateway(&[format!("{}/v2", backend.url())], &["--health-interval", "1h"]).await;
    let mut resp = gw.client.get(gw.url("/x/y?q=1&r=2")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["path"], "/v2/x/y");
    let seen: Vec<Seen> = backend
        .seen()
        .into_iter()
        .filter(|s| s.path.starts_with("/v2/x"))
        .collect();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v2/x/y");
    assert_eq!(seen[0].query, "q=1&r=2");
}

#[actix_web::test]
async fn readyz_says_not_ready_until_the_first_health_round_is_done() {
    // Health checks hang until their timeout: the first round takes 2 s.
    let backend = RawBackend::start(
        Script::new()
            .sleep(Duration::from_secs(30))
            .on_health_checks_too(),
    );
    let gw = spawn_gateway_unready(
        &[backend.url()],
        &["--health-timeout", "2s", "--health-interval", "1h"],
    )
    .await;
    let mut resp = gw.client.get(gw.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers().get("content-type").unwrap(), "application/json");
    let body: Value = resp.json().await.unwrap();
    assert_error_body(&body, resp.headers(), 503, "not_ready");
    // The liveness probe answers meanwhile.
    let health = gw.client.get(gw.admin_url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    // Once the (failed) first round is done, ready.
    eventually("ready after the first round", Duration::from_secs(10), || async {
        matches!(gw.client.get(gw.admin_url("/readyz")).send().await, Ok(r) if r.status() == 200)
    })
    .await;
}

#[actix_web::test]
async fn a_body_cut_short_by_the_client_gets_400_bad_request_body() {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(&[backend.url()], &["--health-interval", "1h"]).await;
    let port = gw.port;
    let answer = actix_rt::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b")
            .unwrap();
        // The client stops sending (half-close) but still reads the answer.
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .unwrap();
    assert_eq!(raw_status(&answer), 400, "{answer:?}");
    let body: Value = serde_json::from_str(raw_body(&answer)).unwrap_or(Value::Null);
    assert_eq!(body["code"], 400, "{answer}");
    assert_eq!(body["error"], "bad_request_body", "{answer}");
    assert_eq!(
        raw_header(&answer, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        body["request_id"].as_str(),
        raw_header(&answer, "x-request-id").as_deref(),
        "{answer}"
    );
}

// Issue 6, defect 9: failed before the fix (the connection was closed without a byte). The
// body is now read before any backend is contacted, so its framing error is the gateway's to
// answer.
#[actix_web::test]
async fn a_broken_chunked_body_gets_400_bad_request_body() {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(&[backend.url()], &["--health-interval", "1h"]).await;
    let port = gw.port;
    let answer = actix_rt::task::spawn_blocking(move || {
        raw_request(
            port,
            "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
             5\r\nhello\r\nzz\r\nnot a chunk\r\n0\r\n\r\n",
        )
    })
    .await
    .unwrap();
    assert_eq!(raw_status(&answer), 400, "{answer:?}");
    let body: Value = serde_json::from_str(raw_body(&answer)).unwrap_or(Value::Null);
    assert_eq!(body["code"], 400, "{answer}");
    assert_eq!(body["error"], "bad_request_body", "{answer}");
    assert_eq!(
        body["request_id"].as_str(),
        raw_header(&answer, "x-request-id").as_deref(),
        "{answer}"
    );
    assert_eq!(backend.arrived(), 0);
}

#[actix_web::test]
async fn expect_100_continue_over_the_body_limit_gets_413_at_once() {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(
        &[backend.url()],
        &["--health-interval", "1h", "--max-body-size", "1KiB"],
    )
    .await;
    let port = gw.port;
    let head = actix_rt::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap();
        // The client sends nothing more until it is told to go on: the first answer is final.
        let head = read_head(&mut s);
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        format!("{head}{}", String::from_utf8_lossy(&rest))
    })
    .await
    .unwrap();
    assert_eq!(raw_status(&head), 413, "{head}");
    let body: Value = serde_json::from_str(raw_body(&head)).unwrap();
    assert_eq!(body["error"], "body_too_large", "{body}");
    assert!(
        body["request_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{body}"
    );
    assert!(backend.proxied().is_empty());
}

/// A request from `from` naming forwarding headers of its own, some of them in `Connection`.
async fn spoofing_request(port: u16, from: &str) -> String {
    let from: IpAddr = from.parse().unwrap();
    let request = "GET /who HTTP/1.1\r\nHost: x\r\nConnection: close, X-Forwarded-For\r\n\
                   X-Forwarded-For: 203.0.113.7\r\nForwarded: for=203.0.113.8\r\n\
                   X-Real-IP: 203.0.113.9\r\nX-Forwarded-Port: 1\r\n\r\n";
    actix_rt::task::spawn_blocking(move || raw_request_from(from, port, request))
        .await
        .unwrap()
}

#[actix_web::test]
async fn an_untrusted_peers_own_forwarding_headers_never_reach_the_backend() {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(
        &[backend.url()],
        &["--health-interval", "1h", "--trusted-proxies", "127.0.0.2/32"],
    )
    .await;
    // Untrusted: the gateway's own X-Forwarded-* are all the backend sees.
    let answer = spoofing_request(gw.port, "127.0.0.1").await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    // Trusted: what its proxy wrote is passed on, the peer appended.
    let answer = spoofing_request(gw.port, "127.0.0.2").await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    let seen = backend.proxied();
    assert_eq!(seen.len(), 2);
    let untrusted = &seen[0].headers;
    assert_eq!(untrusted["x-forwarded-for"], vec!["127.0.0.1"], "{untrusted:?}");
    for gone in ["forwarded", "x-real-ip", "x-forwarded-port"] {
        assert!(
            !untrusted.contains_key(gone),
            "{gone} reached the backend: {untrusted:?}"
        );
    }
    assert_eq!(untrusted["x-forwarded-proto"], vec!["http"]);
    assert_eq!(untrusted["x-forwarded-host"], vec!["x"]);
    let trusted = &seen[1].headers;
    assert_eq!(
        trusted["x-forwarded-for"],
        vec!["203.0.113.7, 127.0.0.2"],
        "{trusted:?}"
    );
    assert_eq!(trusted["forwarded"], vec!["for=203.0.113.8"]);
    assert_eq!(trusted["x-real-ip"], vec!["203.0.113.9"]);
    assert_eq!(trusted["x-forwarded-port"], vec!["1"]);
}
