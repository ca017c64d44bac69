//! The backend list as a shared, persisted thing: between the store (rows, change log) and
//! the pool (routing). At start the list named by `TOLLGATE_BACKENDS` replaces the stored one
//! (when it is set) and the stored list is loaded; at run time the change-log catch-up hands
//! backend changes, with their rows re-read, to the pool through a [`BackendFeed`].

use std::time::{Duration, Instant};

use actix::{Addr, Recipient};

use crate::{
    pool::{ApplyBackendChanges, BackendChange, BackendDef, BackendSpec},
    store::{
        BackendRow, ChangeOp, ChangeRow, DbExecutor, GetBackendRows, ReplaceBackends, StoreError,
        ENTITY_BACKEND,
    },
};

/// A stored row as the pool needs it; refused (with the reason) if it does not validate, as
/// a row written by hand could.
pub fn def_from_row(row: BackendRow) -> Result<BackendDef, String> {
    let weight = u32::try_from(row.weight).map_err(|_| format!("weight {}", row.weight))?;
    let spec = BackendSpec::new(&row.url, weight)?;
    Ok(BackendDef {
        id: row.id,
        spec,
        enabled: row.enabled,
    })
}

/// The stored rows that validate, in list order; the others are logged and skipped.
fn defs(rows: Vec<BackendRow>) -> Vec<BackendDef> {
    rows.into_iter()
        .filter_map(|row| {
            let id = row.id.clone();
            def_from_row(row)
                .map_err(|e| log::error!("stored backend {id} is invalid ({e}); skipped"))
                .ok()
        })
        .collect()
}

/// Makes the stored list the one named at start. A named list equal to the stored one writes
/// nothing; otherwise every backend added, changed or removed is logged and written with a
/// change row, so that running instances apply it too.
pub async fn replace(
    db: &Addr<DbExecutor>,
    named: &[BackendSpec],
    timeout: Duration,
) -> Result<(), StoreError> {
    let wanted = named
        .iter()
        .map(|s| (s.base.clone(), i64::from(s.weight.get())))
        .collect();
    let plan = db
        .send(ReplaceBackends {
            wanted,
            at: crate::registry::unix_ms(),
            deadline: Instant::now() + timeout,
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))??;
    if plan.changes_nothing() {
        log::info!(
            "TOLLGATE_BACKENDS names the stored backend list ({} backend(s)): unchanged",
            named.len()
        );
    } else {
        log::info!(
            "TOLLGATE_BACKENDS replaces the stored backend list: {} added {:?}, {} changed {:?}, {} removed {:?}",
            plan.insert.len(),
            plan.insert.iter().map(|(url, ..)| url).collect::<Vec<_>>(),
            plan.update.len(),
            plan.update.iter().map(|(id, ..)| id).collect::<Vec<_>>(),
            plan.delete.len(),
            plan.delete
        );
    }
    Ok(())
}

/// The stored backend list, in list order (rows that do not validate are logged and left
/// out). An empty list is allowed: the proxy answers 503 until a backend is added.
pub async fn load(db: &Addr<DbExecutor>) -> Result<Vec<BackendDef>, StoreError> {
    let rows = db
        .send(GetBackendRows(None))
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))??;
    Ok(defs(rows))
}

/// Hands the backend changes the change-log catch-up reads to the pool.
#[derive(Clone)]
pub struct BackendFeed {
    pool: Recipient<ApplyBackendChanges>,
}

impl BackendFeed {
    /// A feed into `pool`.
    pub fn new(pool: Recipient<ApplyBackendChanges>) -> BackendFeed {
        BackendFeed { pool }
    }

    /// Ids of the backends created or changed in `changes` after `after`: their rows are
    /// re-read, since a change row says only what changed, not to what.
    pub fn ids_to_read(changes: &[ChangeRow], after: i64) -> Vec<String> {
        let mut ids: Vec<String> = changes
            .iter()
            .filter(|c| c.entity == ENTITY_BACKEND && c.version > after && c.op() == ChangeOp::Upsert)
            .map(|c| c.entity_id.clone())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Hands the backend changes of `changes` after `after`, oldest first, with the rows
    /// re-read for the upserts, to the pool. An upsert whose row is gone is skipped: its
    /// delete follows.
    pub fn hand_over(&self, changes: &[ChangeRow], rows: Vec<BackendRow>, after: i64) {
        let mut out = Vec::new();
        for c in changes
            .iter()
            .filter(|c| c.entity == ENTITY_BACKEND && c.version > after)
        {
            match c.op() {
                ChangeOp::Delete => out.push((c.version, BackendChange::Delete(c.entity_id.clone()))),
                ChangeOp::Upsert => {
                    let Some(at) = rows.iter().position(|r| r.id == c.entity_id) else {
                        continue;
                    };
                    // Cloned: a later change of the same backend in this page reads it too.
                    match def_from_row(rows[at].clone()) {
                        Ok(def) => out.push((c.version, BackendChange::Upsert(def))),
                        Err(e) => log::error!(
                            "stored backend {} is invalid ({e}); change {} skipped",
                            c.entity_id,
                            c.version
                        ),
                    }
                }
            }
        }
        if !out.is_empty() {
            self.pool.do_send(ApplyBackendChanges {
                changes: out,
                remote: true,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(version: i64, entity: &str, id: &str, op: &str) -> ChangeRow {
        ChangeRow {
            version,
            entity: entity.into(),
            entity_id: id.into(),
            op: op.into(),
            at: 0,
        }
    }

    #[test]
    fn only_new_backend_upserts_are_re_read_once_each() {
        let changes = [
            change(4, ENTITY_BACKEND, "b-old", "upsert"), // applied already
            change(5, "client", "c1", "upsert"),
            change(6, ENTITY_BACKEND, "b-2", "upsert"),
            change(7, ENTITY_BACKEND, "b-1", "upsert"),
            change(8, ENTITY_BACKEND, "b-2", "upsert"),
            change(9, ENTITY_BACKEND, "b-3", "delete"), // nothing to read
        ];
        assert_eq!(BackendFeed::ids_to_read(&changes, 4), vec!["b-1", "b-2"]);
        assert!(BackendFeed::ids_to_read(&changes, 9).is_empty());
    }

    #[test]
    fn a_stored_row_is_validated_like_the_configuration() {
        let row = |url: &str, weight: i64| BackendRow {
            id: "b-1".into(),
            url: url.into(),
            weight,
            enabled: false,
            position: 0,
            created_at: 0,
        };
        let def = def_from_row(row("http://a:1/", 3)).unwrap();
        assert_eq!(
            (def.spec.base.as_str(), def.spec.weight.get(), def.enabled),
            ("http://a:1", 3, false)
        );
        for (url, weight) in [
            ("ftp://a:1", 1),
            ("http://a:1", 0),
            ("http://a:1", 1001),
            ("http://a:1", -1),
        ] {
            assert!(def_from_row(row(url, weight)).is_err(), "{url} {weight}");
        }
    }
}
