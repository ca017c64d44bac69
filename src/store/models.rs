//! Rows of the `clients` table.

use diesel::prelude::*;

use super::schema::clients;

/// One registered client as stored.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = clients, treat_none_as_null = true)]
pub struct ClientRow {
    /// Primary key.
    pub client_id: String,
    /// Display name.
    pub name: Option<String>,
    /// Hex SHA-256 of the API key.
    pub api_key_hash: String,
    /// First characters of the key, to recognise it.
    pub key_prefix: String,
    /// Comma-separated IPs and CIDR blocks.
    pub ips: String,
    /// Bucket capacity.
    pub capacity: i64,
    /// Tokens per 1000 seconds.
    pub rate_milli: i64,
    /// Whether requests are accepted.
    pub enabled: bool,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
    /// Bucket level in units at `bucket_at`; `None` = full.
    pub bucket_level: Option<i64>,
    /// Unix ms of `bucket_level`.
    pub bucket_at: Option<i64>,
    /// Requests admitted since creation.
    pub admitted: i64,
    /// Requests refused since creation (with `enforce` off: would have been refused).
    pub refused: i64,
    /// Whether refusals are enforced (`false`: shadow mode, requests are never refused).
    pub enforce: bool,
    /// Which incarnation of the id this row is: set by the insert from the change log's
    /// version, so that a client deleted and created again is a new one.
    pub generation: i64,
}

/// The write-behind state of one client's bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketRow {
    /// Which client.
    pub client_id: String,
    /// Level in units and the Unix ms it was taken at; `None` when the row is the bucket
    /// (cluster scope: the lease step alone writes the level, and only the counts go behind).
    pub level: Option<(i64, i64)>,
    /// Admitted count.
    pub admitted: i64,
    /// Refused count.
    pub refused: i64,
    /// The incarnation the counts belong to: a row of another one (the client deleted and
    /// created again meanwhile) is left alone.
    pub generation: i64,
}
