//! Connections, the pool and migrations.

use std::time::{Duration, Instant};

use diesel::{
    connection::SimpleConnection,
    pg::PgConnection,
    r2d2::{self, ManageConnection, Pool},
    sqlite::SqliteConnection,
    Connection, RunQueryDsl,
};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use secrecy::ExposeSecret;

use super::{DatabaseUrl, StoreError};

const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// A connection to either backend.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    /// PostgreSQL.
    Pg(PgConnection),
    /// SQLite.
    Sqlite(SqliteConnection),
}

/// The connection pool.
pub type DbPool = Pool<DbManager>;

/// Opens connections of the configured backend, never guessing from the URL: the derived
/// `MultiConnection::establish` would try each backend in turn and hide the real error.
#[derive(Debug)]
pub struct DbManager {
    url: DatabaseUrl,
    /// Bounds connecting and each statement, so that a database that stops answering
    /// (rather than closing connections) fails writes instead of hanging them.
    timeout: Duration,
}

/// Adds libpq timeouts the URL does not set itself: connecting, data left unacknowledged on a
/// connection (a silent network partition) and keepalive probes on an idle one.
pub(super) fn with_pg_timeouts(url: &str, timeout: Duration) -> String {
    let secs = timeout.as_secs().max(2); // libpq's connect_timeout minimum
    let mut out = url.to_string();
    for (key, value) in [
        ("connect_timeout", secs.to_string()),
        ("tcp_user_timeout", timeout.as_millis().max(1).to_string()),
        ("keepalives_idle", secs.to_string()),
        ("keepalives_interval", "1".to_string()),
        ("keepalives_count", "3".to_string()),
    ] {
        if !url.contains(&format!("{key}=")) {
            out.push(if out.contains('?') { '&' } else { '?' });
            out.push_str(&format!("{key}={value}"));
        }
    }
    out
}

impl ManageConnection for DbManager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        match &self.url {
            DatabaseUrl::Postgres(url) => {
                let url = with_pg_timeouts(url.expose_secret(), self.timeout);
                let mut conn = PgConnection::establish(&url).map_err(r2d2::Error::ConnectionError)?;
                // Writes set their own, tighter bounds per transaction; these cover the rest.
                // A transaction left open by a client the network cut off is rolled back by
                // the server rather than holding its locks.
                let ms = (self.timeout * 5).max(Duration::from_secs(5)).as_millis();
                let idle = self.timeout.as_millis().max(1000);
                conn.batch_execute(&format!(
                    "SET statement_timeout = {ms}; SET idle_in_transaction_session_timeout = {idle};"
                ))
                .map_err(r2d2::Error::QueryError)?;
                Ok(DbConnection::Pg(conn))
            }
            DatabaseUrl::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(path).map_err(r2d2::Error::ConnectionError)?;
                // WAL lets the flusher and admin writes proceed without blocking readers;
                // busy_timeout waits for a lock instead of failing at once, but no longer than
                // a write may take. No checkpoint inside a commit (it syncs the file: several
                // milliseconds on the write that happens to cross the threshold): the executor
                // checkpoints every second instead (`DbExecutor::started`).
                let busy = self.timeout.as_millis().max(1);
                conn.batch_execute(&format!(
                    "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = {busy}; PRAGMA synchronous = NORMAL; \
                     PRAGMA wal_autocheckpoint = 0;"
                ))
                .map_err(r2d2::Error::QueryError)?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        diesel::sql_query("SELECT 1")
            .execute(conn)
            .map(|_| ())
            .map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, _: &mut DbConnection) -> bool {
        false
    }
}

/// Builds the pool, waits for the database with backoff up to `startup_timeout`, and runs the
/// pending migrations. Blocking: call it off the HTTP workers.
pub fn connect_with_retry(
    url: &DatabaseUrl,
    checkout_timeout: Duration,
    startup_timeout: Duration,
) -> Result<DbPool, StoreError> {
    let pool = Pool::builder()
        .max_size(4)
        .min_idle(Some(0))
        .connection_timeout(checkout_timeout)
        .build_unchecked(DbManager {
            url: url.clone(),
            timeout: checkout_timeout,
        });
    let started = Instant::now();
    let mut backoff = Duration::from_millis(200);
    let mut conn = loop {
        match pool.get() {
            Ok(conn) => break conn,
            Err(e) if started.elapsed() + backoff < startup_timeout => {
                log::warn!(
                    "database {} not reachable yet ({e}); retrying in {backoff:?}",
                    url.redacted()
                );
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                return Err(StoreError::Unavailable(format!(
                    "cannot reach the database {} after {:?}: {e}",
                    url.redacted(),
                    started.elapsed()
                )))
            }
        }
    };
    let mut backoff = Duration::from_millis(100);
    let applied = loop {
        match migrate(&mut conn) {
            Ok(applied) => break applied,
            // Another instance starting on the same database may hold the lock for a while.
            Err(e) if started.elapsed() + backoff < startup_timeout => {
                log::warn!("database migrations not run yet ({e}); trying again in {backoff:?}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(StoreError::Query(format!("migrations failed: {e}"))),
        }
    };
    if applied > 0 {
        log::info!("applied {applied} database migration(s)");
    }
    Ok(pool)
}

/// Key of the advisory lock that serialises migrations on PostgreSQL.
const MIGRATIONS_LOCK: i64 = 0x746f_6c6c_6d69_6772; // "tollmigr"

type MigrationError = Box<dyn std::error::Error + Send + Sync>;

/// Runs the pending migrations; returns how many. Instances starting together on a new
/// database must not both run them (the second fails on `table ... already exists`): what is
/// pending is read and run under one lock, in one transaction (SQLite: an exclusive
/// transaction; PostgreSQL: a transaction-scoped advisory lock), so the second finds nothing
/// left to do.
fn migrate(conn: &mut DbConnection) -> Result<usize, MigrationError> {
    match conn {
        DbConnection::Pg(c) => c.transaction::<_, MigrationError, _>(|c| {
            c.batch_execute(&format!("SELECT pg_advisory_xact_lock({MIGRATIONS_LOCK})"))?;
            Ok(c.run_pending_migrations(PG_MIGRATIONS)?.len())
        }),
        DbConnection::Sqlite(c) => c.exclusive_transaction::<_, MigrationError, _>(|c| {
            Ok(c.run_pending_migrations(SQLITE_MIGRATIONS)?.len())
        }),
    }
}
