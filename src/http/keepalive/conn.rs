//! The client connection's I/O, watched for idleness (see the module above).

use std::{
    io,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::ConnActivity;

/// A client connection's I/O that reads as closed once the connection has been idle past its
/// keep-alive timeout.
#[derive(Debug)]
pub struct IdleConn<IO> {
    io: IO,
    /// `None`: keep-alive is off, actix-http closes after each response.
    activity: Option<Rc<ConnActivity>>,
}

impl<IO> IdleConn<IO> {
    /// Watches `io` with `activity`.
    pub fn new(io: IO, activity: Option<Rc<ConnActivity>>) -> IdleConn<IO> {
        IdleConn { io, activity }
    }

    /// The connection's idle state, for the connection data of its requests.
    pub fn activity(&self) -> Option<&Rc<ConnActivity>> {
        self.activity.as_ref()
    }
}

impl<IO> IdleConn<IO> {
    /// On a pending read or write: whether the connection is idle past its timeout (then it
    /// must end); otherwise the task is woken when the deadline passes.
    fn idle_past_timeout(&self, cx: &mut Context<'_>) -> bool {
        let Some(activity) = &self.activity else {
            return false;
        };
        if activity.deadline.poll_fired(cx).is_ready() {
            if activity.expired() {
                return true;
            }
            // A busy connection's deadline was just moved: wait on the new one.
            let _ = activity.deadline.poll_fired(cx);
        }
        false
    }

    fn touch(&self) {
        if let Some(activity) = &self.activity {
            activity.touch();
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for IdleConn<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.touch();
                }
                Poll::Ready(Ok(()))
            }
            // Read as the end of the stream: actix-http closes a connection its client left.
            Poll::Pending if this.idle_past_timeout(cx) => Poll::Ready(Ok(())),
            other => other,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for IdleConn<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.touch();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending if this.idle_past_timeout(cx) => Poll::Ready(Err(idle_error())),
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Pending if this.idle_past_timeout(cx) => Poll::Ready(Err(idle_error())),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A client that stopped reading while its connection sat idle past the timeout.
fn idle_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "client connection idle past the keep-alive timeout",
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::{http::keepalive::BusyGuard, sweep::TICK};

    const IDLE: Duration = Duration::from_millis(200);

    /// A connection to a client that sends nothing and reads nothing, past its first head.
    fn quiet_conn() -> (
        IdleConn<tokio::io::DuplexStream>,
        tokio::io::DuplexStream,
        Rc<ConnActivity>,
    ) {
        let (ours, theirs) = duplex(64);
        let activity = ConnActivity::new(IDLE, Duration::ZERO);
        (IdleConn::new(ours, Some(activity.clone())), theirs, activity)
    }

    #[actix_rt::test]
    async fn an_idle_connection_reads_as_closed_after_its_timeout_not_before() {
        let (mut conn, _client, _) = quiet_conn();
        let started = Instant::now();
        let mut buf = [0u8; 16];
        let n = actix_rt::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .expect("never read as closed")
            .unwrap();
        assert_eq!(n, 0);
        let took = started.elapsed();
        assert!(took >= IDLE, "closed after {took:?}");
        assert!(took <= IDLE + 5 * TICK, "closed after {took:?}");
    }

    #[actix_rt::test]
    async fn a_request_in_progress_keeps_the_connection_and_its_end_starts_the_idle_time() {
        let (mut conn, _client, activity) = quiet_conn();
        let busy = BusyGuard::new(Some(&activity));
        let mut buf = [0u8; 16];
        let waited = actix_rt::time::timeout(IDLE * 3, conn.read(&mut buf)).await;
        assert!(waited.is_err(), "closed while a request was in progress");
        drop(busy);
        let ended = Instant::now();
        let n = actix_rt::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .expect("never read as closed")
            .unwrap();
        assert_eq!(n, 0);
        assert!(
            ended.elapsed() >= IDLE,
            "closed {:?} after the request",
            ended.elapsed()
        );
    }

    // Failed before the fix (review): a write the client never read stayed pending forever.
    #[actix_rt::test]
    async fn a_write_the_client_never_reads_fails_once_the_connection_is_idle() {
        let (mut conn, _client, _) = quiet_conn();
        let written = actix_rt::time::timeout(Duration::from_secs(5), conn.write_all(&[b'x'; 1024]))
            .await
            .expect("the write stayed pending");
        let err = written.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
