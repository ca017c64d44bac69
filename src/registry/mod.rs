//! Clients and their token buckets.
//!
//! The [`ClientRegistry`] actor owns the clients: it creates, configures and deletes them
//! (database first, memory second), evicts anonymous buckets that are full again, and writes
//! bucket state behind to the database. It publishes an immutable [`ClientTable`]; a request
//! looks its client up there and takes its token inline under that client's own lock, so the
//! request path has no mailbox round trip and every worker charges the same bucket exactly.

mod actor;
mod batch;
mod identity;
mod messages;

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
};

use actix::Addr;
use actix_web::http::header::{HeaderMap, HeaderName};
use arc_swap::ArcSwap;
use ipnet::IpNet;
use sha2::{Digest, Sha256};

pub use actor::{ClientRegistry, RegistrySettings};
pub use batch::{BatchError, CreateClients, ItemProblem};
pub use identity::{anonymous_key, client_ip, parse_nets, ForwardedHeader};
pub use messages::{
    ClientInput, ClientPatch, ClientView, CreateClient, Created, DeleteClient, Flush, PatchClient, PutClient,
    RegistryError,
};

use crate::ratelimit::{Bucket, Clock, Decision, MonotonicClock, Quota};

/// Locks a mutex even if a panicking thread poisoned it: a bucket is always consistent
/// between two statements, so the data is still good.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// SHA-256 of an API key: how keys are stored and looked up.
pub fn hash_key(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

/// A client's bucket and counters; shared by every version of the client's settings so that
/// a settings change never resets or forks the bucket.
#[derive(Debug)]
pub struct BucketCell {
    bucket: Mutex<Bucket>,
    admitted: AtomicU64,
    refused: AtomicU64,
}

impl BucketCell {
    /// A cell around `bucket` with the stored counts.
    pub fn new(bucket: Bucket, admitted: u64, refused: u64) -> BucketCell {
        BucketCell {
            bucket: Mutex::new(bucket),
            admitted: AtomicU64::new(admitted),
            refused: AtomicU64::new(refused),
        }
    }

    fn take(&self, now: u64) -> (Decision, Quota) {
        let (decision, quota) = {
            let mut b = lock(&self.bucket);
            (b.try_take(now), b.quota())
        };
        let counter = if decision.allowed {
            &self.admitted
        } else {
            &self.refused
        };
        counter.fetch_add(1, Ordering::Relaxed);
        (decision, quota)
    }

    /// Runs `f` on the bucket under its lock.
    pub fn with_bucket<R>(&self, f: impl FnOnce(&mut Bucket) -> R) -> R {
        f(&mut lock(&self.bucket))
    }

    /// Requests admitted.
    pub fn admitted(&self) -> u64 {
        self.admitted.load(Ordering::Relaxed)
    }

    /// Requests refused.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

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

    /// The clients whose id sorts after `id`, ordered by id (keyset pagination).
    pub fn after<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Arc<ClientEntry>> + 'a {
        use std::ops::Bound::{Excluded, Unbounded};
        self.by_id
            .range::<str, _>((Excluded(id), Unbounded))
            .map(|(_, e)| e)
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

const SHARDS: usize = 64;

/// Map of one shard: aHash is keyed at random per process, so an attacker choosing source
/// addresses cannot aim for collisions, and it is several times cheaper than SipHash.
type AnonMap = HashMap<u128, Bucket, ahash::RandomState>;

/// Buckets of anonymous clients, sharded to keep lock hold times short. Only buckets that are
/// not full are kept: a full bucket carries no information, so eviction loses nothing.
pub struct AnonBuckets {
    shards: Vec<Mutex<AnonMap>>,
    hasher: ahash::RandomState,
}

impl Default for AnonBuckets {
    fn default() -> Self {
        AnonBuckets {
            shards: (0..SHARDS).map(|_| Mutex::new(AnonMap::default())).collect(),
            hasher: ahash::RandomState::new(),
        }
    }
}

impl AnonBuckets {
    fn shard(&self, key: u128) -> &Mutex<AnonMap> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    /// Takes a token from the bucket of `key` (a full one with `quota` if it has none).
    pub fn take(&self, key: u128, quota: Quota, now: u64) -> Decision {
        lock(self.shard(key))
            .entry(key)
            .or_insert_with(|| Bucket::full(quota, now))
            .try_take(now)
    }

    /// Drops every bucket that is full again; returns how many were dropped.
    pub fn sweep(&self, now: u64) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let mut map = lock(s);
                let before = map.len();
                map.retain(|_, b| !b.is_full_at(now));
                before - map.len()
            })
            .sum()
    }

    /// Buckets kept now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// True when no bucket is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How requests are matched to clients and limited.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    /// Header carrying the API key.
    pub api_key_header: HeaderName,
    /// Quota of anonymous clients.
    pub default_quota: Quota,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// The header those proxies write.
    pub forwarded_header: ForwardedHeader,
    /// Refuse requests without an API key.
    pub require_api_key: bool,
}

