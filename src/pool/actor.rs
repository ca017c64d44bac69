//! The `BackendPool` actor: runs active checks, hears passive failures, applies the health and
//! panic policies and publishes the routing table. The decisions themselves live in `health`
//! and `panic`; this file only feeds them events and acts on what they return.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant, SystemTime},
};

use actix::{Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, Handler, WrapFuture};
use awc::error::{ConnectError, SendRequestError};

use super::Strategy;
use super::{
    health::{Event, Health, Outcome, Thresholds},
    messages::{BackendStatus, CheckResult, GetBackends, PoolStatus, ReportFailure, Stop},
    panic,
    select::Load,
    shared::Shared,
};
use crate::logfmt::Escaped;

/// Settings of the pool, taken from the gateway configuration.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Selection strategy.
    pub strategy: Strategy,
    /// Path requested by active checks.
    pub health_path: String,
    /// Time between checks.
    pub interval: Duration,
    /// Deadline of one check.
    pub timeout: Duration,
    /// Ejection and re-admission rules.
    pub thresholds: Thresholds,
    /// Healthy share (percent) below which every backend takes traffic; 0 turns it off.
    pub panic_threshold: u8,
}

/// Owns backend health: one active check in flight per backend at most, passive failures from
/// the proxy, and the snapshot that handlers read.
pub struct BackendPool {
    shared: Arc<Shared>,
    settings: PoolSettings,
    health: Vec<Health>,
    /// A check is in flight for this backend: the next tick skips it.
    checking: Vec<bool>,
    last: Vec<Option<CheckResult>>,
    /// Backends whose first check has not finished; readiness waits for them.
    first_round_pending: usize,
    /// Panic mode as last published, so that each switch is logged once.
    panic: bool,
    client: Option<awc::Client>,
}

impl BackendPool {
    /// A pool over the backends in `shared`.
    pub fn new(shared: Arc<Shared>, settings: PoolSettings) -> BackendPool {
        let n = shared.backends.len();
        BackendPool {
            shared,
            settings,
            health: vec![Health::default(); n],
            checking: vec![false; n],
            last: vec![None; n],
            first_round_pending: n,
            panic: false,
            client: None,
        }
    }

    /// Starts the actor on the current arbiter.
    pub fn start_actor(self) -> Addr<BackendPool> {
        self.start()
    }

    fn check_all(&mut self, ctx: &mut Context<Self>) {
        let Some(client) = self.client.clone() else { return };
        for i in 0..self.shared.backends.len() {
            if self.checking[i] {
                continue;
            }
            self.checking[i] = true;
            let url = format!("{}{}", self.shared.backends[i].base, self.settings.health_path);
            let request = client.get(url).timeout(self.settings.timeout).force_close();
            let started = Instant::now();
            let check = async move {
                match request.send().await {
                    Ok(resp) => {
                        let status = resp.status();
                        let ok = status.is_success() || status.is_redirection();
                        let event = if ok {
                            Event::CheckPassed
                        } else {
                            Event::CheckFailed
                        };
                        let error = (!ok).then(|| format!("status {}", status.as_u16()));
                        (event, Some(status.as_u16()), error)
                    }
                    Err(e) => {
                        let timed_out = matches!(
                            e,
                            SendRequestError::Timeout | SendRequestError::Connect(ConnectError::Timeout)
                        );
                        let event = if timed_out {
                            Event::CheckTimedOut
                        } else {
                            Event::CheckFailed
                        };
                        (event, None, Some(e.to_string()))
                    }
                }
            };
            ctx.spawn(check.into_actor(self).map(move |(event, status, error), act, _| {
                act.checking[i] = false;
                let result = CheckResult {
                    ok: event == Event::CheckPassed,
                    status,
                    error,
                    at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
                    duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                };
                let reason = result.error.clone().unwrap_or_default();
                act.last[i] = Some(result);
                act.record(i, event, &reason);
                if act.first_round_pending > 0 {
                    act.first_round_pending -= 1;
                    if act.first_round_pending == 0 {
                        act.shared.ready.store(true, Ordering::Release);
                        let healthy = act.health.iter().filter(|h| h.is_healthy()).count();
                        log::info!(
                            "first health round done: {healthy} of {} backends healthy",
                            act.health.len()
                        );
                    }
                }
            }));
        }
    }

