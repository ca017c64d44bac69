//! Closing client connections that stay idle: the keep-alive timeout, on the worker's deadline
//! sweep instead of actix-http's timer (which is re-armed after every response).
//!
//! A connection is idle when no request on it is in progress and no byte has moved either way
//! for the keep-alive timeout. Each connection's [`IdleConn`] holds one sweep deadline, moved
//! on every read and write (a clock read and a slab write); [`track_requests`] counts the
//! requests in progress from the moment the app takes one until its response body is done,
//! so a slow backend or a slow upload is judged by its own deadline, never by this one. An
//! idle connection's next read ends as if the client had closed it: actix-http then closes it
//! the way it closes any connection its client left. A write still pending then (a client
//! that stopped reading the end of its last answer) fails, so such a connection cannot stay.

mod busy;
mod conn;

use std::{
    cell::Cell,
    rc::Rc,
    time::{Duration, Instant},
};

pub use busy::{track_requests, BusyBody};
pub use conn::IdleConn;

use crate::sweep::{Deadline, TICK};

/// The idle state of one client connection, shared by its I/O and its requests (through the
/// connection data actix-http hands every request).
#[derive(Debug)]
pub struct ConnActivity {
    deadline: Deadline,
    /// Requests in progress on the connection.
    busy: Cell<u32>,
    idle: Duration,
    /// Until the first request starts: the end of the time its head may take, before which
    /// the connection is never idle (a partial head gets actix-http's 408, not a silent close).
    first_head: Cell<Option<Instant>>,
}

impl ConnActivity {
    /// A fresh connection, closed if idle for `idle` after `first` (the time a client gets to
    /// send its first request head, which actix-http answers with a 408 itself).
    pub fn new(idle: Duration, first: Duration) -> Rc<ConnActivity> {
        let first_head = Instant::now() + first + TICK;
        Rc::new(ConnActivity {
            deadline: Deadline::at(first_head + idle),
            busy: Cell::new(0),
            idle,
            first_head: Cell::new(Some(first_head)),
        })
    }

    /// Something moved: the idle time counts from now (the clock itself: the sweep's last
    /// time can be far behind when the worker was busy, which would make the deadline early).
    fn touch(&self) {
        let at = Instant::now() + self.idle;
        self.deadline.reset(
            self.first_head
                .get()
                .map_or(at, |first| at.max(first + self.idle)),
        );
    }

    /// Whether the connection has been idle past its timeout with no request in progress.
    fn expired(&self) -> bool {
        if !self.deadline.fired() {
            return false;
        }
        if self.busy.get() > 0 {
            // A request in progress is judged by its own deadlines.
            self.touch();
            return false;
        }
        true
    }
}

/// One request in progress on a connection, from the app's call to the end of its response
/// body.
#[derive(Debug)]
pub struct BusyGuard(Option<Rc<ConnActivity>>);

impl BusyGuard {
    /// Counts a request on `conn` (none: a connection without idle tracking).
    pub fn new(conn: Option<&Rc<ConnActivity>>) -> BusyGuard {
        if let Some(c) = conn {
            c.busy.set(c.busy.get() + 1);
            c.first_head.set(None);
        }
        BusyGuard(conn.cloned())
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            c.busy.set(c.busy.get().saturating_sub(1));
            c.touch();
        }
    }
}
