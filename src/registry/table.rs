//! The client table: lookups by id, by API key hash and by address (longest prefix), changed
//! one client at a time.
//!
//! A change costs O(log n) (the id index, a B-tree) plus O(1) (the key index, a concurrent
//! hash map), never a rebuild: with a million clients an admin write or a change from another
//! instance touches only its own client. Readers on the request path never wait for the
//! writer beyond one shard's read lock (`dashmap`), and take their token inline.
//!
//! The key index maps the first 16 bytes of a key's SHA-256 to the client's entry: a decision
//! reads one slot, the entry and its cell, and a slot is 24 bytes. The entry (not only the
//! cell) is there because a lease needs the client's id. Two keys that share 128
//! bits of their SHA-256 cannot be found with less than 2^64 hashes; the database still
//! checks the whole hash for uniqueness. The address
//! index is small (only clients registered by address are in it) and is republished whole
//! when such a client changes, so address lookups stay lock-free.
//!
//! There is one writer, the `ClientRegistry` actor; readers may briefly see a client under
//! its old and its new key at once during a key rotation, never neither.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    sync::{Arc, RwLock},
};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use ipnet::IpNet;

use super::{key_id, ClientEntry, KeyId};

/// Per prefix length, longest first: masked network address → client.
type PrefixIndex = Vec<(u8, bool, HashMap<IpAddr, Arc<ClientEntry>>)>;

/// A client in the id index, ordered by its id: the entry is its own key, so the index
/// costs one pointer per client, not a copy of the id.
#[derive(Debug, Clone)]
struct ById(Arc<ClientEntry>);

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

impl PartialOrd for ById {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ById {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.id.cmp(&other.0.id)
    }
}

impl std::borrow::Borrow<str> for ById {
    fn borrow(&self) -> &str {
        &self.0.id
    }
}

/// Lookup tables over the registered clients.
#[derive(Debug, Default)]
pub struct ClientTable {
    /// Ordered by id, for the admin API's pages; written by the actor only.
    by_id: RwLock<BTreeSet<ById>>,
    /// The request path's index: key (see [`KeyId`]) → the client (its cell, and its id for a
    /// lease).
    by_key: DashMap<KeyId, Arc<ClientEntry>, ahash::RandomState>,
    /// Clients registered by address.
    by_prefix: ArcSwap<PrefixIndex>,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

fn slot(net: &IpNet) -> (u8, bool) {
    (net.prefix_len(), matches!(net, IpNet::V6(_)))
}

impl ClientTable {
    /// Builds the tables over `entries` (at start).
    pub fn build(entries: impl IntoIterator<Item = Arc<ClientEntry>>) -> ClientTable {
        let entries: Vec<Arc<ClientEntry>> = entries.into_iter().collect();
        // Sized once: grown by doubling, the key index would leave its smaller copies behind
        // in the allocator (as much again as the final table).
        let t = ClientTable {
            by_key: DashMap::with_capacity_and_hasher(entries.len(), ahash::RandomState::default()),
            ..ClientTable::default()
        };
        let mut with_ips = Vec::new();
        let mut all = Vec::with_capacity(entries.len());
        for e in entries {
            e.cell.set_enabled(e.enabled);
            e.cell.set_enforce(e.enforce);
            t.by_key.insert(e.key_id, e.clone());
            if !e.ips().is_empty() {
                with_ips.push(e.clone());
            }
            all.push(ById(e));
        }
        // Built from the whole lot at once, the B-tree's nodes are full (inserted one by
        // one, in order, they would be half empty).
        *write(&t.by_id) = all.into_iter().collect();
        t.by_prefix.store(Arc::new(index_of(with_ips.iter())));
        t
    }

