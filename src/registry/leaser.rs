//! The [`Leaser`] actor: leases tokens for this instance's busy clients from their rows.
//!
//! - **Each tick** (`TOLLGATE_LEASE_TICK`) one statement asks for every busy client what its
//!   demand of the last tick says it will spend ([`lease::ask`]) and gives back the tokens of
//!   clients idle for [`IDLE_TICKS`].
//! - **On demand**: a request whose client holds no token waits for the next statement, sent
//!   at once when none is in flight; every request waiting meanwhile shares it (one statement
//!   in flight at a time).
//! - **Row empty**: the client is refused locally, with the right `Retry-After`, until the row
//!   has refilled (see [`super::refill::empty_for`]); nobody asks the database before then.
//! - **Database away**: a statement that failed, or is not back after two ticks (or four
//!   times the usual statement time of a slow database, see [`super::overdue`]),
//!   switches this instance to its share (`C/N`, `R/N` of every client, see [`ClusterShare`]),
//!   logged once; the requests waiting for it take from the share at once, rather than after
//!   the database timeout. Each tick probes the database, and the first statement that works
//!   switches back.

use std::{collections::HashMap, sync::Arc, time::Duration};

use actix::{
    Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, ResponseFuture, WrapFuture,
};
use tokio::sync::oneshot;

use super::{
    refill::{empty_for, tokens_per},
    ClientEntry, Limiter,
};
use crate::{
    cluster::{ClusterHandle, DatabaseStatus},
    ratelimit::{lease, Clock},
    store::{DbExecutor, Lease, LeaseAsk, LeaseGrant},
};

/// Ticks without a request after which a client's unused tokens go back to its row.
pub const IDLE_TICKS: u32 = 100;

/// How often the membership is checked for a new read (an atomic load): a join or leave
/// changes the shares within this, not at the next tick.
const MEMBERSHIP_POLL: Duration = Duration::from_millis(10);

/// A client this instance leases for.
struct Active {
    entry: Arc<ClientEntry>,
    /// Requests counted at the last tick (admitted + refused): the next tick's demand is the
    /// difference.
    seen: u64,
    /// Requests waiting for a lease now.
    waiting: u64,
    /// Ticks in a row without a request.
    idle: u32,
}

/// One client of a statement in flight.
struct Sent {
    entry: Arc<ClientEntry>,
    asked: u64,
    returned: u64,
    waiting: u64,
}

/// Leases tokens for this instance's clients (cluster scope only).
pub struct Leaser {
    shared: Arc<Limiter>,
    db: Addr<DbExecutor>,
    cluster: Option<ClusterHandle>,
    tick: Duration,
    active: HashMap<Box<str>, Active>,
    /// Requests waiting for the next statement, by client: told whether a token was
    /// reserved for them (a token granted for a waiting request is its own, not one for
    /// whichever request reaches the bucket first).
    waiters: Vec<(Box<str>, oneshot::Sender<bool>)>,
    in_flight: bool,
    /// The requests the statement in flight carries, answered when it is back (or overdue).
    carried: Vec<(Box<str>, oneshot::Sender<bool>)>,
    /// Statements sent so far: tells an overdue check which statement it was armed for.
    sent_count: u64,
    /// When the statement in flight was sent (the registry's clock).
    sent_at: u64,
    /// The requests the statement in flight carried were answered as it became overdue.
    answered_early: bool,
    /// The usual time of the statements that came back (when one is overdue).
    statement_time: super::overdue::StatementTime,
    /// The membership read the live count was last taken from.
    membership: u64,
    /// Another statement is due once the one in flight is back: a full tick, or only for
    /// the requests that arrived meanwhile.
    again: Option<bool>,
}

/// Whether `entry` is still the client registered under its id (same cell): tokens of a client
/// deleted meanwhile must not go to a new row with the same id.
fn current(shared: &Limiter, entry: &ClientEntry) -> bool {
    shared
        .table
        .get(&entry.id)
        .is_some_and(|e| Arc::ptr_eq(&e.cell, &entry.cell))
}

