//! Stored rows to entries and back: hex key hashes, comma-separated addresses, bucket state
//! restored from the write-behind columns.

use std::{
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use ipnet::IpNet;

use super::{key_id, BucketCell, ClientEntry, ClientExtra, KeyPrefix, LimitScope};
use crate::{
    ratelimit::{Bucket, Quota},
    store::ClientRow,
};

/// Wall-clock Unix milliseconds.
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// An entry from its stored row; `Err` names the invalid column.
/// With cluster-wide limits (`scope`) the stored level is the row's, not this instance's: the
/// entry starts holding no leased token.
pub(super) fn entry_from_row(
    row: ClientRow,
    now: u64,
    wall_ms: i64,
    scope: LimitScope,
) -> Result<ClientEntry, String> {
    let quota = Quota::from_parts(
        u64::try_from(row.capacity).map_err(|_| "capacity")?,
        u64::try_from(row.rate_milli).map_err(|_| "rate")?,
    )
    .map_err(|e| e.to_string())?;
    let key_hash = unhex(&row.api_key_hash).ok_or("api_key_hash")?;
    let ips = row
        .ips
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<IpNet>().map_err(|_| format!("ip {s}")))
        .collect::<Result<Vec<_>, _>>()?;
    let bucket = match (row.bucket_level, row.bucket_at) {
        _ if scope == LimitScope::Cluster => Bucket::leased_empty(quota),
        (Some(level), Some(at)) => {
            let elapsed_ns = u64::try_from(wall_ms.saturating_sub(at))
                .unwrap_or(0)
                .saturating_mul(1_000_000);
            Bucket::restored(quota, u128::try_from(level).unwrap_or(0), elapsed_ns, now)
        }
        _ => Bucket::full(quota, now),
    };
    Ok(ClientEntry {
        id: row.client_id.into(),
        extra: ClientExtra::boxed(row.name, ips),
        key_id: key_id(&key_hash),
        key_prefix: KeyPrefix::from(row.key_prefix.as_str()),
        enabled: row.enabled,
        enforce: row.enforce,
        created_at: row.created_at,
        updated_at: row.updated_at,
        cell: Arc::new(BucketCell::new(
            bucket,
            u64::try_from(row.admitted).unwrap_or(0),
            u64::try_from(row.refused).unwrap_or(0),
            row.generation,
        )),
    })
}

/// The stored row of `e` with `quota` and the SHA-256 of its key (bucket columns left to the
/// write-behind). Without the hash (the key is unchanged) `api_key_hash` is empty: see
/// [`ClientWrite::Replace`](crate::store::ClientWrite::Replace).
pub(super) fn row_of(e: &ClientEntry, quota: Quota, key_hash: Option<&[u8; 32]>) -> ClientRow {
    ClientRow {
        client_id: e.id.to_string(),
        name: e.name().map(str::to_string),
        api_key_hash: key_hash.map(|h| hex(h)).unwrap_or_default(),
        key_prefix: e.key_prefix.to_string(),
        ips: e
            .ips()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        capacity: i64::try_from(quota.capacity()).unwrap_or(i64::MAX),
        rate_milli: i64::try_from(quota.rate_milli()).unwrap_or(i64::MAX),
        enabled: e.enabled,
        enforce: e.enforce,
        created_at: e.created_at,
        updated_at: e.updated_at,
        bucket_level: None,
        bucket_at: None,
        admitted: 0,
        refused: 0,
        generation: e.cell.generation(),
    }
}