    /// Adds `entry`, or replaces the client with its id.
    pub fn upsert(&self, entry: Arc<ClientEntry>) {
        // Disabling takes effect before anything else, enabling after the old key is gone:
        // the old key never admits a request in between.
        if !entry.enabled {
            entry.cell.set_enabled(false);
        }
        entry.cell.set_enforce(entry.enforce);
        let old = write(&self.by_id).replace(ById(entry.clone())).map(|o| o.0);
        self.by_key.insert(entry.key_id, entry.clone());
        if let Some(old) = &old {
            self.forget_key(old, &entry);
        }
        if entry.enabled {
            entry.cell.set_enabled(true);
        }
        if !entry.ips().is_empty() || old.is_some_and(|o| !o.ips().is_empty()) {
            self.reindex_ips(&entry.id);
        }
    }

    /// Removes the key slot of `old`, replaced by `new` (same id), when the key changed and
    /// the slot is still this client's: another may have taken the key.
    fn forget_key(&self, old: &ClientEntry, new: &ClientEntry) {
        if old.key_id != new.key_id {
            self.by_key.remove_if(&old.key_id, |_, e| {
                Arc::ptr_eq(&e.cell, &old.cell) || Arc::ptr_eq(&e.cell, &new.cell)
            });
        }
    }

    /// Adds `entries` (new ids): one republication of the address index for the whole lot.
    pub fn insert_many(&self, entries: &[Arc<ClientEntry>]) {
        {
            let mut by_id = write(&self.by_id);
            for e in entries {
                e.cell.set_enabled(e.enabled);
                e.cell.set_enforce(e.enforce);
                // New ids when the batch was checked; one may have arrived since through the
                // change log (created elsewhere): its key slot goes with it.
                if let Some(old) = by_id.replace(ById(e.clone())) {
                    self.forget_key(&old.0, e);
                }
                self.by_key.insert(e.key_id, e.clone());
            }
        }
        let with_ips: Vec<&str> = entries
            .iter()
            .filter(|e| !e.ips().is_empty())
            .map(|e| &*e.id)
            .collect();
        if !with_ips.is_empty() {
            self.reindex_ips_of(with_ips);
        }
    }

    /// Removes the client `id`; returns it.
    pub fn remove(&self, id: &str) -> Option<Arc<ClientEntry>> {
        let old = write(&self.by_id).take(id)?.0;
        self.by_key
            .remove_if(&old.key_id, |_, e| Arc::ptr_eq(&e.cell, &old.cell));
        if !old.ips().is_empty() {
            self.reindex_ips(&old.id);
        }
        Some(old)
    }

    /// Republishes the address index after client `changed` changed: O(clients with
    /// addresses), which the admin API bounds far below the number of clients by key.
    fn reindex_ips(&self, changed: &str) {
        self.reindex_ips_of(vec![changed]);
    }

    /// Republishes the address index after the clients `changed` changed.
    fn reindex_ips_of(&self, changed: Vec<&str>) {
        let current = self.by_prefix.load();
        let mut ids: Vec<&str> = changed;
        for (_, _, map) in current.iter() {
            ids.extend(map.values().map(|e| &*e.id));
        }
        ids.sort_unstable();
        ids.dedup();
        // The id index is the truth: a client indexed before may be gone or changed.
        let by_id = read(&self.by_id);
        let with_ips: Vec<Arc<ClientEntry>> = ids
            .into_iter()
            .filter_map(|id| by_id.get(id).map(|e| e.0.clone()))
            .filter(|e| !e.ips().is_empty())
            .collect();
        drop(by_id);
        self.by_prefix.store(Arc::new(index_of(with_ips.iter())));
    }

    /// The client registered under `id`.
    pub fn get(&self, id: &str) -> Option<Arc<ClientEntry>> {
        read(&self.by_id).get(id).map(|e| e.0.clone())
    }

    /// Up to `limit` clients in id order, skipping the first `offset`.
    pub fn page(&self, offset: usize, limit: usize) -> Vec<Arc<ClientEntry>> {
        read(&self.by_id)
            .iter()
            .skip(offset)
            .take(limit)
            .map(|e| e.0.clone())
            .collect()
    }

