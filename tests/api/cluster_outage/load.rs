//! Steady load with one API key, round-robin over several gateways, tallied per gateway: what
//! the cluster admitted, refused, and anything else (other statuses, connection errors).

use std::{
    cell::{Cell, RefCell},
    fmt,
    rc::Rc,
    time::{Duration, Instant},
};

/// What one gateway answered.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// 200: admitted and proxied.
    pub ok: u64,
    /// 429: refused by the limit.
    pub limited: u64,
    /// Any other status, with its body (the first few).
    pub other: Vec<String>,
    /// Requests without an answer (connection refused or reset, timeout), the first few.
    pub errors: Vec<String>,
    /// How many other statuses and errors there were in all.
    pub other_count: u64,
    pub error_count: u64,
}

impl Tally {
    fn record_other(&mut self, what: String) {
        self.other_count += 1;
        if self.other.len() < 5 {
            self.other.push(what);
        }
    }

    fn record_error(&mut self, what: String) {
        self.error_count += 1;
        if self.errors.len() < 5 {
            self.errors.push(what);
        }
    }

    /// Whether every request got 200 or 429.
    pub fn clean(&self) -> bool {
        self.other_count == 0 && self.error_count == 0
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "200: {}, 429: {}, other: {} {:?}, errors: {} {:?}",
            self.ok, self.limited, self.other_count, self.other, self.error_count, self.errors
        )
    }
}

/// The sum of per-gateway tallies' 200s.
pub fn admitted(tallies: &[Tally]) -> u64 {
    tallies.iter().map(|t| t.ok).sum()
}

/// `connections` workers, each sending one request at a time (then pausing `pace`) to the
/// next gateway of the round-robin shared by all of them, until stopped. Runs on the test's
/// (single-threaded) actix runtime.
pub struct Load {
    stop: Rc<Cell<bool>>,
    /// Indexes (into `ports`) still sent to.
    targets: Rc<RefCell<Vec<usize>>>,
    tallies: Rc<RefCell<Vec<Tally>>>,
    /// When each 200 arrived, in order.
    admissions: Rc<RefCell<Vec<Instant>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    started: Instant,
}

impl Load {
    pub fn start(ports: &[u16], key: &str, connections: usize, pace: Duration) -> Load {
        let stop = Rc::new(Cell::new(false));
        let targets = Rc::new(RefCell::new((0..ports.len()).collect::<Vec<_>>()));
        let tallies = Rc::new(RefCell::new(vec![Tally::default(); ports.len()]));
        let admissions: Rc<RefCell<Vec<Instant>>> = Rc::default();
        let cursor = Rc::new(Cell::new(0usize));
        let urls: Rc<Vec<String>> = Rc::new(
            ports
                .iter()
                .map(|p| format!("http://127.0.0.1:{p}/load"))
                .collect(),
        );
        let workers = (0..connections)
            .map(|_| {
                let (stop, targets, tallies, cursor, urls, admissions) = (
                    stop.clone(),
                    targets.clone(),
                    tallies.clone(),
                    cursor.clone(),
                    urls.clone(),
                    admissions.clone(),
                );
                let key = key.to_string();
                actix_rt::spawn(async move {
                    // A request waits at most for one lease statement (bounded by the
                    // gateway's database timeout): 10 s without an answer is an error.
                    let client = awc::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .disable_redirects()
                        .finish();
                    while !stop.get() {
                        let target = {
                            let t = targets.borrow();
                            if t.is_empty() {
                                return;
                            }
                            let n = cursor.get();
                            cursor.set(n.wrapping_add(1));
                            t[n % t.len()]
                        };
                        let res = client
                            .get(&urls[target])
                            .insert_header(("x-api-key", key.as_str()))
                            .send()
                            .await;
                        let outcome = match res {
                            Ok(mut r) => match r.body().await {
                                Ok(body) => Ok((r.status().as_u16(), body)),
                                Err(e) => Err(format!("body: {e}")),
                            },
                            Err(e) => Err(format!("send: {e}")),
                        };
                        {
                            let mut all = tallies.borrow_mut();
                            let t = &mut all[target];
                            match outcome {
                                Ok((200, _)) => {
                                    t.ok += 1;
                                    admissions.borrow_mut().push(Instant::now());
                                }
                                Ok((429, _)) => t.limited += 1,
                                Ok((s, body)) => {
                                    t.record_other(format!("{s} {}", String::from_utf8_lossy(&body)))
                                }
                                Err(e) => t.record_error(e),
                            }
                        }
                        actix_rt::time::sleep(pace).await;
                    }
                })
            })
            .collect();
        Load {
            stop,
            targets,
            tallies,
            admissions,
            workers,
            started: Instant::now(),
        }
    }

    /// Sends nothing more to gateway `i` (requests already on their way still count).
    pub fn drop_target(&self, i: usize) {
        self.targets.borrow_mut().retain(|t| *t != i);
    }

    /// When each 200 so far arrived, in order.
    pub fn admissions(&self) -> Vec<Instant> {
        self.admissions.borrow().clone()
    }

    /// The tallies so far.
    pub fn snapshot(&self) -> Vec<Tally> {
        self.tallies.borrow().clone()
    }

    /// Stops the workers, waits for the requests in flight; the tallies and the time from the
    /// first request sent to the last answer.
    pub async fn stop(self) -> (Vec<Tally>, Duration) {
        self.stop.set(true);
        for w in self.workers {
            w.await.unwrap();
        }
        let took = self.started.elapsed();
        let tallies = self.tallies.borrow().clone();
        (tallies, took)
    }
}
