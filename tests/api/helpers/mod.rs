//! Test fixtures, one file per fixture; everything is re-exported so that tests
//! `use crate::helpers::*`.
//!
//! - `backend`: an actix-web backend that records what it saw and can be killed and restarted;
//! - `browser`: headless Chromium driven over the DevTools protocol;
//! - `cluster`: N gateway processes on one database, a load driver over them, `GET /cluster`;
//! - `raw_backend`: a raw TCP backend that plays a script of bytes (for hostile behaviour);
//! - `db`: a SQLite file or PostgreSQL database per test;
//! - `gateway`: the gateway in-process on port 0;
//! - `process`: the gateway as a child process on listeners the test bound;
//! - `port`: reserved ports where nothing accepts (no bind-release-rebind races);
//! - `relay`: a cuttable TCP relay to PostgreSQL.

// Each test file uses a part of the fixtures; a helper unused by every file is not dead.
#![allow(dead_code)]

mod backend;
mod browser;
mod cluster;
mod db;
mod gateway;
mod port;
mod process;
mod raw_backend;
mod relay;

pub use backend::*;
pub use browser::*;
pub use cluster::*;
pub use db::*;
pub use gateway::*;
pub use port::*;
pub use process::*;
pub use raw_backend::*;
pub use relay::*;

use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use serde_json::Value;

/// Polls `check` every 20 ms until it holds; panics with `what` at the deadline.
pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends raw bytes to `port` and reads the whole answer (the request should ask to close).
pub fn raw_request(port: u16, request: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends raw bytes to `port` on loopback from the source address `from` (any address of
/// 127.0.0.0/8, or ::1 for a gateway listening on ::1) and reads the whole answer.
pub fn raw_request_from(from: IpAddr, port: u16, request: &str) -> String {
    let to: SocketAddr = match from {
        IpAddr::V4(_) => ([127, 0, 0, 1], port).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::LOCALHOST, port).into(),
    };
    let socket = socket2::Socket::new(socket2::Domain::for_address(to), socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
    socket.connect(&to.into()).unwrap();
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw HTTP/1.1 answer (0 when there is none).
pub fn raw_status(answer: &str) -> u16 {
    answer.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// The value of header `name` in a raw HTTP/1.1 answer (first occurrence, case-insensitive).
pub fn raw_header(answer: &str, name: &str) -> Option<String> {
    let head = answer.split("\r\n\r\n").next()?;
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
}

/// The body of a raw HTTP/1.1 answer with a `Content-Length` (everything after the head).
pub fn raw_body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// Asserts the gateway's JSON error body and that its request id matches the header.
pub fn assert_error_body(body: &Value, headers: &awc::http::header::HeaderMap, code: u16, error: &str) {
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    let rid = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(!rid.is_empty());
    assert_eq!(body["request_id"], rid, "{body}");
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4, "{body}");
}

/// A directory of its own under the temporary directory, removed at the end of the test.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("tollgate-test-dir-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
