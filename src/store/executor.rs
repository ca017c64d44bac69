//! `DbExecutor`: blocking diesel work on a `SyncArbiter`, one message per operation.

use actix::{Actor, Handler, Message, SyncContext};
use diesel::prelude::*;

use super::{schema::clients, BucketRow, ClientRow, DbPool, StoreError};

/// Runs queries on its own thread (several of them under a `SyncArbiter`).
pub struct DbExecutor {
    pool: DbPool,
}

impl DbExecutor {
    /// An executor over `pool`.
    pub fn new(pool: DbPool) -> DbExecutor {
        DbExecutor { pool }
    }

    /// The pool, for handlers defined beside their own concern (e.g. `batch.rs`).
    pub(super) fn pool(&self) -> &DbPool {
        &self.pool
    }
}

impl Actor for DbExecutor {
    type Context = SyncContext<Self>;
}

/// Every client, for the registry at start.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<ClientRow>, StoreError>")]
pub struct LoadClients;

/// Insert a new client.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct InsertClient(pub ClientRow);

/// Replace the settings of an existing client (its bucket columns are left alone).
#[derive(Debug, Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct ReplaceClient(pub ClientRow);

/// Delete a client; `false` when there was none.
#[derive(Debug, Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct DeleteClient(pub String);

/// Write bucket states behind, in one transaction.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct SaveBuckets(pub Vec<BucketRow>);

impl Handler<LoadClients> for DbExecutor {
    type Result = Result<Vec<ClientRow>, StoreError>;

    fn handle(&mut self, _: LoadClients, _: &mut SyncContext<Self>) -> Self::Result {
        let mut conn = self.pool.get()?;
        Ok(clients::table
            .select(ClientRow::as_select())
            .order(clients::client_id)
            .load(&mut conn)?)
    }
}

impl Handler<InsertClient> for DbExecutor {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, msg: InsertClient, _: &mut SyncContext<Self>) -> Self::Result {
        let mut conn = self.pool.get()?;
        diesel::insert_into(clients::table)
            .values(&msg.0)
            .execute(&mut conn)?;
        Ok(())
    }
}

impl Handler<ReplaceClient> for DbExecutor {
    type Result = Result<bool, StoreError>;

    fn handle(&mut self, msg: ReplaceClient, _: &mut SyncContext<Self>) -> Self::Result {
        let mut conn = self.pool.get()?;
        let r = msg.0;
        let n = diesel::update(clients::table.find(&r.client_id))
            .set((
                clients::name.eq(&r.name),
                clients::api_key_hash.eq(&r.api_key_hash),
                clients::key_prefix.eq(&r.key_prefix),
                clients::ips.eq(&r.ips),
                clients::capacity.eq(r.capacity),
                clients::rate_milli.eq(r.rate_milli),
                clients::enabled.eq(r.enabled),
                clients::updated_at.eq(r.updated_at),
            ))
            .execute(&mut conn)?;
        Ok(n == 1)
    }
}

impl Handler<DeleteClient> for DbExecutor {
    type Result = Result<bool, StoreError>;

    fn handle(&mut self, msg: DeleteClient, _: &mut SyncContext<Self>) -> Self::Result {
        let mut conn = self.pool.get()?;
        let n = diesel::delete(clients::table.find(&msg.0)).execute(&mut conn)?;
        Ok(n == 1)
    }
}

impl Handler<SaveBuckets> for DbExecutor {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, msg: SaveBuckets, _: &mut SyncContext<Self>) -> Self::Result {
        let mut conn = self.pool.get()?;
        conn.transaction(|conn| {
            for b in &msg.0 {
                // Counts only grow: a batch older than what is stored (two flushes in flight
                // at shutdown) must not move the state back.
                diesel::update(
                    clients::table
                        .find(&b.client_id)
                        .filter(clients::admitted.le(b.admitted))
                        .filter(clients::refused.le(b.refused)),
                )
                .set((
                    clients::bucket_level.eq(Some(b.level)),
                    clients::bucket_at.eq(Some(b.at)),
                    clients::admitted.eq(b.admitted),
                    clients::refused.eq(b.refused),
                ))
                .execute(conn)?;
            }
            Ok::<_, diesel::result::Error>(())
        })?;
        Ok(())
    }
}
