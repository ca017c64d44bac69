//! The `BackendPool` actor: owns the backend list (which changes at run time), runs active
//! checks, hears passive failures, applies the health and panic policies and publishes the
//! routing table. The decisions themselves live in `health`, `panic` and `standing`; this
//! file only feeds them events and acts on what they return. Checks are in `checks`, list
//! changes and draining in `changes`.

use std::{
    collections::{HashMap, HashSet},
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use actix::{Actor, ActorContext, Addr, AsyncContext, Context, Handler};

use super::Strategy;
use super::{
    backend::Backend,
    health::{Event, Health, Outcome, Thresholds},
    messages::{BackendDef, BackendStatus, CheckResult, GetBackends, PoolStatus, ReportFailure, Stop},
    shared::Shared,
    snapshot::Snapshot,
    standing::{route, Standing},
};
use crate::{logfmt::Escaped, ratelimit::Clock};

/// How often draining backends are looked at: dropped once their last request finished.
const DRAIN_POLL: Duration = Duration::from_millis(100);

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

/// One listed backend and what the actor knows of it.
#[derive(Debug)]
pub(super) struct Member {
    pub(super) backend: Arc<Backend>,
    pub(super) health: Health,
    pub(super) enabled: bool,
    /// Deleted: takes no new request, dropped once idle.
    pub(super) draining: bool,
    /// Added at run time, first check not finished: not routed to yet.
    pub(super) pending: bool,
    /// A check is in flight: the next tick skips it.
    pub(super) checking: bool,
    pub(super) last: Option<CheckResult>,
    /// Newest change-log version applied to it.
    pub(super) version: i64,
}

impl Member {
    pub(super) fn new(def: &BackendDef, version: i64, pending: bool, clock: &Arc<dyn Clock>) -> Member {
        Member {
            backend: Arc::new(Backend::new(&def.id, &def.spec, clock.clone())),
            health: Health::default(),
            enabled: def.enabled,
            draining: false,
            pending,
            checking: false,
            last: None,
            version,
        }
    }

    pub(super) fn standing(&self) -> Standing {
        Standing {
            enabled: self.enabled,
            draining: self.draining,
            pending: self.pending,
            healthy: self.health.is_healthy(),
        }
    }
}

/// Owns the backend list and its health: one active check in flight per backend at most,
/// passive failures from the proxy, and the snapshot that handlers read.
pub struct BackendPool {
    pub(super) shared: Arc<Shared>,
    pub(super) settings: PoolSettings,
    /// Listed backends, in list order.
    pub(super) members: Vec<Member>,
    /// Deleted backends and the version of their delete, so that an older change met later
    /// (this instance's own admin write, applied after the catch-up brought the delete) never
    /// brings one back. Kept for the process's lifetime: ids are never reused, and an entry
    /// is a few dozen bytes per delete.
    pub(super) deleted: HashMap<String, i64>,
    /// Backends of the start list whose first check has not finished; readiness waits for
    /// them.
    pub(super) first_round: HashSet<String>,
    /// Panic mode as last published, so that each switch is logged once.
    panic: bool,
    pub(super) client: Option<awc::Client>,
}

impl BackendPool {
    /// A pool over `defs` (the stored list at start, reflecting the change log up to
    /// `version`). They take traffic at once, before their first check, as always at start.
    pub fn new(
        shared: Arc<Shared>,
        settings: PoolSettings,
        defs: &[BackendDef],
        version: i64,
    ) -> BackendPool {
        let members: Vec<Member> = defs
            .iter()
            .map(|d| Member::new(d, version, false, &shared.clock))
            .collect();
        let first_round = members
            .iter()
            .filter(|m| m.enabled)
            .map(|m| m.backend.id.clone())
            .collect();
        let mut pool = BackendPool {
            shared,
            settings,
            members,
            deleted: HashMap::new(),
            first_round,
            panic: false,
            client: None,
        };
        pool.publish();
        pool
    }

    /// Starts the actor on the current arbiter.
    pub fn start_actor(self) -> Addr<BackendPool> {
        self.start()
    }

    pub(super) fn position(&self, id: &str) -> Option<usize> {
        self.members.iter().position(|m| m.backend.id == id)
    }

    /// Backend `id` no longer holds back readiness (its first check finished, or it left).
    pub(super) fn first_round_done(&mut self, id: &str) {
        if self.first_round.remove(id) && self.first_round.is_empty() {
            self.shared.ready.store(true, Ordering::Release);
            let healthy = self.members.iter().filter(|m| m.health.is_healthy()).count();
            log::info!(
                "first health round done: {healthy} of {} backends healthy",
                self.members.len()
            );
        }
    }

    /// Feeds one event to backend `i`'s health and republishes on a transition.
    pub(super) fn record(&mut self, i: usize, event: Event, reason: &str) {
        let member = &mut self.members[i];
        let backend = &member.backend;
        let now = self.shared.clock.now();
        let t = &self.settings.thresholds;
        match member.health.record(event, now, backend.last_answer(), t) {
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

    /// Publishes the routing table for the current list and health, logging a panic switch
    /// once.
    pub(super) fn publish(&mut self) {
        let standings: Vec<Standing> = self.members.iter().map(Member::standing).collect();
        let routing = route(&standings, self.settings.panic_threshold);
        let (up, total) = (routing.healthy, routing.candidates.len());
        if routing.panic && !self.panic {
            log::warn!(
                "panic mode: only {up} of {total} backends healthy, below {}%: routing to all of them as if healthy",
                self.settings.panic_threshold
            );
        } else if !routing.panic && self.panic {
            log::info!("panic mode over: {up} of {total} backends healthy; routing to healthy backends only");
        }
        if routing.routable.is_empty() && !self.members.is_empty() {
            log::error!("no healthy backend left: requests get 503 until one recovers");
        }
        self.panic = routing.panic;
        let candidates = routing
            .candidates
            .iter()
            .map(|&i| self.members[i].backend.clone())
            .collect();
        self.shared.publish(Snapshot::build(candidates, routing.routable));
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
        if self.first_round.is_empty() {
            self.shared.ready.store(true, Ordering::Release);
        }
        self.check_all(ctx);
        ctx.run_interval(self.settings.interval, Self::check_all);
        ctx.run_interval(DRAIN_POLL, |act, _| act.drop_drained());
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        log::info!("backend pool stopped");
    }
}

impl Handler<ReportFailure> for BackendPool {
    type Result = ();

    fn handle(&mut self, msg: ReportFailure, _: &mut Context<Self>) {
        if let Some(i) = self.position(&msg.id) {
            self.record(i, Event::ConnectFailed, &msg.reason);
        }
    }
}

impl Handler<GetBackends> for BackendPool {
    type Result = PoolStatus;

    fn handle(&mut self, _: GetBackends, _: &mut Context<Self>) -> PoolStatus {
        // Dropped here too, so that a drained backend is never shown for up to a poll.
        self.drop_drained();
        let backends = self
            .members
            .iter()
            .map(|m| {
                let b = &m.backend;
                BackendStatus {
                    id: b.id.clone(),
                    url: b.base.clone(),
                    weight: b.weight(),
                    enabled: m.enabled,
                    state: m.standing().state().as_str(),
                    healthy: m.health.is_healthy() && !m.pending,
                    in_flight: b.in_flight(),
                    requests_total: b.requests(),
                    failures_total: b.failures(),
                    last_check: m.last.clone(),
                    answers: b.upstream.answers(),
                    failures_by_kind: b.upstream.failures(),
                }
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
