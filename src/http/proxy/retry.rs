//! When a failed attempt may go to another backend: a pure decision, apart from the forwarder.
//!
//! Safe means the request cannot have been acted on twice: nothing reached the backend (a
//! connect failure, with a body nobody has read yet), or the request is idempotent and can be
//! sent again whole (no body, or one read whole before the first attempt). A request the
//! backend answered, however badly, is never sent again: it was processed.

use std::io;

use actix_http::error::ParseError;
use awc::error::{ConnectError, SendRequestError};

use super::head::HeadTooLarge;

/// How an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Nothing reached the backend: the connection could not be opened.
    Connect {
        /// The connect deadline passed (else it was refused or unreachable).
        timeout: bool,
    },
    /// The request may have reached the backend.
    AfterSend {
        /// The response-head deadline passed (else the connection broke).
        timeout: bool,
    },
    /// The backend answered, with a head the gateway cannot pass on (over the head limits, or
    /// not HTTP): the request was processed, so it is never sent again.
    Answered {
        /// The head was over `TOLLGATE_UPSTREAM_MAX_HEAD` or `TOLLGATE_UPSTREAM_MAX_HEADERS`.
        too_large: Option<HeadTooLarge>,
    },
}

impl Failure {
    /// Whether the failure was a deadline (504) rather than a broken connection (502).
    pub fn is_timeout(self) -> bool {
        matches!(
            self,
            Failure::Connect { timeout: true } | Failure::AfterSend { timeout: true }
        )
    }
}

/// The request body, as far as sending it again is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body, or one read whole before the first attempt: it can be sent again.
    Replayable,
    /// Streamed from the client; `touched` once an attempt has read any of it.
    Streamed {
        /// Some of the body was read by an attempt, so it cannot be sent again.
        touched: bool,
    },
}

/// Reads an awc send error as a [`Failure`].
pub fn classify(e: &SendRequestError) -> Failure {
    match e {
        // awc reports a connection closed before any response as `Disconnected`: the request
        // was written, so it may have been delivered.
        SendRequestError::Connect(ConnectError::Disconnected) => Failure::AfterSend { timeout: false },
        SendRequestError::Connect(ConnectError::Timeout) => Failure::Connect { timeout: true },
        SendRequestError::Connect(_) => Failure::Connect { timeout: false },
        SendRequestError::Timeout => Failure::AfterSend { timeout: true },
        SendRequestError::Response(ParseError::Io(e)) => match HeadTooLarge::within(e) {
            Some(too_large) => Failure::Answered {
                too_large: Some(too_large),
            },
            // The socket failed (reset, unreachable, timed out...): that shows nothing of what
            // the backend sent.
            None if e.raw_os_error().is_some() => Failure::AfterSend {
                timeout: e.kind() == io::ErrorKind::TimedOut,
            },
            // An error of the decoder's own, such as bytes left at the close: the connection
            // ended in the middle of a head the backend was sending.
            None => Failure::Answered { too_large: None },
        },
        // Bytes came back that are not an HTTP response head.
        SendRequestError::Response(_) => Failure::Answered { too_large: None },
        _ => Failure::AfterSend { timeout: false },
    }
}

/// Whether, every backend having been tried, the failed attempt's backend may take the
/// request once more. A connection that broke before any answer may have been a kept-alive
/// one that the backend closed while it sat idle, the request never read: a fresh connection
/// to the same backend is then the right retry (nginx retries its cached connections so),
/// and without it a lone backend's idle timeout costs a 502. The request must still pass
/// [`may_retry`].
pub fn may_repeat_on_same_backend(failure: Failure) -> bool {
    failure == Failure::AfterSend { timeout: false }
}

