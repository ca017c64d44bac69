//! Persistence with diesel + r2d2: PostgreSQL (`postgres://…`) or a SQLite file.
//!
//! One [`DbConnection`] enum over both backends, embedded migrations per backend, and a
//! [`DbExecutor`] running each operation on the blocking pool under a deadline, so that no
//! blocking call ever runs on an HTTP worker or inside the `ClientRegistry` actor, and no
//! write outlives `TOLLGATE_DB_TIMEOUT`.

mod db;
mod executor;
mod models;
pub mod schema;
mod url;

pub use db::{connect_with_retry, DbConnection, DbPool};
pub use executor::{DbExecutor, DeleteClient, InsertClient, LoadClients, ReplaceClient, SaveBuckets};
pub use models::{BucketRow, ClientRow};
pub use url::{redact_password, DatabaseUrl};

/// Where the gateway keeps its state and how long it waits for it.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// Database location.
    pub url: DatabaseUrl,
    /// Time a write may wait for a pooled connection before it fails as unavailable.
    pub checkout_timeout: std::time::Duration,
    /// How long to keep retrying an unreachable database at start.
    pub startup_timeout: std::time::Duration,
}

/// A storage failure, as callers need to tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection could be had, or the connection broke: try again later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A unique column already holds this value.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The operation did not finish within the database timeout; nothing was committed
    /// (short of a commit whose acknowledgement the network lost).
    #[error("the database did not answer within {0:?}")]
    TimedOut(std::time::Duration),
    /// Any other database error.
    #[error("database error: {0}")]
    Query(String),
}

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match e {
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                StoreError::Conflict(info.message().to_string())
            }
            Error::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
                StoreError::Unavailable(info.message().to_string())
            }
            // libpq reports a dropped server connection as an unknown error.
            Error::DatabaseError(DatabaseErrorKind::Unknown, info)
                if info.message().contains("connection") || info.message().contains("server closed") =>
            {
                StoreError::Unavailable(info.message().to_string())
            }
            // `statement_timeout` or `lock_timeout` (SQLSTATE 57014, 55P03) cut the statement.
            Error::DatabaseError(_, info)
                if info.message().contains("statement timeout")
                    || info.message().contains("lock timeout") =>
            {
                StoreError::Unavailable(info.message().to_string())
            }
            other => StoreError::Query(other.to_string()),
        }
    }
}

impl From<diesel::r2d2::PoolError> for StoreError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}
