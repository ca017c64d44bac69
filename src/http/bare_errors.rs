//! The gateway's JSON error body for the answers actix-http writes on its own.
//!
//! actix-http answers a request it cannot parse (400), a request head that is too large (431)
//! or one that does not arrive in time (408) itself, before any handler runs, with an empty
//! body, and offers no hook to change that. [`JsonErrors`] wraps each client connection and
//! replaces such an answer, recognised as a response head written as the connection's first
//! bytes with `content-length: 0` and no `x-request-id` (every response the gateway's handlers
//! make carries one), with the same answer carrying the JSON error body every other error has.
//!
//! Only the first write of a connection is looked at: there, the bytes are certain to start a
//! response head. Later writes may be the body of a relayed response, which must never be
//! touched (a backend's body could otherwise smuggle a response onto the client connection).
//! A malformed request that follows others on a keep-alive connection therefore keeps
//! actix-http's bare answer; malformed requests nearly always arrive on a fresh connection.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::{error_body::ErrorBody, logfmt::Escaped};

/// What the gateway calls each answer actix-http makes on its own.
fn describe(status: u16) -> Option<(&'static str, &'static str)> {
    Some(match status {
        400 => ("bad_request", "Malformed request"),
        408 => ("request_timeout", "Request not received in time"),
        413 => ("body_too_large", "Request body too large"),
        431 => ("headers_too_large", "Request headers too large"),
        500 => ("internal_error", "Internal error"),
        _ => return None,
    })
}

/// If `buf` starts with a bare answer of actix-http's own, the number of its bytes and the
/// JSON answer that replaces it.
pub fn rewrite(buf: &[u8], request_id: &str) -> Option<(usize, Vec<u8>, u16)> {
    let rest = buf
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| buf.strip_prefix(b"HTTP/1.0 "))?;
    let status: u16 = std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()?;
    let (error, message) = describe(status)?;
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut kept = Vec::new();
    let mut empty = false;
    for line in lines {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("x-request-id:") {
            return None;
        }
        if lower == "content-length: 0" {
            empty = true;
        } else if !lower.starts_with("content-type:") {
            kept.push(line);
        }
    }
    if !empty {
        return None;
    }
    let body = serde_json::to_vec(&ErrorBody {
        code: status,
        message,
        error,
        request_id,
    })
    .ok()?;
    let mut out = format!(
        "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: {request_id}\r\n",
        body.len()
    );
    for line in kept {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(&body);
    Some((end + 4, out, status))
}

/// A client connection whose bare actix-http answers get the JSON error body.
pub struct JsonErrors<IO> {
    io: IO,
    peer: Option<SocketAddr>,
    /// A replacement answer not yet written.
    pending: BytesMut,
    /// Nothing has been written yet: the next write starts the connection's first response.
    fresh: bool,
}

impl<IO> JsonErrors<IO> {
    /// Wraps the connection from `peer`.
    pub fn new(io: IO, peer: Option<SocketAddr>) -> JsonErrors<IO> {
        JsonErrors {
            io,
            peer,
            pending: BytesMut::new(),
            fresh: true,
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }
}

impl<IO: AsyncWrite + Unpin> JsonErrors<IO> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.io).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for JsonErrors<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for JsonErrors<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        std::task::ready!(this.poll_drain(cx))?;
        let first = std::mem::take(&mut this.fresh);
        // Cheap test first: only a first write that starts with a 4xx/5xx status line is read.
        if first && buf.len() > 12 && buf.starts_with(b"HTTP/1.") && matches!(buf[9], b'4' | b'5') {
            let request_id = uuid::Uuid::new_v4().simple().to_string();
            if let Some((consumed, answer, status)) = rewrite(buf, &request_id) {
                log::debug!(
                    "[{request_id}] {} from {}: answered {status} before any handler ran",
                    if status == 408 {
                        "request too slow"
                    } else {
                        "malformed request"
                    },
                    Escaped(&this.peer.map_or_else(|| "-".to_string(), |p| p.ip().to_string()))
                );
                this.pending.extend_from_slice(&answer);
                // Written now if the socket takes it; else by the next write or flush.
                if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                    return Poll::Ready(Err(e));
                }
                return Poll::Ready(Ok(consumed));
            }
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bare_answers_of_actix_http_are_rewritten() {
        let bare = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\ndate: X\r\n\r\n";
        let (consumed, out, status) = rewrite(bare, "rid").unwrap();
        assert_eq!((consumed, status), (bare.len(), 400));
        let out = String::from_utf8(out).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains("\r\ncontent-type: application/json\r\n"), "{head}");
        assert!(
            head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())),
            "{head}"
        );
        assert!(
            head.contains("\r\nconnection: close") && head.contains("\r\ndate: X"),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"], "bad_request");
        assert_eq!(v["request_id"], "rid");

        let cases: &[(&[u8], Option<u16>)] = &[
            (
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n",
                Some(431),
            ),
            (
                b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n",
                Some(408),
            ),
            // The gateway's own answers carry a request id: never touched.
            (
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-request-id: a\r\n\r\n",
                None,
            ),
            // A body: not a bare answer.
            (b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\nno", None),
            (b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", None),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", None),
            (b"HTTP/1.1 400 Bad Request\r\ncontent-le", None),
            (b"body bytes", None),
        ];
        for (bytes, want) in cases {
            let got = rewrite(bytes, "r").map(|(_, _, s)| s);
            assert_eq!(&got, want, "{}", String::from_utf8_lossy(bytes));
        }
    }
}
