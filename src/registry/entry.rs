//! One registered client: its settings (one immutable version) and its bucket cell.

use std::sync::Arc;

use ipnet::IpNet;

use super::{messages::ClientInput, writes::key_prefix, BucketCell};
use crate::ratelimit::Bucket;

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

impl ClientEntry {
    /// A client created now from `input`, with its API key `key` (hashed as `key_hash`) and a
    /// full bucket as of `now` (the clock's reading) and `now_ms` (Unix ms).
    pub fn created(input: ClientInput, key: &str, key_hash: [u8; 32], now: u64, now_ms: i64) -> ClientEntry {
        ClientEntry {
            id: input.client_id,
            name: input.name,
            key_hash,
            key_prefix: key_prefix(key),
            ips: input.ips,
            enabled: input.enabled,
            created_at: now_ms,
            updated_at: now_ms,
            cell: Arc::new(BucketCell::new(Bucket::full(input.quota, now), 0, 0)),
        }
    }
}
