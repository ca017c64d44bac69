//! Several gateway processes on one database, and the traffic of the cluster tests.
//!
//! - [`TestCluster`]: N gateway processes on one [`TestDb`] with the same flags, one backend;
//!   instances can be stopped and started again with the same flags;
//! - [`create_clients`] through one instance's admin API, [`wait_known`] until every
//!   instance applied them, [`wait_live`] until every instance counts N live instances;
//! - [`Load`]: requests with API keys, round-robin over instances, from K concurrent
//!   connections for a duration (in phases, optionally paced); [`LoadReport`] counts 200, 429
//!   and anything else, and measures `T` from the first request sent to the last answer;
//! - [`cluster_view`] and [`lease_statements`]: `GET /cluster`.

use std::{
    cell::RefCell,
    collections::BTreeMap,
    fmt,
    rc::Rc,
    time::{Duration, Instant},
};

use futures_util::future::join_all;
use serde_json::Value;

use super::{eventually, GatewayProcess, TestBackend, TestDb};

/// N gateway processes on one database, proxying to one backend.
///
/// Fields drop in order: the processes first, then the backend, then the database (a database
/// dropped under running gateways would fill their logs with errors).
pub struct TestCluster {
    /// The running instances (a stopped one is taken out by [`TestCluster::stop_all`]).
    pub instances: Vec<GatewayProcess>,
    pub backend: TestBackend,
    pub db: TestDb,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl TestCluster {
    /// Starts `n` instances on `db` with `args` and `env` (after the defaults of
    /// [`TestCluster::instance_on`], which they override), and waits until all are ready and
    /// each counts `n` live instances.
    pub async fn start(db: TestDb, n: usize, args: &[&str], env: &[(&str, &str)]) -> TestCluster {
        let mut cluster = TestCluster {
            instances: Vec::new(),
            backend: TestBackend::start("cluster"),
            db,
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        cluster.start_instances(n).await;
        cluster
    }

    /// Starts `n` more instances with the cluster's flags; waits until all are ready and
    /// every instance counts them all alive.
    pub async fn start_instances(&mut self, n: usize) {
        let url = self.db.url();
        for _ in 0..n {
            let gw = self.instance_on(&url);
            self.instances.push(gw);
        }
        for gw in &self.instances {
            gw.wait_ready().await;
        }
        wait_live(&self.instances, self.instances.len()).await;
    }

    /// One instance with the cluster's flags on `db_url` (e.g. through a relay), not waited
    /// for and not added to [`TestCluster::instances`]. Defaults: the cluster's backend,
    /// health checks an hour apart, stderr captured, and anonymous defaults so high that
    /// polling costs the test's address nothing.
    pub fn instance_on(&self, db_url: &str) -> GatewayProcess {
        let mut b = GatewayProcess::builder()
            .backends(&[self.backend.url()])
            .args(&["--health-interval", "1h"])
            .env("TOLLGATE_DEFAULT_CAPACITY", "1000000")
            .env("TOLLGATE_DEFAULT_RATE", "1000000")
            .database_url(db_url)
            .capture_stderr();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        b = b.args(&args);
        for (k, v) in &self.env {
            b = b.env(k, v);
        }
        b.spawn()
    }

    /// Stops every instance with SIGTERM (graceful) and waits until each exited with status
    /// 0; panics with the instance's log otherwise.
    pub async fn stop_all(&mut self) {
        for gw in &self.instances {
            gw.signal("-TERM");
        }
        for mut gw in self.instances.drain(..) {
            let status = gw.wait_exit(Duration::from_secs(15)).await;
            assert_eq!(
                status.code(),
                Some(0),
                "{status:?}; the instance's log:\n{}",
                gw.stderr()
            );
        }
    }

    /// The instance `i`.
    pub fn gw(&self, i: usize) -> &GatewayProcess {
        &self.instances[i]
    }

    /// Every instance's captured log, one after the other (for failure messages).
    pub fn logs(&self) -> String {
        self.instances
            .iter()
            .map(|gw| format!("--- instance :{} ---\n{}", gw.port, gw.stderr()))
            .collect()
    }
}

/// An admin API request to `gw`: status and JSON body (`Null` when there is none).
pub async fn admin_json(gw: &GatewayProcess, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let c = super::client();
    let req = c.request(method.parse().unwrap(), gw.admin_url(path));
    let mut resp = match body {
        Some(b) => req.send_json(b).await.unwrap(),
        None => req.send().await.unwrap(),
    };
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().limit(64 << 20).await.unwrap_or(Value::Null);
    (status, body)
}

/// Creates `clients` (JSON bodies of `POST /clients`) through `gw`'s admin API: one by
/// `POST /clients`, several by `POST /clients/batch`. Panics unless answered 201.
pub async fn create_clients(gw: &GatewayProcess, clients: &[Value]) {
    let (status, body) = match clients {
        [one] => admin_json(gw, "POST", "/clients", Some(one)).await,
        many => admin_json(gw, "POST", "/clients/batch", Some(&Value::from(many.to_vec()))).await,
    };
    assert_eq!(status, 201, "creating {} clients: {body}", clients.len());
}

/// Waits until every one of `gws` knows every client of `ids` (its admin API shows it).
pub async fn wait_known(gws: &[GatewayProcess], ids: &[&str]) {
    for gw in gws {
        for id in ids {
            eventually(
                &format!("client {id} known on :{}", gw.port),
                Duration::from_secs(10),
                || async { admin_json(gw, "GET", &format!("/clients/{id}"), None).await.0 == 200 },
            )
            .await;
        }
    }
}

/// `GET /cluster` of `gw` (no admin token).
pub async fn cluster_view(gw: &GatewayProcess) -> Value {
    let (status, view) = admin_json(gw, "GET", "/cluster", None).await;
    assert_eq!(status, 200, "{view}");
    view
}

/// Waits until every one of `gws` counts `n` live instances (`limits.live_instances`), so
/// that leases are sized for the whole cluster.
pub async fn wait_live(gws: &[GatewayProcess], n: usize) {
    for gw in gws {
        eventually(
            &format!("{n} live instances on :{}", gw.port),
            Duration::from_secs(15),
            || async { cluster_view(gw).await["limits"]["live_instances"] == n },
        )
        .await;
    }
}

/// Lease statements an instance sent since it started (`limits.lease_statements`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeaseStatements {
    /// Sent on a lease tick.
    pub tick: u64,
    /// Sent for requests waiting for a token.
    pub on_demand: u64,
}

impl std::ops::Sub for LeaseStatements {
    type Output = LeaseStatements;

