//! `DbExecutor`: blocking diesel work off the actor threads, each operation under a deadline.
//!
//! Every message runs on a thread of the runtime's blocking pool, concurrently with the others,
//! so that a thread stuck on a silent connection never makes a later write queue behind it.
//! A write carries its deadline, set by whoever started it (the admin request), so that time
//! spent queued before the executor counts: the pool checkout waits
//! at most the time left, PostgreSQL is told the time left (`SET LOCAL statement_timeout` and
//! `lock_timeout`), the commit is only sent while time is left, and the caller stops waiting
//! shortly after the deadline whatever the connection does.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix::{Actor, AsyncContext, Context, Handler, Message, ResponseFuture};
use diesel::{connection::SimpleConnection, prelude::*};

use super::{checkpoint, file::SqliteFile, schema::clients, BucketRow, DbConnection, DbPool, StoreError};

/// How long after its deadline the caller still waits for an operation: the commit sent just
/// before the deadline gets its acknowledgement, so that a write the database took is not
/// reported as failed (and memory then agrees with the database).
const GRACE: Duration = Duration::from_millis(200);

/// Runs queries on the blocking pool, one task per message, each under a deadline.
pub struct DbExecutor {
    pool: DbPool,
    timeout: Duration,
    /// The SQLite file as opened, checked before each operation and every second; `None`
    /// for PostgreSQL.
    file: Option<Arc<SqliteFile>>,
    /// The SQLite checkpoints' mode, from what the previous ones found.
    checkpoints: Arc<Mutex<checkpoint::Policy>>,
}

impl DbExecutor {
    /// An executor over `pool`; every write must finish within `timeout`. `file` is the
    /// opened SQLite file, whose loss turns every operation into [`StoreError::FileLost`].
    pub fn new(pool: DbPool, timeout: Duration, file: Option<Arc<SqliteFile>>) -> DbExecutor {
        DbExecutor {
            pool,
            timeout,
            file,
            checkpoints: Arc::default(),
        }
    }

    /// How long a write may take.
    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `op` on a pooled connection on the blocking pool; with a `deadline`, the checkout
    /// and `op` are bounded by it and the caller waits at most until it plus [`GRACE`].
    pub(super) fn run<T, F>(&self, deadline: Option<Instant>, op: F) -> ResponseFuture<Result<T, StoreError>>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let (pool, file, timeout) = (self.pool.clone(), self.file.clone(), self.timeout);
        let task = actix_rt::task::spawn_blocking(move || {
            if let Some(file) = &file {
                file.check()?;
            }
            let mut conn = match deadline {
                Some(d) => pool.get_timeout(left(d, timeout)?)?,
                None => pool.get()?,
            };
            op(&mut conn)
        });
        Box::pin(async move {
            let mut task = task;
            let joined = match deadline {
                Some(d) => match tokio::time::timeout_at((d + GRACE).into(), &mut task).await {
                    Ok(joined) => joined,
                    Err(_) => {
                        // The thread is still blocked on the connection. Should it finish with
                        // a commit after all (an acknowledgement the network held back), say
                        // so: the caller was told nothing changed.
                        actix_rt::spawn(async move {
                            if let Ok(Ok(_)) = task.await {
                                log::error!(
                                    "a database write answered 503 after {timeout:?} was committed \
                                     late; memory learns it from the change log at the next catch-up"
                                );
                            }
                        });
                        return Err(StoreError::TimedOut(timeout));
                    }
                },
                None => task.await,
            };
            joined.map_err(|e| StoreError::Unavailable(format!("database task failed: {e}")))?
        })
    }

    /// Runs `op` in a transaction bounded by `deadline` (see [`in_bounded_transaction`]).
    pub(super) fn write<T, F>(&self, deadline: Instant, op: F) -> ResponseFuture<Result<T, StoreError>>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let timeout = self.timeout;
        self.run(Some(deadline), move |conn| {
            in_bounded_transaction(conn, deadline, timeout, op)
        })
    }
}

/// The time left before `deadline`, or a timeout error when there is none.
fn left(deadline: Instant, timeout: Duration) -> Result<Duration, StoreError> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or(StoreError::TimedOut(timeout))
}

/// Runs `op` in a transaction: PostgreSQL aborts any statement or lock wait that outlives the
/// deadline, and the transaction is rolled back rather than committed once it has passed, so
/// a write that answers 503 leaves nothing behind.
fn in_bounded_transaction<T>(
    conn: &mut DbConnection,
    deadline: Instant,
    timeout: Duration,
    op: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.transaction(|conn| {
        let ms = left(deadline, timeout)?.as_millis().max(1);
        if let DbConnection::Pg(pg) = conn {
            pg.batch_execute(&format!(
                "SET LOCAL statement_timeout = {ms}; SET LOCAL lock_timeout = {ms};"
            ))?;
        }
        let out = op(conn)?;
        left(deadline, timeout)?;
        Ok(out)
    })
}

