//! Slow clients and stalled backends: body idle timeouts, the minimum upload rate and the
//! request buffer (issue 6, defect 6).

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{helpers::*, logcapture};

/// Sends a request head declaring `declared` bytes, then `steps` of (bytes, pause after), and
/// reads the answer; returns it with the time it took from the first byte.
fn slow_upload(port: u16, declared: usize, steps: &[(usize, Duration)]) -> (String, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {declared}\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    for (n, pause) in steps {
        // The gateway may have answered and closed already: later writes may fail.
        if s.write_all(&vec![b'x'; *n]).is_err() {
            break;
        }
        std::thread::sleep(*pause);
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (String::from_utf8_lossy(&out).into_owned(), started.elapsed())
}

fn json_body(resp: &str) -> Value {
    serde_json::from_str(resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)).unwrap_or(Value::Null)
}

// Failed before the fix: a stalled upload was never cut (a 24 h allowance).
#[actix_web::test]
async fn a_stalled_small_upload_gets_408_and_never_reaches_a_backend() {
    let b = TestBackend::start("b");
    let gw = spawn_gateway(&[b.url()], &["--client-body-timeout", "300ms"]).await;
    // 10 of 100 bytes, then the client only waits for the answer.
    let (resp, took) = slow_upload(gw.port, 100, &[(10, Duration::ZERO)]);
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert_eq!(json_body(&resp)["error"], "request_timeout", "{resp}");
    assert!(took < Duration::from_secs(3), "408 came after {took:?}");
    assert_eq!(b.arrived(), 0, "a body still being read must not hold a backend");
}

// Failed before the fix: one byte a second kept the request alive.
#[actix_web::test]
async fn a_trickling_upload_is_cut_by_the_minimum_rate() {
    let b = TestBackend::start("b");
    let gw = spawn_gateway(
        &[b.url()],
        &[
            "--client-body-min-rate",
            "1KiB",
            "--client-body-grace",
            "500ms",
            "--client-body-timeout",
            "10s",
        ],
    )
    .await;
    let trickle: Vec<(usize, Duration)> = (0..40).map(|_| (1, Duration::from_millis(50))).collect();
    let (resp, took) = slow_upload(gw.port, 1_000_000, &trickle);
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert_eq!(json_body(&resp)["code"], 408);
    assert!(took < Duration::from_secs(2), "408 came after {took:?}");
    assert_eq!(b.arrived(), 0);
}

// A large body streams to the backend once the request buffer is full; a stall after that
// still gets 408 while no response has started.
#[actix_web::test]
async fn a_stall_while_streaming_to_the_backend_gets_408() {
    let b = TestBackend::start("b");
    let gw = spawn_gateway(
        &[b.url()],
        &["--client-body-timeout", "300ms", "--request-buffer", "1KiB"],
    )
    .await;
    let (resp, took) = slow_upload(gw.port, 100_000, &[(4096, Duration::ZERO)]);
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert_eq!(json_body(&resp)["error"], "request_timeout");
    assert!(took < Duration::from_secs(3), "408 came after {took:?}");
    assert_eq!(b.hits(), 0, "the backend must not get a complete request");
}

// A body within the buffer is read whole first, so a backend sees it only once it is complete,
// and a POST body that is buffered may go to another backend after a connect failure.
#[actix_web::test]
async fn buffered_bodies_arrive_whole() {
    let b = TestBackend::start("b");
    let gw = spawn_gateway(&[b.url()], &[]).await;
    let (resp, _) = slow_upload(
        gw.port,
        3000,
        &[
            (1000, Duration::from_millis(200)),
            (1000, Duration::from_millis(200)),
            (1000, Duration::ZERO),
        ],
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert_eq!(json_body(&resp)["body_bytes"], 3000);
    assert_eq!(b.arrived(), 1);
}

// Failed before the fix: a backend stalled mid-body kept the client waiting.
#[actix_web::test]
async fn a_backend_stalled_mid_body_is_cut_by_the_upstream_body_timeout() {
    logcapture::install();
    let b = RawBackend::start(
        Script::new()
            .write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
            .sleep(Duration::from_secs(30)),
    );
    let gw = spawn_gateway(&[b.url()], &["--upstream-body-timeout", "300ms"]).await;
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\nX-Request-Id: stalled-body-1\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cut after {:?}",
        started.elapsed()
    );
    let out = String::from_utf8_lossy(&out);
    assert!(!out.contains("0123456789") || !out.ends_with("\r\n\r\n"), "{out}");
    let line = logcapture::wait_access_line("stalled-body-1").await;
    assert!(line.ends_with(" upstream-aborted"), "{line}");
}

// Review finding (failed before the fix: held for the 24 h upload allowance): a backend that
// stops reading a streamed upload is cut by the upstream timeout.
#[actix_web::test]
async fn a_backend_that_stops_reading_an_upload_gets_504() {
    let b = RawBackend::start(Script::new().head_only().sleep(Duration::from_secs(60)));
    let gw = spawn_gateway(
        &[b.url()],
        &["--upstream-timeout", "500ms", "--max-body-size", "256MiB"],
    )
    .await;
    let port = gw.port;
    let (resp, took) = actix_rt::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let size = 128 << 20;
        s.write_all(format!("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\n\r\n").as_bytes())
            .unwrap();
        let mut writer = s.try_clone().unwrap();
        // The writer blocks once every buffer on the way is full; the answer comes meanwhile.
        std::thread::spawn(move || {
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..128 {
                if writer.write_all(&chunk).is_err() {
                    return;
                }
            }
        });
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while !out.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        (String::from_utf8_lossy(&out).into_owned(), started.elapsed())
    })
    .await
    .unwrap();
    assert!(resp.starts_with("HTTP/1.1 504"), "{resp}");
    assert!(took < Duration::from_secs(10), "504 came after {took:?}");
    assert_eq!(b.received(), 1);
}
