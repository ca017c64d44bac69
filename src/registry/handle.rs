//! [`RegistryHandle`]: what handlers hold (inline checks, admin reads, the actor's address).

use std::{net::IpAddr, sync::Arc};

use actix::Addr;
use actix_web::http::header::HeaderMap;

use super::{Check, ClientEntry, ClientRegistry, ClientTable, GiveBack, Leaser, Limiter, Refusal, Want};
use crate::ratelimit::{Clock, Decision, Quota};

/// Client-index pages scanned at a time by [`RegistryHandle::busiest`] (the index's lock is
/// free in between).
const SCAN_PAGE: usize = 4096;

/// What handlers hold: lookups and token takes with no actor round trip, plus the actor's
/// address for changes.
#[derive(Clone)]
pub struct RegistryHandle {
    shared: Arc<Limiter>,
    addr: Addr<ClientRegistry>,
    /// `None` with local buckets.
    leaser: Option<Addr<Leaser>>,
}

impl RegistryHandle {
    /// A handle over `shared` and the actor at `addr`.
    pub fn new(
        shared: Arc<Limiter>,
        addr: Addr<ClientRegistry>,
        leaser: Option<Addr<Leaser>>,
    ) -> RegistryHandle {
        RegistryHandle { shared, addr, leaser }
    }

    /// Matches the request to a client and takes one token from its bucket (inline, or
    /// [`Check::Lease`]: then [`RegistryHandle::lease_and_take`]).
    pub fn check(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Check {
        self.shared.check(headers, peer)
    }

    /// Waits for the lease statement that asks for `entry`'s client (shared with every
    /// request waiting on this instance), then takes the token.
    pub async fn lease_and_take(&self, entry: Arc<ClientEntry>) -> Result<(Decision, Quota), Refusal> {
        if let Some(leaser) = &self.leaser {
            // A leaser gone (shutdown) answers nothing: the retake then refuses.
            if let Ok(true) = leaser.send(Want(entry.clone())).await {
                return self.shared.take_reserved(&entry);
            }
        }
        self.shared.retake(&entry)
    }

    /// Gives the tokens this instance holds back to the clients' rows; `Ok(0)` with local
    /// buckets.
    pub async fn give_back(&self) -> Result<u64, String> {
        match &self.leaser {
            Some(leaser) => leaser.send(GiveBack).await.map_err(|e| e.to_string())?,
            None => Ok(0),
        }
    }

    /// Rate-limit decisions since start (for `/metrics`).
    pub fn decisions(&self) -> &crate::metrics::DecisionCounts {
        self.shared.decisions()
    }

    /// The busiest `limit` registered clients by requests decided since start (for
    /// `/metrics` and the status page), busiest first. Scans the id index a page at a time,
    /// so that admin writes never wait for a scan of a million clients: run it off the
    /// admin workers (`spawn_blocking`).
    pub fn busiest(&self, limit: usize) -> Vec<crate::metrics::ClientCounts> {
        let mut top = crate::metrics::TopClients::new(limit);
        let mut after: Option<String> = None;
        loop {
            let page = self.table().page_after(after.as_deref(), SCAN_PAGE);
            let Some(last) = page.last() else { break };
            after = Some(last.id.to_string());
            for e in &page {
                top.offer(&e.id, e.cell.admitted(), e.cell.refused());
            }
        }
        top.into_sorted()
    }

    /// The bucket write-behind's flushes since start (for `/metrics`).
    pub fn write_behind(&self) -> &crate::metrics::WriteBehindStats {
        self.shared.write_behind()
    }

    /// This instance's part of the cluster (limits mode, live instances).
    pub fn share(&self) -> &Arc<super::ClusterShare> {
        self.shared.share()
    }

    /// The current table (for admin reads).
    pub fn table(&self) -> &ClientTable {
        &self.shared.table
    }

    /// Newest change-log version this instance has applied.
    pub fn applied_version(&self) -> i64 {
        self.shared
            .applied_version
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Now, on the registry's clock.
    pub fn now(&self) -> u64 {
        self.shared.clock.now()
    }

    /// Anonymous buckets kept now.
    pub fn anonymous_buckets(&self) -> usize {
        self.shared.anon.len()
    }

    /// The actor, for changes.
    pub fn addr(&self) -> &Addr<ClientRegistry> {
        &self.addr
    }
}
