//! Health checks, ejection, failover and the errors the gateway makes when nothing works.

use std::time::{Duration, Instant};

use actix_web::web::Bytes;

use crate::helpers::*;

#[actix_web::test]
async fn a_killed_backend_costs_no_failed_get_is_ejected_and_readmitted() {
    let a = TestBackend::start("a");
    let b = TestBackend::start("b");
    let c = TestBackend::start("c");
    let b_url = b.url();
    let gw = spawn_gateway(&[a.url(), b.url(), c.url()], &FAST_CHECKS).await;

    for _ in 0..30 {
        assert_eq!(gw.get("/before").await.0, 200);
    }
    let b_port = b.kill();
    // Until it is ejected, requests that pick b fail over; none fails.
    for i in 0..60 {
        let (status, _, body) = gw.get("/during").await;
        assert_eq!(status, 200, "request {i} after the kill failed: {body}");
        assert_ne!(body["backend"], "b");
    }
    gw.wait_health(&b_url, false).await;
    // Active checks see it too (ejection may have come first from the proxy's failures).
    eventually("a failed check of b", Duration::from_secs(5), || async {
        gw.backends()
            .await
            .iter()
            .any(|s| s["url"] == b_url.as_str() && s["last_check"]["ok"] == false)
    })
    .await;

    let b = TestBackend::start_on("b", b_port);
    gw.wait_health(&b_url, true).await;
    for _ in 0..30 {
        assert_eq!(gw.get("/after").await.0, 200);
    }
    assert_eq!(b.proxied().len(), 10, "re-admitted backend should take its third");
    assert_eq!(a.proxied().iter().filter(|s| s.path == "/after").count(), 10);
}

#[actix_web::test]
async fn all_backends_down_gives_a_fast_503_json() {
    let dead = [RefusingPort::new(), RefusingPort::new()];
    let urls: Vec<String> = dead.iter().map(RefusingPort::url).collect();
    // Panic mode off: with it on, every backend is tried (502, see panic.rs).
    let flags = [&FAST_CHECKS[..], &["--panic-threshold", "0"]].concat();
    let gw = spawn_gateway(&urls, &flags).await;
    for u in &urls {
        gw.wait_health(u, false).await;
    }
    let start = Instant::now();
    let (status, headers, body) = gw.get("/anything").await;
    let took = start.elapsed();
    assert_eq!(status, 503);
    assert_error_body(&body, &headers, 503, "no_healthy_backend");
    assert_eq!(body["message"], "No healthy backend");
    assert_eq!(headers.get("content-type").unwrap(), "application/json");
    assert!(took < Duration::from_millis(500), "503 took {took:?}");
}

#[actix_web::test]
async fn connect_failures_on_every_backend_give_502() {
    let dead = [RefusingPort::new(), RefusingPort::new()];
    let urls: Vec<String> = dead.iter().map(RefusingPort::url).collect();
    // Checks far apart: both still count as healthy, so the proxy tries both and fails.
    let gw = spawn_gateway(&urls, &["--health-interval", "1h", "--unhealthy-threshold", "10"]).await;
    let (status, headers, body) = gw.get("/x").await;
    assert_eq!(status, 502);
    assert_error_body(&body, &headers, 502, "bad_gateway");
}

#[actix_web::test]
async fn a_post_fails_over_on_connect_failure() {
    let dead_port = RefusingPort::new();
    let dead = dead_port.url();
    let live = TestBackend::start("live");
    let gw = spawn_gateway(
        &[dead, live.url()],
        &["--health-interval", "1h", "--unhealthy-threshold", "10"],
    )
    .await;
    // Round robin starts at the dead backend, so each pair of requests meets it once.
    for _ in 0..2 {
        let mut resp = gw.client.post(gw.url("/small")).send_body("hello").await.unwrap();
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["body_bytes"], 5);
    }
    // A streamed body (chunked, over the replay buffer) fails over too: it was never read.
    for _ in 0..2 {
        let chunk = Bytes::from(vec![b'z'; 100 * 1024]);
        let chunks =
            futures_util::stream::iter((0..3).map(move |_| Ok::<_, actix_web::Error>(chunk.clone())));
        let mut resp = gw.client.post(gw.url("/big")).send_stream(chunks).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["body_bytes"], 300 * 1024);
    }
    assert_eq!(live.proxied().len(), 4);
}

