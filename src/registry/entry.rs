//! One registered client: its settings (one immutable version) and its bucket cell.
//!
//! Every registered client holds one entry, so its layout is kept to 80 bytes (one 96-byte
//! allocation with the reference counts): a boxed id, the key's index id and prefix inline
//! (the whole SHA-256 stays in the database, which checks it for uniqueness), and the name
//! and addresses boxed together behind one pointer, since most clients have neither (a
//! client with them pays one more allocation).

use std::{fmt, sync::Arc};

use ipnet::IpNet;

use super::{messages::ClientInput, BucketCell};
use crate::ratelimit::Bucket;

/// One registered client, one version of its settings.
#[derive(Debug)]
pub struct ClientEntry {
    /// Its id.
    pub id: Box<str>,
    /// Display name and addresses, when it has either.
    pub extra: Option<Box<ClientExtra>>,
    /// Its API key as the key index knows it (see [`KeyId`]).
    pub key_id: KeyId,
    /// First characters of its key.
    pub key_prefix: KeyPrefix,
    /// Whether its requests are accepted (the request path reads the cell's copy).
    pub enabled: bool,
    /// Whether its refusals are enforced (`false`: shadow mode; the cell has a copy).
    pub enforce: bool,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
    /// Its bucket.
    pub cell: Arc<BucketCell>,
}

const _: () = assert!(std::mem::size_of::<ClientEntry>() <= 80);

impl ClientEntry {
    /// A client created at `now_ms` (Unix ms) from `input`, with its API key `key` (hashed as
    /// `key_hash`) and its first `bucket` (see [`LimitScope::fresh_bucket`](super::LimitScope::fresh_bucket)),
    /// for the row of incarnation `generation`.
    pub fn created(
        input: ClientInput,
        key: &str,
        key_hash: [u8; 32],
        bucket: Bucket,
        now_ms: i64,
        generation: i64,
    ) -> ClientEntry {
        ClientEntry {
            id: input.client_id.into(),
            extra: ClientExtra::boxed(input.name, input.ips),
            key_id: key_id(&key_hash),
            key_prefix: KeyPrefix::of_key(key),
            enabled: input.enabled,
            enforce: input.enforce,
            created_at: now_ms,
            updated_at: now_ms,
            cell: Arc::new(BucketCell::new(bucket, 0, 0, generation)),
        }
    }
}

impl ClientEntry {
    /// Display name.
    pub fn name(&self) -> Option<&str> {
        self.extra.as_ref().and_then(|x| x.name.as_deref())
    }

    /// Addresses and blocks that identify it without a key.
    pub fn ips(&self) -> &[IpNet] {
        self.extra.as_ref().map_or(&[], |x| &x.ips)
    }
}

/// What the key index is keyed on: the first 16 bytes of the key's SHA-256. Finding a key
/// that shares them with a registered one takes about 2^128 / clients hashes.
pub type KeyId = [u8; 16];

/// The [`KeyId`] of a key's SHA-256.
pub fn key_id(hash: &[u8; 32]) -> KeyId {
    let mut id = [0u8; 16];
    id.copy_from_slice(&hash[..16]);
    id
}

#[cfg(test)]
impl ClientEntry {
    /// A client for tests: key `key`, addresses `ips` (masked to their network), a full
    /// bucket of 10 tokens at 1 per second, enabled.
    pub(crate) fn sample(id: &str, key: &[u8], ips: &[&str]) -> Arc<ClientEntry> {
        let quota = crate::ratelimit::Quota::new(10, 1.0).unwrap();
        let ips: Vec<IpNet> = ips.iter().map(|s| s.parse::<IpNet>().unwrap().trunc()).collect();
        Arc::new(ClientEntry {
            id: id.into(),
            extra: ClientExtra::boxed(None::<String>, ips),
            key_id: key_id(&super::hash_key(key)),
            key_prefix: KeyPrefix::default(),
            enabled: true,
            enforce: true,
            created_at: 0,
            updated_at: 0,
            cell: Arc::new(BucketCell::new(Bucket::full(quota, 0), 0, 0, 0)),
        })
    }
}

/// The settings few clients have: a display name, addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientExtra {
    /// Display name.
    pub name: Option<Box<str>>,
    /// Addresses and blocks that identify the client without a key.
    pub ips: Box<[IpNet]>,
}

impl ClientExtra {
    /// `name` and `ips` boxed, or `None` when there is neither.
    pub fn boxed(
        name: Option<impl Into<Box<str>>>,
        ips: impl Into<Box<[IpNet]>>,
    ) -> Option<Box<ClientExtra>> {
        let x = ClientExtra {
            name: name.map(Into::into),
            ips: ips.into(),
        };
        (x.name.is_some() || !x.ips.is_empty()).then(|| Box::new(x))
    }
}

/// The first characters of an API key, shown to tell keys apart: up to 8 bytes, inline.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyPrefix([u8; KeyPrefix::LEN]);

impl KeyPrefix {
    /// Bytes kept.
    pub const LEN: usize = 8;

    /// The prefix of `key` (API keys are visible ASCII, so 8 bytes are 8 characters).
    pub fn of_key(key: &str) -> KeyPrefix {
        KeyPrefix::from(key)
    }

    /// The prefix as text.
    pub fn as_str(&self) -> &str {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(Self::LEN);
        // Built from whole characters only (see `From<&str>`), so this never fails.
        std::str::from_utf8(&self.0[..len]).unwrap_or_default()
    }
}

impl From<&str> for KeyPrefix {
    /// The longest run of whole characters of `s` within 8 bytes (a stored prefix may be
    /// anything; a NUL ends it).
    fn from(s: &str) -> KeyPrefix {
        let mut end = 0;
        for (i, c) in s.char_indices() {
            let next = i + c.len_utf8();
            if c == '\0' || next > Self::LEN {
                break;
            }
            end = next;
        }
        let mut bytes = [0u8; Self::LEN];
        bytes[..end].copy_from_slice(&s.as_bytes()[..end]);
        KeyPrefix(bytes)
    }
}

impl fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::KeyPrefix;

    #[test]
    fn a_key_prefix_keeps_whole_characters_within_eight_bytes() {
        for (stored, shown) in [
            ("tg_live_0123456789", "tg_live_"),
            ("abc", "abc"),
            ("", ""),
            ("exactly8", "exactly8"),
            ("ééééé", "éééé"),
            ("abcdefgé", "abcdefg"),
            ("ab\0cd", "ab"),
        ] {
            assert_eq!(KeyPrefix::from(stored).as_str(), shown, "{stored:?}");
        }
    }
}
