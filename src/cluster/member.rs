//! `ClusterMember`: this instance's row in the `instances` table, kept by a thread of its own.
//!
//! The thread registers the instance, heartbeats every [`Liveness::interval`], reads every
//! instance back for `GET /cluster` (so the handler never waits for the database), removes
//! rows silent for longer than the retention, and removes its own row on graceful shutdown.
//! Its join and its leave are notified (PostgreSQL `NOTIFY`), and a notification of another
//! instance's wakes it to read the membership again at once ([`ClusterMember::waker`]).
//! Its diesel calls block only this thread, never an HTTP worker or an actor. A database
//! outage is logged once when it starts and once when it ends, not at every beat.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;

use super::{
    applied::AppliedVersion,
    liveness::Liveness,
    view::{self, ClusterView, DatabaseStatus},
};
use crate::store::{instances, DbPool, InstanceInfo, InstanceRow, StoreError};

/// Stale rows are looked for once per this many heartbeats.
const SWEEP_EVERY: u64 = 60;

/// The instances as last read, and whether the last heartbeat reached the database.
#[derive(Debug)]
struct Snapshot {
    /// When `rows` were read.
    read_at: Instant,
    rows: Vec<InstanceRow>,
    database: DatabaseStatus,
}

/// What the admin API holds: the latest snapshot, read without touching the database.
#[derive(Debug, Clone)]
pub struct ClusterHandle {
    me: Arc<str>,
    liveness: Liveness,
    snapshot: Arc<ArcSwap<Snapshot>>,
    /// Snapshots stored so far: a reader polls it to learn of a new one cheaply.
    generation: Arc<AtomicU64>,
}

impl ClusterHandle {
    /// This instance's id.
    pub fn instance_id(&self) -> &str {
        &self.me
    }

    /// How many instances are alive now (this one included while its heartbeat works).
    pub fn live_instances(&self) -> usize {
        self.view().instances.iter().filter(|i| i.alive).count()
    }

    /// Changes with every membership read (a heartbeat, or a join or leave notified).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// The cluster as seen now.
    pub fn view(&self) -> ClusterView {
        let s = self.snapshot.load();
        view::build(&s.rows, s.read_at.elapsed(), &self.liveness, &self.me, s.database)
    }
}

/// What the heartbeat thread is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Told {
    /// Leave the cluster and end.
    Stop,
    /// Another instance joined or left: read the membership now.
    Read,
}

/// This instance's membership: the heartbeat thread and the way to stop it.
#[derive(Debug)]
pub struct ClusterMember {
    handle: ClusterHandle,
    tell: mpsc::Sender<Told>,
    thread: JoinHandle<()>,
}

struct Heartbeat {
    pool: DbPool,
    me: InstanceInfo,
    applied: AppliedVersion,
    liveness: Liveness,
    snapshot: Arc<ArcSwap<Snapshot>>,
    generation: Arc<AtomicU64>,
    beats: u64,
}

impl Heartbeat {
    fn beat(&mut self) -> Result<Vec<InstanceRow>, StoreError> {
        let mut conn = self.pool.get()?;
        let applied = i64::try_from(self.applied.get()).unwrap_or(i64::MAX);
        instances::heartbeat(&mut conn, &self.me, applied)?;
        if self.beats == 0 {
            // Joined: the others count this instance now, not at their next heartbeat.
            instances::notify_members(&mut conn)?;
        }
        if self.beats % SWEEP_EVERY == 0 {
            let removed = instances::remove_stale(&mut conn, self.liveness.retention_ms())?;
            if removed > 0 {
                log::info!(
                    "removed {removed} instance row(s) silent for more than {:?}",
                    self.liveness.retention
                );
            }
        }
        instances::list(&mut conn)
    }

