//! The instances sharing one database: each registers itself, heartbeats, and lists the
//! others for `GET /cluster`.
//!
//! - `liveness`: the pure policy (alive, dead, removed) over the time since a heartbeat;
//! - `applied`: [`AppliedVersion`], the change version this instance has applied, published
//!   with each heartbeat;
//! - `member`: [`ClusterMember`], the heartbeat thread, and [`ClusterHandle`] for the admin API;
//! - `view`: the body of `GET /cluster`.

mod applied;
mod liveness;
mod member;
mod view;

pub use applied::AppliedVersion;
pub use liveness::{Liveness, State};
pub use member::{ClusterHandle, ClusterMember};
pub use view::{ClusterView, DatabaseStatus, InstanceView};

use crate::store::InstanceInfo;

/// This process's identity: a random id (new at each start), the host name, the listener
/// addresses and the crate version.
pub fn this_instance(proxy_addr: std::net::SocketAddr, admin_addr: std::net::SocketAddr) -> InstanceInfo {
    InstanceInfo {
        instance_id: uuid::Uuid::new_v4().simple().to_string(),
        host: host_name(),
        proxy_addr: proxy_addr.to_string(),
        admin_addr: admin_addr.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// The host name (Linux), else `$HOSTNAME`, else empty: listener addresses such as
/// `0.0.0.0:8080` alone do not tell instances on different hosts apart.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}
