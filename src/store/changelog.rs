//! The change log: every client and backend write records a change in the same transaction, so that
//! every instance can apply what it has not seen (`version > last_applied`, in order).
//!
//! Versions must become visible in order, or a reader could pass over one still in flight:
//! on PostgreSQL each writing transaction first takes a transaction-scoped advisory lock, so
//! change rows are numbered and committed one at a time (admin writes are rare; the lock is
//! held for the few statements of one write). SQLite serialises writers by itself; each
//! writer takes the write lock with its first statement (see [`lock_changes`]). On
//! PostgreSQL the transaction also sends `NOTIFY tollgate_changes`, delivered at commit.

use std::time::Instant;

use actix::{Context, Handler, Message, ResponseFuture};
use diesel::{connection::SimpleConnection, prelude::*, sql_types::BigInt};

use super::{
    schema::{changes, clients},
    ClientRow, DbConnection, DbExecutor, StoreError,
};

/// Channel of the PostgreSQL notification sent with every change.
pub const CHANGES_CHANNEL: &str = "tollgate_changes";

/// Key of the advisory lock that orders change versions on PostgreSQL.
const CHANGES_LOCK: i64 = 0x746f_6c6c_6761_7465; // "tollgate"

/// Entity kind of a client change.
pub const ENTITY_CLIENT: &str = "client";

/// Entity kind of a backend change.
pub const ENTITY_BACKEND: &str = "backend";

/// What happened to an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    /// Created or changed: re-read it.
    Upsert,
    /// Deleted.
    Delete,
}

impl ChangeOp {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Upsert => "upsert",
            ChangeOp::Delete => "delete",
        }
    }
}

/// One row of the change log.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = changes)]
pub struct ChangeRow {
    /// Monotonic version (BIGSERIAL / AUTOINCREMENT).
    pub version: i64,
    /// Entity kind (`client`, `backend`).
    pub entity: String,
    /// Entity id.
    pub entity_id: String,
    /// `upsert` or `delete`.
    pub op: String,
    /// Unix ms of the write.
    pub at: i64,
}

impl ChangeRow {
    /// The operation; an unknown one is read as an upsert (re-reading is always safe).
    pub fn op(&self) -> ChangeOp {
        if self.op == "delete" {
            ChangeOp::Delete
        } else {
            ChangeOp::Upsert
        }
    }
}

/// A client write.
#[derive(Debug, Clone)]
pub enum ClientWrite {
    /// Insert a new client (conflict if the id, key or unique value is taken).
    Insert(ClientRow),
    /// Replace the settings of an existing client (bucket columns left alone) if the row is
    /// still the one the change was computed from: the incarnation `row.generation`, last
    /// written at `seen` (`updated_at`, which every write moves forward: a version). An empty
    /// `api_key_hash` leaves the stored key (hash and prefix) as it is: the gateway keeps only
    /// part of a key's hash in memory, and an unchanged key is not written back.
    Replace {
        /// The new settings.
        row: ClientRow,
        /// The `updated_at` of the row as the change saw it.
        seen: i64,
    },
    /// Delete a client.
    Delete(String),
}

/// What a client write stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The version of its change row.
    pub version: i64,
    /// The row's incarnation (see [`next_generation`]).
    pub generation: i64,
}

/// Applies a client write and records its change, in one transaction. `Ok(None)` when the
/// client to replace or delete does not exist (nothing is written).
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<Written>, StoreError>")]
pub struct WriteClient {
    /// The write.
    pub write: ClientWrite,
    /// Unix ms, recorded with the change.
    pub at: i64,
    /// Committed by then or not at all (set by the admin request).
    pub deadline: Instant,
}

/// Changes after `after`, oldest first, at most `limit`.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<ChangeRow>, StoreError>")]
pub struct GetChanges {
    /// Last version applied.
    pub after: i64,
    /// Page size.
    pub limit: i64,
}

/// The stored rows of these clients (missing ids are absent).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<ClientRow>, StoreError>")]
pub struct GetClientRows(pub Vec<String>);

/// Some clients' stored rows (a missing id has none) and a change version the rows reflect
/// at least (read before them), within the deadline: what an admin write re-reads when
/// memory's view turned out older than the database.
#[derive(Debug, Message)]
#[rtype(result = "Result<(Vec<ClientRow>, i64), StoreError>")]
pub struct ReadClients {
    /// Which clients.
    pub ids: Vec<String>,
    /// The admin request's deadline.
    pub deadline: Instant,
}

impl Handler<ReadClients> for DbExecutor {
    type Result = ResponseFuture<Result<(Vec<ClientRow>, i64), StoreError>>;

