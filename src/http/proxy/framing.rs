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
//!   forwarder sees a failed body and aborts the client's connection;
//! - a head over the configured limits ([`HeadLimits`]: bytes, header lines) becomes a
//!   [`HeadTooLarge`] error, which the forwarder answers with 502 `upstream_head_too_large`.
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

use super::{
    head::{scan_head_and_end, BodyEnd, HeadLimits, HeadScan, HeadTooLarge},
    idle::IdleConns,
    pooled::Pooled,
    response_end::ResponseEnd,
};

/// Bytes read at a time while collecting a response head.
const READ_SIZE: usize = 8 * 1024;

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
    /// How large a head may be.
    limits: HeadLimits,
    /// Where the response in progress ends (for the idle cap, see `pooled`).
    end: ResponseEnd,
}

impl<IO> FramingGuard<IO> {
    /// Wraps a freshly opened backend connection.
    pub fn new(io: IO, limits: HeadLimits) -> FramingGuard<IO> {
        FramingGuard {
            io,
            phase: Phase::Head,
            head: BytesMut::new(),
            ready: BytesMut::new(),
            request_next: true,
            head_request: false,
            limits,
            end: ResponseEnd::Unknown,
        }
    }

    /// Whether the last response has passed whole to awc (the connection is between
    /// responses): its end was read, and nothing of it waits in `ready` (a head larger than
    /// awc's read buffer is handed over in several reads).
    pub fn response_done(&self) -> bool {
        self.end.is_done() && self.ready.is_empty()
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
    /// are needed, or the head is over the limits.
    fn scan(&mut self) -> Result<(), HeadTooLarge> {
        loop {
            let (scan, parsed_end) = scan_head_and_end(&self.head, self.head_request, self.limits);
            match scan {
                HeadScan::Partial => return Ok(()),
                HeadScan::Interim(len) => {
                    self.head.advance(len);
                    if self.head.is_empty() {
                        return Ok(());
                    }
                }
                HeadScan::Final { end, downgrade } => {
                    if let Some((len, mut rest)) = parsed_end {
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
                    return Ok(());
                }
                HeadScan::Unparsable => {
                    self.phase = Phase::Passthrough;
                    self.request_next = true;
                    self.ready = self.head.split();
                    return Ok(());
                }
                // The connection is not reused after the error: awc drops it.
                HeadScan::TooLarge(e) => return Err(e),
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
                    if let Err(e) = this.scan() {
                        return Poll::Ready(Err(io::Error::other(e)));
                    }
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
    limits: HeadLimits,
}

impl GuardedConnector {
    /// A connector whose connections count against `idle` while idle and hold response heads
    /// to `limits`.
    pub fn new(idle: Rc<IdleConns>, limits: HeadLimits) -> GuardedConnector {
        GuardedConnector {
            inner: ConnectorService::default(),
            idle,
            limits,
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
        let limits = self.limits;
        Box::pin(async move {
            let conn = connect.await?;
            let (io, conn) = conn.replace_io(());
            Ok(conn
                .replace_io(Pooled::new(FramingGuard::new(io, limits), backend, idle))
                .1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(guard: &mut FramingGuard<&[u8]>) -> io::Result<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let mut out = Vec::new();
        guard.read_to_end(&mut out).await?;
        Ok(out)
    }

    fn guard(bytes: &'static [u8]) -> FramingGuard<&'static [u8]> {
        let mut g = FramingGuard::new(bytes, HeadLimits::default());
        g.on_write(b"GET / HTTP/1.1\r\n");
        g
    }

    #[actix_rt::test]
    async fn interim_heads_are_dropped_and_close_delimited_heads_downgraded() {
        let mut g = guard(b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 200 OK\r\nX: y\r\n\r\nbody");
        let out = read_all(&mut g).await.unwrap();
        assert_eq!(out, b"HTTP/1.0 200 OK\r\nX: y\r\n\r\nbody");
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
    async fn the_end_of_a_long_head_response_is_known_from_the_one_parse() {
        // 200 header lines: more than the 128 a second parse once allowed (the connection was
        // then never counted idle); 4 KB, read in 1 KiB pieces.
        let mut bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n".to_vec();
        for i in 0..200 {
            bytes.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        bytes.extend_from_slice(b"\r\nok");
        let mut g = FramingGuard::new(&bytes[..], HeadLimits::default());
        g.on_write(b"GET / HTTP/1.1\r\n");
        assert!(!g.response_done());
        // As awc reads: the head and the body's two bytes, not on to the close, in reads
        // smaller than the response: not done while any of it is still to be handed over.
        let mut out = Vec::new();
        let mut chunk = [0u8; 1024];
        while out.len() < bytes.len() {
            assert!(
                !g.response_done(),
                "done with {} of {} bytes handed over",
                out.len(),
                bytes.len()
            );
            let n = tokio::io::AsyncReadExt::read(&mut g, &mut chunk).await.unwrap();
            out.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(out, bytes);
        assert!(g.response_done());
    }

    #[actix_rt::test]
    async fn a_head_over_the_limits_reads_as_a_head_too_large_error() {
        let limits = HeadLimits {
            max_bytes: 1024,
            max_lines: 2,
        };
        let mut g = FramingGuard::new(&b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"[..], limits);
        g.on_write(b"GET / HTTP/1.1\r\n");
        let err = read_all(&mut g).await.unwrap_err();
        assert_eq!(HeadTooLarge::within(&err), Some(HeadTooLarge::Lines { limit: 2 }));
    }

    #[actix_rt::test]
    async fn a_close_before_any_head_is_a_plain_end() {
        let mut g = guard(b"");
        assert_eq!(read_all(&mut g).await.unwrap(), b"");
        let mut g = guard(b"HTTP/1.1 200");
        assert_eq!(read_all(&mut g).await.unwrap(), b"HTTP/1.1 200");
    }
}
