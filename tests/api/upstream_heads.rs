//! Response heads of any reasonable size pass (issue 17, item 3): up to
//! `TOLLGATE_UPSTREAM_MAX_HEAD` bytes and `TOLLGATE_UPSTREAM_MAX_HEADERS` lines; beyond them,
//! 502 `upstream_head_too_large`. A request a backend answered is never sent again, whatever
//! the answer.

use serde_json::Value;

use crate::{helpers::*, logcapture};

/// A 200 head with `lines` `Set-Cookie` lines whose values are `value_len` bytes, and body `ok`.
fn cookie_response(lines: usize, value_len: usize) -> Vec<u8> {
    let mut r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n".to_vec();
    for i in 0..lines {
        r.extend_from_slice(format!("Set-Cookie: c{i}={}; Path=/\r\n", "v".repeat(value_len)).as_bytes());
    }
    r.extend_from_slice(b"\r\nok");
    r
}

fn get(port: u16, rid: &str) -> String {
    raw_request(
        port,
        &format!("GET /x HTTP/1.1\r\nHost: t\r\nX-Request-Id: {rid}\r\nConnection: close\r\n\r\n"),
    )
}

fn set_cookies(answer: &str) -> usize {
    let head = answer.split("\r\n\r\n").next().unwrap_or_default();
    head.lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .count()
}

/// Asserts a 502 `upstream_head_too_large` JSON answer.
fn assert_too_large(answer: &str) {
    assert_eq!(raw_status(answer), 502, "{answer}");
    let body: Value = serde_json::from_str(raw_body(answer)).unwrap();
    assert_eq!(body["code"], 502, "{body}");
    assert_eq!(body["error"], "upstream_head_too_large", "{body}");
}

// Failed before the fix: 502 ("message head is too large", awc took at most 96 lines), and the
// GET was sent to the backend twice.
#[actix_web::test]
async fn a_head_of_100_set_cookie_lines_passes_whole_and_is_sent_once() {
    let b = RawBackend::start(Script::new().write(cookie_response(100, 16)));
    let gw = spawn_gateway(&[b.url()], &[]).await;
    let answer = get(gw.port, "cookies-100");
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(set_cookies(&answer), 100);
    assert!(answer.contains("c99=vvvvvvvvvvvvvvvv; Path=/"), "{answer}");
    assert_eq!(raw_body(&answer), "ok");
    assert_eq!(b.received(), 1);
}

#[actix_web::test]
async fn the_default_limits_pass_256_lines_and_refuse_257_without_sending_again() {
    logcapture::install();
    // Content-Length plus the cookies: 255, then 256 header lines.
    let at_limit = RawBackend::start(Script::new().write(cookie_response(254, 8)));
    let gw = spawn_gateway(&[at_limit.url()], &[]).await;
    let answer = get(gw.port, "lines-255");
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(set_cookies(&answer), 254);
    let exactly = RawBackend::start(Script::new().write(cookie_response(255, 8)));
    let gw = spawn_gateway(&[exactly.url()], &[]).await;
    let answer = get(gw.port, "lines-256");
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(set_cookies(&answer), 255);

    // Two backends and a GET: a retry would be allowed for a broken connection, never for an
    // answer.
    let (a, b) = (
        RawBackend::start(Script::new().write(cookie_response(256, 8))),
        RawBackend::start(Script::new().write(cookie_response(256, 8))),
    );
    let gw = spawn_gateway(&[a.url(), b.url()], &[]).await;
    let answer = get(gw.port, "lines-257");
    assert_too_large(&answer);
    assert_eq!(a.received() + b.received(), 1, "sent again after an answer");
    // The reason is logged (one line per second per cause: the other tests here may have
    // taken this second's line, so any request's line will do).
    eventually(
        "the reason in the log",
        std::time::Duration::from_secs(5),
        || async {
            logcapture::lines_with("answered with a head the gateway does not pass on: response head of")
                .iter()
                .any(|l| l.contains("(TOLLGATE_UPSTREAM_MAX_HEAD"))
        },
    )
    .await;
}

#[actix_web::test]
async fn the_byte_and_line_limits_are_settings() {
    // 40 cookies of 100 bytes: about 4.6 KB.
    let b = RawBackend::start(Script::new().write(cookie_response(40, 100)));
    let gw = spawn_gateway(&[b.url()], &["--upstream-max-head", "4KiB"]).await;
    assert_too_large(&get(gw.port, "bytes-over"));
    assert_eq!(b.received(), 1);
    let gw = spawn_gateway(&[b.url()], &["--upstream-max-head", "8KiB"]).await;
    let answer = get(gw.port, "bytes-under");
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(set_cookies(&answer), 40);

    let gw = spawn_gateway(&[b.url()], &["--upstream-max-headers", "40"]).await;
    assert_too_large(&get(gw.port, "lines-over"));
    let gw = spawn_gateway(&[b.url()], &["--upstream-max-headers", "41"]).await;
    assert_eq!(raw_status(&get(gw.port, "lines-under")), 200);
}

// Failed before the fix: a GET answered with garbage was sent to the backend again.
#[actix_web::test]
async fn a_response_that_is_not_http_is_not_sent_again() {
    let b = RawBackend::start(Script::new().write(b"SMTP ready\r\n\r\n".as_slice()));
    let gw = spawn_gateway(&[b.url()], &[]).await;
    let answer = get(gw.port, "garbage");
    assert_eq!(raw_status(&answer), 502, "{answer}");
    assert_eq!(b.received(), 1);
}

// Failed before the fix (502): a head larger than awc's read buffer is handed to awc in
// several reads, and the connection counted idle after the first, while awc was still reading
// it; its next read was then taken for the pool's check and found the backend's close.
#[actix_web::test]
async fn a_head_larger_than_one_read_passes_whole() {
    // 60 lines of about 420 bytes: 25 KB of head, within the 64 KiB and 256-line limits.
    let b = RawBackend::start(Script::new().write(cookie_response(60, 400)));
    let gw = spawn_gateway(&[b.url()], &[]).await;
    for i in 0..3 {
        let answer = get(gw.port, &format!("long-head-{i}"));
        assert_eq!(raw_status(&answer), 200, "{}", &answer[..answer.len().min(300)]);
        assert_eq!(set_cookies(&answer), 60);
        assert_eq!(raw_body(&answer), "ok");
    }
    assert_eq!(b.received(), 3);
}
