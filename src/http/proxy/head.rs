//! A backend's response head, read as RFC 9112 §6.3 reads it and held to the configured
//! limits: pure, for the framing guard ([`super::framing`]) to act on.

use std::{io, mem::MaybeUninit};

use super::response_end::{is_chunked, ResponseEnd};

/// Most header lines [`HeadLimits::max_lines`] may allow: what the patched actix-http response
/// decoder parses (patches/actix-http/0001-response-header-lines.patch).
pub const MAX_HEADER_LINES: usize = 1024;

/// Largest [`HeadLimits::max_bytes`]: actix-http refuses a head still incomplete at 128 KiB.
pub const MAX_HEAD_BYTES: usize = 128 * 1024;

/// How large a backend's response head may be (`TOLLGATE_UPSTREAM_MAX_HEAD`,
/// `TOLLGATE_UPSTREAM_MAX_HEADERS`); each interim head is held to them too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Bytes, from the status line to the empty line that ends the head (at most
    /// [`MAX_HEAD_BYTES`]).
    pub max_bytes: usize,
    /// Header lines (at most [`MAX_HEADER_LINES`]).
    pub max_lines: usize,
}

impl Default for HeadLimits {
    /// 64 KiB and 256 lines: a head of 100 `Set-Cookie` lines passes, as through nginx with
    /// large buffers; HAProxy's default is 101 lines, nginx's 4-8 KiB.
    fn default() -> HeadLimits {
        HeadLimits {
            max_bytes: 64 * 1024,
            max_lines: 256,
        }
    }
}

/// A backend's response head over [`HeadLimits`]: the error the guard reads out to awc (inside
/// an `io::Error`), so that the forwarder can tell it from a broken connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadTooLarge {
    /// More bytes than allowed (the head may not be complete: `at_least`).
    #[error("response head of at least {at_least} bytes is over the limit of {limit} bytes (TOLLGATE_UPSTREAM_MAX_HEAD)")]
    Bytes {
        /// Head bytes seen when the limit was passed.
        at_least: usize,
        /// The limit.
        limit: usize,
    },
    /// More header lines than allowed.
    #[error("response head of more than {limit} header lines (TOLLGATE_UPSTREAM_MAX_HEADERS)")]
    Lines {
        /// The limit.
        limit: usize,
    },
}

impl HeadTooLarge {
    /// The limit `e` reports, when it is an I/O error the guard made of one.
    pub fn within(e: &io::Error) -> Option<HeadTooLarge> {
        e.get_ref()?.downcast_ref::<HeadTooLarge>().copied()
    }
}

/// How the body of the response in progress ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    /// By its own framing (chunked, `Content-Length`, or no body at all): the close of the
    /// connection before that end is an error.
    Delimited,
    /// By the close of the connection.
    AtClose,
}

/// The outcome of looking at the bytes buffered so far while waiting for a response head.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// A head over the limits.
    TooLarge(HeadTooLarge),
}

/// Reads the start of `buf` as a response head (RFC 9112 §6.3), for a request that was `HEAD`
/// when `head_request` is set (the tests' view of [`scan_head_and_end`]).
#[cfg(test)]
pub fn scan_head(buf: &[u8], head_request: bool, limits: HeadLimits) -> HeadScan {
    scan_head_and_end(buf, head_request, limits).0
}

