//! The PostgreSQL change listener: one dedicated connection (outside the pool, on its own
//! thread) that `LISTEN`s on the change channel and wakes the registry's catch-up, and on the
//! members channel and wakes the membership read (an instance joined or left).
//!
//! A notification only says "look now"; the catch-up query is the truth. So the listener
//! needs no care about what it may miss: after every (re)connection it wakes the catch-up
//! once, and while it is down the periodic poll serves alone.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use diesel::{connection::SimpleConnection, pg::PgConnection, Connection};

use super::{db::with_pg_timeouts, CHANGES_CHANNEL, MEMBERS_CHANNEL};

/// How often received notifications are drained (they are read from the socket without a
/// query; this bounds the extra latency of a woken catch-up).
const DRAIN_EVERY: Duration = Duration::from_millis(25);

/// How often the connection is checked with a query (a cut connection is noticed by then).
const PING_EVERY: Duration = Duration::from_secs(1);

/// Wait before connecting again after the connection failed.
pub const RECONNECT_AFTER: Duration = Duration::from_secs(2);

/// What the listener wakes.
pub struct Wakers<W, M> {
    /// The registry's catch-up: called on every change notification.
    pub changes: W,
    /// The membership read: called when an instance joined or left.
    pub members: M,
}

/// Starts the listener thread on `url` (a PostgreSQL URL). Each waker is called on every
/// notification of its channel and after every (re)connection (whatever was notified while
/// disconnected is lost); the thread ends when `alive` says false.
pub fn spawn_listener<W, M>(
    url: String,
    timeout: Duration,
    wake: Wakers<W, M>,
    alive: impl Fn() -> bool + Send + 'static,
) -> std::io::Result<ListenerHandle>
where
    W: Fn() + Send + 'static,
    M: Fn() + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let alive = move || alive() && !stopping.load(Ordering::Relaxed);
    let url = with_pg_timeouts(&url, timeout);
    // Named per process, so that an operator (or a test) can tell the listeners apart.
    let sep = if url.contains('?') { '&' } else { '?' };
    let url = format!(
        "{url}{sep}application_name=tollgate-listener-{}",
        std::process::id()
    );
    std::thread::Builder::new()
        .name("tollgate-listener".into())
        .spawn(move || {
            let mut failing = false;
            while alive() {
                match listen(&url, &wake, &alive) {
                    Ok(()) => return,
                    Err(e) => {
                        if !failing {
                            log::warn!(
                                "change listener lost its database connection ({e}); the poll \
                                 serves meanwhile, reconnecting every {RECONNECT_AFTER:?}"
                            );
                            failing = true;
                        }
                    }
                }
                std::thread::sleep(RECONNECT_AFTER);
            }
        })
        .map(|thread| ListenerHandle { stop, thread })
}

/// The listener thread, to stop and wait for at shutdown: a process that exits while the
/// thread is inside libpq (reading its TLS connection) can crash in the TLS library's exit
/// handlers.
#[derive(Debug)]
pub struct ListenerHandle {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl ListenerHandle {
    /// Stops the thread and waits for it (at most a drain period plus one statement).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        if self.thread.join().is_err() {
            log::warn!("the change listener thread panicked");
        }
    }
}

/// Listens until the connection fails (`Err`) or the registry is gone (`Ok`).
fn listen<W: Fn(), M: Fn()>(
    url: &str,
    wake: &Wakers<W, M>,
    alive: &dyn Fn() -> bool,
) -> Result<(), diesel::result::Error> {
    let mut conn = PgConnection::establish(url).map_err(|e| {
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::ClosedConnection,
            Box::new(e.to_string()),
        )
    })?;
    conn.batch_execute(&format!("LISTEN {CHANGES_CHANNEL}; LISTEN {MEMBERS_CHANNEL}"))?;
    log::debug!("change listener connected");
    // Whatever was notified while disconnected is lost: catch up once now, and read the
    // membership (an instance that joined before this LISTEN notified nobody here).
    (wake.changes)();
    (wake.members)();
    let mut pinged = Instant::now();
    while alive() {
        let (mut changes, mut members) = (false, false);
        for n in conn.notifications_iter() {
            if n?.channel == MEMBERS_CHANNEL {
                members = true;
            } else {
                changes = true;
            }
        }
        if changes {
            (wake.changes)();
        }
        if members {
            (wake.members)();
        }
        if pinged.elapsed() >= PING_EVERY {
            conn.batch_execute("SELECT 1")?;
            pinged = Instant::now();
        }
        std::thread::sleep(DRAIN_EVERY);
    }
    Ok(())
}