    fn handle(&mut self, msg: ReadClients, _: &mut Context<Self>) -> Self::Result {
        self.run(Some(msg.deadline), move |conn| {
            // The version first: every change up to it is committed, so the row read after it
            // reflects them all (versions become visible in order, see `lock_changes`).
            let version: Option<i64> = changes::table
                .select(diesel::dsl::max(changes::version))
                .first(conn)?;
            let rows = clients::table
                .filter(clients::client_id.eq_any(&msg.ids))
                .select(ClientRow::as_select())
                .load(conn)?;
            Ok((rows, version.unwrap_or(0)))
        })
    }
}

/// The newest change version (0 when there is none).
#[derive(Debug, Message)]
#[rtype(result = "Result<i64, StoreError>")]
pub struct GetLatestVersion;

/// Deletes change rows older than `before_ms` (Unix ms), keeping the newest row so that the
/// version never restarts; returns how many went.
#[derive(Debug, Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct PruneChanges {
    /// Unix ms.
    pub before_ms: i64,
}

/// The generation a row inserted now gets, under the change-log lock: the version the next
/// change row will at least have, kept to 32 bits (memory keeps it in 4 bytes), never 0 (rows
/// from before generations). Every incarnation of an id was inserted after the previous one's
/// change rows, so it gets a larger number (until the log passes 2^32 versions).
pub(super) fn next_generation(conn: &mut DbConnection) -> QueryResult<i64> {
    let newest: Option<i64> = changes::table
        .select(diesel::dsl::max(changes::version))
        .first(conn)?;
    Ok(newest.unwrap_or(0).rem_euclid(GENERATIONS) + 1)
}

/// Generations run from 1 to this.
const GENERATIONS: i64 = (1 << 32) - 1;

fn replace_row(conn: &mut DbConnection, r: &ClientRow, seen: i64) -> QueryResult<usize> {
    let this = clients::table
        .find(&r.client_id)
        .filter(clients::generation.eq(r.generation))
        .filter(clients::updated_at.eq(seen));
    // The key (its hash and prefix) only when it is new: memory's view of an unchanged one may
    // be older than the row (rotated on another instance, not yet applied here).
    if !r.api_key_hash.is_empty() {
        diesel::update(this)
            .set((
                clients::api_key_hash.eq(&r.api_key_hash),
                clients::key_prefix.eq(&r.key_prefix),
            ))
            .execute(conn)?;
    }
    let settings = (
        clients::name.eq(&r.name),
        clients::ips.eq(&r.ips),
        clients::capacity.eq(r.capacity),
        clients::rate_milli.eq(r.rate_milli),
        clients::enabled.eq(r.enabled),
        clients::enforce.eq(r.enforce),
        clients::updated_at.eq(r.updated_at),
    );
    match conn {
        // The bucket settled at the old quota in the same statement (SET reads the old values):
        // no round trip more for an admin write.
        DbConnection::Pg(pg) => diesel::update(this)
            .set((
                settings,
                clients::bucket_level.eq(diesel::dsl::sql::<
                    diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
                >(&super::leases::pg_settled_level())),
                clients::bucket_at.eq(diesel::dsl::sql::<
                    diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
                >(&super::leases::pg_settled_at())),
            ))
            .execute(pg),
        DbConnection::Sqlite(_) => diesel::update(this).set(settings).execute(conn),
    }
}

/// Records a change of `entity` and returns its version (the notification was queued with
/// the lock).
pub(super) fn record(
    conn: &mut DbConnection,
    entity: &str,
    id: &str,
    op: ChangeOp,
    at: i64,
) -> QueryResult<i64> {
    let insert = diesel::insert_into(changes::table).values((
        changes::entity.eq(entity),
        changes::entity_id.eq(id),
        changes::op.eq(op.as_str()),
        changes::at.eq(at),
    ));
    match conn {
        // One round trip for the row and its version.
        DbConnection::Pg(c) => insert.returning(changes::version).get_result(c),
        DbConnection::Sqlite(_) => {
            insert.execute(conn)?;
            last_version(conn)
        }
    }
}

/// The version of the change row this transaction inserted last.
pub(super) fn last_version(conn: &mut DbConnection) -> QueryResult<i64> {
    match conn {
        DbConnection::Pg(c) => diesel::select(diesel::dsl::sql::<BigInt>("lastval()")).get_result(c),
        DbConnection::Sqlite(c) => {
            diesel::select(diesel::dsl::sql::<BigInt>("last_insert_rowid()")).get_result(c)
        }
    }
}

impl Handler<WriteClient> for DbExecutor {
    type Result = ResponseFuture<Result<Option<Written>, StoreError>>;

    /// Bounded by the message's deadline: committed by then (client row and change row
    /// together) or not at all.
    fn handle(&mut self, msg: WriteClient, _: &mut Context<Self>) -> Self::Result {
        let (write, at) = (msg.write, msg.at);
        self.write(msg.deadline, move |conn| write_client(conn, &write, at))
    }
}

