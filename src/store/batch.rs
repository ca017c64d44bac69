//! Bulk insertion of clients: every row in one transaction, all or nothing.

use actix::{Handler, Message, SyncContext};
use diesel::prelude::*;

use super::{schema::clients, ClientRow, DbConnection, DbExecutor, StoreError};

/// Rows per `INSERT`: 14 columns × 500 = 7,000 bind parameters, under the limits of both
/// databases (PostgreSQL 65,535; SQLite 32,766).
const ROWS_PER_STATEMENT: usize = 500;

/// Insert new clients in one transaction: either every row is stored or none.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct InsertClients(pub Vec<ClientRow>);

impl Handler<InsertClients> for DbExecutor {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, msg: InsertClients, _: &mut SyncContext<Self>) -> Self::Result {
        let mut conn = self.pool().get()?;
        let rows = &msg.0;
        // Multi-row INSERT is backend-specific in diesel: run it on the concrete connection.
        match &mut *conn {
            DbConnection::Pg(c) => c.transaction(|c| {
                for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                    diesel::insert_into(clients::table).values(chunk).execute(c)?;
                }
                Ok::<_, diesel::result::Error>(())
            }),
            DbConnection::Sqlite(c) => c.transaction(|c| {
                for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                    diesel::insert_into(clients::table).values(chunk).execute(c)?;
                }
                Ok::<_, diesel::result::Error>(())
            }),
        }?;
        Ok(())
    }
}
