//! The proxy path: distribution, headers, limits, streaming, pass-through.

use std::collections::HashMap;

use actix_web::web::Bytes;
use futures_util::StreamExt;

use crate::helpers::*;

#[actix_web::test]
async fn round_robin_spreads_300_requests_exactly_evenly_in_turn() {
    let backends: Vec<TestBackend> = ["a", "b", "c"].iter().map(|n| TestBackend::start(n)).collect();
    let urls: Vec<String> = backends.iter().map(TestBackend::url).collect();
    let gw = spawn_gateway(&urls, &["--health-interval", "1h", "--health-timeout", "1s"]).await;

    let mut order = Vec::new();
    for _ in 0..300 {
        let (status, _, body) = gw.get("/hello").await;
        assert_eq!(status, 200);
        order.push(body["backend"].as_str().unwrap().to_string());
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for b in &order {
        *counts.entry(b).or_default() += 1;
    }
    assert_eq!(counts, HashMap::from([("a", 100), ("b", 100), ("c", 100)]));
    // In turn: every window of three consecutive requests hits three different backends.
    assert!(
        order
            .chunks(3)
            .all(|w| w[0] != w[1] && w[1] != w[2] && w[0] != w[2]),
        "{order:?}"
    );
    for b in &backends {
        assert_eq!(b.proxied().len(), 100, "{} saw a different count", b.name);
    }
}

#[actix_web::test]
async fn weights_one_two_three_give_exactly_one_two_three() {
    let backends: Vec<TestBackend> = ["a", "b", "c"].iter().map(|n| TestBackend::start(n)).collect();
    let urls: Vec<String> = backends
        .iter()
        .zip([1, 2, 3])
        .map(|(b, w)| format!("{}={w}", b.url()))
        .collect();
    let gw = spawn_gateway(&urls, &["--health-interval", "1h"]).await;
    for _ in 0..600 {
        assert_eq!(gw.get("/w").await.0, 200);
    }
    let got: Vec<usize> = backends.iter().map(|b| b.proxied().len()).collect();
    assert_eq!(got, vec![100, 200, 300]);
}

#[actix_web::test]
async fn hop_by_hop_headers_never_reach_the_backend_and_forwarding_headers_are_set() {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(&[backend.url()], &[]).await;
    let resp = raw_request(
        gw.port,
        "GET /h?q=1 HTTP/1.1\r\nHost: api.example:8080\r\nConnection: close, X-Hop-Secret\r\n\
         X-Hop-Secret: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\n\
         Proxy-Authorization: Basic Zm9vOmJhcg==\r\nProxy-Connection: keep-alive\r\n\
         X-Forwarded-For: 203.0.113.7\r\nX-Custom: kept\r\nX-Request-Id: req-42\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.to_ascii_lowercase().contains("x-request-id: req-42"),
        "{resp}"
    );
    let seen = backend.proxied();
    assert_eq!(seen.len(), 1);
    let h = &seen[0].headers;
    for gone in [
        "connection",
        "x-hop-secret",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert!(!h.contains_key(gone), "{gone} reached the backend: {h:?}");
    }
    assert_eq!(h["x-custom"], vec!["kept"]);
    assert_eq!(h["host"], vec!["api.example:8080"]);
    // The peer is no trusted proxy: its own X-Forwarded-For is replaced, not appended to.
    assert_eq!(h["x-forwarded-for"], vec!["127.0.0.1"]);
    assert_eq!(h["x-forwarded-host"], vec!["api.example:8080"]);
    assert_eq!(h["x-forwarded-proto"], vec!["http"]);
    assert_eq!(h["x-request-id"], vec!["req-42"]);
}

#[actix_web::test]
async fn hop_by_hop_headers_of_the_response_never_reach_the_client() {
    let backend = RawBackend::start(RawMode::HopHeaders);
    let gw = spawn_gateway(&[backend.url()], &[]).await;
    let resp = raw_request(
        gw.port,
        "GET /hop-response HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let lower = resp.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 200"), "{resp}");
    assert!(lower.contains("x-end-to-end: kept"), "{resp}");
    assert!(!lower.contains("x-resp-hop"), "{resp}");
    assert!(!lower.contains("keep-alive: timeout"), "{resp}");
    // One request id, the gateway's: the backend's own is replaced, not doubled.
    assert_eq!(lower.matches("x-request-id:").count(), 1, "{resp}");
    assert!(!lower.contains("backend-own-id"), "{resp}");
}

