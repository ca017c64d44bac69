//! The cap on idle backend connections (`TOLLGATE_UPSTREAM_IDLE`), per backend and per worker.
//!
//! awc pools every connection whose response ended, without limit, and closes an idle one
//! only when a later request takes it out and finds it too old: after a burst of 5,000
//! concurrent requests, thousands of connections stayed open, idle, with their buffers. Each
//! worker keeps one [`IdleConns`]; a connection registers when its response has passed whole
//! (awc then puts it back in its pool) and leaves when a request takes it. Registering past the
//! cap closes the backend's connection that has been idle longest, at once: awc takes its
//! pooled connections oldest first, so a closed one is at the front of its queue and the next
//! request drops it (and every other closed one before the first live one).
//!
//! Leaving is O(1): an entry stays in its queue and is recognised as stale by its token.

use std::{
    cell::{Cell, RefCell},
    collections::{HashMap, VecDeque},
    rc::{Rc, Weak},
};

/// A pooled connection as the cap sees it.
pub trait IdleConn {
    /// The token of its current idle spell (0: not idle).
    fn token(&self) -> u64;
    /// Sets the token of its idle spell (0 when it leaves).
    fn set_token(&self, token: u64);
    /// Closes it now (its socket and buffers are freed; awc drops what is left when it next
    /// takes it).
    fn close(&self);
}

/// One backend's idle connections, oldest first.
#[derive(Default)]
struct Queue {
    /// Connections idle now.
    idle: usize,
    /// Idle connections and stale entries, by the token of the spell they were queued for.
    entries: VecDeque<(Weak<dyn IdleConn>, u64)>,
}

/// One worker's idle backend connections, by backend (`host:port`).
pub struct IdleConns {
    cap: usize,
    next: Cell<u64>,
    backends: RefCell<HashMap<Rc<str>, Queue>>,
}

impl IdleConns {
    /// At most `cap` idle connections per backend.
    pub fn new(cap: usize) -> IdleConns {
        IdleConns {
            cap,
            next: Cell::new(1),
            backends: RefCell::new(HashMap::new()),
        }
    }

    /// `conn` (a connection to `backend`) is idle from now on; the connections of the backend
    /// idle longest beyond the cap are closed (`conn` itself with a cap of 0).
    pub fn enter(&self, backend: &Rc<str>, conn: &Rc<dyn IdleConn>) {
        let token = self.next.get();
        self.next.set(token + 1);
        conn.set_token(token);
        let mut over = Vec::new();
        {
            let mut backends = self.backends.borrow_mut();
            let q = backends.entry(backend.clone()).or_default();
            q.idle += 1;
            q.entries.push_back((Rc::downgrade(conn), token));
            while q.idle > self.cap {
                let Some((entry, token)) = q.entries.pop_front() else {
                    break;
                };
                if let Some(c) = entry.upgrade().filter(|c| c.token() == token) {
                    c.set_token(0);
                    q.idle -= 1;
                    over.push(c);
                }
            }
            // Stale entries pile up while connections come and go under the cap.
            if q.entries.len() > 2 * q.idle + 64 {
                q.entries
                    .retain(|(c, token)| c.upgrade().is_some_and(|c| c.token() == *token));
            }
        }
        // Closed outside the borrow of the queues.
        for c in over {
            c.close();
        }
    }

    /// `conn` (a connection to `backend`) is no longer idle (taken by a request, or dropped).
    pub fn leave(&self, backend: &Rc<str>, conn: &dyn IdleConn) {
        if conn.token() == 0 {
            return;
        }
        conn.set_token(0);
        if let Some(q) = self.backends.borrow_mut().get_mut(backend) {
            q.idle = q.idle.saturating_sub(1);
        }
    }

    /// Idle connections to `backend` now.
    #[cfg(test)]
    pub fn idle(&self, backend: &str) -> usize {
        self.backends.borrow().get(backend).map_or(0, |q| q.idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Fake {
        token: Cell<u64>,
        closed: Cell<bool>,
    }

    impl IdleConn for Fake {
        fn token(&self) -> u64 {
            self.token.get()
        }
        fn set_token(&self, token: u64) {
            self.token.set(token);
        }
        fn close(&self) {
            self.closed.set(true);
        }
    }

    fn conns(n: usize) -> Vec<Rc<Fake>> {
        (0..n).map(|_| Rc::new(Fake::default())).collect()
    }

    fn dyn_conn(c: &Rc<Fake>) -> Rc<dyn IdleConn> {
        c.clone()
    }

    #[test]
    fn past_the_cap_the_longest_idle_are_closed_per_backend() {
        let a: Rc<str> = "a:1".into();
        let b: Rc<str> = "b:1".into();
        // (cap, connections going idle on a, on b, closed on a, closed on b)
        for (cap, on_a, on_b, closed_a, closed_b) in [
            (2, 5, 1, 3, 0),
            (2, 2, 2, 0, 0),
            (0, 3, 1, 3, 1),
            (32, 40, 32, 8, 0),
        ] {
            let idle = IdleConns::new(cap);
            let (ca, cb) = (conns(on_a), conns(on_b));
            for c in &ca {
                idle.enter(&a, &dyn_conn(c));
            }
            for c in &cb {
                idle.enter(&b, &dyn_conn(c));
            }
            let closed = |cs: &[Rc<Fake>]| cs.iter().filter(|c| c.closed.get()).count();
            assert_eq!((closed(&ca), closed(&cb)), (closed_a, closed_b), "cap {cap}");
            // The oldest are the ones closed.
            assert!(ca.iter().take(closed_a).all(|c| c.closed.get()), "cap {cap}");
            assert_eq!(idle.idle("a:1"), on_a - closed_a, "cap {cap}");
            assert_eq!(idle.idle("b:1"), on_b - closed_b, "cap {cap}");
        }
    }

    #[test]
    fn a_connection_taken_or_dropped_leaves_room() {
        let a: Rc<str> = "a:1".into();
        let idle = IdleConns::new(2);
        let cs = conns(3);
        idle.enter(&a, &dyn_conn(&cs[0]));
        idle.enter(&a, &dyn_conn(&cs[1]));
        // Taken by a request: no longer idle, so a third fits.
        idle.leave(&a, &*cs[0]);
        idle.leave(&a, &*cs[0]);
        idle.enter(&a, &dyn_conn(&cs[2]));
        assert!(cs.iter().all(|c| !c.closed.get()));
        assert_eq!(idle.idle("a:1"), 2);
        // Back in the pool after its response: now it is the newest, and cs[1] the oldest.
        idle.enter(&a, &dyn_conn(&cs[0]));
        assert!(cs[1].closed.get() && !cs[0].closed.get() && !cs[2].closed.get());
        // Stale entries do not grow without bound while connections come and go.
        for _ in 0..10_000 {
            idle.leave(&a, &*cs[0]);
            idle.enter(&a, &dyn_conn(&cs[0]));
        }
        assert!(idle.backends.borrow()["a:1"].entries.len() <= 2 * 2 + 65);
        assert_eq!(idle.idle("a:1"), 2);
    }
}
