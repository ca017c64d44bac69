//! Sending a request again, any method, when provably no byte of it reached the backend.
//!
//! The proof is local: the write of the request's first bytes failed, with not one byte of this
//! request accepted by the gateway's own kernel (the backend had reset the connection, or
//! closed it and the close was already known). What the kernel never accepted never left the
//! gateway, so the backend cannot have read any of it, whatever the method. Nothing else proves
//! it: once the kernel has taken the bytes, a connection closed before any response byte looks
//! the same whether the backend closed before reading the request or read it, acted on it and
//! died (a TCP reset does not tell either: a backend that closes with the request unread, or
//! with `SO_LINGER` 0, resets too). Those failures stay under the rules of `retry`.
//!
//! A pooled connection whose close has arrived is caught before any write: see `pooled`, which
//! checks the socket itself when awc takes the connection from its pool.

use std::io;

use awc::error::SendRequestError;

use super::retry::BodyKind;

/// Most times one request is sent again this way: each time costs a connection the backend
/// had closed, and awc's check drops the others it finds closed before using one.
pub const MAX_RESENDS: u32 = 3;

/// The cause of a failed write of which not one byte of the request was accepted.
#[derive(Debug, thiserror::Error)]
#[error("the backend connection failed before a byte of the request was accepted: {0}")]
pub struct NotSent(io::Error);

/// Marks `cause`, the error of a write that accepted none of the request, as [`NotSent`].
pub fn not_sent(cause: io::Error) -> io::Error {
    io::Error::new(cause.kind(), NotSent(cause))
}

/// Whether the send failed with nothing of the request accepted ([`not_sent`]).
pub fn was_not_sent(e: &SendRequestError) -> bool {
    matches!(e, SendRequestError::Send(io) if io.get_ref().is_some_and(|inner| inner.is::<NotSent>()))
}

/// Whether a request whose send failed with nothing of it accepted may be sent again, having
/// been so already `resent` times: its body must still be whole.
pub fn may_resend(resent: u32, body: BodyKind) -> bool {
    resent < MAX_RESENDS && body != (BodyKind::Streamed { touched: true })
}

#[cfg(test)]
mod tests {
    use super::*;
    use awc::error::ConnectError;

    #[test]
    fn only_a_failed_write_that_accepted_nothing_counts_as_not_sent() {
        let reset = || io::Error::from(io::ErrorKind::ConnectionReset);
        let cases = [
            (SendRequestError::Send(not_sent(reset())), true),
            (SendRequestError::Send(reset()), false),
            (SendRequestError::Connect(ConnectError::Disconnected), false),
            (SendRequestError::Timeout, false),
        ];
        for (e, want) in cases {
            assert_eq!(was_not_sent(&e), want, "{e}");
        }
        // The cause is kept for the log and the kind for awc.
        let e = not_sent(reset());
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        assert!(e
            .to_string()
            .contains("before a byte of the request was accepted"));
    }

    #[test]
    fn a_request_is_sent_again_while_its_body_is_whole() {
        let (replay, fresh, touched) = (
            BodyKind::Replayable,
            BodyKind::Streamed { touched: false },
            BodyKind::Streamed { touched: true },
        );
        // (times resent already, body, may resend)
        for (resent, body, want) in [
            (0, replay, true),
            (0, fresh, true),
            (0, touched, false),
            (MAX_RESENDS - 1, replay, true),
            (MAX_RESENDS, replay, false),
        ] {
            assert_eq!(may_resend(resent, body), want, "{resent} {body:?}");
        }
    }
}