    fn sub(self, earlier: LeaseStatements) -> LeaseStatements {
        LeaseStatements {
            tick: self.tick - earlier.tick,
            on_demand: self.on_demand - earlier.on_demand,
        }
    }
}

/// `limits.lease_statements` of `gw`'s `GET /cluster`.
pub async fn lease_statements(gw: &GatewayProcess) -> LeaseStatements {
    let view = cluster_view(gw).await;
    let s = &view["limits"]["lease_statements"];
    LeaseStatements {
        tick: s["tick"].as_u64().unwrap_or_else(|| panic!("{view}")),
        on_demand: s["on_demand"].as_u64().unwrap_or_else(|| panic!("{view}")),
    }
}

/// Answers counted by status class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub ok: u64,
    pub limited: u64,
    /// Any other status, or no answer at all.
    pub other: u64,
}

impl Counts {
    fn add(&mut self, status: Option<u16>) {
        match status {
            Some(200) => self.ok += 1,
            Some(429) => self.limited += 1,
            _ => self.other += 1,
        }
    }

    /// Every request counted.
    pub fn sent(&self) -> u64 {
        self.ok + self.limited + self.other
    }
}

/// What a [`Load`] run saw.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// All answers.
    pub total: Counts,
    /// Answers per instance (by proxy port).
    pub by_port: BTreeMap<u16, Counts>,
    /// From the first request sent to the last answer received.
    pub elapsed: Duration,
    /// The first few answers that were neither 200 nor 429 (status or error).
    pub other_samples: Vec<String>,
}

impl LoadReport {
    /// Requests sent (each got an answer or an error).
    pub fn sent(&self) -> u64 {
        self.total.sent()
    }

    /// Requests sent per second over [`LoadReport::elapsed`].
    pub fn demand_per_sec(&self) -> f64 {
        self.sent() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// `C + R·T` with `T` this run's time (tokens a bucket of `capacity` and `rate` per
    /// second can create over the run).
    pub fn bound(&self, capacity: f64, rate: f64) -> f64 {
        capacity + rate * self.elapsed.as_secs_f64()
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} sent in {:.3} s ({:.0}/s): {} × 200, {} × 429, {} other",
            self.sent(),
            self.elapsed.as_secs_f64(),
            self.demand_per_sec(),
            self.total.ok,
            self.total.limited,
            self.total.other
        )?;
        for (port, c) in &self.by_port {
            write!(f, "; :{port} {}/{}/{}", c.ok, c.limited, c.other)?;
        }
        if !self.other_samples.is_empty() {
            write!(f, "; other answers: {:?}", self.other_samples)?;
        }
        Ok(())
    }
}

