//! Hostile and broken backends: framing errors, interim responses, close-delimited bodies.
//! Each backend is a raw socket that answers every proxied request with a fixed script.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use crate::{helpers::*, logcapture};

/// A raw backend that answers health checks (`GET /`) with 200 and every other request with
/// `script`, then closes the connection cleanly (a FIN, which is what makes a truncated body
/// look like an end).
pub fn script_backend(script: &'static [u8]) -> RawBackend {
    RawBackend::start(Script::new().write(script))
}

/// What a raw client got: the bytes, and whether the connection ended cleanly (EOF after a
/// complete message) or was cut.
fn fetch_raw(port: u16, path: &str, rid: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nX-Request-Id: {rid}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// Defect 1 (failed before the fix: the client got `hello` and a clean `0\r\n\r\n`).
#[actix_web::test]
async fn truncated_chunked_response_aborts_the_client_connection() {
    logcapture::install();
    let b = script_backend(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    let gw = spawn_gateway(&[b.url()], &[]).await;
    let out = text(&fetch_raw(gw.port, "/x", "trunc-chunked-1"));
    // The abort may come before the head was flushed; either way no clean end.
    assert!(out.is_empty() || out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        !out.ends_with("0\r\n\r\n"),
        "a truncated body must not end cleanly: {out:?}"
    );
    let line = logcapture::wait_access_line("trunc-chunked-1").await;
    assert!(line.ends_with(" upstream-aborted"), "{line}");
    assert_eq!(b.received(), 1);
}

// Defect 4 (failed before the fix: the access log said success).
#[actix_web::test]
async fn short_content_length_body_is_logged_upstream_aborted() {
    logcapture::install();
    let b = script_backend(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    let gw = spawn_gateway(&[b.url()], &[]).await;
    let out = text(&fetch_raw(gw.port, "/x", "short-cl-1"));
    // Fewer bytes than the declared 10 (none at all if the abort came before the flush).
    assert!(out.is_empty() || out.contains("content-length: 10"), "{out}");
    assert!(out.is_empty() || out.ends_with("\r\n\r\nabc"), "{out:?}");
    let line = logcapture::wait_access_line("short-cl-1").await;
    assert!(line.ends_with(" upstream-aborted"), "{line}");
}

// Defect 2 (failed before the fix: the client got an empty 200).
#[actix_web::test]
async fn close_delimited_body_is_relayed() {
    logcapture::install();
    let b =
        script_backend(b"HTTP/1.1 200 OK\r\nConnection: close\r\nX-Kind: eof\r\n\r\nbody that ends at close");
    let gw = spawn_gateway(&[b.url()], &[]).await;
    let (status, body) = {
        let mut resp = gw
            .client
            .get(gw.url("/x"))
            .insert_header(("x-request-id", "close-delim-1"))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.body().await.unwrap())
    };
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"body that ends at close");
    let line = logcapture::wait_access_line("close-delim-1").await;
    assert!(line.ends_with(" 23B"), "{line}");
}

// Defect 3 (failed before the fix: the client got the 103 and then nothing).
#[actix_web::test]
async fn interim_responses_are_skipped() {
    let b = script_backend(
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n\
          HTTP/1.1 100 Continue\r\n\r\n\
          HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Final: yes\r\n\r\nok",
    );
    let gw = spawn_gateway(&[b.url()], &[]).await;
    let mut resp = gw.client.get(gw.url("/x")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers().get("x-final").unwrap(), "yes");
    assert!(resp.headers().get("link").is_none());
    assert_eq!(&resp.body().await.unwrap()[..], b"ok");
}

// Defect 4, second half (failed before the fix: logged ` client-aborted`).
#[actix_web::test]
async fn bodiless_answers_are_logged_complete() {
    logcapture::install();
    let b = script_backend(b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n");
    let gw = spawn_gateway(&[b.url()], &[]).await;
    let out = text(&fetch_raw(gw.port, "/x", "no-content-1"));
    assert!(out.starts_with("HTTP/1.1 204"), "{out}");
    let line = logcapture::wait_access_line("no-content-1").await;
    assert!(!line.contains("aborted"), "{line}");

    let head = script_backend(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\n");
    let gw = spawn_gateway(&[head.url()], &[]).await;
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"HEAD /x HTTP/1.1\r\nHost: t\r\nX-Request-Id: head-1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(text(&out).starts_with("HTTP/1.1 200"), "{}", text(&out));
    let line = logcapture::wait_access_line("head-1").await;
    assert!(!line.contains("aborted"), "{line}");
}

// Review finding (failed before the fix: logged ` client-aborted`): an empty body declared by
// `Content-Length: 0` is complete.
#[actix_web::test]
async fn an_empty_content_length_body_is_logged_complete() {
    logcapture::install();
    let b = script_backend(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-A: 1\r\n\r\n");
    let gw = spawn_gateway(&[b.url()], &[]).await;
    let out = text(&fetch_raw(gw.port, "/x", "empty-cl-1"));
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("content-length: 0\r\n"), "{out}");
    let line = logcapture::wait_access_line("empty-cl-1").await;
    assert!(!line.contains("aborted"), "{line}");
}
