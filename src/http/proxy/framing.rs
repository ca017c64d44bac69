//! Response framing the way RFC 9112 §6.3 reads it, enforced beneath awc.
//!
//! awc 3 (actix-http's client codec) takes a connection closed in the middle of a chunked or
//! `Content-Length` body for a clean end of the body, drops a body that is delimited by the
//! close of the connection (an HTTP/1.1 response with neither length nor chunked coding), and
//! takes an interim (1xx) response for the final one. Each of these makes a broken or odd
//! backend response look like a different, complete one. awc lets a custom connector supply
//! the connection's I/O, so [`FramingGuard`] wraps every backend connection and reads each
//! response head (with `httparse`, as actix-http does) before awc sees it:
//!
//! - interim responses (1xx other than 101) are dropped: only the final response reaches awc;
//! - a final response whose body runs until the close of the connection is shown to awc as
//!   HTTP/1.0, the one case in which actix-http reads a body until close;
//! - the close of the connection in the middle of a delimited body (chunked or
//!   `Content-Length`) becomes an `UnexpectedEof` error instead of an end of file, so the
//!   forwarder sees a failed body and aborts the client's connection.
//!
//! Only response heads are parsed; bodies pass through untouched and uncopied.

use std::{
    fmt, io,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
};

use actix_rt::net::{ActixStream, Ready};
use actix_service::Service;
use actix_tls::connect::{ConnectError, ConnectInfo, Connection, ConnectorService};
use actix_web::http::Uri;
use bytes::{Buf, BytesMut};
use futures_util::future::LocalBoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{idle::IdleConns, pooled::Pooled, response_end::ResponseEnd};

/// Largest response head the guard buffers; a longer one is passed on for actix-http to refuse.
const MAX_HEAD: usize = 64 * 1024;

/// Bytes read at a time while collecting a response head.
const READ_SIZE: usize = 8 * 1024;

/// Most header fields in a response head the guard parses (more: passed on unparsed).
const MAX_HEADERS: usize = 128;

/// How the body of the response in progress ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    /// By its own framing (chunked, `Content-Length`, or no body at all): the close of the
    /// connection before that end is an error.
    Delimited,
    /// By the close of the connection.
    AtClose,
}

/// What the guard does with the bytes it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Collecting a response head.
    Head,
    /// In the body (or past it) of a final response.
    Body(BodyEnd),
    /// A head the guard could not parse: everything passes untouched for awc to judge.
    Passthrough,
}

/// The outcome of looking at the bytes buffered so far while waiting for a response head.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadScan {
    /// More bytes are needed.
    Partial,
    /// An interim response of this many bytes comes first: drop it and scan again.
    Interim(usize),
    /// The final response head: how its body ends, and whether its status line must be shown
    /// to awc as HTTP/1.0 (a body until close in an HTTP/1.1 response).
    Final { end: BodyEnd, downgrade: bool },
    /// Not a response head the guard understands.
    Unparsable,
}

/// Reads the start of `buf` as a response head (RFC 9112 §6.3), for a request that was `HEAD`
/// when `head_request` is set.
pub fn scan_head(buf: &[u8], head_request: bool) -> HeadScan {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    // The parser settings actix-http's client uses, so that both read a head alike.
    let mut config = httparse::ParserConfig::default();
    config.allow_spaces_after_header_name_in_responses(true);
    let len = match config.parse_response(&mut resp, buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return HeadScan::Partial,
        _ => return HeadScan::Unparsable,
    };
    let code = resp.code.unwrap_or(0);
    if (100..200).contains(&code) && code != 101 {
        return HeadScan::Interim(len);
    }
    let has = |name: &str| resp.headers.iter().any(|h| h.name.eq_ignore_ascii_case(name));
    // actix-http honours chunked coding on HTTP/1.1 only, as the final coding.
    let chunked = resp.version == Some(1)
        && resp.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("transfer-encoding")
                && std::str::from_utf8(h.value).is_ok_and(|v| {
                    v.rsplit(',')
                        .next()
                        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
                })
        });
    let bodiless = head_request || code == 204 || code == 304 || code == 101;
    let end = if bodiless || chunked || has("content-length") {
        BodyEnd::Delimited
    } else {
        BodyEnd::AtClose
    };
    HeadScan::Final {
        end,
        downgrade: end == BodyEnd::AtClose && resp.version == Some(1),
    }
}

/// A backend connection whose response heads are read before awc sees them (see the module
/// documentation).
pub struct FramingGuard<IO> {
    io: IO,
    phase: Phase,
    /// Head bytes collected, not yet handed to awc.
    head: BytesMut,
    /// Bytes ready for awc (a final head, and whatever of the body came with it).
    ready: BytesMut,
    /// The next write starts a request (the previous response head has been seen).
    request_next: bool,
    /// The request in progress is a `HEAD`: its response has no body whatever it says.
    head_request: bool,
    /// Where the response in progress ends (for the idle cap, see `pooled`).
    end: ResponseEnd,
}