/// One part of a [`Load`] run: how long, and over which instances (by proxy port).
struct Phase {
    duration: Duration,
    ports: Vec<u16>,
}

/// Requests with API keys from concurrent connections, round-robin over instances.
///
/// Connection `j` sends its `i`-th request of a phase to instance `(j + i) mod n` of the
/// phase's instances; request number `k` of the run (over all connections) carries key
/// `k mod keys`. Without [`Load::rate`] each connection sends its next request as soon as
/// the previous answer is in.
pub struct Load {
    keys: Vec<String>,
    connections: usize,
    phases: Vec<Phase>,
    rate: Option<f64>,
    path: String,
}

#[derive(Default)]
struct Tally {
    report: LoadReport,
    first_sent: Option<Instant>,
    last_answer: Option<Instant>,
    next_key: usize,
}

impl Load {
    /// A run with these API keys from `connections` concurrent connections.
    pub fn new(keys: &[&str], connections: usize) -> Load {
        assert!(!keys.is_empty() && connections > 0);
        Load {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            connections,
            phases: Vec::new(),
            rate: None,
            path: "/load".into(),
        }
    }

    /// Adds a phase: `duration` of traffic over `instances`.
    pub fn phase(mut self, duration: Duration, instances: &[&GatewayProcess]) -> Load {
        assert!(!instances.is_empty());
        self.phases.push(Phase {
            duration,
            ports: instances.iter().map(|gw| gw.port).collect(),
        });
        self
    }

    /// Paces the run: `per_sec` requests per second over all connections together (each
    /// connection on its own schedule; one that falls behind does not catch up in a burst).
    pub fn rate(mut self, per_sec: f64) -> Load {
        assert!(per_sec > 0.0);
        self.rate = Some(per_sec);
        self
    }

    /// Runs every phase, one after the other, and reports what came back.
    pub async fn run(self) -> LoadReport {
        let tally = Rc::new(RefCell::new(Tally::default()));
        let start = Instant::now();
        let mut ends = Vec::new();
        let mut at = start;
        for p in &self.phases {
            at += p.duration;
            ends.push(at);
        }
        let interval = self
            .rate
            .map(|r| Duration::from_secs_f64(self.connections as f64 / r));
        let connections = (0..self.connections).map(|j| {
            let (tally, ends, this) = (tally.clone(), ends.clone(), &self);
            async move {
                let c = awc::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .disable_redirects()
                    .finish();
                // Connections start spread over the first interval when paced.
                let mut next =
                    start + interval.map_or(Duration::ZERO, |i| i * j as u32 / this.connections as u32);
                for (phase, end) in this.phases.iter().zip(ends) {
                    let mut i = 0;
                    loop {
                        if interval.is_some() {
                            actix_rt::time::sleep_until(next.into()).await;
                        }
                        if Instant::now() >= end {
                            break;
                        }
                        let port = phase.ports[(j + i) % phase.ports.len()];
                        i += 1;
                        let key = {
                            let mut t = tally.borrow_mut();
                            t.next_key += 1;
                            t.first_sent.get_or_insert_with(Instant::now);
                            this.keys[(t.next_key - 1) % this.keys.len()].clone()
                        };
                        let answer = c
                            .get(format!("http://127.0.0.1:{port}{}", this.path))
                            .insert_header(("x-api-key", key))
                            .send()
                            .await;
                        let status = match answer {
                            Ok(mut r) => {
                                // Read to the end so that the connection is reused.
                                let _ = r.body().limit(1 << 20).await;
                                Ok(r.status().as_u16())
                            }
                            Err(e) => Err(e.to_string()),
                        };
                        let mut t = tally.borrow_mut();
                        t.last_answer = Some(Instant::now());
                        let s = status.as_ref().ok().copied();
                        t.report.total.add(s);
                        t.report.by_port.entry(port).or_default().add(s);
                        if !matches!(s, Some(200 | 429)) && t.report.other_samples.len() < 10 {
                            let sample = match status {
                                Ok(code) => format!(":{port} {code}"),
                                Err(e) => format!(":{port} {e}"),
                            };
                            t.report.other_samples.push(sample);
                        }
                        if let Some(step) = interval {
                            next = (next + step).max(Instant::now());
                        }
                    }
                }
            }
        });
        join_all(connections).await;
        let t = tally.take();
        let mut report = t.report;
        if let (Some(first), Some(last)) = (t.first_sent, t.last_answer) {
            report.elapsed = last - first;
        }
        report
    }
}