/// Whether the request may be tried again on another backend after `attempts` attempts
/// (`retries` extra attempts allowed in all).
pub fn may_retry(failure: Failure, idempotent: bool, body: BodyKind, attempts: usize, retries: u32) -> bool {
    if attempts > retries as usize {
        return false;
    }
    match (failure, body) {
        (Failure::Answered { .. }, _) => false,
        (Failure::Connect { .. }, BodyKind::Streamed { touched }) => !touched,
        (Failure::Connect { .. }, BodyKind::Replayable) => true,
        (Failure::AfterSend { .. }, BodyKind::Streamed { .. }) => false,
        (Failure::AfterSend { .. }, BodyKind::Replayable) => idempotent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_broken_connection_may_be_retried_on_the_same_backend() {
        for (failure, same) in [
            (Failure::AfterSend { timeout: false }, true),
            (Failure::AfterSend { timeout: true }, false),
            (Failure::Connect { timeout: false }, false),
            (Failure::Connect { timeout: true }, false),
            (Failure::Answered { too_large: None }, false),
        ] {
            assert_eq!(may_repeat_on_same_backend(failure), same, "{failure:?}");
        }
    }

    #[test]
    fn retries_only_where_nothing_can_happen_twice() {
        let connect = Failure::Connect { timeout: false };
        let connect_slow = Failure::Connect { timeout: true };
        let sent = Failure::AfterSend { timeout: false };
        let sent_slow = Failure::AfterSend { timeout: true };
        let answered = Failure::Answered { too_large: None };
        let too_large = Failure::Answered {
            too_large: Some(HeadTooLarge::Lines { limit: 256 }),
        };
        let replay = BodyKind::Replayable;
        let fresh = BodyKind::Streamed { touched: false };
        let touched = BodyKind::Streamed { touched: true };
        // (failure, idempotent, body, attempts so far, retries allowed, may retry)
        let cases = [
            (connect, false, replay, 1, 2, true),
            (connect, true, replay, 1, 2, true),
            (connect_slow, false, replay, 1, 2, true),
            (connect, false, fresh, 1, 2, true),
            (connect, true, touched, 1, 2, false),
            (sent, true, replay, 1, 2, true),
            (sent_slow, true, replay, 1, 2, true),
            (sent, false, replay, 1, 2, false),
            (sent, true, fresh, 1, 2, false),
            (sent, true, touched, 1, 2, false),
            (connect, true, replay, 2, 2, true),
            (connect, true, replay, 3, 2, false),
            (connect, true, replay, 1, 0, false),
            (answered, true, replay, 1, 2, false),
            (too_large, true, replay, 1, 2, false),
            (answered, false, fresh, 1, 2, false),
        ];
        for (failure, idempotent, body, attempts, retries, want) in cases {
            assert_eq!(
                may_retry(failure, idempotent, body, attempts, retries),
                want,
                "{failure:?} idempotent={idempotent} {body:?} attempts={attempts} retries={retries}"
            );
        }
    }

    #[test]
    fn awc_errors_are_classified_by_what_reached_the_backend() {
        let cases = [
            (
                SendRequestError::Connect(ConnectError::Timeout),
                Failure::Connect { timeout: true },
            ),
            (
                SendRequestError::Connect(ConnectError::Io(std::io::ErrorKind::ConnectionRefused.into())),
                Failure::Connect { timeout: false },
            ),
            (
                SendRequestError::Connect(ConnectError::Disconnected),
                Failure::AfterSend { timeout: false },
            ),
            (SendRequestError::Timeout, Failure::AfterSend { timeout: true }),
            (
                SendRequestError::Response(ParseError::Io(io::Error::other(HeadTooLarge::Lines {
                    limit: 256,
                }))),
                Failure::Answered {
                    too_large: Some(HeadTooLarge::Lines { limit: 256 }),
                },
            ),
            (
                SendRequestError::Response(ParseError::Io(io::Error::from_raw_os_error(104))),
                Failure::AfterSend { timeout: false },
            ),
            // Host unreachable, network unreachable: the socket's failure, not an answer.
            (
                SendRequestError::Response(ParseError::Io(io::Error::from_raw_os_error(113))),
                Failure::AfterSend { timeout: false },
            ),
            (
                SendRequestError::Response(ParseError::Io(io::Error::from_raw_os_error(101))),
                Failure::AfterSend { timeout: false },
            ),
            (
                SendRequestError::Response(ParseError::Io(io::Error::from_raw_os_error(110))),
                Failure::AfterSend { timeout: true },
            ),
            (
                SendRequestError::Response(ParseError::Io(io::Error::other("bytes remaining on stream"))),
                Failure::Answered { too_large: None },
            ),
            (
                SendRequestError::Response(ParseError::Header),
                Failure::Answered { too_large: None },
            ),
            (
                SendRequestError::Response(ParseError::TooLarge),
                Failure::Answered { too_large: None },
            ),
        ];
        for (e, want) in cases {
            assert_eq!(classify(&e), want, "{e}");
            let timed_out = match &e {
                SendRequestError::Timeout | SendRequestError::Connect(ConnectError::Timeout) => true,
                SendRequestError::Response(ParseError::Io(io)) => io.kind() == io::ErrorKind::TimedOut,
                _ => false,
            };
            assert_eq!(want.is_timeout(), timed_out, "{e}");
        }
    }
}