/// The client write and its change row, inside the caller's transaction.
fn write_client(
    conn: &mut DbConnection,
    write: &ClientWrite,
    at: i64,
) -> Result<Option<Written>, StoreError> {
    lock_changes(conn)?;
    let (id, op, generation) = match write {
        ClientWrite::Insert(row) => {
            let generation = next_generation(conn)?;
            diesel::insert_into(clients::table)
                .values(&ClientRow {
                    generation,
                    ..row.clone()
                })
                .execute(conn)
                .map_err(|e| StoreError::from(e).about(row))?;
            (row.client_id.as_str(), ChangeOp::Upsert, generation)
        }
        ClientWrite::Replace { row, seen } => {
            // The row's bucket refilled at the old quota up to now; the new one counts from now
            // (PostgreSQL: in the replacing UPDATE itself, see `replace_row`).
            if let DbConnection::Sqlite(_) = conn {
                super::leases::settle_in_place(conn, &row.client_id, row.generation)?;
            }
            if replace_row(conn, row, *seen).map_err(|e| StoreError::from(e).about(row))? != 1 {
                return Ok(None);
            }
            (row.client_id.as_str(), ChangeOp::Upsert, row.generation)
        }
        ClientWrite::Delete(id) => {
            // Writers hold the change-log lock: nothing changes the row between the two.
            let found: Option<i64> = clients::table
                .find(id)
                .select(clients::generation)
                .first(conn)
                .optional()?;
            let Some(generation) = found else {
                return Ok(None);
            };
            diesel::delete(clients::table.find(id)).execute(conn)?;
            (id.as_str(), ChangeOp::Delete, generation)
        }
    };
    let version = record(conn, ENTITY_CLIENT, id, op, at)?;
    Ok(Some(Written { version, generation }))
}

/// Takes the lock that numbers change rows one writer at a time. PostgreSQL: the
/// transaction-scoped advisory lock (bounded by the transaction's `lock_timeout`), with the
/// change notification queued in the same round trip (sent at commit, dropped on rollback).
/// SQLite: the database's write lock, taken at once by a write that changes nothing (bounded
/// by `busy_timeout`), so that a transaction reading before it writes (the start-up
/// replacement of the backend list by two processes starting together) never reads a
/// snapshot that another process's commit then makes stale, which SQLite refuses with
/// `SQLITE_BUSY`.
pub(super) fn lock_changes(conn: &mut DbConnection) -> QueryResult<()> {
    match conn {
        DbConnection::Pg(c) => c.batch_execute(&format!(
            "SELECT pg_advisory_xact_lock({CHANGES_LOCK}); NOTIFY {CHANGES_CHANNEL}"
        )),
        DbConnection::Sqlite(c) => c.batch_execute("UPDATE changes SET version = version WHERE 0"),
    }
}

impl Handler<GetChanges> for DbExecutor {
    type Result = ResponseFuture<Result<Vec<ChangeRow>, StoreError>>;

    fn handle(&mut self, msg: GetChanges, _: &mut Context<Self>) -> Self::Result {
        self.run(None, move |conn| {
            Ok(changes::table
                .filter(changes::version.gt(msg.after))
                .order(changes::version)
                .limit(msg.limit)
                .select(ChangeRow::as_select())
                .load(conn)?)
        })
    }
}

impl Handler<GetClientRows> for DbExecutor {
    type Result = ResponseFuture<Result<Vec<ClientRow>, StoreError>>;

    fn handle(&mut self, msg: GetClientRows, _: &mut Context<Self>) -> Self::Result {
        self.run(None, move |conn| {
            Ok(clients::table
                .filter(clients::client_id.eq_any(&msg.0))
                .select(ClientRow::as_select())
                .load(conn)?)
        })
    }
}

impl Handler<GetLatestVersion> for DbExecutor {
    type Result = ResponseFuture<Result<i64, StoreError>>;

    fn handle(&mut self, _: GetLatestVersion, _: &mut Context<Self>) -> Self::Result {
        self.run(None, |conn| {
            let v: Option<i64> = changes::table
                .select(diesel::dsl::max(changes::version))
                .first(conn)?;
            Ok(v.unwrap_or(0))
        })
    }
}

impl Handler<PruneChanges> for DbExecutor {
    type Result = ResponseFuture<Result<usize, StoreError>>;

    fn handle(&mut self, msg: PruneChanges, _: &mut Context<Self>) -> Self::Result {
        self.run(None, move |conn| {
            let newest: Option<i64> = changes::table
                .select(diesel::dsl::max(changes::version))
                .first(conn)?;
            let Some(newest) = newest else { return Ok(0) };
            Ok(diesel::delete(
                changes::table
                    .filter(changes::at.lt(msg.before_ms))
                    .filter(changes::version.lt(newest)),
            )
            .execute(conn)?)
        })
    }
}
