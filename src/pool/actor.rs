//! The `BackendPool` actor: runs health checks and publishes the healthy set.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant, SystemTime},
};

use actix::{Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, WrapFuture};

use super::Strategy;
use super::{
    health::{Health, Thresholds, Transition},
    messages::{BackendStatus, CheckResult, GetBackends, ReportFailure, Shutdown},
    Load, Shared,
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
    /// Ejection and re-admission thresholds.
    pub thresholds: Thresholds,
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
                        let error = (!ok).then(|| format!("status {}", status.as_u16()));
                        (ok, Some(status.as_u16()), error)
                    }
                    Err(e) => (false, None, Some(e.to_string())),
                }
            };
            ctx.spawn(check.into_actor(self).map(move |(ok, status, error), act, _| {
                act.checking[i] = false;
                let result = CheckResult {
                    ok,
                    status,
                    error,
                    at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
                    duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                };
                let reason = result.error.clone().unwrap_or_default();
                act.last[i] = Some(result);
                act.record(i, ok, "health check", &reason);
                if act.first_round_pending > 0 && act.last[i].is_some() {
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

    fn record(&mut self, i: usize, ok: bool, source: &str, reason: &str) {
        let base = &self.shared.backends[i].base;
        match self.health[i].record(ok, self.settings.thresholds) {
            Some(Transition::Ejected) => log::warn!(
                "backend {base} ejected after {} consecutive failures (last, from {source}: {})",
                self.settings.thresholds.unhealthy,
                Escaped(reason)
            ),
            Some(Transition::Readmitted) => log::info!(
                "backend {base} re-admitted after {} consecutive passed checks",
                self.settings.thresholds.healthy
            ),
            None => return,
        }
        let healthy: Vec<usize> = (0..self.health.len())
            .filter(|&k| self.health[k].is_healthy())
            .collect();
        if healthy.is_empty() {
            log::error!("no healthy backend left: requests get 503 until one recovers");
        }
        self.shared.publish(healthy);
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
            self.record(msg.index, false, "proxy", &msg.reason);
        }
    }
}

impl Handler<GetBackends> for BackendPool {
    type Result = Vec<BackendStatus>;

    fn handle(&mut self, _: GetBackends, _: &mut Context<Self>) -> Vec<BackendStatus> {
        self.shared
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
            .collect()
    }
}

impl Handler<Shutdown> for BackendPool {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        use actix::ActorContext;
        ctx.stop();
    }
}
