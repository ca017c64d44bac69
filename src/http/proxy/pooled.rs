//! A backend connection as awc holds it, in and out of awc's pool.
//!
//! [`Pooled`] wraps the [`FramingGuard`] of each connection and follows its life: a request in
//! progress, then idle in awc's pool once its response has passed whole. It does three things
//! awc does not:
//!
//! - it counts the connection idle in the worker's [`IdleConns`], which closes the ones past
//!   `TOLLGATE_UPSTREAM_IDLE` at once (freeing the socket and the buffers; awc drops the empty
//!   shell when it next takes it from its pool);
//! - when awc takes an idle connection from its pool (its check reads the connection once,
//!   without waiting), it asks the socket itself with a `MSG_PEEK` whether the backend closed
//!   it or sent bytes unasked. awc's own check goes through tokio, whose readiness is only as
//!   fresh as the worker's last turn of its event loop: on a busy worker a close that arrived
//!   since reads as "nothing yet", and the request was written onto a closed connection;
//! - right before the first write of a request on a reused connection it asks the socket once
//!   more (awc built the request in between); a close found then, or a write that fails before
//!   one byte of the request was accepted, is marked [`resend::not_sent`], for the forwarder to
//!   send the request again (see `resend`).

use std::{
    cell::{Cell, RefCell},
    fmt, io,
    mem::MaybeUninit,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
};

use actix_rt::net::{ActixStream, Ready, TcpStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{
    framing::FramingGuard,
    idle::{IdleConn, IdleConns},
    resend,
};

/// The connection, shared with the worker's [`IdleConns`] (which may close it while idle).
struct Slot {
    conn: RefCell<Option<FramingGuard<TcpStream>>>,
    token: Cell<u64>,
}

impl IdleConn for Slot {
    fn token(&self) -> u64 {
        self.token.get()
    }

    fn set_token(&self, token: u64) {
        self.token.set(token);
    }

    fn close(&self) {
        if let Ok(mut conn) = self.conn.try_borrow_mut() {
            conn.take();
        }
    }
}

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    /// New, or just taken from the pool: the next write starts a request.
    Ready,
    /// A request in progress; `accepted` once a byte of it was written.
    Busy { accepted: bool },
    /// Its response passed whole: in awc's pool (or about to be).
    Idle,
}

/// A backend connection in awc's hands (see the module documentation).
pub struct Pooled {
    slot: Rc<Slot>,
    backend: Rc<str>,
    idle: Rc<IdleConns>,
    state: Use,
    /// It has been idle in the pool at least once (so the backend may have closed it since).
    reused: bool,
}

impl Pooled {
    /// Wraps a new connection to `backend` (`host:port`), counted in `idle` while idle.
    pub fn new(conn: FramingGuard<TcpStream>, backend: Rc<str>, idle: Rc<IdleConns>) -> Pooled {
        Pooled {
            slot: Rc::new(Slot {
                conn: RefCell::new(Some(conn)),
                token: Cell::new(0),
            }),
            backend,
            idle,
            state: Use::Ready,
            reused: false,
        }
    }

    /// Leaves the idle set: awc took the connection for a request.
    fn taken(&mut self) {
        if self.state == Use::Idle {
            self.idle.leave(&self.backend, &*self.slot);
            self.state = Use::Ready;
        }
    }

    /// What the socket itself says, bypassing tokio's cached readiness: for awc's check as it
    /// takes the connection from its pool, and right before the request is written. `None`:
    /// nothing to read (the connection is usable, as far as can be known).
    fn ask_socket(&self) -> Option<io::Result<()>> {
        let conn = self.slot.conn.borrow();
        let Some(conn) = conn.as_ref() else {
            return Some(Err(closed_by_cap()));
        };
        let mut byte = [MaybeUninit::<u8>::uninit()];
        match socket2::SockRef::from(conn.get_ref()).peek(&mut byte) {
            // The backend closed it: awc drops it and takes another.
            Ok(0) => Some(Ok(())),
            Ok(_) => Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the backend sent bytes between responses",
            ))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// After a read: a response that has passed whole makes the connection idle.
    fn after_read(&mut self) {
        if matches!(self.state, Use::Busy { .. })
            && self
                .slot
                .conn
                .borrow()
                .as_ref()
                .is_some_and(|c| c.response_done())
        {
            self.state = Use::Idle;
            self.reused = true;
            let slot: Rc<dyn IdleConn> = self.slot.clone();
            self.idle.enter(&self.backend, &slot);
        }
    }