impl<IO> FramingGuard<IO> {
    /// Wraps a freshly opened backend connection.
    pub fn new(io: IO) -> FramingGuard<IO> {
        FramingGuard {
            io,
            phase: Phase::Head,
            head: BytesMut::new(),
            ready: BytesMut::new(),
            request_next: true,
            head_request: false,
            end: ResponseEnd::Unknown,
        }
    }

    /// Whether the last response has passed whole (the connection is between responses).
    pub fn response_done(&self) -> bool {
        self.end.is_done()
    }

    /// The connection itself.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    /// Notes the start of a request from the first bytes written after a response.
    fn on_write(&mut self, first: &[u8]) {
        if self.request_next && !first.is_empty() {
            self.request_next = false;
            self.head_request = first.starts_with(b"HEAD ");
            self.phase = Phase::Head;
            self.head.clear();
            self.end = ResponseEnd::Unknown;
        }
    }

    /// Scans the collected head bytes; returns once there is something for awc or more bytes
    /// are needed.
    fn scan(&mut self) {
        loop {
            match scan_head(&self.head, self.head_request) {
                HeadScan::Partial => return,
                HeadScan::Interim(len) => {
                    self.head.advance(len);
                    if self.head.is_empty() {
                        return;
                    }
                }
                HeadScan::Final { end, downgrade } => {
                    if let Some((len, mut rest)) = ResponseEnd::of_head(&self.head, self.head_request) {
                        rest.feed(&self.head[len..]);
                        self.end = rest;
                    }
                    if downgrade {
                        // "HTTP/1.1" → "HTTP/1.0": same length, so nothing else moves. The
                        // parser skips empty lines before the status line; so does this.
                        let start = self.head.iter().position(|b| !matches!(b, b'\r' | b'\n'));
                        if let Some(minor) = start.map(|i| i + 7).filter(|i| *i < self.head.len()) {
                            self.head[minor] = b'0';
                        }
                    }
                    self.phase = Phase::Body(end);
                    self.request_next = true;
                    // `ready` is empty here: swapping keeps both allocations for the next
                    // response on this connection.
                    std::mem::swap(&mut self.ready, &mut self.head);
                    return;
                }
                HeadScan::Unparsable => {
                    self.phase = Phase::Passthrough;
                    self.request_next = true;
                    self.ready = self.head.split();
                    return;
                }
            }
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for FramingGuard<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            match this.phase {
                Phase::Body(end) => {
                    let before = buf.filled().len();
                    std::task::ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
                    this.end.feed(&buf.filled()[before..]);
                    if buf.filled().len() == before && end == BodyEnd::Delimited {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "backend closed the connection before the end of the response body",
                        )));
                    }
                    return Poll::Ready(Ok(()));
                }
                Phase::Passthrough => return Pin::new(&mut this.io).poll_read(cx, buf),
                Phase::Head => {
                    // Straight into the head buffer (no zeroed scratch buffer, no extra copy);
                    // its allocation is reused response after response (see `scan`).
                    this.head.reserve(READ_SIZE);
                    let n = std::task::ready!(tokio_util::io::poll_read_buf(
                        Pin::new(&mut this.io),
                        cx,
                        &mut this.head
                    ))?;
                    if n == 0 {
                        // Closed while waiting for a head: hand over what there is, then EOF,
                        // and let awc name the failure.
                        this.phase = Phase::Passthrough;
                        this.ready = this.head.split();
                        if this.ready.is_empty() {
                            return Poll::Ready(Ok(()));
                        }
                        continue;
                    }
                    this.scan();
                }
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for FramingGuard<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.on_write(buf);
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            self.on_write(first);
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<IO: ActixStream> ActixStream for FramingGuard<IO> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        if !self.ready.is_empty() {
            return Poll::Ready(Ok(Ready::READABLE));
        }
        self.io.poll_read_ready(cx)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        self.io.poll_write_ready(cx)
    }
}

impl<IO> fmt::Debug for FramingGuard<IO> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FramingGuard")
            .field("phase", &self.phase)
            .finish()
    }
}

/// awc's TCP connector with every connection wrapped in a [`FramingGuard`], itself in a
/// [`Pooled`] counted against the worker's idle cap.
#[derive(Clone)]
pub struct GuardedConnector {
    inner: ConnectorService,
    idle: Rc<IdleConns>,
}

