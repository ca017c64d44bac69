//! The [`Sampler`] actor: reads the gateway's counters once a second into a short window
//! (for rates) and a five-minute history (for the chart), and keeps the busiest clients in
//! view while someone watches the status page.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use actix::{
    fut::wrap_future, Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, MailboxError, Message,
    MessageResult,
};

use super::{
    report::{
        BackendView, ClientRate, Counted, HistoryView, LimitsView, Point, PoolView, StatusReport, TotalsView,
    },
    sample::{self, BackendCounts, Sample, Totals},
    Ring,
};
use crate::{
    metrics::{ClientCounts, TrafficSet},
    pool::{GetBackends, PoolHandle, PoolStatus},
    registry::{ClientEntry, RegistryHandle},
};

/// Time between two samples.
const INTERVAL: Duration = Duration::from_secs(1);
/// Samples kept for rates: rates are over the last five seconds.
const WINDOW: usize = 6;
/// Points of the chart: five minutes.
const HISTORY: usize = 300;
/// Clients shown.
const TOP: usize = 10;
/// Time between two scans for the busiest clients, while the page is watched.
const RESCAN: Duration = Duration::from_secs(5);
/// The page counts as watched this long after its last `GET /status`: no one watching, no
/// scan of the client table.
const WATCHED_FOR: Duration = Duration::from_secs(30);
/// The pool answers a sample's question within this, or the sample is skipped.
const POOL_TIMEOUT: Duration = Duration::from_secs(1);

/// Where the sampler reads.
pub struct Sources {
    /// The backends.
    pub pool: PoolHandle,
    /// The clients and the limiter's decisions; `None` with rate limiting off.
    pub registry: Option<RegistryHandle>,
    /// The proxy workers' answers; `None` with metrics off (then nothing is recorded there).
    pub traffic: Option<Arc<TrafficSet>>,
    /// This instance's id.
    pub instance_id: String,
}

/// Samples the counters once a second. Its memory is bounded: a window of [`WINDOW`]
/// samples, [`HISTORY`] points and [`TOP`] tracked clients.
pub struct Sampler {
    src: Sources,
    started: Instant,
    /// The latest samples, for rates.
    window: Ring<Sample>,
    /// Requests per second, once a second.
    history: Ring<Point>,
    /// The pool as last read.
    pool: Option<PoolStatus>,
    /// The busiest clients at the last scan, busiest first.
    tracked: Vec<Arc<ClientEntry>>,
    /// Last `GET /status`.
    watched: Option<Instant>,
    /// Last scan for the busiest clients.
    scanned: Option<Instant>,
    /// A scan or a sample is under way (never two at once).
    scanning: bool,
    sampling: bool,
}