    /// Up to `limit` clients with an id after `after` (from the first when `None`), in id
    /// order: keyset pages, stable while clients are added and removed.
    pub fn page_after(&self, after: Option<&str>, limit: usize) -> Vec<Arc<ClientEntry>> {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        read(&self.by_id)
            .range::<str, _>((from, Bound::Unbounded))
            .take(limit)
            .map(|e| e.0.clone())
            .collect()
    }

    /// Every client, in id order (a copy of the index: the caller holds no lock).
    pub fn all(&self) -> Vec<Arc<ClientEntry>> {
        read(&self.by_id).iter().map(|e| e.0.clone()).collect()
    }

    /// Runs `f` on every client in id order, under the index's read lock (keep `f` short).
    pub fn for_each(&self, mut f: impl FnMut(&Arc<ClientEntry>)) {
        read(&self.by_id).iter().for_each(|e| f(&e.0));
    }

    /// Number of registered clients.
    pub fn len(&self) -> usize {
        read(&self.by_id).len()
    }

    /// True when no client is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `f` on the client owning this key hash, under the index shard's read lock (no
    /// reference count is touched unless `f` clones: a hot client's count would be shared by
    /// every worker).
    pub fn with_key<R>(&self, hash: &[u8; 32], f: impl FnOnce(&Arc<ClientEntry>) -> R) -> Option<R> {
        self.by_key.get(&key_id(hash)).map(|e| f(e.value()))
    }

    /// Whether this key belongs to a client other than `id`.
    pub fn key_taken_by_other(&self, key: &KeyId, id: &str) -> bool {
        let Some(owner) = self.by_key.get(key).map(|e| e.value().cell.clone()) else {
            return false;
        };
        self.get(id).is_none_or(|e| !Arc::ptr_eq(&e.cell, &owner))
    }

    /// The client registered for exactly this address or block.
    pub fn by_net(&self, net: &IpNet) -> Option<Arc<ClientEntry>> {
        let (len, v6) = slot(net);
        self.by_prefix
            .load()
            .iter()
            .find(|(l, is_v6, _)| *l == len && *is_v6 == v6)
            .and_then(|(_, _, map)| map.get(&net.network()).cloned())
    }