impl Leaser {
    /// A leaser over the request path's state, leasing through `db`; `cluster` tells how many
    /// instances are alive (none: this one alone).
    pub fn new(
        shared: Arc<Limiter>,
        db: Addr<DbExecutor>,
        cluster: Option<ClusterHandle>,
        tick: Duration,
    ) -> Leaser {
        Leaser {
            shared,
            db,
            cluster,
            tick: tick.max(Duration::from_millis(10)),
            active: HashMap::new(),
            waiters: Vec::new(),
            in_flight: false,
            carried: Vec::new(),
            sent_count: 0,
            sent_at: 0,
            answered_early: false,
            statement_time: Default::default(),
            membership: 0,
            again: None,
        }
    }

    /// The clients to ask for now: on a tick every busy client (and the idle ones' tokens
    /// back), otherwise only those with requests waiting.
    fn batch(&mut self, tick: bool) -> Vec<Sent> {
        let now = self.shared.clock.now();
        let live = self.shared.share.live();
        let tick_ns = u64::try_from(self.tick.as_nanos()).unwrap_or(u64::MAX);
        let mut sent = Vec::new();
        let shared = &self.shared;
        self.active.retain(|_, a| {
            if !current(shared, &a.entry) {
                // Deleted (and maybe created again, which a request brings here as a new
                // entry): its tokens were the old row's, and nothing more is asked for it.
                // Requests still waiting for it are refused when the statement is answered.
                a.entry.cell.with_bucket(|b| b.give_back());
                return false;
            }
            let counted = a.entry.cell.counted();
            let demand = counted.saturating_sub(a.seen);
            let mut returned = 0;
            if tick {
                a.seen = counted;
                a.idle = if demand == 0 && a.waiting == 0 {
                    a.idle + 1
                } else {
                    0
                };
                if a.idle >= IDLE_TICKS {
                    returned = a.entry.cell.with_bucket(|b| b.give_back());
                }
            } else if a.waiting == 0 {
                return true;
            }
            let (on_hand, empty, quota) = a
                .entry
                .cell
                .with_bucket(|b| (b.leased(), b.known_empty(now), b.quota()));
            if empty && a.waiting > 0 {
                // The statement just back found the row empty: the requests that waited for
                // the next one are refused (with the Retry-After of the row), not sent again.
                a.waiting = 0;
            }
            let asked = if returned > 0 || empty {
                0
            } else {
                let per_tick = tokens_per(quota.rate_milli(), tick_ns);
                lease::ask(demand.max(per_tick), a.waiting, on_hand, quota.capacity(), live)
            };
            if asked > 0 || returned > 0 {
                sent.push(Sent {
                    entry: a.entry.clone(),
                    asked,
                    returned,
                    waiting: a.waiting,
                });
            }
            a.idle < IDLE_TICKS
        });
        sent
    }

    /// Sends a statement (a full tick or the waiting requests' one), unless one is in flight.
    fn send(&mut self, tick: bool, ctx: &mut Context<Self>) {
        if self.in_flight {
            self.again = Some(self.again.unwrap_or(false) || tick);
            return;
        }
        let sent = self.batch(tick);
        let degraded = self.shared.share.is_degraded();
        if sent.is_empty() && !degraded {
            for (_, w) in self.waiters.drain(..) {
                let _ = w.send(false);
            }
            return;
        }
        self.carried = std::mem::take(&mut self.waiters);
        let asks = sent
            .iter()
            .map(|s| LeaseAsk {
                client_id: s.entry.id.to_string(),
                returned: i64::try_from(s.returned).unwrap_or(i64::MAX),
                asked: i64::try_from(s.asked).unwrap_or(i64::MAX),
                // The row the tokens are for: should the client be deleted and created again
                // while the statement is in flight, the new row is left alone.
                generation: s.entry.cell.generation(),
            })
            .collect();
        self.in_flight = true;
        self.sent_count += 1;
        self.sent_at = self.shared.clock.now();
        let this_one = self.sent_count;
        let overdue_after = self.statement_time.overdue_after(self.tick);
        ctx.run_later(overdue_after, move |act, _| act.overdue(this_one, overdue_after));
        self.shared.share.count_statement(tick);
        let f = self
            .db
            .send(Lease(asks))
            .into_actor(self)
            .map(move |res, act, ctx| {
                act.in_flight = false;
                let waiters = std::mem::take(&mut act.carried);
                // Answered as overdue: no request is left to take a reserved token.
                let reserve = !std::mem::take(&mut act.answered_early);
                let mut reserved = match res {
                    Ok(Ok(grants)) => {
                        let took = act.shared.clock.now().saturating_sub(act.sent_at);
                        act.statement_time.observe(took);
                        act.granted(&sent, grants, reserve)
                    }
                    Ok(Err(e)) => act.failed(&sent, &e.to_string()),
                    Err(e) => act.failed(&sent, &e.to_string()),
                };
                for (id, w) in waiters {
                    let mine = reserved.get_mut(&id).filter(|n| **n > 0).map(|n| *n -= 1);
                    let _ = w.send(mine.is_some());
                }
                if let Some(tick) = act.again.take() {
                    act.send(tick, ctx);
                }
            });
        ctx.spawn(f);
    }

