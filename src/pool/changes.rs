//! Changes of the backend list at run time (admin writes on this instance, and the change
//! log's from other instances) and draining: a deleted backend takes no new request at once,
//! stays listed as `draining` while requests are in flight to it, and is dropped when the
//! last one finishes.

use std::sync::atomic::Ordering;

use actix::{Context, Handler};

use super::{
    actor::{BackendPool, Member},
    messages::{ApplyBackendChanges, BackendChange, BackendDef},
    standing::drained,
};

impl Handler<ApplyBackendChanges> for BackendPool {
    type Result = ();

    fn handle(&mut self, msg: ApplyBackendChanges, ctx: &mut Context<Self>) {
        let whence = if msg.remote { " on another instance" } else { "" };
        let mut changed = false;
        for (version, change) in msg.changes {
            changed |= match change {
                BackendChange::Upsert(def) => self.upsert(def, version, whence, ctx),
                BackendChange::Delete(id) => self.delete(id, version, whence),
            };
        }
        if let Some(through) = msg.through {
            self.deleted.retain(|_, v| *v > through);
        }
        if changed {
            self.publish();
        }
    }
}

impl BackendPool {
    /// Adds backend `def` or applies its weight and `enabled`; `true` if routing changed.
    fn upsert(&mut self, def: BackendDef, version: i64, whence: &str, ctx: &mut Context<Self>) -> bool {
        if self.deleted.get(&def.id).is_some_and(|&v| v >= version) {
            return false;
        }
        let Some(i) = self.position(&def.id) else {
            log::info!(
                "backend {} {} (weight {}) added{whence}: it takes traffic once its first check passes",
                def.id,
                def.spec.base,
                def.spec.weight
            );
            self.members
                .push(Member::new(&def, version, true, &self.shared.clock));
            self.check(self.members.len() - 1, ctx);
            return true;
        };
        let member = &mut self.members[i];
        if member.version >= version || member.draining {
            return false;
        }
        member.version = version;
        let (id, base) = (&member.backend.id, &member.backend.base);
        let weight = def.spec.weight.get();
        let old = member.backend.weight.swap(weight, Ordering::Relaxed);
        if old != weight {
            log::info!("backend {id} {base}: weight {old} -> {weight}{whence}");
        }
        let toggled = member.enabled != def.enabled;
        if toggled {
            member.enabled = def.enabled;
            if def.enabled {
                log::info!("backend {id} {base} enabled{whence}");
            } else {
                log::info!(
                    "backend {id} {base} disabled{whence}: no new requests, {} in flight finish",
                    member.backend.in_flight()
                );
            }
        }
        old != weight || toggled
    }

    /// Starts draining backend `id`; `true` if routing changed.
    fn delete(&mut self, id: String, version: i64, whence: &str) -> bool {
        let Some(i) = self.position(&id) else {
            self.deleted.insert(id, version);
            return false;
        };
        let member = &mut self.members[i];
        if member.draining {
            return false;
        }
        member.draining = true;
        log::info!(
            "backend {id} {} deleted{whence}: no new requests, draining {} in flight",
            member.backend.base,
            member.backend.in_flight()
        );
        self.first_round_done(&id);
        self.deleted.insert(id, version);
        true
    }

    /// Drops the draining backends with no request in flight left. A handler that loaded the
    /// previous snapshot just before the delete may still lease one an instant later: its
    /// request goes through (the backend is still up), counted on the lease it holds.
    pub(super) fn drop_drained(&mut self) {
        self.members.retain(|m| {
            let done = drained(&m.standing(), m.backend.in_flight());
            if done {
                log::info!("backend {} {} drained and removed", m.backend.id, m.backend.base);
            }
            !done
        });
    }
}
