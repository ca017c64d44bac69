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

impl<IO: AsyncRead + Unpin> AsyncRead for IdleConn<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(activity) = &this.activity else {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        };
        if activity.expired() {
            // Read as the end of the stream: actix-http closes a connection its client left.
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    activity.touch();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                // Woken by the sweep too, to find the connection expired.
                if activity.deadline.poll_fired(cx).is_ready() && activity.expired() {
                    return Poll::Ready(Ok(()));
                }
                // A busy connection's deadline was just moved: wait on the new one.
                let _ = activity.deadline.poll_fired(cx);
                Poll::Pending
            }
            ready => ready,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for IdleConn<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.io).poll_write(cx, buf);
        if let (Poll::Ready(Ok(n)), Some(activity)) = (&written, &this.activity) {
            if *n > 0 {
                activity.touch();
            }
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
