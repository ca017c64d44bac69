//! HTTP/2 stays unreachable: the one advisory deny.toml accepts (RUSTSEC-2026-0258, h2 0.3.27)
//! only matters if a listener speaks HTTP/2, so these fail the day one answers an h2c
//! prior-knowledge request, and the exception has to be looked at again.

use std::{
    convert::Infallible,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    time::{Duration, Instant},
};

use actix_http::{HttpService, Request, Response};

use crate::helpers::*;

/// What an h2c client with prior knowledge opens with: the HTTP/2 connection preface
/// (RFC 9113 §3.4), then an empty SETTINGS frame (9-byte header: length 0, type 0x4, no flags,
/// stream 0).
const H2C_PRIOR_KNOWLEDGE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Sends the prior-knowledge opening to `port` over a raw socket and returns the bytes that come
/// back: until the server closes (HTTP/1 refuses and closes), a SETTINGS frame has arrived
/// (HTTP/2 keeps the connection open), or 5 s have passed. The socket blocks, so it runs off the
/// test's runtime, which may be serving the other end.
async fn h2c_probe(port: u16) -> Vec<u8> {
    actix_rt::task::spawn_blocking(move || h2c_probe_blocking(port))
        .await
        .unwrap()
}

fn h2c_probe_blocking(port: u16) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(H2C_PRIOR_KNOWLEDGE).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !opens_with_settings_frame(&out) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// Whether `bytes` open with a SETTINGS frame header on stream 0: the first thing an HTTP/2
/// server sends (RFC 9113 §3.4, §6.5).
fn opens_with_settings_frame(bytes: &[u8]) -> bool {
    bytes.len() >= 9 && bytes[3] == 0x4 && bytes[5..9] == [0, 0, 0, 0]
}

/// Asserts that `answer` is an HTTP/1.1 refusal and no HTTP/2 frame.
fn assert_no_http2_answer(listener: &str, answer: &[u8]) {
    let text = String::from_utf8_lossy(answer);
    assert!(
        !opens_with_settings_frame(answer),
        "the {listener} listener answered HTTP/2 (SETTINGS frame): RUSTSEC-2026-0258 in deny.toml \
         is reachable now; got {answer:02x?}"
    );
    assert!(
        text.starts_with("HTTP/1.1 400"),
        "the {listener} listener should refuse the HTTP/2 preface as bad HTTP/1.1; got {text:?}"
    );
}

#[actix_web::test]
async fn proxy_listener_gives_no_http2_answer_to_h2c_prior_knowledge() {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(&[backend.url()], &[]).await;

    assert_no_http2_answer("proxy", &h2c_probe(gw.port).await);
    assert!(backend.proxied().is_empty(), "nothing may reach the backend");
}

#[actix_web::test]
async fn admin_listener_gives_no_http2_answer_to_h2c_prior_knowledge() {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(&[backend.url()], &[]).await;

    assert_no_http2_answer("admin", &h2c_probe(gw.admin_port).await);
}

/// The probe itself: against a server that does speak h2c (actix-http, which the gateway is
/// built on, with HTTP/2 detection turned on) it must see the SETTINGS frame, or the two tests
/// above could pass while proving nothing.
#[actix_web::test]
async fn probe_sees_the_settings_frame_of_a_real_h2c_server() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = actix_server::Server::build()
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .listen("h2c", listener, || {
            HttpService::build()
                .finish(|_req: Request| async { Ok::<_, Infallible>(Response::ok()) })
                .tcp_auto_h2c()
        })
        .unwrap()
        .run();
    let handle = server.handle();
    actix_rt::spawn(server);

    let answer = h2c_probe(port).await;
    handle.stop(false).await;
    assert!(
        opens_with_settings_frame(&answer),
        "no SETTINGS frame from an h2c server: {answer:02x?}"
    );
}