impl GuardedConnector {
    /// A connector whose connections count against `idle` while idle.
    pub fn new(idle: Rc<IdleConns>) -> GuardedConnector {
        GuardedConnector {
            inner: ConnectorService::default(),
            idle,
        }
    }
}

impl Service<ConnectInfo<Uri>> for GuardedConnector {
    type Response = Connection<Uri, Pooled>;
    type Error = ConnectError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_service::always_ready!();

    fn call(&self, req: ConnectInfo<Uri>) -> Self::Future {
        // Once per new connection (they are pooled), so the box costs nothing per request.
        let backend: Rc<str> = format!("{}:{}", req.hostname(), req.port()).into();
        let idle = self.idle.clone();
        let connect = self.inner.call(req);
        Box::pin(async move {
            let conn = connect.await?;
            let (io, conn) = conn.replace_io(());
            Ok(conn
                .replace_io(Pooled::new(FramingGuard::new(io), backend, idle))
                .1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_read_by_rfc_9112_section_6_3() {
        use BodyEnd::*;
        let fin = |end, downgrade| HeadScan::Final { end, downgrade };
        let cases: &[(&[u8], bool, HeadScan)] = &[
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                false,
                fin(Delimited, false),
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
                fin(Delimited, false),
            ),
            (
                b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody",
                false,
                fin(AtClose, true),
            ),
            (b"HTTP/1.0 200 OK\r\n\r\nbody", false, fin(AtClose, false)),
            (b"HTTP/1.1 200 OK\r\n\r\n", true, fin(Delimited, false)),
            (b"HTTP/1.1 204 No Content\r\n\r\n", false, fin(Delimited, false)),
            (b"HTTP/1.1 304 Not Modified\r\n\r\n", false, fin(Delimited, false)),
            (
                b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
                false,
                fin(Delimited, false),
            ),
            (
                b"HTTP/1.1 103 Early Hints\r\nLink: <a>\r\n\r\nHTTP/1.1 200",
                false,
                HeadScan::Interim(39),
            ),
            (b"HTTP/1.1 100 Continue\r\n\r\n", false, HeadScan::Interim(25)),
            (b"HTTP/1.1 200 OK\r\nContent-Le", false, HeadScan::Partial),
            (b"garbage\r\n\r\n", false, HeadScan::Unparsable),
        ];
        for (bytes, head, want) in cases {
            assert_eq!(
                &scan_head(bytes, *head),
                want,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    async fn read_all(guard: &mut FramingGuard<&[u8]>) -> io::Result<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let mut out = Vec::new();
        guard.read_to_end(&mut out).await?;
        Ok(out)
    }

    fn guard(bytes: &'static [u8]) -> FramingGuard<&'static [u8]> {
        let mut g = FramingGuard::new(bytes);
        g.on_write(b"GET / HTTP/1.1\r\n");
        g
    }

    #[actix_rt::test]
    async fn interim_heads_are_dropped_and_close_delimited_heads_downgraded() {
        let mut g = guard(b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 200 OK\r\nX: y\r\n\r\nbody");
        let out = read_all(&mut g).await.unwrap();
        assert_eq!(out, b"HTTP/1.0 200 OK\r\nX: y\r\n\r\nbody");
    }

    #[test]
    fn transfer_codings_and_spacing_are_read_as_actix_http_reads_them() {
        use BodyEnd::*;
        let cases: &[(&[u8], HeadScan)] = &[
            (
                b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                HeadScan::Final {
                    end: AtClose,
                    downgrade: false,
                },
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n",
                HeadScan::Final {
                    end: AtClose,
                    downgrade: true,
                },
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                HeadScan::Final {
                    end: Delimited,
                    downgrade: false,
                },
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n",
                HeadScan::Final {
                    end: Delimited,
                    downgrade: false,
                },
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                &scan_head(bytes, false),
                want,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[actix_rt::test]
    async fn the_downgrade_finds_the_status_line_after_empty_lines() {
        let mut g = guard(b"\r\nHTTP/1.1 200 OK\r\n\r\nbody");
        let out = read_all(&mut g).await.unwrap();
        assert_eq!(out, b"\r\nHTTP/1.0 200 OK\r\n\r\nbody");
    }

    #[actix_rt::test]
    async fn a_close_inside_a_delimited_body_is_an_error() {
        let mut g = guard(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
        let err = read_all(&mut g).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let mut g = guard(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
        assert!(read_all(&mut g).await.is_err());
    }

    #[actix_rt::test]
    async fn a_close_before_any_head_is_a_plain_end() {
        let mut g = guard(b"");
        assert_eq!(read_all(&mut g).await.unwrap(), b"");
        let mut g = guard(b"HTTP/1.1 200");
        assert_eq!(read_all(&mut g).await.unwrap(), b"HTTP/1.1 200");
    }
}
