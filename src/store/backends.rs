//! The stored backend list: rows, admin writes, and the replacement of the whole list by the
//! one named at start. Every write records a `backend` change in the same transaction (under
//! the change-log lock on PostgreSQL), so that every instance's pool learns it.

use std::time::Instant;

use actix::{Context, Handler, Message, ResponseFuture};
use diesel::prelude::*;

use super::{
    changelog::{lock_changes, record, ChangeOp, ENTITY_BACKEND},
    reconcile::{plan, Plan},
    schema::backends,
    DbConnection, DbExecutor, StoreError,
};

/// One stored backend.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = backends)]
pub struct BackendRow {
    /// Stable id (`b-` and 16 hex digits).
    pub id: String,
    /// Base URL without a trailing slash.
    pub url: String,
    /// Weight, 1 to `BackendSpec::MAX_WEIGHT`.
    pub weight: i64,
    /// Whether it takes new requests.
    pub enabled: bool,
    /// Order shown.
    pub position: i64,
    /// Unix ms.
    pub created_at: i64,
}

/// A new backend id: random, so that two instances never hand out the same one and a URL
/// added again after a delete is visibly a new backend.
pub fn new_backend_id() -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("b-{}", &hex[..16])
}

/// An admin write of one backend.
#[derive(Debug, Clone)]
pub enum BackendWrite {
    /// Add a backend (conflict on `url` if it is listed already).
    Insert {
        /// Base URL, validated.
        url: String,
        /// Weight, validated.
        weight: i64,
    },
    /// Change the weight and/or `enabled` of a backend.
    Update {
        /// Which backend.
        id: String,
        /// New weight, if given.
        weight: Option<i64>,
        /// New `enabled`, if given.
        enabled: Option<bool>,
    },
    /// Delete a backend (instances drain it).
    Delete(String),
}

/// What a committed backend write did.
#[derive(Debug, Clone)]
pub struct BackendWritten {
    /// The row as stored now (`None` after a delete).
    pub row: Option<BackendRow>,
    /// The id written.
    pub id: String,
    /// The version of its change row.
    pub version: i64,
}

/// Applies a backend write and records its change in one transaction, committed by the
/// deadline or not at all. `Ok(None)` when the backend to change or delete does not exist.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<BackendWritten>, StoreError>")]
pub struct WriteBackend {
    /// The write.
    pub write: BackendWrite,
    /// Unix ms, recorded with the row and the change.
    pub at: i64,
    /// Committed by then or not at all.
    pub deadline: Instant,
}

/// Makes the stored list the one named at start, `(url, weight)` in order, in one
/// transaction with a change row per backend added, changed or deleted. Answers the plan
/// that was carried out.
#[derive(Debug, Message)]
#[rtype(result = "Result<Plan, StoreError>")]
pub struct ReplaceBackends {
    /// The named list.
    pub wanted: Vec<(String, i64)>,
    /// Unix ms.
    pub at: i64,
    /// Committed by then or not at all.
    pub deadline: Instant,
}

/// Stored backends, in the order shown: these ids only, or every one for `None`.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<BackendRow>, StoreError>")]
pub struct GetBackendRows(pub Option<Vec<String>>);

impl Handler<WriteBackend> for DbExecutor {
    type Result = ResponseFuture<Result<Option<BackendWritten>, StoreError>>;

    fn handle(&mut self, msg: WriteBackend, _: &mut Context<Self>) -> Self::Result {
        let (write, at) = (msg.write, msg.at);
        self.write(msg.deadline, move |conn| write_backend(conn, write, at))
    }
}

fn find(conn: &mut DbConnection, id: &str) -> QueryResult<Option<BackendRow>> {
    backends::table
        .find(id)
        .select(BackendRow::as_select())
        .first(conn)
        .optional()
}