/// How often the SQLite file's identity is checked when no write does it.
const FILE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

impl Actor for DbExecutor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(file) = self.file.clone() {
            // A stat a second: the loss shows on /readyz even when nothing is written. And the
            // write-ahead log copied into the file, off the admin writes' path (a passive
            // checkpoint waits for no reader and no writer; a starved one is followed by one
            // that waits, see `checkpoint`).
            ctx.run_interval(FILE_CHECK_INTERVAL, move |act, _| {
                if file.check().is_ok() {
                    let policy = act.checkpoints.clone();
                    let checkpoint = act.run(None, move |conn| {
                        if let DbConnection::Sqlite(c) = conn {
                            // One checkpoint at a time: the lock is held across it.
                            let mut policy = policy.lock().unwrap_or_else(|e| e.into_inner());
                            let mode = policy.next();
                            let outcome =
                                diesel::sql_query(mode.statement()).get_result::<checkpoint::Outcome>(c)?;
                            policy.observe(mode, outcome);
                        }
                        Ok(())
                    });
                    actix_rt::spawn(async move {
                        if let Err(e) = checkpoint.await {
                            log::debug!("SQLite checkpoint: {e}");
                        }
                    });
                }
            });
        }
    }
}

/// Write bucket states behind, in one transaction.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct SaveBuckets(pub Vec<BucketRow>);

impl Handler<SaveBuckets> for DbExecutor {
    type Result = ResponseFuture<Result<(), StoreError>>;

    /// Bounded from now: the write-behind is retried at the next tick anyway.
    fn handle(&mut self, msg: SaveBuckets, _: &mut Context<Self>) -> Self::Result {
        self.write(Instant::now() + self.timeout, move |conn| {
            for b in &msg.0 {
                // Counts only grow: a batch older than what is stored (two flushes in flight
                // at shutdown) must not move the state back. And they are the incarnation's
                // they were counted for: not those of a client created again since.
                let row = clients::table
                    .find(&b.client_id)
                    .filter(clients::generation.eq(b.generation))
                    .filter(clients::admitted.le(b.admitted))
                    .filter(clients::refused.le(b.refused));
                let counts = (clients::admitted.eq(b.admitted), clients::refused.eq(b.refused));
                match b.level {
                    Some((level, at)) => diesel::update(row)
                        .set((
                            clients::bucket_level.eq(Some(level)),
                            clients::bucket_at.eq(Some(at)),
                            counts,
                        ))
                        .execute(conn)?,
                    None => diesel::update(row).set(counts).execute(conn)?,
                };
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use diesel::{sql_types::BigInt, Connection, SqliteConnection};

    use super::*;

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    fn rows(conn: &mut DbConnection) -> i64 {
        diesel::sql_query("SELECT COUNT(*) AS n FROM t")
            .get_result::<Count>(conn)
            .unwrap()
            .n
    }

    #[test]
    fn a_write_that_outlives_its_deadline_is_rolled_back_not_committed() {
        let mut conn = DbConnection::Sqlite(SqliteConnection::establish(":memory:").unwrap());
        conn.batch_execute("CREATE TABLE t (x INTEGER)").unwrap();
        let insert = |conn: &mut DbConnection| {
            diesel::sql_query("INSERT INTO t VALUES (1)").execute(conn)?;
            Ok(())
        };
        let timeout = Duration::from_millis(50);

        let deadline = Instant::now() + timeout;
        in_bounded_transaction(&mut conn, deadline, timeout, insert).unwrap();
        assert_eq!(rows(&mut conn), 1);

        let deadline = Instant::now() + timeout;
        let slow = |conn: &mut DbConnection| {
            insert(conn)?;
            std::thread::sleep(timeout * 2);
            Ok(())
        };
        let late = in_bounded_transaction(&mut conn, deadline, timeout, slow);
        assert!(matches!(late, Err(StoreError::TimedOut(_))), "{late:?}");
        assert_eq!(rows(&mut conn), 1, "the late insert was committed");

        // A deadline already passed: nothing is even tried.
        let gone = in_bounded_transaction(&mut conn, Instant::now(), timeout, insert);
        assert!(matches!(gone, Err(StoreError::TimedOut(_))));
        assert_eq!(rows(&mut conn), 1);
    }
}