#[actix_web::test]
async fn a_post_delivered_to_a_backend_that_dies_is_not_retried_but_a_get_is() {
    let raw = RawBackend::start(RawMode::DieAfterReceiving);
    let live = TestBackend::start("live");
    let gw = spawn_gateway(&[raw.url(), live.url()], &["--health-interval", "1h"]).await;

    let mut resp = gw
        .client
        .post(gw.url("/pay"))
        .send_body("amount=10")
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_error_body(&body, resp.headers(), 502, "bad_gateway");
    assert_eq!(raw.received(), 1, "the POST was delivered exactly once");
    assert_eq!(live.proxied().len(), 0, "the POST was retried");

    // The round robin now points at the live backend; move it back to the raw one.
    assert_eq!(gw.get("/skip").await.0, 200);
    let (status, _, body) = gw.get("/safe").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["backend"], "live");
    assert_eq!(raw.received(), 2, "the GET went to the dying backend first");
}

#[actix_web::test]
async fn a_slow_backend_gives_504_and_a_get_tries_the_next() {
    let slow = TestBackend::start("slow");
    let fast = TestBackend::start("fast");
    slow.set_delay_ms(2000);
    let gw = spawn_gateway(
        &[slow.url(), fast.url()],
        &["--health-interval", "1h", "--upstream-timeout", "300ms"],
    )
    .await;
    // GET: slow times out, fast answers.
    let (status, _, body) = gw.get("/x").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["backend"], "fast");
    // POST with a body: not retried after the timeout. Round robin is back at the slow one.
    let mut resp = gw.client.post(gw.url("/y")).send_body("data").await.unwrap();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(resp.status(), 504, "{body}");
    assert_error_body(&body, resp.headers(), 504, "gateway_timeout");
    assert_eq!(fast.proxied().iter().filter(|s| s.method == "POST").count(), 0);
}

#[actix_web::test]
async fn a_backend_reset_mid_response_aborts_the_client_connection() {
    let raw = RawBackend::start(RawMode::ResetMidResponse);
    let gw = spawn_gateway(&[raw.url()], &["--health-interval", "1h"]).await;
    let resp = raw_request(
        gw.port,
        "GET /trunc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.to_ascii_lowercase().contains("content-length: 100000"),
        "{resp}"
    );
    let body = resp.split_once("\r\n\r\n").unwrap().1;
    assert_eq!(
        body, "0123456789",
        "the client must see the truncation, not a complete body"
    );
    assert_eq!(
        raw.received(),
        1,
        "a GET whose response had started must not be retried"
    );
}

#[actix_web::test]
async fn a_slow_upload_does_not_count_against_the_response_deadline() {
    let backend = TestBackend::start("a");
    let flags = ["--health-interval", "1h", "--upstream-timeout", "300ms"];
    let gw = spawn_gateway(&[backend.url()], &flags).await;
    // Six chunks 150 ms apart: the upload takes about 0.9 s, three times the deadline.
    let slow = futures_util::stream::unfold(0u32, |i| async move {
        if i == 6 {
            return None;
        }
        actix_rt::time::sleep(Duration::from_millis(150)).await;
        Some((Ok::<_, actix_web::Error>(Bytes::from(vec![b's'; 1000])), i + 1))
    });
    let mut resp = gw.client.post(gw.url("/upload")).send_stream(slow).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["body_bytes"], 6000);

    // Once the body is in, the deadline for the response head applies.
    backend.set_delay_ms(2000);
    let chunks =
        futures_util::stream::iter((0..2).map(|_| Ok::<_, actix_web::Error>(Bytes::from_static(b"x"))));
    let started = Instant::now();
    let mut resp = gw
        .client
        .post(gw.url("/upload"))
        .send_stream(chunks)
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_error_body(&body, resp.headers(), 504, "gateway_timeout");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
}

/// A backend that closes a kept-alive connection when the next request arrives on it (its
/// idle timeout racing the gateway's reuse of the connection): a GET is sent again on a fresh
/// connection to the same, only, backend and succeeds; a POST is not sent again (it may have
/// been acted on) and gets the 502.
#[actix_web::test]
async fn a_kept_alive_connection_the_backend_closed_costs_a_get_nothing() {
    let backend = RawBackend::start(
        Script::new()
            .write("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await_request()
            .close(),
    );
    let gw = spawn_gateway(&[backend.url()], &["--health-interval", "1h"]).await;
    for n in 1..=3 {
        let mut resp = gw.client.get(gw.url("/x")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "GET {n}");
        assert_eq!(resp.body().await.unwrap(), "ok");
    }
    // Each GET after the first reached a kept-alive connection first (closed unanswered), then
    // a fresh one: three answered requests, each on its own connection.
    assert_eq!(backend.received(), 3);
    let mut resp = gw.client.post(gw.url("/x")).send_body("data").await.unwrap();
    assert_eq!(resp.status(), 502, "{:?}", resp.body().await);
    assert_eq!(backend.received(), 3, "the POST was sent again");
}
