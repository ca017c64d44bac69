//! The PostgreSQL change listener: one dedicated connection (outside the pool, on its own
//! thread) that `LISTEN`s on the change channel and wakes the registry's catch-up.
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

use super::{db::with_pg_timeouts, CHANGES_CHANNEL};

/// How often received notifications are drained (they are read from the socket without a
/// query; this bounds the extra latency of a woken catch-up).
const DRAIN_EVERY: Duration = Duration::from_millis(25);

/// How often the connection is checked with a query (a cut connection is noticed by then).
const PING_EVERY: Duration = Duration::from_secs(1);

/// Wait before connecting again after the connection failed.
pub const RECONNECT_AFTER: Duration = Duration::from_secs(2);

/// Starts the listener thread on `url` (a PostgreSQL URL). `wake` is called on every
/// notification and after every (re)connection; the thread ends when `alive` says false.
pub fn spawn_listener(
    url: String,
    timeout: Duration,
    wake: impl Fn() + Send + 'static,
    alive: impl Fn() -> bool + Send + 'static,
) -> std::io::Result<ListenerHandle> {
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
fn listen(url: &str, wake: &dyn Fn(), alive: &dyn Fn() -> bool) -> Result<(), diesel::result::Error> {
    let mut conn = PgConnection::establish(url).map_err(|e| {
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::ClosedConnection,
            Box::new(e.to_string()),
        )
    })?;
    conn.batch_execute(&format!("LISTEN {CHANGES_CHANNEL}"))?;
    log::debug!("change listener connected");
    // Whatever was notified while disconnected is lost: catch up once now.
    wake();
    let mut pinged = Instant::now();
    while alive() {
        let mut woken = false;
        for n in conn.notifications_iter() {
            n?;
            woken = true;
        }
        if woken {
            wake();
        }
        if pinged.elapsed() >= PING_EVERY {
            conn.batch_execute("SELECT 1")?;
            pinged = Instant::now();
        }
        std::thread::sleep(DRAIN_EVERY);
    }
    Ok(())
}
