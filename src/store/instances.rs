//! Rows of the `instances` table: registration, heartbeat, listing and removal of the gateway
//! instances sharing the database.
//!
//! Times are Unix ms taken from the database's own clock in the statement itself, so an
//! instance whose clock is off cannot make itself or another one look alive or dead.

use diesel::{
    prelude::*,
    sql_types::{BigInt, Text},
};

use super::{DbConnection, StoreError};

/// Who an instance is, as it registers itself.
#[derive(Debug, Clone)]
pub struct InstanceInfo {
    /// Random id, new at each process start.
    pub instance_id: String,
    /// Host name (empty when unknown).
    pub host: String,
    /// Proxy listener address.
    pub proxy_addr: String,
    /// Admin listener address.
    pub admin_addr: String,
    /// Version of the gateway.
    pub version: String,
}

/// One instance as stored, with the database's clock at the time it was read.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct InstanceRow {
    /// Random id of the process.
    #[diesel(sql_type = Text)]
    pub instance_id: String,
    /// Host name.
    #[diesel(sql_type = Text)]
    pub host: String,
    /// Proxy listener address.
    #[diesel(sql_type = Text)]
    pub proxy_addr: String,
    /// Admin listener address.
    #[diesel(sql_type = Text)]
    pub admin_addr: String,
    /// Gateway version.
    #[diesel(sql_type = Text)]
    pub version: String,
    /// Unix ms, database clock.
    #[diesel(sql_type = BigInt)]
    pub started_at: i64,
    /// Unix ms, database clock.
    #[diesel(sql_type = BigInt)]
    pub last_heartbeat: i64,
    /// Change-log version applied by the instance.
    #[diesel(sql_type = BigInt)]
    pub applied_version: i64,
    /// The database clock when the row was read, Unix ms.
    #[diesel(sql_type = BigInt)]
    pub db_now: i64,
}

/// "Now" in Unix ms as an SQL expression of the connection's database.
fn now_ms(conn: &DbConnection) -> &'static str {
    match conn {
        DbConnection::Pg(_) => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        DbConnection::Sqlite(_) => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
    }
}

/// Registers the instance or records a heartbeat (the same upsert: a row removed meanwhile,
/// e.g. after a long outage, comes back).
pub fn heartbeat(conn: &mut DbConnection, me: &InstanceInfo, applied_version: i64) -> Result<(), StoreError> {
    let now = now_ms(conn);
    diesel::sql_query(format!(
        "INSERT INTO instances (instance_id, host, proxy_addr, admin_addr, version, started_at, \
         last_heartbeat, applied_version) VALUES ($1, $2, $3, $4, $5, {now}, {now}, $6) \
         ON CONFLICT (instance_id) DO UPDATE SET last_heartbeat = excluded.last_heartbeat, \
         applied_version = excluded.applied_version"
    ))
    .bind::<Text, _>(&me.instance_id)
    .bind::<Text, _>(&me.host)
    .bind::<Text, _>(&me.proxy_addr)
    .bind::<Text, _>(&me.admin_addr)
    .bind::<Text, _>(&me.version)
    .bind::<BigInt, _>(applied_version)
    .execute(conn)?;
    Ok(())
}

/// Channel of the PostgreSQL notification sent when an instance joins or leaves: the others
/// read the membership again at once, not at their next heartbeat.
pub const MEMBERS_CHANNEL: &str = "tollgate_members";

/// Wakes the other instances' membership read after a join or a leave (PostgreSQL; SQLite has
/// no notifications, its instances see the change at their next heartbeat).
pub fn notify_members(conn: &mut DbConnection) -> Result<(), StoreError> {
    if let DbConnection::Pg(_) = conn {
        diesel::sql_query(format!("NOTIFY {MEMBERS_CHANNEL}")).execute(conn)?;
    }
    Ok(())
}

/// Every registered instance, ordered by id.
pub fn list(conn: &mut DbConnection) -> Result<Vec<InstanceRow>, StoreError> {
    let now = now_ms(conn);
    Ok(diesel::sql_query(format!(
        "SELECT instance_id, host, proxy_addr, admin_addr, version, started_at, last_heartbeat, \
         applied_version, {now} AS db_now FROM instances ORDER BY instance_id"
    ))
    .load(conn)?)
}

/// Removes the row of `instance_id` (graceful shutdown).
pub fn remove(conn: &mut DbConnection, instance_id: &str) -> Result<bool, StoreError> {
    let n = diesel::sql_query("DELETE FROM instances WHERE instance_id = $1")
        .bind::<Text, _>(instance_id)
        .execute(conn)?;
    Ok(n == 1)
}

/// Removes the rows whose last heartbeat is older than `older_than_ms`; returns how many.
pub fn remove_stale(conn: &mut DbConnection, older_than_ms: i64) -> Result<usize, StoreError> {
    let now = now_ms(conn);
    Ok(
        diesel::sql_query(format!("DELETE FROM instances WHERE last_heartbeat < {now} - $1"))
            .bind::<BigInt, _>(older_than_ms)
            .execute(conn)?,
    )
}
