//! Where a backend response ends, counted from the bytes that pass by (RFC 9112 §6.3).
//!
//! The connection wrapper needs to know when a response is over, the moment awc puts the
//! connection back in its pool (the idle cap counts pooled connections, see `pooled`). Bodies
//! pass through uncopied: only their length is counted, and a chunked body's framing stepped
//! through byte by byte outside the chunk data. Anything unexpected makes the end unknown,
//! which is the safe answer: a connection whose end is unknown is never counted idle, so the
//! cap never closes one that may still be in use.

/// Longest chunk-size line (digits and extensions) followed before giving up.
const MAX_SIZE_LINE: u32 = 1024;

/// Longest trailer section followed before giving up.
const MAX_TRAILERS: u32 = 16 * 1024;

/// The end of the body of the response in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseEnd {
    /// The whole response has passed.
    Done,
    /// This many body bytes are still to come.
    Length(u64),
    /// In a chunked body.
    Chunked(Chunk),
    /// Not known: the body ends with the connection, or the framing was not understood.
    Unknown,
}

/// Where a chunked body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// In a chunk-size line: the size so far, whether past the digits, bytes seen on the line.
    Size {
        size: u64,
        digits: bool,
        past: bool,
        seen: u32,
    },
    /// In chunk data: bytes left.
    Data(u64),
    /// After chunk data: the line end (CR LF, or a bare LF).
    DataEnd { cr: bool },
    /// In the trailer section: bytes seen, and whether at the start of a line (after a CR).
    Trailers { seen: u32, line_start: bool, cr: bool },
}

const SIZE_START: Chunk = Chunk::Size {
    size: 0,
    digits: false,
    past: false,
    seen: 0,
};

/// Whether the body of `resp` is chunked as actix-http reads it: on HTTP/1.1 only, as the
/// final coding.
pub fn is_chunked(resp: &httparse::Response<'_, '_>) -> bool {
    resp.version == Some(1)
        && resp.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("transfer-encoding")
                && std::str::from_utf8(h.value).is_ok_and(|v| {
                    v.rsplit(',')
                        .next()
                        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
                })
        })
}

impl ResponseEnd {
    /// The end of the response whose head is at the start of `buf`, and the head's length;
    /// `None` when `buf` does not start with a complete head. `head_request`: the request was
    /// a `HEAD` (no body whatever the head says). The guard itself takes the end from its own
    /// parse of the head ([`ResponseEnd::of_parsed`]); this reads one for the tests.
    #[cfg(test)]
    pub fn of_head(buf: &[u8], head_request: bool) -> Option<(usize, ResponseEnd)> {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut resp = httparse::Response::new(&mut headers);
        let mut config = httparse::ParserConfig::default();
        config.allow_spaces_after_header_name_in_responses(true);
        let len = match config.parse_response(&mut resp, buf) {
            Ok(httparse::Status::Complete(len)) => len,
            _ => return None,
        };
        Some((len, ResponseEnd::of_parsed(&resp, head_request)))
    }

    /// The end of the response whose head `resp` is (parsed once, by the framing guard).
    pub fn of_parsed(resp: &httparse::Response<'_, '_>, head_request: bool) -> ResponseEnd {
        let code = resp.code.unwrap_or(0);
        if code == 101 {
            // An upgraded connection is never pooled.
            return ResponseEnd::Unknown;
        }
        // A connection awc will not pool is never counted idle: one the backend closes after
        // this response. HTTP/1.0 ones are left uncounted too (rare; actix-http keeps them only
        // on `keep-alive`, and reads a body of length 0 until the close).
        let closes = resp.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("connection")
                && std::str::from_utf8(h.value)
                    .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
        });
        if closes || resp.version != Some(1) {
            return ResponseEnd::Unknown;
        }
        if head_request {
            return ResponseEnd::Done;
        }
        if code == 204 || code == 304 {
            // actix-http reads the body a 204 or 304 declares (a length or a coding) like any
            // other's, and the forwarder drops it: such a connection is not pooled either.
            let declares_body = resp.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("transfer-encoding")
                    || (h.name.eq_ignore_ascii_case("content-length")
                        && std::str::from_utf8(h.value).map_or(true, |v| v.trim() != "0"))
            });
            return if declares_body {
                ResponseEnd::Unknown
            } else {
                ResponseEnd::Done
            };
        }
        let mut length = None;
        let mut coded = false;
        for h in resp.headers.iter() {
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                coded = true;
            } else if h.name.eq_ignore_ascii_case("content-length") {
                let value = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok());
                match (length, value) {
                    (None, Some(v)) => length = Some(v),
                    // Repeated with the same value: one length.
                    (Some(l), Some(v)) if l == v => {}
                    _ => return ResponseEnd::Unknown,
                }
            }
        }
        let chunked = is_chunked(resp);
        match (coded, chunked, length) {
            (true, true, None) => ResponseEnd::Chunked(SIZE_START),
            (false, _, Some(0)) => ResponseEnd::Done,
            (false, _, Some(n)) => ResponseEnd::Length(n),
            // Both, a coding other than chunked, or neither: not followed.
            _ => ResponseEnd::Unknown,
        }
    }

    /// Whether the whole response has passed.
    pub fn is_done(self) -> bool {
        self == ResponseEnd::Done
    }

    /// Steps over body bytes; bytes past the end are ignored.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self {
                ResponseEnd::Done | ResponseEnd::Unknown => return,
                ResponseEnd::Length(left) => {
                    let n = (*left).min(bytes.len() as u64);
                    *left -= n;
                    if *left == 0 {
                        *self = ResponseEnd::Done;
                    }
                    return;
                }
                ResponseEnd::Chunked(Chunk::Data(left)) => {
                    let n = (*left).min(bytes.len() as u64);
                    *left -= n;
                    // `n` is at most `bytes.len()`, so it fits a usize.
                    bytes = &bytes[n as usize..];
                    if *left == 0 {
                        *self = ResponseEnd::Chunked(Chunk::DataEnd { cr: false });
                    }
                }
                ResponseEnd::Chunked(chunk) => {
                    *self = step(*chunk, bytes[0]);
                    bytes = &bytes[1..];
                }
            }
        }
    }
}

