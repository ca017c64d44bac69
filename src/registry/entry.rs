//! One registered client: its settings (one immutable version) and its bucket cell.

use std::sync::Arc;

use ipnet::IpNet;

use super::BucketCell;

/// One registered client, one version of its settings.
#[derive(Debug)]
pub struct ClientEntry {
    /// Its id.
    pub id: String,
    /// Display name.
    pub name: Option<String>,
    /// SHA-256 of its API key.
    pub key_hash: [u8; 32],
    /// First characters of its key.
    pub key_prefix: String,
    /// Addresses and blocks that identify it without a key.
    pub ips: Vec<IpNet>,
    /// Whether its requests are accepted.
    pub enabled: bool,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
    /// Its bucket.
    pub cell: Arc<BucketCell>,
}