    fn store(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads the membership again (told that another instance joined or left). A failure is
    /// left to the next heartbeat, which tells and logs it.
    fn read(&self) {
        let rows = self
            .pool
            .get()
            .map_err(StoreError::from)
            .and_then(|mut c| instances::list(&mut c));
        if let Ok(rows) = rows {
            let database = self.snapshot.load().database;
            self.store(Snapshot {
                read_at: Instant::now(),
                rows,
                database,
            });
        }
    }

    /// One heartbeat; logs only a change between reachable and unreachable.
    fn tick(&mut self) {
        let was = self.snapshot.load().database;
        let result = self.beat();
        self.beats += 1;
        let next = match result {
            Ok(rows) => {
                if was == DatabaseStatus::Unreachable {
                    log::info!("instance heartbeat reaches the database again");
                }
                Snapshot {
                    read_at: Instant::now(),
                    rows,
                    database: DatabaseStatus::Ok,
                }
            }
            Err(e) => {
                if was == DatabaseStatus::Ok {
                    log::warn!(
                        "instance heartbeat failed ({e}); retrying every {:?}, logged again once it succeeds",
                        self.liveness.interval
                    );
                }
                let old = self.snapshot.load();
                Snapshot {
                    read_at: old.read_at,
                    rows: old.rows.clone(),
                    database: DatabaseStatus::Unreachable,
                }
            }
        };
        self.store(next);
    }

    /// Beats on a fixed schedule until told to stop (then leaves) or abandoned (then exits);
    /// reads the membership in between when told to.
    fn run(mut self, told: mpsc::Receiver<Told>) {
        let mut next = Instant::now() + self.liveness.interval;
        loop {
            match told.recv_timeout(next.saturating_duration_since(Instant::now())) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Ok(Told::Stop) => return self.leave(),
                Ok(Told::Read) => {
                    // Several notifications at once need one read.
                    match told.try_iter().find(|t| *t == Told::Stop) {
                        Some(_) => return self.leave(),
                        None => self.read(),
                    }
                    continue;
                }
                // The application was dropped without a shutdown (tests): stop quietly.
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            self.tick();
            next += self.liveness.interval;
            let now = Instant::now();
            if next < now {
                // A slow beat (database outage): start the schedule again from now.
                next = now + self.liveness.interval;
            }
        }
    }

    fn leave(self) {
        let id = &self.me.instance_id;
        match self.pool.get().map_err(StoreError::from).and_then(|mut c| {
            let removed = instances::remove(&mut c, id)?;
            // The others count one fewer now, not at their next heartbeat.
            instances::notify_members(&mut c)?;
            Ok(removed)
        }) {
            Ok(_) => log::info!("instance {id} left the cluster"),
            Err(e) => log::warn!("instance {id} could not remove its row ({e}); it will show dead"),
        }
    }
}

impl ClusterMember {
    /// Registers the instance (one heartbeat, so `/cluster` lists it at once) and starts the
    /// heartbeat thread. Blocking: call it off the HTTP workers.
    pub fn join(
        pool: DbPool,
        me: InstanceInfo,
        applied: AppliedVersion,
        liveness: Liveness,
    ) -> std::io::Result<ClusterMember> {
        let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot {
            read_at: Instant::now(),
            rows: Vec::new(),
            database: DatabaseStatus::Ok,
        }));
        let generation = Arc::new(AtomicU64::new(0));
        let handle = ClusterHandle {
            me: me.instance_id.as_str().into(),
            liveness,
            snapshot: snapshot.clone(),
            generation: generation.clone(),
        };
        let mut beat = Heartbeat {
            pool,
            me,
            applied,
            liveness,
            snapshot,
            generation,
            beats: 0,
        };
        beat.tick();
        log::info!("instance {} registered", beat.me.instance_id);
        let (tell, told) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("tollgate-heartbeat".into())
            .spawn(move || beat.run(told))?;
        Ok(ClusterMember { handle, tell, thread })
    }

    /// Tells the heartbeat thread to read the membership now (another instance joined or
    /// left); for the change listener.
    pub fn waker(&self) -> impl Fn() + Send + 'static {
        let tell = self.tell.clone();
        move || {
            let _ = tell.send(Told::Read);
        }
    }

    /// The handle for the admin API.
    pub fn handle(&self) -> ClusterHandle {
        self.handle.clone()
    }

    /// Stops the heartbeat and removes this instance's row, waiting at most `deadline`.
    pub async fn leave(self, deadline: Duration) {
        // The thread may have ended already; then there is nothing to tell it.
        let _ = self.tell.send(Told::Stop);
        let thread = self.thread;
        let joined =
            actix_rt::time::timeout(deadline, actix_rt::task::spawn_blocking(move || thread.join())).await;
        if joined.is_err() {
            log::warn!("instance row not removed within {deadline:?}; it will show dead");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, last_heartbeat: i64) -> InstanceRow {
        InstanceRow {
            instance_id: id.into(),
            host: String::new(),
            proxy_addr: String::new(),
            admin_addr: String::new(),
            version: String::new(),
            started_at: 0,
            last_heartbeat,
            applied_version: 0,
            db_now: 10_000,
        }
    }

    #[test]
    fn live_instances_count_only_those_heartbeating() {
        let handle = ClusterHandle {
            me: "a".into(),
            liveness: Liveness::default(),
            snapshot: Arc::new(ArcSwap::from_pointee(Snapshot {
                read_at: Instant::now(),
                rows: vec![row("a", 9_900), row("b", 8_000), row("c", 5_000)],
                database: DatabaseStatus::Ok,
            })),
            generation: Arc::default(),
        };
        assert_eq!(handle.live_instances(), 2);
        assert_eq!(handle.instance_id(), "a");
        assert_eq!(handle.view().instances.len(), 3);
    }
}
