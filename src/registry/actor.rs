//! The `ClientRegistry` actor: its state, its timers (anonymous sweep, write-behind flush,
//! change-log catch-up, change-log pruning) and its start.
//!
//! No handler waits for the database inside the actor: admin writes queue up and run one at
//! a time (see `writes`), catch-up and flushes run as spawned futures, so the timers keep
//! running while a database call is in flight.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use actix::{Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, MailboxError, WrapFuture};

use super::{
    messages::{CatchUp, Flush, RegistryError},
    rows::{entry_from_row, unix_ms},
    sync::SyncState,
    writes::Job,
    BucketCell, ClientEntry, ClientTable, ClusterShare, Leaser, LimitScope, LimitSettings, Limiter,
    RegistryHandle,
};
use crate::{
    backend_list::BackendFeed,
    cluster::{AppliedVersion, ClusterHandle},
    ratelimit::{Clock, MonotonicClock},
    store::{BucketRow, ClientRow, DbExecutor, PruneChanges, SaveBuckets, StoreError},
};

/// How long change-log rows are kept. An instance that was away (or partitioned) for longer
/// than this may have missed changes: it then reloads nothing by itself, so docs/cluster.md
/// tells operators to restart such an instance.
pub const CHANGE_RETENTION: Duration = Duration::from_secs(3600);

/// How often old change-log rows are pruned.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Timers of the registry.
#[derive(Debug, Clone, Copy)]
pub struct RegistrySettings {
    /// How often changed buckets are written behind.
    pub flush_interval: Duration,
    /// How often full anonymous buckets are dropped.
    pub sweep_interval: Duration,
    /// How often the change log is polled for other instances' changes.
    pub sync_interval: Duration,
    /// How often tokens are leased for busy clients (cluster scope).
    pub lease_tick: Duration,
}

/// Builds the client entries from stored rows, a page at a time, on the clock the registry
/// will use (bucket times are instants of that clock).
#[derive(Default)]
pub struct ClientLoader {
    clock: MonotonicClock,
    entries: Vec<Arc<ClientEntry>>,
    scope: LimitScope,
}

impl ClientLoader {
    /// A loader for buckets that live in `scope`.
    pub fn new(scope: LimitScope) -> ClientLoader {
        ClientLoader {
            scope,
            ..ClientLoader::default()
        }
    }

    /// Adds the clients of `rows`; an invalid row is logged and skipped.
    pub fn add(&mut self, rows: Vec<ClientRow>) {
        let (now, wall) = (self.clock.now(), unix_ms());
        for row in rows {
            let id = row.client_id.clone();
            match entry_from_row(row, now, wall, self.scope) {
                Ok(e) => self.entries.push(Arc::new(e)),
                Err(field) => log::error!("stored client {id} is invalid ({field}); skipped"),
            }
        }
    }

    /// Clients added so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no client was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Owns the clients, their buckets and their persistence.
pub struct ClientRegistry {
    pub(super) shared: Arc<Limiter>,
    pub(super) db: Addr<DbExecutor>,
    settings: RegistrySettings,
    flushing: bool,
    /// Admin writes waiting for their turn, in arrival order.
    pub(super) queue: VecDeque<Job>,
    /// Whether an admin write is in flight.
    pub(super) writing: bool,
    /// Where this instance is in the change log.
    pub(super) sync: SyncState,
    /// The same, published for the heartbeat (`GET /cluster`).
    pub(super) applied: AppliedVersion,
    /// Where the backend changes of the change log go (the backend pool).
    pub(super) backends: BackendFeed,
}

pub(super) fn store_error(e: StoreError) -> RegistryError {
    match e {
        StoreError::Conflict { field, message } => RegistryError::Conflict { field, message },
        other => RegistryError::Unavailable(other.to_string()),
    }
}

pub(super) fn flatten<T>(res: Result<Result<T, StoreError>, MailboxError>) -> Result<T, RegistryError> {
    match res {
        Ok(inner) => inner.map_err(store_error),
        Err(e) => Err(RegistryError::Unavailable(e.to_string())),
    }
}

impl ClientRegistry {
    /// Starts the registry over the clients `loader` built, on the current arbiter.
    /// `version` is the newest change version read before the rows were loaded: changes after
    /// it are applied by the first catch-up (re-applying one the rows already hold is harmless).
    /// `applied` is kept at the version applied so far, for the instance's heartbeat. The
    /// change log also carries backend changes: the catch-up hands them to `backends`. With
    /// cluster-wide limits a [`Leaser`] leases tokens; `cluster` tells it how many instances
    /// are alive.
    #[allow(clippy::too_many_arguments)]
    pub fn start_with(
        loader: ClientLoader,
        version: i64,
        limits: LimitSettings,
        db: Addr<DbExecutor>,
        settings: RegistrySettings,
        applied: AppliedVersion,
        backends: BackendFeed,
        cluster: Option<ClusterHandle>,
    ) -> RegistryHandle {
        let ClientLoader { clock, entries, .. } = loader;
        log::info!("loaded {} client(s) at change version {version}", entries.len());
        let share = Arc::new(ClusterShare::new(limits.scope));
        let shared = Limiter::new(ClientTable::build(entries), limits, clock, share);
        let leaser = (shared.share.scope() == LimitScope::Cluster)
            .then(|| Leaser::new(shared.clone(), db.clone(), cluster, settings.lease_tick).start());
        shared
            .applied_version
            .store(version, std::sync::atomic::Ordering::Relaxed);
        applied.set(u64::try_from(version).unwrap_or(0));
        let addr = ClientRegistry {
            shared: shared.clone(),
            db,
            settings,
            flushing: false,
            queue: VecDeque::new(),
            writing: false,
            sync: SyncState::new(version),
            applied,
            backends,
        }
        .start();
        RegistryHandle::new(shared, addr, leaser)
    }

