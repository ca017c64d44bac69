//! `ClusterMember`: this instance's row in the `instances` table, kept by a thread of its own.
//!
//! The thread registers the instance, heartbeats every [`Liveness::interval`], reads every
//! instance back for `GET /cluster` (so the handler never waits for the database), removes
//! rows silent for longer than the retention, and removes its own row on graceful shutdown.
//! Its diesel calls block only this thread, never an HTTP worker or an actor. A database
//! outage is logged once when it starts and once when it ends, not at every beat.

use std::{
    sync::{mpsc, Arc},
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

    /// The cluster as seen now.
    pub fn view(&self) -> ClusterView {
        let s = self.snapshot.load();
        view::build(&s.rows, s.read_at.elapsed(), &self.liveness, &self.me, s.database)
    }
}

/// This instance's membership: the heartbeat thread and the way to stop it.
#[derive(Debug)]
pub struct ClusterMember {
    handle: ClusterHandle,
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

struct Heartbeat {
    pool: DbPool,
    me: InstanceInfo,
    applied: AppliedVersion,
    liveness: Liveness,
    snapshot: Arc<ArcSwap<Snapshot>>,
    beats: u64,
}

impl Heartbeat {
    fn beat(&mut self) -> Result<Vec<InstanceRow>, StoreError> {
        let mut conn = self.pool.get()?;
        let applied = i64::try_from(self.applied.get()).unwrap_or(i64::MAX);
        instances::heartbeat(&mut conn, &self.me, applied)?;
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
        self.snapshot.store(Arc::new(next));
    }

    /// Beats on a fixed schedule until told to stop (then leaves) or abandoned (then exits).
    fn run(mut self, stop: mpsc::Receiver<()>) {
        let mut next = Instant::now() + self.liveness.interval;
        loop {
            match stop.recv_timeout(next.saturating_duration_since(Instant::now())) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Ok(()) => return self.leave(),
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
        match self
            .pool
            .get()
            .map_err(StoreError::from)
            .and_then(|mut c| instances::remove(&mut c, id))
        {
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
        let handle = ClusterHandle {
            me: me.instance_id.as_str().into(),
            liveness,
            snapshot: snapshot.clone(),
        };
        let mut beat = Heartbeat {
            pool,
            me,
            applied,
            liveness,
            snapshot,
            beats: 0,
        };
        beat.tick();
        log::info!("instance {} registered", beat.me.instance_id);
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("tollgate-heartbeat".into())
            .spawn(move || beat.run(stopped))?;
        Ok(ClusterMember { handle, stop, thread })
    }

    /// The handle for the admin API.
    pub fn handle(&self) -> ClusterHandle {
        self.handle.clone()
    }

    /// Stops the heartbeat and removes this instance's row, waiting at most `deadline`.
    pub async fn leave(self, deadline: Duration) {
        // The thread may have ended already; then there is nothing to tell it.
        let _ = self.stop.send(());
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
        };
        assert_eq!(handle.live_instances(), 2);
        assert_eq!(handle.instance_id(), "a");
        assert_eq!(handle.view().instances.len(), 3);
    }
}
