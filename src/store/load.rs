//! Loading the clients at start, a page at a time (keyset on the id), so that a million
//! stored rows never sit in memory at once beside the table built from them.

use actix::{Context, Handler, Message, ResponseFuture};
use diesel::prelude::*;

use super::{schema::clients, ClientRow, DbExecutor, StoreError};

/// Up to `limit` clients with an id after `after` (from the first when `None`), by id.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<ClientRow>, StoreError>")]
pub struct GetClientPage {
    /// Last id of the previous page.
    pub after: Option<String>,
    /// Page size.
    pub limit: i64,
}

impl Handler<GetClientPage> for DbExecutor {
    type Result = ResponseFuture<Result<Vec<ClientRow>, StoreError>>;

    /// Unbounded: pages are read at start, under the start-up timeout, and by the write-behind
    /// scan, which simply tries again.
    fn handle(&mut self, msg: GetClientPage, _: &mut Context<Self>) -> Self::Result {
        self.run(None, move |conn| {
            let mut query = clients::table
                .select(ClientRow::as_select())
                .order(clients::client_id)
                .limit(msg.limit)
                .into_boxed();
            if let Some(after) = msg.after {
                query = query.filter(clients::client_id.gt(after));
            }
            Ok(query.load(conn)?)
        })
    }
}