    /// Before a write: the first write after a response starts a request. On a reused
    /// connection the socket is looked at once more right before that write (awc built the
    /// request since its check): closed, reset or unasked bytes fail the write, with nothing
    /// of the request written, as [`resend::not_sent`].
    fn before_write(&mut self) -> Result<(), io::Error> {
        self.taken();
        if self.state == Use::Ready {
            self.state = Use::Busy { accepted: false };
            if self.reused {
                return match self.ask_socket() {
                    None => Ok(()),
                    Some(Ok(())) => Err(resend::not_sent(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the backend closed the connection",
                    ))),
                    Some(Err(e)) => Err(resend::not_sent(e)),
                };
            }
        }
        Ok(())
    }

    /// After a write: an error before any byte of the request was accepted is `NotSent`.
    fn after_write(&mut self, res: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match (&mut self.state, res) {
            (Use::Busy { accepted }, Poll::Ready(Ok(n))) => {
                *accepted |= n > 0;
                Poll::Ready(Ok(n))
            }
            (Use::Busy { accepted: false }, Poll::Ready(Err(e))) => Poll::Ready(Err(resend::not_sent(e))),
            (_, res) => res,
        }
    }
}

fn closed_by_cap() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "closed while idle (TOLLGATE_UPSTREAM_IDLE)",
    )
}

/// Polls the connection, or fails if the idle cap closed it.
fn poll_with<R>(
    this: &Pooled,
    f: impl FnOnce(&mut FramingGuard<TcpStream>) -> Poll<io::Result<R>>,
) -> Poll<io::Result<R>> {
    match this.slot.conn.borrow_mut().as_mut() {
        Some(conn) => f(conn),
        None => Poll::Ready(Err(closed_by_cap())),
    }
}

impl AsyncRead for Pooled {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.state == Use::Idle {
            // Nobody reads an idle connection but awc's check as it takes it from the pool.
            this.taken();
            if let Some(res) = this.ask_socket() {
                return Poll::Ready(res);
            }
        }
        let res = poll_with(this, |conn| Pin::new(conn).poll_read(cx, buf));
        this.after_read();
        res
    }
}

impl AsyncWrite for Pooled {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.before_write()?;
        let res = poll_with(this, |conn| Pin::new(conn).poll_write(cx, buf));
        this.after_write(res)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.before_write()?;
        let res = poll_with(this, |conn| Pin::new(conn).poll_write_vectored(cx, bufs));
        this.after_write(res)
    }

    fn is_write_vectored(&self) -> bool {
        self.slot
            .conn
            .borrow()
            .as_ref()
            .is_some_and(|c| c.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_with(&self, |conn| Pin::new(conn).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.slot.conn.borrow().is_none() {
            return Poll::Ready(Ok(()));
        }
        poll_with(&self, |conn| Pin::new(conn).poll_shutdown(cx))
    }
}

impl ActixStream for Pooled {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        poll_with(self, |conn| conn.poll_read_ready(cx))
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        poll_with(self, |conn| conn.poll_write_ready(cx))
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.taken();
    }
}

