//! A backend speaking raw TCP that plays a script of bytes on every proxied connection, for
//! behaviour no HTTP framework would produce (truncations, resets, odd framing, silence).

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{Arc, Mutex},
    time::Duration,
};

/// One step of a raw backend's script, played after it has read the request.
#[derive(Clone, Debug)]
pub enum Step {
    /// Write these bytes (and flush).
    Write(Vec<u8>),
    /// Wait this long.
    Sleep(Duration),
    /// Close the connection cleanly (FIN); the rest of the script is skipped.
    Close,
    /// Reset the connection (RST, through `SO_LINGER` 0); the rest of the script is skipped.
    Reset,
    /// Wait for the next request head on the same connection (it is not answered unless the
    /// script goes on to write).
    AwaitRequest,
}

/// What a raw backend does with each proxied connection. A script that ends without `Close` or
/// `Reset` closes the connection cleanly at its end.
#[derive(Clone, Debug)]
pub struct Script {
    steps: Vec<Step>,
    /// Whether health checks (`GET /`) are answered `200` at once (so that the backend stays
    /// in the pool) rather than played the script like any request.
    answer_health_checks: bool,
    /// Whether the declared request body is read before the script plays (else only the head:
    /// a backend that never reads an upload).
    read_body: bool,
}

impl Script {
    /// An empty script: health checks answered, every other request closed unanswered.
    pub fn new() -> Script {
        Script {
            steps: Vec::new(),
            answer_health_checks: true,
            read_body: true,
        }
    }

    /// Appends a write of `bytes`.
    pub fn write(mut self, bytes: impl AsRef<[u8]>) -> Script {
        self.steps.push(Step::Write(bytes.as_ref().to_vec()));
        self
    }

    /// Appends a pause.
    pub fn sleep(mut self, d: Duration) -> Script {
        self.steps.push(Step::Sleep(d));
        self
    }

    /// Appends a wait for the next request on the connection.
    pub fn await_request(mut self) -> Script {
        self.steps.push(Step::AwaitRequest);
        self
    }

    /// Appends a clean close.
    pub fn close(mut self) -> Script {
        self.steps.push(Step::Close);
        self
    }

    /// Appends a reset.
    pub fn reset(mut self) -> Script {
        self.steps.push(Step::Reset);
        self
    }

    /// Plays the script after the request head only, leaving any body unread.
    pub fn head_only(mut self) -> Script {
        self.read_body = false;
        self
    }

    /// Plays the script on health checks too (a backend whose checks hang or fail).
    pub fn on_health_checks_too(mut self) -> Script {
        self.answer_health_checks = false;
        self
    }
}

impl Default for Script {
    fn default() -> Script {
        Script::new()
    }
}

/// The scripts the older tests were written against.
#[derive(Clone, Copy, Debug)]
pub enum RawMode {
    /// Read the request (head and declared body), then close without answering.
    DieAfterReceiving,
    /// Answer with `Content-Length: 100000`, send 10 bytes, then close.
    ResetMidResponse,
    /// Answer with hop-by-hop headers, one of them named in `Connection`, and ids of its own.
    HopHeaders,
    /// Answer `304 Not Modified` with a `Content-Length` (allowed; there is still no body).
    NotModified,
}

impl From<RawMode> for Script {
    fn from(mode: RawMode) -> Script {
        match mode {
            RawMode::DieAfterReceiving => Script::new().close(),
            RawMode::ResetMidResponse => Script::new()
                .write("HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n0123456789")
                .sleep(Duration::from_millis(50))
                .close(),
            RawMode::HopHeaders => Script::new().write(
                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close, x-resp-hop\r\n\
                 x-resp-hop: secret\r\nkeep-alive: timeout=5\r\nx-end-to-end: kept\r\n\
                 x-request-id: backend-own-id\r\n\r\nok",
            ),
            RawMode::NotModified => Script::new()
                .write("HTTP/1.1 304 Not Modified\r\ncontent-length: 1234\r\netag: \"v1\"\r\n\r\n"),
        }
    }
}

/// A backend speaking raw TCP on a free port; every connection reads one request and plays
/// the script.
pub struct RawBackend {
    pub addr: SocketAddr,
    /// Heads (and bodies) of the proxied requests received, in order.
    received: Arc<Mutex<Vec<RawRequest>>>,
}

/// One request as a raw backend read it.
#[derive(Clone, Debug)]
pub struct RawRequest {
    /// The head, request line and headers, as sent.
    pub head: String,
    /// The body as declared by `Content-Length` (chunked bodies are not read).
    pub body: Vec<u8>,
}

impl RawRequest {
    /// The values of header `name` (case-insensitive), in order.
    pub fn header(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }
}

impl RawBackend {
    /// Starts the backend with a script (or a [`RawMode`]).
    pub fn start(script: impl Into<Script>) -> RawBackend {
        let script = Arc::new(script.into());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received: Arc<Mutex<Vec<RawRequest>>> = Arc::default();
        let log = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let (log, script) = (log.clone(), script.clone());
                std::thread::spawn(move || {
                    let Some(request) = read_request(&mut stream, script.read_body) else {
                        return;
                    };
                    if script.answer_health_checks && request.head.starts_with("GET / ") {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                        return;
                    }
                    if !request.head.starts_with("GET / ") {
                        log.lock().unwrap().push(request);
                    }
                    play(&script.steps, stream);
                });
            }
        });
        RawBackend { addr, received }
    }

    /// Base URL for `TOLLGATE_BACKENDS`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Proxied requests received (health checks excluded).
    pub fn received(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// The proxied requests received (health checks excluded), in order.
    pub fn requests(&self) -> Vec<RawRequest> {
        self.received.lock().unwrap().clone()
    }
}

fn play(steps: &[Step], mut stream: TcpStream) {
    for step in steps {
        match step {
            Step::Write(bytes) => {
                if stream.write_all(bytes).and_then(|()| stream.flush()).is_err() {
                    return;
                }
            }
            Step::Sleep(d) => std::thread::sleep(*d),
            Step::AwaitRequest => {
                if read_request(&mut stream, false).is_none() {
                    return;
                }
            }
            Step::Close => return,
            Step::Reset => {
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                return;
            }
        }
    }
}

/// Reads one request head and, when `with_body`, its `Content-Length` body.
pub fn read_request(stream: &mut TcpStream, with_body: bool) -> Option<RawRequest> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; if with_body { len } else { 0 }];
    stream.read_exact(&mut body).ok()?;
    Some(RawRequest { head, body })
}
