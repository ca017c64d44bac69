//! Messages of the [`ClientRegistry`](super::ClientRegistry): changes from the admin API and
//! the shutdown flush. Never one per proxied request.

use std::time::Instant;

use actix::Message;
use ipnet::IpNet;
use serde::Serialize;

use super::{ClientEntry, LimitScope};
use crate::ratelimit::Quota;

/// A client's complete settings, validated.
#[derive(Debug, Clone)]
pub struct ClientInput {
    /// Id.
    pub client_id: String,
    /// Display name.
    pub name: Option<String>,
    /// Capacity and rate.
    pub quota: Quota,
    /// API key; `None` generates one (create) or keeps the stored one (replace).
    pub api_key: Option<String>,
    /// Addresses and CIDR blocks.
    pub ips: Vec<IpNet>,
    /// Whether requests are accepted.
    pub enabled: bool,
    /// Whether refusals are enforced (`false`: shadow mode).
    pub enforce: bool,
}

/// A partial update, validated field by field (the quota as a whole by the registry).
#[derive(Debug, Clone, Default)]
pub struct ClientPatch {
    /// New capacity.
    pub capacity: Option<u64>,
    /// New rate.
    pub rate_per_sec: Option<f64>,
    /// New API key.
    pub api_key: Option<String>,
    /// New addresses.
    pub ips: Option<Vec<IpNet>>,
    /// New name (`Some(None)` clears it).
    pub name: Option<Option<String>>,
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// Enforce refusals, or only count them (shadow mode).
    pub enforce: Option<bool>,
}

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegistryError {
    /// No such client.
    #[error("no client with this id")]
    NotFound,
    /// A unique value is taken.
    #[error("{field}: {message}")]
    Conflict {
        /// Which field.
        field: &'static str,
        /// What is taken.
        message: String,
    },
    /// The change is invalid as a whole.
    #[error("{field}: {message}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// The database did not take the write; memory is unchanged.
    #[error("database unavailable: {0}")]
    Unavailable(String),
}

/// The result of a create or create-or-replace.
#[derive(Debug)]
pub struct Created {
    /// The client now.
    pub view: ClientView,
    /// The API key, when this call set it (shown once, never stored in clear).
    pub api_key: Option<String>,
    /// Whether the client was created (else replaced).
    pub created: bool,
}

/// Create a client; 409 if the id exists. The `Instant` is the deadline of the database write,
/// set by the caller so that time spent queued counts.
#[derive(Debug, Message)]
#[rtype(result = "Result<Created, RegistryError>")]
pub struct CreateClient(pub ClientInput, pub Instant);

/// Create or replace a client (the `Instant` as in [`CreateClient`]).
#[derive(Debug, Message)]
#[rtype(result = "Result<Created, RegistryError>")]
pub struct PutClient(pub ClientInput, pub Instant);

/// Change some settings of a client.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<ClientView, RegistryError>")]
pub struct PatchClient {
    /// Which client.
    pub client_id: String,
    /// What changes.
    pub patch: ClientPatch,
    /// Deadline of the database write.
    pub deadline: Instant,
}

/// Delete a client (the `Instant` as in [`CreateClient`]).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), RegistryError>")]
pub struct RemoveClient(pub String, pub Instant);

/// Write every changed bucket to the database now (shutdown).
#[derive(Debug, Message)]
#[rtype(result = "Result<usize, RegistryError>")]
pub struct Flush;

/// A client as the admin API shows it. The API key itself is never shown again.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClientView {
    /// Id.
    pub client_id: String,
    /// Display name.
    #[schema(required = true)]
    pub name: Option<String>,
    /// Bucket capacity.
    pub capacity: u64,
    /// Refill rate, tokens per second.
    pub rate_per_sec: f64,
    /// Whether requests are accepted.
    pub enabled: bool,
    /// `false`: shadow mode (never refused; would-be refusals counted in `refused`).
    pub enforce: bool,
    /// Addresses and CIDR blocks.
    pub ips: Vec<String>,
    /// First characters of the API key.
    pub key_prefix: String,
    /// Whole tokens in the bucket now.
    pub tokens: u64,
    /// Requests admitted.
    pub admitted: u64,
    /// Requests refused.
    pub refused: u64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

impl ClientView {
    /// The view of `entry` at `now`; with cluster-wide limits (`scope`), `tokens` are those
    /// this instance holds.
    pub fn of(entry: &ClientEntry, now: u64, scope: LimitScope) -> ClientView {
        let (tokens, quota) = entry.cell.with_bucket(|b| {
            let tokens = match scope {
                LimitScope::Local => b.tokens_at(now),
                LimitScope::Cluster => b.leased(),
            };
            (tokens, b.quota())
        });
        ClientView {
            client_id: entry.id.to_string(),
            name: entry.name().map(str::to_string),
            capacity: quota.capacity(),
            rate_per_sec: quota.rate_per_sec(),
            enabled: entry.enabled,
            enforce: entry.enforce,
            ips: entry.ips().iter().map(ToString::to_string).collect(),
            key_prefix: entry.key_prefix.to_string(),
            tokens,
            admitted: entry.cell.admitted(),
            refused: entry.cell.refused(),
            created_at: rfc3339(entry.created_at),
            updated_at: rfc3339(entry.updated_at),
        }
    }
}

/// Read the change log now (a notification arrived, or the listener reconnected).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CatchUp;
