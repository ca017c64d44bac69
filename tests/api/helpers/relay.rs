//! A TCP relay to PostgreSQL that a test can cut or stall, to simulate a database outage or a
//! silent network.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

/// A TCP relay to PostgreSQL that a test can cut (every connection closed, new ones closed at
/// once), stall (connections stay open, new ones are accepted, but no byte passes) and
/// restore, without touching the shared server.
pub struct Relay {
    pub port: u16,
    up: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    /// Milliseconds each chunk from PostgreSQL is held back (a slow database).
    delay_ms: Arc<AtomicU64>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

/// Copies `from` to `to`, holding every chunk back while `stalled` is set, and for `delay_ms`
/// (when given).
fn pump(mut from: TcpStream, mut to: TcpStream, stalled: Arc<AtomicBool>, delay_ms: Option<Arc<AtomicU64>>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while stalled.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(ms) = delay_ms
            .as_ref()
            .map(|d| d.load(Ordering::SeqCst))
            .filter(|ms| *ms > 0)
        {
            std::thread::sleep(Duration::from_millis(ms));
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

impl Relay {
    pub fn to_postgres() -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let stalled = Arc::new(AtomicBool::new(false));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (up2, stalled2, open2, delay2) = (up.clone(), stalled.clone(), open.clone(), delay_ms.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect("127.0.0.1:5432") else {
                    continue;
                };
                {
                    let mut o = open2.lock().unwrap();
                    o.push(client.try_clone().unwrap());
                    o.push(server.try_clone().unwrap());
                }
                // Answers are held back by the delay; requests pass at once.
                for (from, to, delay) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap(), None),
                    (server, client, Some(delay2.clone())),
                ] {
                    let stalled = stalled2.clone();
                    std::thread::spawn(move || pump(from, to, stalled, delay));
                }
            }
        });
        Relay {
            port,
            up,
            stalled,
            delay_ms,
            open,
        }
    }

    /// Holds every answer of the database back by `delay` (zero: none), on open connections
    /// and new ones: a database that works, slowly.
    pub fn slow(&self, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Closes every relayed connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        // Bytes held back by a stall are dropped, not delivered: the sockets are closed first.
        self.stalled.store(false, Ordering::SeqCst);
    }

    /// Keeps every connection open (and accepts new ones) but passes no byte either way.
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    /// Relays new connections again.
    pub fn restore(&self) {
        self.stalled.store(false, Ordering::SeqCst);
        self.up.store(true, Ordering::SeqCst);
    }
}
