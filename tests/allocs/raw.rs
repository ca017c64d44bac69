//! A keep-alive HTTP/1.1 client that allocates nothing per request, and the in-test backend.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    time::Duration,
};

use actix_web::{web, App, HttpResponse, HttpServer};

/// One keep-alive connection, sending the same GET again and again into a fixed buffer, so
/// that the counts are the servers' own.
pub struct RawClient {
    stream: TcpStream,
    request: Vec<u8>,
    buf: Box<[u8; 16 * 1024]>,
}

/// What the client saw of one response.
pub struct Answer {
    pub status: u16,
    /// Whether a `RateLimit` header came back (rate limiting charged the request).
    pub rate_limited_headers: bool,
}

impl RawClient {
    pub fn connect(port: u16, path: &str) -> RawClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: allocs\r\n\r\n");
        RawClient {
            stream,
            request: request.into_bytes(),
            buf: Box::new([0; 16 * 1024]),
        }
    }

    /// Sends the request and reads its whole response (which must be sized).
    pub fn get(&mut self) -> Answer {
        self.stream.write_all(&self.request).unwrap();
        let mut filled = 0;
        loop {
            let n = self.stream.read(&mut self.buf[filled..]).unwrap();
            assert!(n > 0, "connection closed after {filled} bytes");
            filled += n;
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            let httparse::Status::Complete(head) = resp.parse(&self.buf[..filled]).unwrap() else {
                continue;
            };
            let length: usize = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                .expect("a sized response");
            let answer = Answer {
                status: resp.code.unwrap(),
                rate_limited_headers: resp
                    .headers
                    .iter()
                    .any(|h| h.name.eq_ignore_ascii_case("ratelimit")),
            };
            while filled < head + length {
                let n = self.stream.read(&mut self.buf[filled..]).unwrap();
                assert!(n > 0, "connection closed in the body");
                filled += n;
            }
            assert_eq!(filled, head + length, "nothing but one response is expected");
            return answer;
        }
    }
}

/// A backend answering every request `200 ok\n`, like the benchmark's nginx backends: one
/// worker, on a thread and System of its own (left running until the process ends).
pub fn start_backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            HttpServer::new(|| {
                App::new().default_service(web::to(|| async { HttpResponse::Ok().body("ok\n") }))
            })
            .workers(1)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run()
            .await
            .unwrap();
        })
    });
    port
}