    pub(super) fn now(&self) -> u64 {
        self.shared.clock.now()
    }

    pub(super) fn table(&self) -> &ClientTable {
        &self.shared.table
    }

    /// Writes the changed buckets behind. The scan runs on a blocking thread, a page of the
    /// id index at a time, so that with a million clients neither the actor nor an admin
    /// write waits for it.
    fn flush_future(&mut self) -> impl actix::ActorFuture<Self, Output = Result<usize, RegistryError>> {
        let shared = self.shared.clone();
        let db = self.db.clone();
        async move {
            let started = std::time::Instant::now();
            let written = write_behind(&shared, &db).await;
            // A flush that found nothing changed wrote nothing: not counted.
            if !matches!(written, Ok(0)) {
                shared
                    .write_behind
                    .record(written.as_ref().ok().copied(), started.elapsed());
            }
            written
        }
        .into_actor(self)
    }
}

/// One write-behind flush: the changed buckets, scanned on a blocking thread, in one write.
async fn write_behind(shared: &Arc<Limiter>, db: &Addr<DbExecutor>) -> Result<usize, RegistryError> {
    let scanned = shared.clone();
    let dirty = actix_rt::task::spawn_blocking(move || dirty_buckets(&scanned))
        .await
        .map_err(|e| RegistryError::Unavailable(e.to_string()))?;
    let n = dirty.len();
    if n == 0 {
        return Ok(0);
    }
    let (rows, cells): (Vec<BucketRow>, Vec<(Arc<BucketCell>, u64)>) = dirty.into_iter().unzip();
    flatten(db.send(SaveBuckets(rows)).await)?;
    for (cell, counted) in cells {
        cell.mark_flushed(counted);
    }
    Ok(n)
}

/// Index pages scanned at a time by the write-behind (the index's lock is free in between).
const SCAN_PAGE: usize = 4096;

/// Changed buckets as rows to write behind, with their cells and the counts they carry.
fn dirty_buckets(shared: &Limiter) -> Vec<(BucketRow, (Arc<BucketCell>, u64))> {
    let (now, wall) = (shared.clock.now(), unix_ms());
    let mut dirty = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = shared.table.page_after(after.as_deref(), SCAN_PAGE);
        let Some(last) = page.last() else { break };
        after = Some(last.id.to_string());
        for e in &page {
            if !e.cell.is_dirty() {
                continue;
            }
            let counts = (e.cell.admitted(), e.cell.refused());
            // With cluster-wide limits the row is the bucket: only the counts go behind.
            let level = (shared.share.scope() == LimitScope::Local).then(|| {
                let level = e.cell.with_bucket(|b| b.level_at(now));
                (i64::try_from(level).unwrap_or(i64::MAX), wall)
            });
            let row = BucketRow {
                client_id: e.id.to_string(),
                level,
                admitted: i64::try_from(counts.0).unwrap_or(i64::MAX),
                refused: i64::try_from(counts.1).unwrap_or(i64::MAX),
                generation: e.cell.generation(),
            };
            dirty.push((row, (e.cell.clone(), counts.0.saturating_add(counts.1))));
        }
    }
    dirty
}

impl Actor for ClientRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.settings.sweep_interval, |act, _| {
            let dropped = act.shared.anon.sweep(act.now());
            if dropped > 0 {
                log::debug!("dropped {dropped} anonymous bucket(s) that were full again");
            }
        });
        ctx.run_interval(self.settings.flush_interval, |act, ctx| {
            if act.flushing {
                return;
            }
            act.flushing = true;
            let f = act.flush_future().map(|res, act: &mut Self, _| {
                act.flushing = false;
                if let Err(e) = res {
                    log::warn!("bucket write-behind failed, will retry: {e}");
                }
            });
            ctx.spawn(f);
        });
        let every = self.settings.sync_interval.max(Duration::from_millis(10));
        ctx.run_interval(every, |act, ctx| act.catch_up(ctx));
        ctx.run_interval(PRUNE_INTERVAL, |act, ctx| {
            let before_ms =
                unix_ms().saturating_sub(i64::try_from(CHANGE_RETENTION.as_millis()).unwrap_or(0));
            let f = act
                .db
                .send(PruneChanges { before_ms })
                .into_actor(act)
                .map(|res, _, _| match flatten(res) {
                    Ok(n) if n > 0 => {
                        log::debug!("pruned {n} change-log row(s) older than {CHANGE_RETENTION:?}")
                    }
                    Ok(_) => {}
                    Err(e) => log::debug!("change-log pruning failed, will retry: {e}"),
                });
            ctx.spawn(f);
        });
    }
}

impl Handler<Flush> for ClientRegistry {
    type Result = actix::ResponseActFuture<Self, Result<usize, RegistryError>>;

    fn handle(&mut self, _: Flush, _: &mut Context<Self>) -> Self::Result {
        Box::pin(self.flush_future())
    }
}

impl Handler<CatchUp> for ClientRegistry {
    type Result = ();

    fn handle(&mut self, _: CatchUp, ctx: &mut Context<Self>) {
        self.catch_up(ctx);
    }
}