/// One byte of a chunked body's framing (outside chunk data).
fn step(chunk: Chunk, b: u8) -> ResponseEnd {
    use ResponseEnd::{Chunked, Done, Unknown};
    match chunk {
        Chunk::Size {
            size,
            digits,
            past,
            seen,
        } => {
            if seen >= MAX_SIZE_LINE {
                return Unknown;
            }
            let seen = seen + 1;
            match b {
                b'\n' if digits && size == 0 => Chunked(Chunk::Trailers {
                    seen: 0,
                    line_start: true,
                    cr: false,
                }),
                b'\n' if digits => Chunked(Chunk::Data(size)),
                b'\n' => Unknown,
                _ if past => Chunked(Chunk::Size {
                    size,
                    digits,
                    past,
                    seen,
                }),
                _ => match (b as char).to_digit(16) {
                    Some(d) => match size.checked_mul(16) {
                        Some(s) => Chunked(Chunk::Size {
                            size: s + u64::from(d),
                            digits: true,
                            past,
                            seen,
                        }),
                        None => Unknown,
                    },
                    // Extensions, or whitespace and CR before the line end.
                    None if digits && matches!(b, b';' | b' ' | b'\t' | b'\r') => Chunked(Chunk::Size {
                        size,
                        digits,
                        past: true,
                        seen,
                    }),
                    None => Unknown,
                },
            }
        }
        Chunk::DataEnd { cr } => match b {
            b'\r' if !cr => Chunked(Chunk::DataEnd { cr: true }),
            b'\n' => Chunked(SIZE_START),
            _ => Unknown,
        },
        Chunk::Trailers { seen, line_start, cr } => {
            if seen >= MAX_TRAILERS {
                return Unknown;
            }
            let seen = seen + 1;
            match b {
                b'\n' if line_start => Done,
                b'\n' => Chunked(Chunk::Trailers {
                    seen,
                    line_start: true,
                    cr: false,
                }),
                b'\r' if line_start && !cr => Chunked(Chunk::Trailers {
                    seen,
                    line_start: true,
                    cr: true,
                }),
                _ => Chunked(Chunk::Trailers {
                    seen,
                    line_start: false,
                    cr: false,
                }),
            }
        }
        Chunk::Data(_) => Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `response` in pieces of `piece` bytes; whether the end was found exactly at its
    /// last byte (never before).
    fn ends_at_last_byte(response: &[u8], head_request: bool, piece: usize) -> Option<bool> {
        let (len, mut end) = ResponseEnd::of_head(response, head_request)?;
        let body = &response[len..];
        if body.is_empty() {
            return Some(end.is_done());
        }
        for (i, part) in body.chunks(piece).enumerate() {
            if end.is_done() {
                return Some(false);
            }
            end.feed(part);
            let last = (i + 1) * piece >= body.len();
            if end.is_done() != last {
                return Some(false);
            }
        }
        Some(end.is_done())
    }

    #[test]
    fn the_end_is_found_at_the_last_byte_whatever_the_pieces() {
        let cases: &[(&[u8], bool)] = &[
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false),
            (b"HTTP/1.1 204 No Content\r\n\r\n", false),
            (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 0\r\n\r\n", false),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\nA;x=y\r\n0123456789\r\n\
                  1f\r\n0123456789012345678901234567890\r\n0\r\nX-Sum: 1\r\n\r\n",
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n",
                false,
            ),
        ];
        for (response, head) in cases {
            for piece in [1, 2, 3, 7, 4096] {
                assert_eq!(
                    ends_at_last_byte(response, *head, piece),
                    Some(true),
                    "{} in pieces of {piece}",
                    String::from_utf8_lossy(response)
                );
            }
        }
    }

    #[test]
    fn framing_it_does_not_follow_leaves_the_end_unknown() {
        let unknown: &[&[u8]] = &[
            // Connections awc does not pool (found by review: a closing response was counted
            // idle, and at the cap evicted a good pooled connection).
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nConnection: Upgrade, Close\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            // Until the close of the connection.
            b"HTTP/1.1 200 OK\r\n\r\nbody",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            // Conflicting framing.
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        ];
        for response in unknown {
            let (_, end) = ResponseEnd::of_head(response, false).unwrap();
            assert_eq!(end, ResponseEnd::Unknown, "{}", String::from_utf8_lossy(response));
        }
        // A broken chunk: unknown from there on, never done.
        let mut end = ResponseEnd::Chunked(SIZE_START);
        end.feed(b"zz\r\n0\r\n\r\n");
        assert_eq!(end, ResponseEnd::Unknown);
        let mut end = ResponseEnd::Chunked(SIZE_START);
        end.feed(b"3\r\nabcX0\r\n\r\n");
        assert_eq!(end, ResponseEnd::Unknown);
        let mut end = ResponseEnd::Chunked(SIZE_START);
        end.feed(b"fffffffffffffffff\r\n");
        assert_eq!(end, ResponseEnd::Unknown);
        assert_eq!(ResponseEnd::of_head(b"HTTP/1.1 200 OK\r\n", false), None);
    }
}