impl Sampler {
    fn new(src: Sources) -> Sampler {
        Sampler {
            src,
            started: Instant::now(),
            window: Ring::new(WINDOW),
            history: Ring::new(HISTORY),
            pool: None,
            tracked: Vec::new(),
            watched: None,
            scanned: None,
            scanning: false,
            sampling: false,
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if !self.sampling {
            self.sampling = true;
            let ask = self.src.pool.addr().send(GetBackends).timeout(POOL_TIMEOUT);
            ctx.spawn(wrap_future(ask).map(|answer, act: &mut Sampler, _| {
                act.sampling = false;
                match answer {
                    Ok(pool) => act.record(pool),
                    Err(e) => log::debug!("status: the backend pool did not answer: {e}"),
                }
            }));
        }
        let watched = self.watched.is_some_and(|w| w.elapsed() < WATCHED_FOR);
        let due = self.scanned.is_none_or(|s| s.elapsed() >= RESCAN);
        if watched && due {
            self.scan(ctx);
        }
    }

    /// Finds the busiest clients, off the actor's thread (a scan of a million clients takes
    /// a while).
    fn scan(&mut self, ctx: &mut Context<Self>) {
        let Some(registry) = self.src.registry.clone() else {
            return;
        };
        if self.scanning {
            return;
        }
        self.scanning = true;
        let scan = actix_rt::task::spawn_blocking(move || {
            let top = registry.busiest(TOP);
            top.iter()
                .filter_map(|c| registry.table().get(&c.id))
                .collect::<Vec<_>>()
        });
        ctx.spawn(wrap_future(scan).map(|found, act: &mut Sampler, _| {
            act.scanning = false;
            act.scanned = Some(Instant::now());
            match found {
                Ok(top) => act.tracked = top,
                Err(e) => log::warn!("status: the scan for the busiest clients failed: {e}"),
            }
        }));
    }

    fn record(&mut self, pool: PoolStatus) {
        let backends: Vec<BackendCounts> = pool
            .backends
            .iter()
            .map(|b| BackendCounts {
                id: b.id.clone(),
                requests: b.requests_total,
                errors: b.failures_total.saturating_add(b.answers[4]),
            })
            .collect();
        let mut totals = Totals::default();
        if let Some(traffic) = &self.src.traffic {
            totals.by_class = traffic.totals().own_answers;
            for b in &pool.backends {
                for (sum, n) in totals.by_class.iter_mut().zip(b.answers) {
                    *sum += n;
                }
            }
            totals.requests = totals.by_class.iter().sum();
        } else {
            totals.requests = backends.iter().map(|b| b.requests).sum();
        }
        if let Some(registry) = &self.src.registry {
            let d = registry.decisions().snapshot();
            // Refused clients and refused anonymous callers (shadow refusals were let through).
            totals.refused = d[1] + d[4];
        }
        let s = Sample {
            at: Instant::now(),
            unix_ms: unix_ms(),
            totals,
            backends,
            clients: self
                .tracked
                .iter()
                .map(|e| ClientCounts {
                    id: e.id.to_string(),
                    admitted: e.cell.admitted(),
                    refused: e.cell.refused(),
                })
                .collect(),
        };
        if let Some(last) = self.window.newest() {
            let secs = s.at.saturating_duration_since(last.at).as_secs_f64();
            if secs > 0.0 {
                self.history.push(Point {
                    t: s.unix_ms,
                    rps: s.totals.requests.saturating_sub(last.totals.requests) as f64 / secs,
                    refused_ps: s.totals.refused.saturating_sub(last.totals.refused) as f64 / secs,
                });
            }
        }
        self.window.push(s);
        self.pool = Some(pool);
    }

    fn report(&self) -> Readings {
        let newest = self.window.newest().map(|s| s.totals).unwrap_or_default();
        let per_sec = sample::rates(&self.window, |s| Some([s.totals.requests, s.totals.refused]));
        let metrics = self.src.traffic.is_some();
        let limiting = self.src.registry.as_ref();
        let backends = self.pool.as_ref().map_or_else(Vec::new, |p| {
            p.backends
                .iter()
                .map(|b| {
                    let rates = sample::rates(&self.window, |s| sample::backend(s, &b.id));
                    BackendView {
                        id: b.id.clone(),
                        url: b.url.clone(),
                        state: b.state,
                        healthy: b.healthy,
                        enabled: b.enabled,
                        weight: b.weight,
                        in_flight: b.in_flight,
                        requests: b.requests_total,
                        failures: b.failures_total,
                        last_check: b.last_check.clone(),
                        rps: rates.map(|r| r[0]),
                        error_rate: rates
                            .and_then(|[sent, errors]| (sent > 0.0).then(|| (errors / sent).min(1.0))),
                    }
                })
                .collect()
        });
        let clients = self
            .tracked
            .iter()
            .map(|e| {
                let rates = sample::rates(&self.window, |s| sample::client(s, &e.id));
                ClientRate {
                    id: e.id.to_string(),
                    admitted_per_sec: rates.map(|r| r[0]),
                    refused_per_sec: rates.map(|r| r[1]),
                }
            })
            .collect();
        let report = StatusReport {
            instance_id: self.src.instance_id.clone(),
            now_ms: unix_ms(),
            uptime_s: self.started.elapsed().as_secs(),
            window_s: sample::span_secs(&self.window),
            counted: if metrics {
                Counted::Answers
            } else {
                Counted::BackendRequests
            },
            totals: TotalsView {
                requests: newest.requests,
                per_sec: per_sec.map(|r| r[0]),
                by_class: metrics.then(|| newest.by_class.into()),
                refused: limiting.map(|_| newest.refused),
                refused_per_sec: limiting.and(per_sec).map(|r| r[1]),
            },
            history: HistoryView {
                interval_s: INTERVAL.as_secs(),
                points: self.history.iter().copied().collect(),
            },
            pool: PoolView {
                strategy: self
                    .pool
                    .as_ref()
                    .map_or_else(String::new, |p| p.strategy.clone()),
                panic: self.pool.as_ref().is_some_and(|p| p.panic),
            },
            backends,
            limits: limiting.map(|r| LimitsView {
                mode: r.share().mode(),
                live_instances: r.share().live(),
                registered: r.table().len(),
            }),
            clients: None,
        };
        Readings { report, clients }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Actor for Sampler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.tick(ctx);
        ctx.run_interval(INTERVAL, Sampler::tick);
    }
}

/// The status now, for `GET /status`; counts the page as watched.
#[derive(Debug, Message)]
#[rtype(result = "Readings")]
pub struct GetStatus;

/// What [`GetStatus`] answers: the report without its clients, and the busiest clients'
/// rates (the admin handler adds their tokens, which may need the database).
#[derive(Debug, Clone)]
pub struct Readings {
    /// The report, `clients` left `None`.
    pub report: StatusReport,
    /// The busiest clients, busiest first (empty with rate limiting off).
    pub clients: Vec<ClientRate>,
}

impl Handler<GetStatus> for Sampler {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, ctx: &mut Context<Self>) -> Self::Result {
        self.watched = Some(Instant::now());
        // The first look after a quiet spell needs the clients now, not at the next tick.
        if self.scanned.is_none_or(|s| s.elapsed() >= WATCHED_FOR) {
            self.scan(ctx);
        }
        MessageResult(self.report())
    }
}

/// What the admin API holds: the sampler's address.
#[derive(Clone)]
pub struct StatusHandle {
    addr: Addr<Sampler>,
}

impl StatusHandle {
    /// Starts the sampler on the current arbiter.
    pub fn start(src: Sources) -> StatusHandle {
        StatusHandle {
            addr: Sampler::new(src).start(),
        }
    }

    /// The status now.
    pub async fn read(&self) -> Result<Readings, MailboxError> {
        self.addr.send(GetStatus).timeout(Duration::from_secs(2)).await
    }
}