    /// Feeds one event to backend `i`'s health and republishes on a transition.
    fn record(&mut self, i: usize, event: Event, reason: &str) {
        let backend = &self.shared.backends[i];
        let now = self.shared.clock.now();
        let t = &self.settings.thresholds;
        match self.health[i].record(event, now, backend.last_answer(), t) {
            Outcome::Counted => return,
            Outcome::Forgiven => {
                log::debug!(
                    "health check of {} timed out while it answered proxied traffic: not counted",
                    backend.base
                );
                return;
            }
            Outcome::Ejected if event == Event::ConnectFailed => log::warn!(
                "backend {} ejected after {} consecutive connect failures over {:?} or more (last: {})",
                backend.base,
                t.unhealthy,
                t.passive_window,
                Escaped(reason)
            ),
            Outcome::Ejected => log::warn!(
                "backend {} ejected after {} consecutive failed checks (last: {})",
                backend.base,
                t.unhealthy,
                Escaped(reason)
            ),
            Outcome::Readmitted => log::info!(
                "backend {} re-admitted after {} consecutive passed checks",
                backend.base,
                t.healthy
            ),
        }
        self.publish();
    }

    /// Publishes the routing table for the current health, logging a panic switch once.
    fn publish(&mut self) {
        let healthy: Vec<bool> = self.health.iter().map(Health::is_healthy).collect();
        let (routable, panic) = panic::routable(&healthy, self.settings.panic_threshold);
        let up = healthy.iter().filter(|&&h| h).count();
        if panic && !self.panic {
            log::warn!(
                "panic mode: only {up} of {} backends healthy, below {}%: routing to all of them as if healthy",
                healthy.len(),
                self.settings.panic_threshold
            );
        } else if !panic && self.panic {
            log::info!(
                "panic mode over: {up} of {} backends healthy; routing to healthy backends only",
                healthy.len()
            );
        }
        if routable.is_empty() {
            log::error!("no healthy backend left: requests get 503 until one recovers");
        }
        self.panic = panic;
        self.shared.publish(routable);
    }
}

impl Actor for BackendPool {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Built here so that it lives on this actor's thread (awc clients are not Send).
        self.client = Some(
            awc::Client::builder()
                .disable_redirects()
                .no_default_headers()
                .add_default_header(("User-Agent", "tollgate-health-check"))
                .connector(awc::Connector::new().timeout(self.settings.timeout))
                .timeout(self.settings.timeout)
                .finish(),
        );
        if self.shared.backends.is_empty() {
            self.shared.ready.store(true, Ordering::Release);
        }
        self.check_all(ctx);
        ctx.run_interval(self.settings.interval, Self::check_all);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        log::info!("backend pool stopped");
    }
}

impl Handler<ReportFailure> for BackendPool {
    type Result = ();

    fn handle(&mut self, msg: ReportFailure, _: &mut Context<Self>) {
        if msg.index < self.health.len() {
            self.record(msg.index, Event::ConnectFailed, &msg.reason);
        }
    }
}

impl Handler<GetBackends> for BackendPool {
    type Result = PoolStatus;

    fn handle(&mut self, _: GetBackends, _: &mut Context<Self>) -> PoolStatus {
        let backends = self
            .shared
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| BackendStatus {
                url: b.base.clone(),
                weight: b.weight,
                healthy: self.health[i].is_healthy(),
                in_flight: b.in_flight(),
                requests_total: b.requests(),
                failures_total: b.failures(),
                last_check: self.last[i].clone(),
            })
            .collect();
        PoolStatus {
            strategy: self.shared.strategy.to_string(),
            panic: self.panic,
            backends,
        }
    }
}

impl Handler<Stop> for BackendPool {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
