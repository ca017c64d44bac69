//! A backend connection as awc holds it, in and out of awc's pool.
//!
//! [`Pooled`] wraps the [`FramingGuard`] of each connection and follows its life: a request in
//! progress, then idle in awc's pool once its response has passed whole, and counts it idle in
//! the worker's [`IdleConns`], which closes the ones past `TOLLGATE_UPSTREAM_IDLE` at once
//! (freeing the socket and the buffers; awc drops the empty shell when it next takes it from its
//! pool).

use std::{
    cell::{Cell, RefCell},
    fmt, io,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
};

use actix_rt::net::{ActixStream, Ready, TcpStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{
    framing::FramingGuard,
    idle::{IdleConn, IdleConns},
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
    /// A request in progress.
    Busy,
    /// Its response passed whole: in awc's pool (or about to be).
    Idle,
}

/// A backend connection in awc's hands (see the module documentation).
pub struct Pooled {
    slot: Rc<Slot>,
    backend: Rc<str>,
    idle: Rc<IdleConns>,
    state: Use,
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
        }
    }

    /// Leaves the idle set: awc took the connection for a request.
    fn taken(&mut self) {
        if self.state == Use::Idle {
            self.idle.leave(&self.backend, &*self.slot);
            self.state = Use::Ready;
        }
    }

    /// After a read: a response that has passed whole makes the connection idle.
    fn after_read(&mut self) {
        if self.state == Use::Busy
            && self
                .slot
                .conn
                .borrow()
                .as_ref()
                .is_some_and(|c| c.response_done())
        {
            self.state = Use::Idle;
            let slot: Rc<dyn IdleConn> = self.slot.clone();
            self.idle.enter(&self.backend, &slot);
        }
    }

    /// Before a write: the first write after a response starts a request.
    fn before_write(&mut self) {
        self.taken();
        if self.state == Use::Ready {
            self.state = Use::Busy;
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
        // Nobody reads an idle connection but awc's check as it takes it from the pool.
        this.taken();
        let res = poll_with(this, |conn| Pin::new(conn).poll_read(cx, buf));
        this.after_read();
        res
    }
}

impl AsyncWrite for Pooled {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.before_write();
        poll_with(this, |conn| Pin::new(conn).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.before_write();
        poll_with(this, |conn| Pin::new(conn).poll_write_vectored(cx, bufs))
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
    use std::{io::Write as _, net::TcpListener, time::Duration};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A connection through [`Pooled`] and the backend's end of it.
    async fn pair(idle: &Rc<IdleConns>) -> (Pooled, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (backend, _) = listener.accept().unwrap();
        (
            Pooled::new(FramingGuard::new(client), "b:1".into(), idle.clone()),
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
