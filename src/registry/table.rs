//! The client table: lookups by id, by API key hash and by address (longest prefix).

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::Arc,
};

use ipnet::IpNet;

use super::ClientEntry;

/// Lookup tables over the registered clients, rebuilt by the actor on every change.
#[derive(Debug, Default)]
pub struct ClientTable {
    by_id: BTreeMap<String, Arc<ClientEntry>>,
    by_key: HashMap<[u8; 32], Arc<ClientEntry>>,
    /// Per prefix length, longest first: masked network address → client.
    by_prefix: Vec<(u8, bool, HashMap<IpAddr, Arc<ClientEntry>>)>,
}

impl ClientTable {
    /// Builds the tables over `entries`.
    pub fn build(entries: impl IntoIterator<Item = Arc<ClientEntry>>) -> ClientTable {
        let mut t = ClientTable::default();
        let mut prefixes: BTreeMap<(u8, bool), HashMap<IpAddr, Arc<ClientEntry>>> = BTreeMap::new();
        for e in entries {
            t.by_key.insert(e.key_hash, e.clone());
            for net in &e.ips {
                let v6 = matches!(net, IpNet::V6(_));
                prefixes
                    .entry((net.prefix_len(), v6))
                    .or_default()
                    .insert(net.network(), e.clone());
            }
            t.by_id.insert(e.id.clone(), e);
        }
        t.by_prefix = prefixes
            .into_iter()
            .rev()
            .map(|((len, v6), map)| (len, v6, map))
            .collect();
        t
    }

    /// The client registered under `id`.
    pub fn get(&self, id: &str) -> Option<&Arc<ClientEntry>> {
        self.by_id.get(id)
    }

    /// Every client, ordered by id.
    pub fn all(&self) -> impl Iterator<Item = &Arc<ClientEntry>> {
        self.by_id.values()
    }

    /// Number of registered clients.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when no client is registered.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The client owning this key hash.
    pub fn by_key(&self, hash: &[u8; 32]) -> Option<&Arc<ClientEntry>> {
        self.by_key.get(hash)
    }

    /// The client registered for `ip` or the longest prefix containing it.
    pub fn by_ip(&self, ip: IpAddr) -> Option<&Arc<ClientEntry>> {
        let ip = ip.to_canonical();
        let v6 = ip.is_ipv6();
        self.by_prefix
            .iter()
            .filter(|(_, is_v6, _)| *is_v6 == v6)
            .find_map(|(len, _, map)| {
                let net = IpNet::new(ip, *len).ok()?.trunc();
                map.get(&net.network())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ratelimit::{Bucket, Quota},
        registry::{hash_key, BucketCell},
    };

    fn entry(id: &str, ips: &[&str]) -> Arc<ClientEntry> {
        let quota = Quota::new(10, 1.0).unwrap();
        Arc::new(ClientEntry {
            id: id.into(),
            name: None,
            key_hash: hash_key(id.as_bytes()),
            key_prefix: String::new(),
            ips: ips.iter().map(|s| s.parse::<IpNet>().unwrap().trunc()).collect(),
            enabled: true,
            created_at: 0,
            updated_at: 0,
            cell: Arc::new(BucketCell::new(Bucket::full(quota, 0), 0, 0)),
        })
    }

    #[test]
    fn the_longest_prefix_wins() {
        let t = ClientTable::build([
            entry("wide", &["10.0.0.0/8"]),
            entry("narrow", &["10.1.0.0/16"]),
            entry("host", &["10.1.2.3/32"]),
            entry("v6", &["2001:db8::/32"]),
        ]);
        let id = |ip: &str| t.by_ip(ip.parse().unwrap()).map(|e| e.id.clone());
        assert_eq!(id("10.1.2.3").as_deref(), Some("host"));
        assert_eq!(id("10.1.9.9").as_deref(), Some("narrow"));
        assert_eq!(id("10.200.0.1").as_deref(), Some("wide"));
        assert_eq!(id("11.0.0.1"), None);
        assert_eq!(id("2001:db8:5::1").as_deref(), Some("v6"));
        assert_eq!(id("::ffff:10.1.2.3").as_deref(), Some("host"));
        assert_eq!(
            t.by_key(&hash_key(b"narrow")).map(|e| e.id.as_str()),
            Some("narrow")
        );
    }
}