    /// Puts the granted tokens in the buckets, except (with `reserve`) one for each waiting
    /// request, which is reserved for it: returns how many were reserved per client.
    fn granted(&mut self, sent: &[Sent], grants: Vec<LeaseGrant>, reserve: bool) -> HashMap<Box<str>, u64> {
        if self.shared.share.set_degraded(false, 0) {
            // What is left of the shares was made here, not leased from a row: dropped as
            // leasing resumes (spent or given back as leased tokens, it would count twice).
            // Shares stop first, so that none refills during the sweep.
            let mut swept = 0usize;
            self.shared.table.for_each(|e| {
                e.cell.with_bucket(|b| b.end_share());
                swept += 1;
            });
            log::info!(
                "leasing tokens from the database works again: clients' limits are cluster-wide \
                 again (the shares of {swept} client(s) dropped)"
            );
        }
        let now = self.shared.clock.now();
        let by_id: HashMap<&str, &LeaseGrant> = grants.iter().map(|g| (g.client_id.as_str(), g)).collect();
        let mut reserved = HashMap::new();
        for s in sent {
            self.settled(s);
            let (granted, until) = match by_id.get(&*s.entry.id) {
                Some(g) => {
                    let granted = u64::try_from(g.granted).unwrap_or(0);
                    let rate = s.entry.cell.with_bucket(|b| b.quota().rate_milli());
                    (granted, empty_for(g.level, s.asked, granted, rate, self.tick))
                }
                // Deleted meanwhile: nothing to lease, and nothing to ask for a tick.
                None => (
                    0,
                    (s.asked > 0).then(|| u64::try_from(self.tick.as_nanos()).unwrap_or(0)),
                ),
            };
            let reserve = if reserve { granted.min(s.waiting) } else { 0 };
            if reserve > 0 {
                reserved.insert(s.entry.id.clone(), reserve);
            }
            s.entry
                .cell
                .with_bucket(|b| b.add_leased(granted - reserve, until.map(|d| now.saturating_add(d))));
        }
        reserved
    }

    fn failed(&mut self, sent: &[Sent], error: &str) -> HashMap<Box<str>, u64> {
        for s in sent {
            // Tokens being given back are dropped, not kept: a statement that timed out here
            // may still commit, and the row would then have them too (fewer, never more).
            self.settled(s);
        }
        self.degrade(error);
        HashMap::new()
    }

    /// Switches to the shares, counted from when the last statement was sent (the row was
    /// last reached before then): logged once per outage.
    fn degrade(&self, why: &str) {
        if self.shared.share.set_degraded(true, self.sent_at) {
            log::warn!(
                "leasing tokens from the database failed ({why}); each client gets this \
                 instance's share of its limit (1/{} of capacity and rate) until it works again",
                self.shared.share.live()
            );
        }
    }

    /// The statement `which` was sent `after` ago: if it is still not back, the
    /// database is taken to be away. The requests waiting for it, or for the next one, are
    /// answered now (no token reserved): they take from the share. Should the statement
    /// still succeed, its grant is kept and leasing resumes (one lease per instance more).
    fn overdue(&mut self, which: u64, after: Duration) {
        if !self.in_flight || self.sent_count != which || self.shared.share.is_degraded() {
            return;
        }
        self.degrade(&format!("no answer within {} ms", after.as_millis()));
        self.answered_early = true;
        for (_, w) in self.carried.drain(..) {
            let _ = w.send(false);
        }
        for (id, w) in self.waiters.drain(..) {
            // Not carried by any statement: they no longer wait for one.
            if let Some(a) = self.active.get_mut(&id) {
                a.waiting = a.waiting.saturating_sub(1);
            }
            let _ = w.send(false);
        }
    }

