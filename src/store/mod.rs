//! Persistence with diesel + r2d2: PostgreSQL (`postgres://…`) or a SQLite file.
//!
//! One [`DbConnection`] enum over both backends, embedded migrations per backend, and a
//! [`DbExecutor`] running each operation on the blocking pool under a deadline, so that no
//! blocking call ever runs on an HTTP worker or inside the `ClientRegistry` actor, and no
//! write outlives `TOLLGATE_DB_TIMEOUT`. Every client write records a change in the change
//! log (`changelog`) in the same transaction; so does every backend write (`backends`).

mod backends;
mod batch;
mod changelog;
mod checkpoint;
mod db;
mod error;
mod executor;
mod file;
pub mod instances;
mod leases;
mod listener;
mod load;
mod models;
mod reconcile;
pub mod schema;
mod url;

pub use backends::{
    new_backend_id, BackendRow, BackendWrite, BackendWritten, GetBackendRows, ReplaceBackends, WriteBackend,
};
pub use batch::InsertClients;
pub use changelog::{
    ChangeOp, ChangeRow, ClientWrite, GetChanges, GetClientRows, GetLatestVersion, PruneChanges, ReadClients,
    WriteClient, Written, CHANGES_CHANNEL, ENTITY_BACKEND, ENTITY_CLIENT,
};
pub use db::{connect_with_retry, DbConnection, DbPool};
pub use error::StoreError;
pub use executor::{DbExecutor, SaveBuckets};
pub use file::SqliteFile;
pub use instances::{InstanceInfo, InstanceRow, MEMBERS_CHANNEL};
pub use leases::{lease, row_tokens, GetRowTokens, Lease, LeaseAsk, LeaseGrant, RowBucketNow};
pub use listener::{spawn_listener, ListenerHandle, Wakers, RECONNECT_AFTER};
pub use load::GetClientPage;
pub use models::{BucketRow, ClientRow};
pub use reconcile::Plan as BackendPlan;
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

/// What `/readyz` needs to know of the store: whether the SQLite file is still the one opened.
#[derive(Debug, Clone, Default)]
pub struct StoreHealth {
    file: Option<std::sync::Arc<SqliteFile>>,
}

impl StoreHealth {
    /// Health over the opened SQLite file (`None` for PostgreSQL: nothing to watch).
    pub fn new(file: Option<std::sync::Arc<SqliteFile>>) -> StoreHealth {
        StoreHealth { file }
    }

    /// Why the store cannot take writes now, if it cannot.
    pub fn problem(&self) -> Option<&'static str> {
        self.file
            .as_ref()
            .filter(|f| f.is_lost())
            .map(|_| "The database file was deleted or replaced")
    }
}