impl fmt::Debug for Pooled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pooled")
            .field("backend", &self.backend)
            .field("state", &self.state)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write as _,
        net::TcpListener,
        time::{Duration, Instant},
    };

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A connection through [`Pooled`] and the backend's end of it.
    async fn pair(idle: &Rc<IdleConns>) -> (Pooled, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (backend, _) = listener.accept().unwrap();
        (
            Pooled::new(
                FramingGuard::new(client, crate::http::proxy::HeadLimits::default()),
                "b:1".into(),
                idle.clone(),
            ),
            backend,
        )
    }

    /// One request and its response, read whole.
    async fn exchange(conn: &mut Pooled, backend: &mut std::net::TcpStream) {
        conn.write_all(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0u8; 27];
        std::io::Read::read_exact(backend, &mut head).unwrap();
        backend
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"ok") {
            let mut buf = [0u8; 1024];
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early");
            got.extend_from_slice(&buf[..n]);
        }
    }

    /// Polls the socket under `conn` (not through tokio) until `done` says what it shows.
    fn wait_for(conn: &Pooled, done: impl Fn(io::Result<usize>) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let shows = {
                let c = conn.slot.conn.borrow();
                let mut byte = [MaybeUninit::<u8>::uninit()];
                socket2::SockRef::from(c.as_ref().unwrap().get_ref()).peek(&mut byte)
            };
            if done(shows) {
                return;
            }
            assert!(Instant::now() < deadline, "the socket never showed it");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// awc's check of a connection it takes from its pool: one read that never waits.
    fn awc_check(conn: &mut Pooled) -> Poll<io::Result<usize>> {
        let mut bytes = [0u8; 2];
        let mut buf = ReadBuf::new(&mut bytes);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        Pin::new(conn)
            .poll_read(&mut cx, &mut buf)
            .map_ok(|()| buf.filled().len())
    }

    #[actix_rt::test]
    async fn a_close_the_event_loop_has_not_seen_yet_is_found_when_the_pool_hands_it_out() {
        let idle = Rc::new(IdleConns::new(8));
        let (mut conn, mut backend) = pair(&idle).await;
        exchange(&mut conn, &mut backend).await;
        assert_eq!(idle.idle("b:1"), 1, "idle once its response passed whole");
        // The backend closes it; this task does not yield, so the worker's event loop does not
        // learn it before awc's check (as on a busy worker).
        drop(backend);
        wait_for(&conn, |r| matches!(r, Ok(0)));
        match awc_check(&mut conn) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {}
            other => panic!("a closed connection passed awc's check: {other:?}"),
        }
        assert_eq!(idle.idle("b:1"), 0, "taken out of the pool");
    }

    #[actix_rt::test]
    async fn a_live_idle_connection_passes_the_check_and_bytes_sent_unasked_do_not() {
        let idle = Rc::new(IdleConns::new(8));
        let (mut conn, mut backend) = pair(&idle).await;
        exchange(&mut conn, &mut backend).await;
        assert!(awc_check(&mut conn).is_pending(), "a live connection is usable");
        exchange(&mut conn, &mut backend).await;
        backend
            .write_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
            .unwrap();
        wait_for(&conn, |r| matches!(r, Ok(n) if n > 0));
        assert!(matches!(awc_check(&mut conn), Poll::Ready(Err(_))));
    }

    #[actix_rt::test]
    async fn only_a_write_refused_before_any_byte_of_the_request_is_marked_not_sent() {
        let idle = Rc::new(IdleConns::new(8));
        let is_not_sent = |e: &io::Error| e.get_ref().is_some_and(|i| i.is::<resend::NotSent>());
        // Reset before the request: its first write fails with nothing accepted.
        let (mut conn, backend) = pair(&idle).await;
        socket2::SockRef::from(&backend)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(backend);
        wait_for(&conn, |r| r.is_err());
        let err = conn.write_all(b"POST / HTTP/1.1\r\n").await.unwrap_err();
        assert!(is_not_sent(&err), "{err}");
        // A reused connection the backend closed after awc's check: the write fails before
        // writing anything.
        let (mut conn, mut backend) = pair(&idle).await;
        exchange(&mut conn, &mut backend).await;
        assert!(awc_check(&mut conn).is_pending());
        drop(backend);
        wait_for(&conn, |r| matches!(r, Ok(0)));
        let err = conn.write_all(b"POST / HTTP/1.1\r\n").await.unwrap_err();
        assert!(is_not_sent(&err), "{err}");
        // Reset after part of the request was accepted: not marked.
        let (mut conn, backend) = pair(&idle).await;
        conn.write_all(b"POST / HTTP/1.1\r\n").await.unwrap();
        socket2::SockRef::from(&backend)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(backend);
        wait_for(&conn, |r| r.is_err());
        let err = conn.write_all(b"Host: b\r\n\r\n").await.unwrap_err();
        assert!(!is_not_sent(&err), "{err}");
    }

    #[actix_rt::test]
    async fn past_the_cap_the_longest_idle_connection_is_closed_at_once() {
        let idle = Rc::new(IdleConns::new(1));
        let (mut first, mut first_backend) = pair(&idle).await;
        let (mut second, mut second_backend) = pair(&idle).await;
        exchange(&mut first, &mut first_backend).await;
        exchange(&mut second, &mut second_backend).await;
        assert_eq!(idle.idle("b:1"), 1);
        // The backend sees the first one closed; the second stays open.
        first_backend
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(std::io::Read::read(&mut first_backend, &mut byte).unwrap(), 0);
        second_backend.set_nonblocking(true).unwrap();
        let open = std::io::Read::read(&mut second_backend, &mut byte).unwrap_err();
        assert_eq!(open.kind(), io::ErrorKind::WouldBlock);
        // awc's check drops the closed one.
        assert!(matches!(awc_check(&mut first), Poll::Ready(Err(_))));
        assert!(awc_check(&mut second).is_pending());
    }
}
