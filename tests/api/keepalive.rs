//! The client keep-alive timeout, driven by each worker's deadline sweep (issue 10): an idle
//! connection is closed after the timeout and not before, a request in progress (a slow
//! backend, a slow upload) is judged by its own deadline, `0` turns keep-alive off, and a
//! partial first head still gets actix-http's 408.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use crate::helpers::*;

/// The sweep's resolution: a deadline fires at most this late (one tick to be never early,
/// one for the sweep), plus room for a loaded machine.
const LATE: Duration = Duration::from_millis(900);

/// Reads one response (head and `Content-Length` body) from `s`; returns the head and body.
fn read_response(s: &mut TcpStream) -> (String, String) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).unwrap(),
            1,
            "closed mid-head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (head, String::from_utf8(body).unwrap())
}

/// Waits for the gateway to close `s`; returns when it did (fails on bytes or a 10 s wait).
fn wait_closed(s: &mut TcpStream) -> Instant {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut rest = Vec::new();
    match s.read_to_end(&mut rest) {
        Ok(_) => assert!(
            rest.is_empty(),
            "bytes after the response: {:?}",
            String::from_utf8_lossy(&rest)
        ),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "not closed: {e}"),
    }
    Instant::now()
}

fn get(s: &mut TcpStream, path: &str) {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
}

#[actix_web::test]
async fn an_idle_connection_is_closed_after_the_keep_alive_timeout_and_not_before() {
    let b = TestBackend::start("b");
    let gw = spawn_gateway(&[b.url()], &["--keepalive-timeout", "1s"]).await;
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    get(&mut s, "/one");
    let (head, _) = read_response(&mut s);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Well inside the timeout: the connection still serves, and the idle time starts again.
    std::thread::sleep(Duration::from_millis(600));
    get(&mut s, "/two");
    let (head, _) = read_response(&mut s);
    let answered = Instant::now();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let closed = wait_closed(&mut s);
    let idle = closed - answered;
    // The answer left the gateway before the client read it: allow that much early.
    assert!(
        idle >= Duration::from_millis(950),
        "closed early, after {idle:?} idle"
    );
    assert!(
        idle <= Duration::from_secs(1) + LATE,
        "closed late, after {idle:?} idle"
    );
    assert_eq!(b.hits(), 2);
}

#[actix_web::test]
async fn a_slow_backend_keeps_its_connection_past_the_keep_alive_timeout() {
    let b = TestBackend::start("b");
    b.set_delay_ms(1_500);
    let gw = spawn_gateway(&[b.url()], &["--keepalive-timeout", "300ms"]).await;
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    let sent = Instant::now();
    get(&mut s, "/slow");
    let (head, body) = read_response(&mut s);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!body.is_empty());
    assert!(sent.elapsed() >= Duration::from_millis(1_500));
    // Idle from the answer on: closed after the timeout.
    let answered = Instant::now();
    let idle = wait_closed(&mut s) - answered;
    assert!(
        idle <= Duration::from_millis(300) + LATE,
        "closed after {idle:?} idle"
    );
}

#[actix_web::test]
async fn a_slow_upload_gets_the_body_timeout_not_the_keep_alive_one() {
    let b = TestBackend::start("b");
    let gw = spawn_gateway(
        &[b.url()],
        &["--keepalive-timeout", "200ms", "--client-body-timeout", "1s"],
    )
    .await;
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    s.write_all(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
        .unwrap();
    let (head, body) = read_response(&mut s);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(body.contains("request_timeout"), "{body}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "after {:?}",
        started.elapsed()
    );
}

#[actix_web::test]
async fn keep_alive_zero_closes_after_each_response() {
    let b = TestBackend::start("b");
    let gw = spawn_gateway(&[b.url()], &["--keepalive-timeout", "0"]).await;
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    get(&mut s, "/once");
    let (head, _) = read_response(&mut s);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("connection: close"), "{head}");
    let answered = Instant::now();
    assert!(wait_closed(&mut s) - answered < LATE);
}

#[actix_web::test]
async fn a_partial_first_head_gets_408_even_with_a_short_keep_alive() {
    let b = TestBackend::start("b");
    let gw = spawn_gateway(&[b.url()], &["--keepalive-timeout", "300ms"]).await;
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    s.write_all(b"GET /partial HTTP/1.1\r\nHost: t\r\n").unwrap();
    let (head, body) = read_response(&mut s);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(body.contains("request_timeout"), "{body}");
    // actix-http's head deadline is 5 s from the connection.
    assert!(
        started.elapsed() >= Duration::from_millis(4_900),
        "after {:?}",
        started.elapsed()
    );
    assert_eq!(b.hits(), 0);
}