/// [`scan_head`], and for a final head its length and where its response ends (for the idle
/// cap), from the same parse.
pub(super) fn scan_head_and_end(
    buf: &[u8],
    head_request: bool,
    limits: HeadLimits,
) -> (HeadScan, Option<(usize, ResponseEnd)>) {
    // Uninitialised slots (httparse writes each one it uses): nothing is zeroed per call.
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADER_LINES];
    let lines = limits.max_lines.clamp(1, MAX_HEADER_LINES);
    let mut resp = httparse::Response::new(&mut []);
    // The parser settings actix-http's client uses, so that both read a head alike.
    let mut config = httparse::ParserConfig::default();
    config.allow_spaces_after_header_name_in_responses(true);
    let too_large = |at_least| {
        HeadScan::TooLarge(HeadTooLarge::Bytes {
            at_least,
            limit: limits.max_bytes,
        })
    };
    let len = match config.parse_response_with_uninit_headers(&mut resp, buf, &mut slots[..lines]) {
        Ok(httparse::Status::Complete(len)) if len > limits.max_bytes => return (too_large(len), None),
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_bytes => return (too_large(buf.len()), None),
        Ok(httparse::Status::Partial) => return (HeadScan::Partial, None),
        Err(httparse::Error::TooManyHeaders) => {
            return (HeadScan::TooLarge(HeadTooLarge::Lines { limit: lines }), None);
        }
        Err(_) => return (HeadScan::Unparsable, None),
    };
    let code = resp.code.unwrap_or(0);
    if (100..200).contains(&code) && code != 101 {
        return (HeadScan::Interim(len), None);
    }
    let has = |name: &str| resp.headers.iter().any(|h| h.name.eq_ignore_ascii_case(name));
    let chunked = is_chunked(&resp);
    let bodiless = head_request || code == 204 || code == 304 || code == 101;
    let end = if bodiless || chunked || has("content-length") {
        BodyEnd::Delimited
    } else {
        BodyEnd::AtClose
    };
    let scan = HeadScan::Final {
        end,
        downgrade: end == BodyEnd::AtClose && resp.version == Some(1),
    };
    (scan, Some((len, ResponseEnd::of_parsed(&resp, head_request))))
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
                &scan_head(bytes, *head, HeadLimits::default()),
                want,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
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
                &scan_head(bytes, false, HeadLimits::default()),
                want,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn heads_over_the_limits_are_too_large() {
        let head = |lines: usize, value: usize| {
            let mut h = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..lines {
                h.extend_from_slice(format!("X-{i}: {}\r\n", "v".repeat(value)).as_bytes());
            }
            h.extend_from_slice(b"\r\n");
            h
        };
        let limits = |max_bytes, max_lines| HeadLimits { max_bytes, max_lines };
        let fin = HeadScan::Final {
            end: BodyEnd::AtClose,
            downgrade: true,
        };
        let lines = |limit| HeadScan::TooLarge(HeadTooLarge::Lines { limit });
        let big = head(100, 1000);
        let big_len = big.len();
        // (head, limits, want)
        let cases: Vec<(Vec<u8>, HeadLimits, HeadScan)> = vec![
            (head(256, 8), HeadLimits::default(), fin.clone()),
            (head(257, 8), HeadLimits::default(), lines(256)),
            (
                head(1024, 1),
                limits(MAX_HEAD_BYTES, MAX_HEADER_LINES),
                fin.clone(),
            ),
            (
                head(1025, 1),
                limits(MAX_HEAD_BYTES, MAX_HEADER_LINES),
                lines(1024),
            ),
            // A limit above what the decoder takes is held to it.
            (head(1025, 1), limits(MAX_HEAD_BYTES, 5000), lines(1024)),
            (head(10, 8), limits(1024, 10), fin.clone()),
            (head(11, 8), limits(1024, 10), lines(10)),
            (big.clone(), limits(big_len, 256), fin.clone()),
            (
                big.clone(),
                limits(big_len - 1, 256),
                HeadScan::TooLarge(HeadTooLarge::Bytes {
                    at_least: big_len,
                    limit: big_len - 1,
                }),
            ),
            // Still incomplete past the limit.
            (
                big[..5000].to_vec(),
                limits(4096, 256),
                HeadScan::TooLarge(HeadTooLarge::Bytes {
                    at_least: 5000,
                    limit: 4096,
                }),
            ),
            (big[..4000].to_vec(), limits(4096, 256), HeadScan::Partial),
        ];
        for (bytes, limits, want) in cases {
            assert_eq!(
                scan_head(&bytes, false, limits),
                want,
                "{} bytes, {limits:?}",
                bytes.len()
            );
        }
    }
}
