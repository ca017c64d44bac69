//! Bulk insertion of clients: every row in one transaction, all or nothing.

use std::time::Instant;

use actix::{Context, Handler, Message, ResponseFuture};
use diesel::prelude::*;

use super::{schema::clients, ClientRow, DbConnection, DbExecutor, StoreError};

/// Rows per `INSERT`: 14 columns × 500 = 7,000 bind parameters, under the limits of both
/// databases (PostgreSQL 65,535; SQLite 32,766).
const ROWS_PER_STATEMENT: usize = 500;

/// Insert new clients in one transaction, committed by the deadline or not at all: either
/// every row is stored or none.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct InsertClients(pub Vec<ClientRow>, pub Instant);

impl Handler<InsertClients> for DbExecutor {
    type Result = ResponseFuture<Result<(), StoreError>>;

    fn handle(&mut self, msg: InsertClients, _: &mut Context<Self>) -> Self::Result {
        let (rows, deadline) = (msg.0, msg.1);
        self.write(deadline, move |conn| {
            // Multi-row INSERT is backend-specific in diesel: run it on the concrete connection.
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                match conn {
                    DbConnection::Pg(c) => diesel::insert_into(clients::table).values(chunk).execute(c),
                    DbConnection::Sqlite(c) => diesel::insert_into(clients::table).values(chunk).execute(c),
                }
                .map_err(StoreError::from)?;
            }
            Ok(())
        })
    }
}
