//! What the gateway answers and logs for requests no handler ever sees (malformed request
//! lines, oversized heads), and how it logs a flood of its own errors (issue 6, defect 9).

use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

/// Asserts a raw answer is the gateway's JSON error with `status` and `error`.
fn assert_json_error(answer: &str, status: u16, error: &str) {
    assert_eq!(raw_status(answer), status, "{answer}");
    assert_eq!(
        raw_header(answer, "content-type").as_deref(),
        Some("application/json"),
        "{answer}"
    );
    let body: Value = serde_json::from_str(raw_body(answer)).unwrap_or(Value::Null);
    assert_eq!(body["code"], status, "{answer}");
    assert_eq!(body["error"], error, "{answer}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{answer}"
    );
    assert_eq!(
        body["request_id"].as_str(),
        raw_header(answer, "x-request-id").as_deref(),
        "{answer}"
    );
}

async fn raw(port: u16, request: String) -> String {
    actix_rt::task::spawn_blocking(move || raw_request(port, &request))
        .await
        .unwrap()
}

// Failed before the fix: actix-http's own 400 and 431 had empty bodies.
#[actix_web::test]
async fn requests_no_handler_sees_get_the_json_error_body_on_both_listeners() {
    let b = TestBackend::start("b");
    let gw = spawn_gateway(&[b.url()], &[]).await;
    for port in [gw.port, gw.admin_port] {
        let answer = raw(port, "GARBAGE\r\n\r\n".into()).await;
        assert_json_error(&answer, 400, "bad_request");
        let answer = raw(port, "GET /\u{1} HTTP/1.1\r\nHost: x\r\n\r\n".into()).await;
        assert_json_error(&answer, 400, "bad_request");
        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(200_000)
        );
        let answer = raw(port, big).await;
        assert_json_error(&answer, 431, "headers_too_large");
    }
    assert!(b.proxied().is_empty());
}

// Failed before the fix: each malformed request gave an actix ERROR line, and every 503 a
// WARN line of its own.
#[actix_web::test]
async fn malformed_requests_and_error_floods_do_not_flood_the_log() {
    let dead = RefusingPort::new();
    let gw = GatewayProcess::builder()
        .backends(&[dead.url()])
        .args(&[
            "--panic-threshold",
            "0",
            "--health-interval",
            "100ms",
            "--health-timeout",
            "100ms",
            "--unhealthy-threshold",
            "1",
            "--rate-limit",
            "false",
            "--log",
            "info,tollgate::access=off",
        ])
        .capture_stderr()
        .spawn();
    gw.wait_ready().await;
    let c = client();
    let url = gw.admin_url("/backends");
    eventually("the backend to be ejected", Duration::from_secs(10), || async {
        let Ok(mut r) = c.get(&url).send().await else {
            return false;
        };
        let v: Value = r.json().await.unwrap_or(Value::Null);
        v["backends"][0]["healthy"] == false
    })
    .await;
    for _ in 0..20 {
        let answer = raw(gw.port, "GARBAGE\r\n\r\n".into()).await;
        assert_eq!(raw_status(&answer), 400);
    }
    for _ in 0..50 {
        let answer = raw(
            gw.port,
            "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
        )
        .await;
        assert_eq!(raw_status(&answer), 503, "{answer}");
    }
    let stderr = gw.stderr();
    assert!(!stderr.contains("actix_http"), "{stderr}");
    assert!(!stderr.contains("parse error"), "{stderr}");
    let lines = stderr
        .lines()
        .filter(|l| l.contains("no healthy backend"))
        .count();
    // 50 requests take well under the time it would take to earn 50 lines at one a second.
    assert!((1..=5).contains(&lines), "{lines} lines:\n{stderr}");
    // After the period, the next line says how many were left out.
    eventually(
        "the throttled line with its count",
        Duration::from_secs(10),
        || async {
            raw(
                gw.port,
                "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
            )
            .await;
            gw.stderr().contains("more like this since the last line")
        },
    )
    .await;
}

// Review finding (failed before the fix): a relayed body that starts a write with what looks
// like actix-http's bare 400 was rewritten, breaking the client's framing.
#[actix_web::test]
async fn a_relayed_body_that_looks_like_a_bare_error_passes_untouched() {
    const BODY: &str = "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-evil: 1\r\n\r\n";
    let b = RawBackend::start(
        Script::new()
            .write(format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                BODY.len()
            ))
            .sleep(Duration::from_millis(200))
            .write(BODY)
            .close(),
    );
    let gw = spawn_gateway(&[b.url()], &[]).await;
    let answer = raw(
        gw.port,
        "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
    )
    .await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(raw_body(&answer), BODY, "{answer:?}");
}
