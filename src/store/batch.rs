//! Bulk insertion of clients: every row and its change row in one transaction, all or
//! nothing, so that other instances learn batch-created clients from the change log.

use std::time::Instant;

use actix::{Context, Handler, Message, ResponseFuture};
use diesel::prelude::*;

use super::{
    changelog::{last_version, lock_changes, next_generation, ChangeOp, Written, ENTITY_CLIENT},
    schema::{changes, clients},
    ClientRow, DbConnection, DbExecutor, StoreError,
};

/// Rows per `INSERT`: 14 columns × 500 = 7,000 bind parameters, under the limits of both
/// databases (PostgreSQL 65,535; SQLite 32,766).
const ROWS_PER_STATEMENT: usize = 500;

/// Insert new clients in one transaction, committed by the deadline or not at all: either
/// every row (and one change row per client) is stored or none. Answers the newest change
/// version written (every change of the batch is at most that) and the generation of the new
/// rows (one for the whole batch: they are new ids).
#[derive(Debug, Message)]
#[rtype(result = "Result<Written, StoreError>")]
pub struct InsertClients(pub Vec<ClientRow>, pub Instant);

impl Handler<InsertClients> for DbExecutor {
    type Result = ResponseFuture<Result<Written, StoreError>>;

    fn handle(&mut self, msg: InsertClients, _: &mut Context<Self>) -> Self::Result {
        let (rows, deadline) = (msg.0, msg.1);
        self.write(deadline, move |conn| insert_clients(conn, &rows))
    }
}

/// The rows and their change rows, inside the caller's transaction.
fn insert_clients(conn: &mut DbConnection, rows: &[ClientRow]) -> Result<Written, StoreError> {
    lock_changes(conn)?;
    let generation = next_generation(conn)?;
    let rows: Vec<ClientRow> = rows
        .iter()
        .map(|r| ClientRow {
            generation,
            ..r.clone()
        })
        .collect();
    // Multi-row INSERT is backend-specific in diesel: run it on the concrete connection.
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        match conn {
            DbConnection::Pg(c) => diesel::insert_into(clients::table).values(chunk).execute(c),
            DbConnection::Sqlite(c) => diesel::insert_into(clients::table).values(chunk).execute(c),
        }
        .map_err(StoreError::from)?;
        let changed: Vec<_> = chunk
            .iter()
            .map(|r| {
                (
                    changes::entity.eq(ENTITY_CLIENT),
                    changes::entity_id.eq(r.client_id.as_str()),
                    changes::op.eq(ChangeOp::Upsert.as_str()),
                    changes::at.eq(r.updated_at),
                )
            })
            .collect();
        match conn {
            DbConnection::Pg(c) => diesel::insert_into(changes::table).values(&changed).execute(c),
            DbConnection::Sqlite(c) => diesel::insert_into(changes::table).values(&changed).execute(c),
        }?;
    }
    Ok(Written {
        version: last_version(conn)?,
        generation,
    })
}
