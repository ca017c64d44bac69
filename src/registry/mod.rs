//! Clients and their token buckets.
//!
//! The [`ClientRegistry`] actor owns the clients: it creates, configures and deletes them
//! (database first, memory second, with a change-log row in the same transaction), applies
//! the changes other instances made (see `sync`), evicts anonymous buckets that are full
//! again, and writes bucket state behind to the database. It publishes a [`ClientTable`]; a request looks its
//! client up there and takes its token inline under that client's own lock, so the request
//! path has no mailbox round trip and every worker charges the same bucket exactly.
//!
//! # Layout
//! - `cell`: a client's bucket, counters and enabled flag ([`BucketCell`]);
//! - `entry`: one version of a client's settings ([`ClientEntry`]);
//! - `table`: lookups by id, key hash and address ([`ClientTable`]);
//! - `anonymous`: per-address buckets of clients without a key ([`AnonBuckets`]);
//! - `share`: where buckets live ([`LimitScope`]) and this instance's share ([`ClusterShare`]);
//! - `leaser`: the [`Leaser`] actor, which leases tokens from the clients' rows;
//! - `limiter`: the request path ([`Limiter`], [`Refusal`], [`LimitSettings`]);
//! - `handle`: what handlers hold ([`RegistryHandle`]);
//! - `rows`: stored rows to entries and back;
//! - `actor`: the [`ClientRegistry`] actor and its timers; `messages`: what it is sent;
//! - `writes`: admin writes, queued and applied one at a time (database first);
//! - `batch`: many clients created in one transaction (`POST /clients/batch`);
//! - `sync`: catch-up with the change log (other instances' writes, as deltas);
//! - `identity`: who is asking (address behind trusted proxies).

mod actor;
mod anonymous;
mod batch;
mod cell;
mod entry;
mod handle;
mod identity;
mod leaser;
mod limiter;
mod messages;
mod overdue;
mod refill;
mod rows;
mod share;
mod sync;
mod table;
mod writes;

use std::sync::{Mutex, MutexGuard};

use sha2::{Digest, Sha256};

pub use actor::{ClientLoader, ClientRegistry, RegistrySettings, CHANGE_RETENTION};
pub use anonymous::AnonBuckets;
pub use batch::{BatchError, CreateClients, ItemProblem};
pub use cell::BucketCell;
pub use entry::{key_id, ClientEntry, ClientExtra, KeyId, KeyPrefix};
pub use handle::RegistryHandle;
pub use identity::{anonymous_key, client_ip, is_trusted_peer, parse_nets, ForwardedHeader};
pub use leaser::{GiveBack, Leaser, Want, IDLE_TICKS};
pub use limiter::{Check, LimitSettings, Limiter, Refusal};
pub use messages::{
    CatchUp, ClientInput, ClientPatch, ClientView, CreateClient, Created, Flush, PatchClient, PutClient,
    RegistryError, RemoveClient,
};
pub use refill::empty_for;
pub use rows::unix_ms;
pub use share::{ClusterShare, LimitScope, LimitsMode};
pub use table::ClientTable;

/// Locks a mutex even if a panicking thread poisoned it: a bucket is always consistent
/// between two statements, so the data is still good.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// SHA-256 of an API key: how keys are stored and looked up.
pub fn hash_key(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}
