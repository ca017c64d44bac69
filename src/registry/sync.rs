//! Catch-up with the change log: apply, as deltas, the changes this instance has not seen.
//!
//! Every `TOLLGATE_SYNC_INTERVAL` (and at once when a PostgreSQL notification arrives) the
//! actor reads `changes` with `version > last_applied`, oldest first, re-reads the rows of
//! the clients changed, and applies each to its table: a new client gets its stored bucket, a
//! changed one keeps its bucket and counters (a lower capacity clamps the tokens, like a local
//! PATCH), a deleted one is removed. The instance's own writes are applied when they commit
//! and skipped when they come back (their version is known per client), as is any change
//! older than what the table already reflects for that client.
//!
//! Backend changes travel in the same log: their rows are re-read in the same catch-up and
//! handed, in order, to the backend pool (see [`crate::backend_list::BackendFeed`]); a change
//! counts as applied once handed over.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use actix::{ActorFutureExt, AsyncContext, Context, WrapFuture};

use super::{
    actor::flatten,
    rows::{entry_from_row, unix_ms},
    ClientEntry, ClientRegistry,
};
use crate::{
    backend_list::BackendFeed,
    store::{
        BackendRow, ChangeOp, ChangeRow, ClientRow, GetBackendRows, GetChanges, GetClientRows, ENTITY_CLIENT,
    },
};

/// Changes read per query; a full page is followed at once by the next.
const PAGE: i64 = 1000;

/// Where this instance is in the change log.
#[derive(Debug)]
pub struct SyncState {
    /// Every change up to this version is reflected in the table.
    last_applied: i64,
    /// Per client, the newest change the table reflects when newer than `last_applied`
    /// (own writes, and changes applied in the current batch); pruned as the log advances.
    known: HashMap<String, i64>,
    /// A catch-up is in flight.
    running: bool,
    /// Another catch-up was asked for meanwhile.
    again: bool,
    /// The last catch-up failed (logged once until one succeeds).
    failing: bool,
}

impl SyncState {
    /// At start: the table holds everything up to `version`.
    pub fn new(version: i64) -> SyncState {
        SyncState {
            last_applied: version,
            known: HashMap::new(),
            running: false,
            again: false,
            failing: false,
        }
    }

    /// The table now reflects change `version` of client `id` (an own write).
    pub fn applied(&mut self, id: &str, version: Option<i64>) {
        if let Some(v) = version.filter(|v| *v > self.last_applied) {
            let slot = self.known.entry(id.to_string()).or_insert(v);
            *slot = (*slot).max(v);
        }
    }

    /// Whether change `v` of `id` is newer than what the table reflects.
    pub(super) fn is_new(&self, id: &str, v: i64) -> bool {
        v > self.last_applied && self.known.get(id).is_none_or(|k| v > *k)
    }

    /// The change log up to `version` is applied.
    fn advance(&mut self, version: i64) {
        self.last_applied = self.last_applied.max(version);
        let last = self.last_applied;
        self.known.retain(|_, v| *v > last);
    }

    /// Last change version applied.
    pub fn last_applied(&self) -> i64 {
        self.last_applied
    }
}

impl ClientRegistry {
    /// Reads the change log and applies what is new; coalesces requests made meanwhile.
    pub(super) fn catch_up(&mut self, ctx: &mut Context<Self>) {
        if self.sync.running {
            self.sync.again = true;
            return;
        }
        self.sync.running = true;
        let after = self.sync.last_applied;
        let changes = self.db.send(GetChanges { after, limit: PAGE });
        let f = changes.into_actor(self).then(|res, act, _| {
            let db = act.db.clone();
            let fetched = flatten(res).map(|changes| {
                let ids: HashSet<String> = changes
                    .iter()
                    .filter(|c| c.entity == ENTITY_CLIENT && c.op() == ChangeOp::Upsert)
                    .filter(|c| act.sync.is_new(&c.entity_id, c.version))
                    .map(|c| c.entity_id.clone())
                    .collect();
                let backend_ids = BackendFeed::ids_to_read(&changes, act.sync.last_applied);
                (changes, ids.into_iter().collect::<Vec<_>>(), backend_ids)
            });
            async move {
                let (changes, ids, backend_ids) = fetched?;
                let rows = if ids.is_empty() {
                    Vec::new()
                } else {
                    flatten(db.send(GetClientRows(ids)).await)?
                };
                let backend_rows = if backend_ids.is_empty() {
                    Vec::new()
                } else {
                    flatten(db.send(GetBackendRows(Some(backend_ids))).await)?
                };
                Ok::<_, crate::registry::RegistryError>((changes, rows, backend_rows))
            }
            .into_actor(act)
        });
        let f = f.map(|res, act: &mut ClientRegistry, ctx: &mut Context<Self>| {
            act.sync.running = false;
            match res {
                Ok((changes, rows, backend_rows)) => {
                    if act.sync.failing {
                        log::info!("change log readable again");
                        act.sync.failing = false;
                    }
                    let full = i64::try_from(changes.len()).unwrap_or(i64::MAX) >= PAGE;
                    act.apply_changes(changes, rows, backend_rows);
                    if full || std::mem::take(&mut act.sync.again) {
                        act.catch_up(ctx);
                    }
                }
                Err(e) => {
                    if !act.sync.failing {
                        log::warn!("cannot read the change log, serving from memory and retrying: {e}");
                        act.sync.failing = true;
                    }
                }
            }
        });
        ctx.spawn(f);
    }