#[actix_web::test]
async fn a_304_with_a_content_length_ends_at_once_and_keeps_the_connection() {
    let backend = RawBackend::start(RawMode::NotModified);
    let gw = spawn_gateway(&[backend.url()], &["--health-interval", "1h"]).await;
    // Two requests on one keep-alive connection of the client: both complete.
    for _ in 0..2 {
        let mut resp = gw
            .client
            .get(gw.url("/cached"))
            .insert_header(("if-none-match", "\"v1\""))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 304);
        assert_eq!(resp.headers().get("etag").unwrap(), "\"v1\"");
        assert!(resp.body().await.unwrap().is_empty());
    }
    assert_eq!(backend.received(), 2);
}

#[actix_web::test]
async fn request_id_is_created_when_absent_and_sent_both_ways() {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(&[backend.url()], &[]).await;
    let (_, headers, _) = gw.get("/x").await;
    let rid = headers.get("x-request-id").unwrap().to_str().unwrap().to_string();
    assert_eq!(rid.len(), 32);
    assert_eq!(backend.proxied()[0].headers["x-request-id"], vec![rid]);
}

#[actix_web::test]
async fn oversized_bodies_get_413_before_any_backend_is_contacted() {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(&[backend.url()], &["--max-body-size", "1KiB"]).await;

    // Declared length over the limit.
    let mut resp = gw
        .client
        .post(gw.url("/up"))
        .send_body(vec![b'x'; 2048])
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_error_body(&body, resp.headers(), 413, "body_too_large");
    assert_eq!(backend.proxied().len(), 0);

    // Chunked, no declared length: refused once the limit is crossed.
    let chunks =
        futures_util::stream::iter((0..8).map(|_| Ok::<_, actix_web::Error>(Bytes::from(vec![b'y'; 512]))));
    let resp = gw.client.post(gw.url("/up")).send_stream(chunks).await.unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(
        backend.proxied().len(),
        0,
        "the backend took an oversized body as complete"
    );

    // At the limit: passes.
    let mut resp = gw
        .client
        .post(gw.url("/up"))
        .send_body(vec![b'x'; 1024])
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["body_bytes"], 1024);
}

#[actix_web::test]
async fn request_target_over_8_kib_gets_414() {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(&[backend.url()], &[]).await;
    let long = format!("/{}", "a".repeat(9000));
    let (status, headers, body) = gw.get(&long).await;
    assert_eq!(status, 414);
    assert_error_body(&body, &headers, 414, "uri_too_long");
    assert_eq!(backend.proxied().len(), 0);
    let ok = format!("/{}", "a".repeat(8000));
    assert_eq!(gw.get(&ok).await.0, 200);
}

#[actix_web::test]
async fn backend_errors_pass_through_untouched() {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(&[backend.url()], &[]).await;
    for code in [500u16, 503, 404, 418] {
        let mut resp = gw
            .client
            .get(gw.url(&format!("/status?code={code}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), code);
        assert_eq!(resp.headers().get("x-backend").unwrap(), "a");
        assert_eq!(
            resp.body().await.unwrap(),
            format!("backend says {code}").as_bytes()
        );
    }
}

#[actix_web::test]
async fn fifty_mib_streams_both_ways() {
    const SIZE: u64 = 50 * 1024 * 1024;
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(&[backend.url()], &["--max-body-size", "64MiB"]).await;

    // Upload, chunked, generated on the fly.
    let chunk = Bytes::from(vec![b'u'; 256 * 1024]);
    let chunks = futures_util::stream::iter(
        (0..SIZE / chunk.len() as u64).map(move |_| Ok::<_, actix_web::Error>(chunk.clone())),
    );
    let mut resp = gw
        .client
        .put(gw.url("/upload"))
        .send_stream(chunks)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["body_bytes"], SIZE);

    // Download, counted chunk by chunk.
    let mut resp = gw
        .client
        .get(gw.url(&format!("/bytes?n={SIZE}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("content-length").unwrap().to_str().unwrap(),
        SIZE.to_string()
    );
    let mut got = 0u64;
    while let Some(chunk) = resp.next().await {
        got += chunk.unwrap().len() as u64;
    }
    assert_eq!(got, SIZE);
}

#[actix_web::test]
async fn head_keeps_the_content_length_and_sends_no_body() {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(&[backend.url()], &[]).await;
    let resp = raw_request(
        gw.port,
        "HEAD /bytes?n=12345 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.to_ascii_lowercase().contains("content-length: 12345"),
        "{resp}"
    );
    assert!(resp.ends_with("\r\n\r\n"), "HEAD answered with a body: {resp:?}");
}