    /// The client registered for `ip` or the longest prefix containing it.
    pub fn by_ip(&self, ip: IpAddr) -> Option<Arc<ClientEntry>> {
        let ip = ip.to_canonical();
        let v6 = ip.is_ipv6();
        let index = self.by_prefix.load();
        if index.is_empty() {
            return None;
        }
        index
            .iter()
            .filter(|(_, is_v6, _)| *is_v6 == v6)
            .find_map(|(len, _, map)| {
                let net = IpNet::new(ip, *len).ok()?.trunc();
                map.get(&net.network()).cloned()
            })
    }
}

fn index_of<'a>(entries: impl Iterator<Item = &'a Arc<ClientEntry>>) -> PrefixIndex {
    let mut prefixes: BTreeMap<(u8, bool), HashMap<IpAddr, Arc<ClientEntry>>> = BTreeMap::new();
    for e in entries {
        for net in e.ips() {
            prefixes
                .entry(slot(net))
                .or_default()
                .insert(net.network(), e.clone());
        }
    }
    prefixes
        .into_iter()
        .rev()
        .map(|((len, v6), map)| (len, v6, map))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::hash_key;

    /// The id of the client the key's slot holds, if that client is in the id index too.
    fn owner(t: &ClientTable, key: &[u8]) -> Option<String> {
        let cell = t.by_key.get(&key_id(&hash_key(key)))?.value().cell.clone();
        t.all()
            .into_iter()
            .find(|e| Arc::ptr_eq(&e.cell, &cell))
            .map(|e| e.id.to_string())
    }

    fn entry(id: &str, ips: &[&str]) -> Arc<ClientEntry> {
        ClientEntry::sample(id, id.as_bytes(), ips)
    }

    #[test]
    fn the_longest_prefix_wins() {
        let t = ClientTable::build([
            entry("wide", &["10.0.0.0/8"]),
            entry("narrow", &["10.1.0.0/16"]),
            entry("host", &["10.1.2.3/32"]),
            entry("v6", &["2001:db8::/32"]),
        ]);
        let id = |ip: &str| t.by_ip(ip.parse().unwrap()).map(|e| e.id.to_string());
        assert_eq!(id("10.1.2.3").as_deref(), Some("host"));
        assert_eq!(id("10.1.9.9").as_deref(), Some("narrow"));
        assert_eq!(id("10.200.0.1").as_deref(), Some("wide"));
        assert_eq!(id("11.0.0.1"), None);
        assert_eq!(id("2001:db8:5::1").as_deref(), Some("v6"));
        assert_eq!(id("::ffff:10.1.2.3").as_deref(), Some("host"));
        assert_eq!(owner(&t, b"narrow").as_deref(), Some("narrow"));
    }

    fn with_key(id: &str, key: &[u8], ips: &[&str]) -> Arc<ClientEntry> {
        ClientEntry::sample(id, key, ips)
    }

    #[test]
    fn changes_apply_one_client_at_a_time() {
        let t = ClientTable::build([entry("a", &[]), entry("b", &["10.0.0.0/8"])]);
        // Key rotation: the old key stops working, the new one works.
        t.upsert(with_key("a", b"new-key", &[]));
        assert!(owner(&t, b"a").is_none());
        assert_eq!(owner(&t, b"new-key").as_deref(), Some("a"));
        // Addresses move with their client.
        t.upsert(with_key("b", b"b", &["192.168.0.0/16"]));
        assert!(t.by_ip("10.1.1.1".parse().unwrap()).is_none());
        assert_eq!(
            t.by_ip("192.168.3.4".parse().unwrap())
                .map(|e| e.id.to_string())
                .as_deref(),
            Some("b")
        );
        assert!(t.by_net(&"192.168.0.0/16".parse().unwrap()).is_some());
        // A key taken over by another client is not removed with the first one's old version.
        t.upsert(with_key("c", b"new-key", &[]));
        t.upsert(with_key("a", b"third-key", &[]));
        assert_eq!(owner(&t, b"new-key").as_deref(), Some("c"));
        assert!(t.remove("b").is_some());
        assert!(t.by_ip("192.168.3.4".parse().unwrap()).is_none());
        assert!(t.remove("b").is_none());
        assert_eq!(
            t.page(0, 10).iter().map(|e| &*e.id).collect::<Vec<_>>(),
            ["a", "c"]
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn a_batch_entry_that_replaces_a_client_takes_its_key_slot_with_it() {
        // The id arrived through the change log after the batch was checked.
        let t = ClientTable::build([with_key("a", b"stale-key", &[])]);
        t.insert_many(&[with_key("a", b"batch-key", &[])]);
        assert!(
            t.with_key(&hash_key(b"stale-key"), |_| ()).is_none(),
            "the replaced client's key still works"
        );
        assert_eq!(owner(&t, b"batch-key").as_deref(), Some("a"));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_batch_is_indexed_by_id_key_and_address_beside_the_clients_there() {
        let t = ClientTable::build([entry("m", &["10.0.0.0/8"])]);
        t.insert_many(&[entry("a", &[]), entry("z", &["10.1.0.0/16"]), entry("b", &[])]);
        let ids = |page: Vec<Arc<ClientEntry>>| page.iter().map(|e| e.id.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(t.page(0, 10)), ["a", "b", "m", "z"]);
        assert_eq!(ids(t.page_after(Some("b"), 2)), ["m", "z"]);
        assert_eq!(owner(&t, b"z").as_deref(), Some("z"));
        let by_ip = |ip: &str| t.by_ip(ip.parse().unwrap()).map(|e| e.id.to_string());
        assert_eq!(by_ip("10.1.2.3").as_deref(), Some("z"));
        assert_eq!(
            by_ip("10.2.0.1").as_deref(),
            Some("m"),
            "the address index kept the old ones"
        );
    }
}