    /// The waiting requests `s` carried are answered.
    fn settled(&mut self, s: &Sent) {
        if let Some(a) = self.active.get_mut(&*s.entry.id) {
            a.waiting = a.waiting.saturating_sub(s.waiting);
        }
    }

    /// Refreshes the number of live instances from the last heartbeat that reached the
    /// database (while it is away, the number from before the outage stands).
    fn refresh_live(&mut self) {
        if let Some(cluster) = &self.cluster {
            self.membership = cluster.generation();
            let view = cluster.view();
            // Only from a fresh read: a heartbeat stuck on a silent network ages the last rows
            // until every instance, this one too, looks dead (and N would fall to 1 just as
            // the outage begins).
            let fresh_within = view.heartbeat_interval_ms as f64 * 1.5 / 1000.0;
            let fresh = view
                .instances
                .iter()
                .any(|i| i.this && i.seconds_since_heartbeat <= fresh_within);
            if view.database == DatabaseStatus::Ok && fresh {
                self.shared
                    .share
                    .set_live(view.instances.iter().filter(|i| i.alive).count());
            }
        }
    }
}

impl Actor for Leaser {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.refresh_live();
        ctx.run_interval(self.tick, |act, ctx| {
            act.refresh_live();
            act.send(true, ctx);
        });
        ctx.run_interval(MEMBERSHIP_POLL, |act, _| {
            if act
                .cluster
                .as_ref()
                .is_some_and(|c| c.generation() != act.membership)
            {
                act.refresh_live();
            }
        });
    }
}

/// A request needs a token of `0`'s client: answered once a statement asked for it, `true`
/// when a token was reserved for this request.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Want(pub Arc<ClientEntry>);

impl Handler<Want> for Leaser {
    type Result = ResponseFuture<bool>;

    fn handle(&mut self, msg: Want, ctx: &mut Context<Self>) -> Self::Result {
        let entry = msg.0;
        if !current(&self.shared, &entry) {
            // A request that found the client just before it was deleted (or created again):
            // nothing to lease for it, and the client's newer entry stays the one leased for.
            return Box::pin(async { false });
        }
        let counted = entry.cell.counted();
        let a = self.active.entry(entry.id.clone()).or_insert_with(|| Active {
            entry: entry.clone(),
            seen: counted,
            waiting: 0,
            idle: 0,
        });
        // The newest version of the client's settings (the cell is shared by all of them; a new
        // cell is a client deleted and created again: its counts start again).
        if !Arc::ptr_eq(&a.entry.cell, &entry.cell) {
            a.seen = counted;
        }
        a.entry = entry;
        a.waiting += 1;
        a.idle = 0;
        let (tx, rx) = oneshot::channel();
        self.waiters.push((a.entry.id.clone(), tx));
        self.send(false, ctx);
        Box::pin(async move { rx.await.unwrap_or(false) })
    }
}

/// Gives every token this instance holds back to the rows (graceful shutdown, after the
/// proxy drained): a restart then loses nothing. Answers how many tokens went back.
#[derive(Message)]
#[rtype(result = "Result<u64, String>")]
pub struct GiveBack;

impl Handler<GiveBack> for Leaser {
    type Result = ResponseFuture<Result<u64, String>>;

    fn handle(&mut self, _: GiveBack, _: &mut Context<Self>) -> Self::Result {
        let mut back = Vec::new();
        for a in self.active.values() {
            let returned = a.entry.cell.with_bucket(|b| b.give_back());
            if returned > 0 && current(&self.shared, &a.entry) {
                back.push(LeaseAsk {
                    client_id: a.entry.id.to_string(),
                    returned: i64::try_from(returned).unwrap_or(i64::MAX),
                    asked: 0,
                    generation: a.entry.cell.generation(),
                });
            }
        }
        self.active.clear();
        let total = back.iter().map(|a| a.returned.unsigned_abs()).sum();
        let db = self.db.clone();
        Box::pin(async move {
            if back.is_empty() {
                return Ok(0);
            }
            match db.send(Lease(back)).await {
                Ok(Ok(_)) => Ok(total),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}