fn write_backend(
    conn: &mut DbConnection,
    write: BackendWrite,
    at: i64,
) -> Result<Option<BackendWritten>, StoreError> {
    lock_changes(conn)?;
    let (id, op) = match write {
        BackendWrite::Insert { url, weight } => {
            let last: Option<i64> = backends::table
                .select(diesel::dsl::max(backends::position))
                .first(conn)?;
            let row = BackendRow {
                id: new_backend_id(),
                url,
                weight,
                enabled: true,
                position: last.map_or(0, |p| p.saturating_add(1)),
                created_at: at,
            };
            diesel::insert_into(backends::table).values(&row).execute(conn)?;
            (row.id, ChangeOp::Upsert)
        }
        BackendWrite::Update { id, weight, enabled } => {
            let Some(current) = find(conn, &id)? else {
                return Ok(None);
            };
            diesel::update(backends::table.find(&id))
                .set((
                    backends::weight.eq(weight.unwrap_or(current.weight)),
                    backends::enabled.eq(enabled.unwrap_or(current.enabled)),
                ))
                .execute(conn)?;
            (id, ChangeOp::Upsert)
        }
        BackendWrite::Delete(id) => {
            if diesel::delete(backends::table.find(&id)).execute(conn)? != 1 {
                return Ok(None);
            }
            (id, ChangeOp::Delete)
        }
    };
    let version = record(conn, ENTITY_BACKEND, &id, op, at)?;
    let row = find(conn, &id)?;
    Ok(Some(BackendWritten { row, id, version }))
}

impl Handler<ReplaceBackends> for DbExecutor {
    type Result = ResponseFuture<Result<Plan, StoreError>>;

    fn handle(&mut self, msg: ReplaceBackends, _: &mut Context<Self>) -> Self::Result {
        self.write(msg.deadline, move |conn| replace(conn, &msg.wanted, msg.at))
    }
}

/// The replacement, inside the caller's transaction. The change-log lock is taken first, so
/// that instances starting together replace one after the other and the later ones find the
/// list already in place.
fn replace(conn: &mut DbConnection, wanted: &[(String, i64)], at: i64) -> Result<Plan, StoreError> {
    lock_changes(conn)?;
    let stored = load(conn, None)?;
    let plan = plan(&stored, wanted);
    for id in &plan.delete {
        diesel::delete(backends::table.find(id)).execute(conn)?;
        record(conn, ENTITY_BACKEND, id, ChangeOp::Delete, at)?;
    }
    for (id, weight, position) in &plan.update {
        diesel::update(backends::table.find(id))
            .set((
                backends::weight.eq(weight),
                backends::enabled.eq(true),
                backends::position.eq(position),
            ))
            .execute(conn)?;
        record(conn, ENTITY_BACKEND, id, ChangeOp::Upsert, at)?;
    }
    for (id, position) in &plan.reorder {
        diesel::update(backends::table.find(id))
            .set(backends::position.eq(position))
            .execute(conn)?;
    }
    for (url, weight, position) in &plan.insert {
        let row = BackendRow {
            id: new_backend_id(),
            url: url.clone(),
            weight: *weight,
            enabled: true,
            position: *position,
            created_at: at,
        };
        diesel::insert_into(backends::table).values(&row).execute(conn)?;
        record(conn, ENTITY_BACKEND, &row.id, ChangeOp::Upsert, at)?;
    }
    Ok(plan)
}

fn load(conn: &mut DbConnection, ids: Option<&[String]>) -> QueryResult<Vec<BackendRow>> {
    let mut query = backends::table
        .select(BackendRow::as_select())
        .order((backends::position, backends::id))
        .into_boxed();
    if let Some(ids) = ids {
        query = query.filter(backends::id.eq_any(ids));
    }
    query.load(conn)
}

impl Handler<GetBackendRows> for DbExecutor {
    type Result = ResponseFuture<Result<Vec<BackendRow>, StoreError>>;

    fn handle(&mut self, msg: GetBackendRows, _: &mut Context<Self>) -> Self::Result {
        self.run(None, move |conn| Ok(load(conn, msg.0.as_deref())?))
    }
}
