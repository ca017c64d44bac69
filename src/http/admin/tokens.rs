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
            for v in views {
                if let Some(row) = by_id.get(&v.client_id) {
                    v.tokens = v.tokens.saturating_add(*row).min(v.capacity);
                }
            }
        }
        Ok(Err(e)) => log::debug!("client tokens not read from the database: {e}"),
        Err(e) => log::debug!("client tokens not read from the database: {e}"),
    }
}
