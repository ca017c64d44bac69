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
    /// snapshot from before the delete may still be about to lease one: the backend is
    /// retired first, and a lease taken after that backs off (see `Backend::enter`), so
    /// "removed" means no request can reach it any more.
    pub(super) fn drop_drained(&mut self) {
        self.members.retain(|m| {
            if m.draining {
                m.backend.retire();
            }
            let done = drained(&m.standing(), m.backend.in_flight_exact());
            if done {
                log::info!("backend {} {} drained and removed", m.backend.id, m.backend.base);
            }
            !done
        });
    }
}

#[cfg(test)]
mod tests {
    use std::{num::NonZeroU32, time::Duration};

    use super::*;
    use crate::pool::BackendSpec;
    use crate::pool::{GetBackends, PoolHandle, PoolSettings, Strategy, Thresholds};

    fn def(id: &str, port: u16, weight: u32) -> BackendDef {
        BackendDef {
            id: id.into(),
            spec: BackendSpec {
                base: format!("http://127.0.0.1:{port}"),
                weight: NonZeroU32::new(weight).unwrap(),
            },
            enabled: true,
        }
    }

    fn settings() -> PoolSettings {
        PoolSettings {
            strategy: Strategy::RoundRobin,
            health_path: "/".into(),
            // One round of checks at start (refused: no server), never enough to eject: the
            // list is what is under test.
            interval: Duration::from_secs(3600),
            timeout: Duration::from_secs(1),
            thresholds: Thresholds {
                healthy: 1,
                unhealthy: 1000,
                passive_window: Duration::ZERO,
                answer_grace: Duration::ZERO,
            },
            panic_threshold: 0,
        }
    }

    async fn ids(pool: &PoolHandle) -> Vec<String> {
        let status = pool.addr().send(GetBackends).await.unwrap();
        status.backends.into_iter().map(|b| b.id).collect()
    }

    /// Changes arrive out of order: this instance's own admin write (version 5) is applied
    /// after the catch-up brought another instance's delete (version 6) of the same backend.
    #[actix_rt::test]
    async fn an_older_change_never_brings_a_deleted_backend_back() {
        let pool = PoolHandle::start(&[def("b-x", 1, 1), def("b-y", 2, 1)], 1, settings());
        let apply = |changes, remote| ApplyBackendChanges { changes, remote };
        pool.addr()
            .send(apply(vec![(6, BackendChange::Delete("b-x".into()))], true))
            .await
            .unwrap();
        assert_eq!(ids(&pool).await, ["b-y"], "idle: dropped at once");
        pool.addr()
            .send(apply(vec![(5, BackendChange::Upsert(def("b-x", 1, 3)))], false))
            .await
            .unwrap();
        // A later catch-up (newer versions) does not make the pool forget the delete either.
        pool.addr()
            .send(apply(vec![(7, BackendChange::Upsert(def("b-y", 2, 2)))], true))
            .await
            .unwrap();
        pool.addr()
            .send(apply(vec![(5, BackendChange::Upsert(def("b-x", 1, 3)))], false))
            .await
            .unwrap();
        assert_eq!(ids(&pool).await, ["b-y"]);
    }

    /// A lease taken from a snapshot loaded before the delete: either the drain waits for it,
    /// or the lease backs off; once "removed" is reported, nothing reaches the backend.
    #[actix_rt::test]
    async fn a_removed_backend_takes_no_lease_from_an_older_snapshot() {
        let pool = PoolHandle::start(&[def("b-x", 1, 1), def("b-y", 2, 1)], 1, settings());
        assert_eq!(ids(&pool).await.len(), 2, "the actor has published its list");
        let stale = pool.pick(&[]).unwrap().backend().clone();
        pool.addr()
            .send(ApplyBackendChanges {
                changes: vec![(6, BackendChange::Delete(stale.id.clone()))],
                remote: true,
            })
            .await
            .unwrap();
        // Dropped (its one lease above is gone), hence retired.
        assert!(!ids(&pool).await.contains(&stale.id));
        assert!(!stale.enter(), "a retired backend took a request");
        assert_eq!(stale.in_flight(), 0);
        for _ in 0..4 {
            let lease = pool.pick(&[]).unwrap();
            assert_ne!(lease.backend().id, stale.id);
        }
    }
}