    /// Applies a page of changes in version order, with the rows re-read for the upserts;
    /// hands the backend changes to the pool.
    fn apply_changes(
        &mut self,
        changes: Vec<ChangeRow>,
        rows: Vec<ClientRow>,
        backend_rows: Vec<BackendRow>,
    ) {
        self.backends
            .hand_over(&changes, backend_rows, self.sync.last_applied);
        let mut rows: HashMap<String, ClientRow> =
            rows.into_iter().map(|r| (r.client_id.clone(), r)).collect();
        let mut newest = self.sync.last_applied;
        for c in changes {
            newest = newest.max(c.version);
            if c.entity != ENTITY_CLIENT || !self.sync.is_new(&c.entity_id, c.version) {
                continue;
            }
            match c.op() {
                ChangeOp::Delete => {
                    if self.table().remove(&c.entity_id).is_some() {
                        log::info!(
                            "client {} deleted on another instance (change {})",
                            c.entity_id,
                            c.version
                        );
                    }
                }
                ChangeOp::Upsert => {
                    // No row: deleted since; its delete change follows.
                    let Some(row) = rows.remove(&c.entity_id) else {
                        continue;
                    };
                    self.apply_row(row, c.version);
                }
            }
            self.sync.known.insert(c.entity_id, c.version);
        }
        self.sync.advance(newest);
        self.shared
            .applied_version
            .store(self.sync.last_applied(), std::sync::atomic::Ordering::Relaxed);
        self.applied
            .set(u64::try_from(self.sync.last_applied()).unwrap_or(0));
    }

    /// Applies the stored settings of one client as a delta: its bucket and counters are kept
    /// when it is already known here.
    pub(super) fn apply_row(&mut self, row: ClientRow, version: i64) {
        let id = row.client_id.clone();
        let now = self.now();
        let scope = self.shared.share.scope();
        let fresh = match entry_from_row(row, now, unix_ms(), scope) {
            Ok(e) => e,
            Err(field) => {
                log::error!("stored client {id} is invalid ({field}); change {version} skipped");
                return;
            }
        };
        // Another generation is another incarnation (deleted and created again, the delete
        // not applied yet): the new one gets its own cell, never the old one's bucket.
        let entry = match self
            .table()
            .get(&id)
            .filter(|current| current.cell.generation() == fresh.cell.generation())
        {
            Some(current) => {
                let quota = fresh.cell.with_bucket(|b| b.quota());
                current.cell.with_bucket(|b| scope.requota(b, quota, now));
                log::info!("client {id} updated on another instance (change {version})");
                ClientEntry {
                    cell: current.cell.clone(),
                    ..fresh
                }
            }
            None => {
                log::info!("client {id} created on another instance (change {version})");
                fresh
            }
        };
        self.table().upsert(Arc::new(entry));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_applied_once_and_never_after_a_newer_one() {
        let mut s = SyncState::new(10);
        // (what happens, client, version, is it new?)
        let cases: &[(&str, &str, i64, bool)] = &[
            ("loaded at start", "a", 10, false),
            ("after the start version", "a", 11, true),
            ("own write applied at commit", "b", 13, false),
            ("older change of a client written here since", "b", 12, false),
            ("another client's change", "c", 12, true),
        ];
        s.applied("b", Some(13));
        for (what, id, v, new) in cases {
            assert_eq!(s.is_new(id, *v), *new, "{what}");
        }
        s.advance(13);
        assert_eq!(s.last_applied(), 13);
        assert!(
            s.known.is_empty(),
            "versions up to the log's position are forgotten"
        );
        assert!(!s.is_new("b", 13));
        assert!(s.is_new("b", 14));
        // An own write that the catch-up already passed leaves nothing behind.
        s.applied("c", Some(12));
        assert!(s.known.is_empty());
    }
}