/// Why a request is refused before it reaches a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The API key matches no client.
    UnknownApiKey,
    /// Anonymous access is off.
    ApiKeyRequired,
    /// The client is disabled.
    ClientDisabled,
    /// The client's bucket is empty.
    RateLimited(Decision, Quota),
}

/// State shared by the actor (writer) and the request handlers (readers).
pub struct Shared {
    table: ArcSwap<ClientTable>,
    anon: AnonBuckets,
    clock: MonotonicClock,
    settings: LimitSettings,
}

impl Shared {
    /// Shared state over `table`.
    pub fn new(table: ClientTable, settings: LimitSettings, clock: MonotonicClock) -> Arc<Shared> {
        Arc::new(Shared {
            table: ArcSwap::from_pointee(table),
            anon: AnonBuckets::default(),
            clock,
            settings,
        })
    }

    /// Matches the request to a client and takes one token from its bucket.
    pub fn check(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Result<(Decision, Quota), Refusal> {
        let s = self;
        let ip = || {
            peer.map(|p| {
                client_ip(
                    headers,
                    p,
                    &s.settings.trusted_proxies,
                    s.settings.forwarded_header,
                )
            })
        };
        if let Some(key) = headers.get(&s.settings.api_key_header) {
            let table = s.table.load();
            return match table.by_key(&hash_key(key.as_bytes())) {
                Some(entry) => charge(entry, s.clock.now()),
                // A wrong key costs the caller's address a token like an anonymous request,
                // so that guessing keys is rate limited too.
                None => match s.take_anonymous(ip()) {
                    Ok(_) => Err(Refusal::UnknownApiKey),
                    Err(limited) => Err(limited),
                },
            };
        }
        let ip = ip();
        if let Some(ip) = ip {
            if let Some(entry) = s.table.load().by_ip(ip) {
                return charge(entry, s.clock.now());
            }
        }
        if s.settings.require_api_key {
            return Err(Refusal::ApiKeyRequired);
        }
        s.take_anonymous(ip)
    }

    fn take_anonymous(&self, ip: Option<IpAddr>) -> Result<(Decision, Quota), Refusal> {
        let quota = self.settings.default_quota;
        let decision = self
            .anon
            .take(ip.map_or(0, anonymous_key), quota, self.clock.now());
        if decision.allowed {
            Ok((decision, quota))
        } else {
            Err(Refusal::RateLimited(decision, quota))
        }
    }

    /// The anonymous buckets (for measurements).
    pub fn anonymous(&self) -> &AnonBuckets {
        &self.anon
    }
}

/// What handlers hold: lookups and token takes with no actor round trip, plus the actor's
/// address for changes.
#[derive(Clone)]
pub struct RegistryHandle {
    shared: Arc<Shared>,
    addr: Addr<ClientRegistry>,
}

impl RegistryHandle {
    /// A handle over `shared` and the actor at `addr`.
    pub fn new(shared: Arc<Shared>, addr: Addr<ClientRegistry>) -> RegistryHandle {
        RegistryHandle { shared, addr }
    }

    /// Matches the request to a client and takes one token from its bucket.
    pub fn check(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Result<(Decision, Quota), Refusal> {
        self.shared.check(headers, peer)
    }

    /// The current table (for admin reads).
    pub fn table(&self) -> arc_swap::Guard<Arc<ClientTable>> {
        self.shared.table.load()
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

fn charge(entry: &ClientEntry, now: u64) -> Result<(Decision, Quota), Refusal> {
    if !entry.enabled {
        return Err(Refusal::ClientDisabled);
    }
    match entry.cell.take(now) {
        (d, q) if d.allowed => Ok((d, q)),
        (d, q) => Err(Refusal::RateLimited(d, q)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn anonymous_buckets_are_dropped_once_full_again() {
        let anon = AnonBuckets::default();
        let quota = Quota::new(2, 1.0).unwrap();
        for k in 0..100u128 {
            assert!(anon.take(k, quota, 0).allowed);
        }
        assert_eq!(anon.len(), 100);
        assert_eq!(anon.sweep(999_999_999), 0);
        assert_eq!(anon.sweep(1_000_000_000), 100);
        assert!(anon.is_empty());
        // A dropped bucket comes back full: nothing was lost.
        assert!(anon.take(5, quota, 1_000_000_000).allowed);
        assert!(anon.take(5, quota, 1_000_000_000).allowed);
        assert!(!anon.take(5, quota, 1_000_000_000).allowed);
    }
}
