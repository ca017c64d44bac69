//! The `tokens` of client views with cluster-wide limits: the bucket is the client's row, so
//! a view counts the row's tokens now plus those this instance holds on lease (tokens other
//! instances hold on lease are not counted: they are theirs to spend).

use std::collections::HashMap;

use super::AdminState;
use crate::{
    registry::{ClientView, LimitScope},
    store::GetRowTokens,
};

/// Whether views need their tokens from the rows.
fn leased(state: &AdminState) -> bool {
    state.registry.share().scope() == LimitScope::Cluster
}

/// A client just created has a full row.
pub(super) fn fill_created(state: &AdminState, view: &mut ClientView) {
    if leased(state) {
        view.tokens = view.capacity;
    }
}

/// Adds the rows' tokens to `views` (one query). When the database does not answer, the
/// views keep this instance's tokens only.
pub(super) async fn fill(state: &AdminState, views: &mut [ClientView]) {
    if !leased(state) || views.is_empty() {
        return;
    }
    let ids = views.iter().map(|v| v.client_id.clone()).collect();
    match state.db.send(GetRowTokens(ids)).await {
        Ok(Ok(rows)) => {
            let by_id: HashMap<String, u64> = rows.into_iter().map(|r| (r.client_id, r.tokens)).collect();
            let table = state.registry.table();
            for v in views {
                if let Some(row) = by_id.get(&v.client_id) {
                    // The tokens held here read after the row's: a lease in between moved
                    // tokens from the row to here, counted twice rather than not at all
                    // (and never above the capacity).
                    let held = table
                        .get(&v.client_id)
                        .map_or(v.tokens, |e| e.cell.with_bucket(|b| b.leased()));
                    v.tokens = held.saturating_add(*row).min(v.capacity);
                }
            }
        }
        Ok(Err(e)) => log::debug!("client tokens not read from the database: {e}"),
        Err(e) => log::debug!("client tokens not read from the database: {e}"),
    }
}
