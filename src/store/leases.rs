//! Token leases from the clients' rows: one round trip for every client an instance asks for.
//!
//! Each asked client's row is refilled to the database's clock, takes back the tokens the
//! instance returns, and grants at most what it then holds (see [`settle`]). PostgreSQL does
//! it in one statement over arrays (rows locked in id order, so that two instances' batches
//! cannot deadlock); SQLite, on one host, runs [`settle`] itself in one write transaction.

use actix::{Handler, Message, ResponseFuture};
use diesel::{
    prelude::*,
    sql_types::{Array, BigInt, Nullable, Text},
};

use super::{schema::clients, DbConnection, DbExecutor, StoreError};
use crate::ratelimit::lease::{settle, RowBucket};

/// One client of a lease batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseAsk {
    /// The client's id.
    pub client_id: String,
    /// Unused tokens given back.
    pub returned: i64,
    /// Tokens wanted.
    pub asked: i64,
    /// The incarnation of the client the tokens are for: a row of another one (the client
    /// was deleted and created again) neither grants nor takes anything back.
    pub generation: i64,
}

/// What the row granted.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct LeaseGrant {
    /// The client's id.
    #[diesel(sql_type = Text)]
    pub client_id: String,
    /// Whole tokens granted.
    #[diesel(sql_type = BigInt)]
    pub granted: i64,
    /// Units left in the row after the grant.
    #[diesel(sql_type = BigInt)]
    pub level: i64,
}

/// Units in a token, as SQL text.
const UNIT_SQL: &str = "1000000000000";

/// The PostgreSQL statement: [`settle`] in SQL, for every asked client at once.
///
/// The rows are locked first, in id order (two instances' batches never deadlock); the level
/// is computed in the `UPDATE` itself, which re-reads a row another instance changed meanwhile
/// (computed in the locking `SELECT`, it would be computed from the version before the lock
/// and grant tokens twice). The grant is stored in `last_grant` so that `RETURNING`, which sees
/// only new values, can return it.
fn pg_statement() -> String {
    let u = UNIT_SQL;
    let rate = "GREATEST(c.rate_milli * 1000000, 1)";
    let full = format!("c.capacity * {u}");
    let level = format!(
        "LEAST({full}, COALESCE(c.bucket_level, {full}) \
           + {rate} * LEAST(GREATEST(n.ms - COALESCE(c.bucket_at, n.ms), 0), {full} / {rate} + 1) \
           + GREATEST(r.ret, 0) * {u})"
    );
    let grant = format!("LEAST(GREATEST(r.ask, 0), {level} / {u})");
    format!(
        "WITH r AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) AS r(id, ret, ask, gen)), \
         locked AS MATERIALIZED (SELECT c.client_id FROM clients c JOIN r ON r.id = c.client_id AND c.generation = r.gen \
           ORDER BY c.client_id COLLATE \"C\" FOR UPDATE OF c), \
         n AS MATERIALIZED (SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) AS ms) \
         UPDATE clients c SET last_grant = {grant}, bucket_level = {level} - {grant} * {u}, \
           bucket_at = GREATEST(n.ms, COALESCE(c.bucket_at, n.ms)) \
         FROM locked l JOIN r ON r.id = l.client_id CROSS JOIN n \
         WHERE c.client_id = l.client_id \
         RETURNING c.client_id, c.last_grant AS granted, c.bucket_level AS level"
    )
}

/// The row's level refilled to now at its stored (old) quota, as an SQL expression over the
/// row's own columns (PostgreSQL); `NULL` (full) stays `NULL`.
pub(super) fn pg_settled_level() -> String {
    let u = UNIT_SQL;
    let rate = "GREATEST(clients.rate_milli * 1000000, 1)";
    let full = format!("clients.capacity * {u}");
    format!(
        "CASE WHEN clients.bucket_level IS NULL THEN NULL ELSE LEAST({full}, clients.bucket_level \
           + {rate} * LEAST(GREATEST({PG_NOW} - COALESCE(clients.bucket_at, {PG_NOW}), 0), {full} / {rate} + 1)) END"
    )
}

/// The row's refill time after [`pg_settled_level`]: now, never moved back.
pub(super) fn pg_settled_at() -> String {
    format!("CASE WHEN clients.bucket_at IS NULL THEN NULL ELSE GREATEST({PG_NOW}, clients.bucket_at) END")
}

/// A client's bucket columns and the database's time, as read for a lease or a view.
#[derive(QueryableByName)]
struct RowColumns {
    #[diesel(sql_type = Text)]
    client_id: String,
    #[diesel(sql_type = BigInt)]
    capacity: i64,
    #[diesel(sql_type = BigInt)]
    rate_milli: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    bucket_level: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    bucket_at: Option<i64>,
    #[diesel(sql_type = BigInt)]
    now_ms: i64,
}

impl RowColumns {
    fn bucket(&self) -> RowBucket {
        RowBucket {
            capacity: self.capacity,
            rate_milli: self.rate_milli,
            level: self.bucket_level,
            at_ms: self.bucket_at,
        }
    }
}

const PG_NOW: &str = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)";
const SQLITE_NOW: &str = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";

/// The SELECT of [`RowColumns`] (the filter to add), with `now` the database's time.
fn select_columns(now: &str) -> String {
    format!("SELECT client_id, capacity, rate_milli, bucket_level, bucket_at, {now} AS now_ms FROM clients")
}

/// The columns of one client's row (SQLite), if it is the incarnation `generation` (any
/// with `None`).
fn sqlite_row(
    c: &mut diesel::SqliteConnection,
    id: &str,
    generation: Option<i64>,
) -> Result<Option<RowColumns>, StoreError> {
    Ok(diesel::sql_query(format!(
        "{} WHERE client_id = $1 AND ($2 IS NULL OR generation = $2)",
        select_columns(SQLITE_NOW)
    ))
    .bind::<Text, _>(id)
    .bind::<Nullable<BigInt>, _>(generation)
    .get_result::<RowColumns>(c)
    .optional()?)
}

/// Leases for every client of `asks` in one round trip; a client that no longer exists gets
/// no grant.
pub fn lease(conn: &mut DbConnection, asks: &[LeaseAsk]) -> Result<Vec<LeaseGrant>, StoreError> {
    if asks.is_empty() {
        // Nothing to lease: a probe of the database (is leasing possible again?).
        diesel::sql_query("SELECT 1").execute(conn)?;
        return Ok(Vec::new());
    }
    match conn {
        DbConnection::Pg(pg) => {
            let mut sorted: Vec<&LeaseAsk> = asks.iter().collect();
            sorted.sort_by(|a, b| a.client_id.cmp(&b.client_id));
            let ids: Vec<&str> = sorted.iter().map(|a| a.client_id.as_str()).collect();
            let returned: Vec<i64> = sorted.iter().map(|a| a.returned).collect();
            let asked: Vec<i64> = sorted.iter().map(|a| a.asked).collect();
            let generations: Vec<i64> = sorted.iter().map(|a| a.generation).collect();
            Ok(diesel::sql_query(pg_statement())
                .bind::<Array<Text>, _>(ids)
                .bind::<Array<BigInt>, _>(returned)
                .bind::<Array<BigInt>, _>(asked)
                .bind::<Array<BigInt>, _>(generations)
                .load(pg)?)
        }
        DbConnection::Sqlite(lite) => lite.immediate_transaction(|c| settle_sqlite(c, asks)),
    }
}

/// [`settle`] on each asked row, inside the caller's SQLite write transaction.
fn settle_sqlite(c: &mut diesel::SqliteConnection, asks: &[LeaseAsk]) -> Result<Vec<LeaseGrant>, StoreError> {
    let mut grants = Vec::with_capacity(asks.len());
    for a in asks {
        let Some(row) = sqlite_row(c, &a.client_id, Some(a.generation))? else {
            continue;
        };
        let settled = settle(row.bucket(), row.now_ms, a.returned, a.asked);
        diesel::update(clients::table.find(&a.client_id))
            .set((
                clients::bucket_level.eq(Some(settled.level)),
                clients::bucket_at.eq(Some(settled.at_ms)),
            ))
            .execute(c)?;
        grants.push(LeaseGrant {
            client_id: a.client_id.clone(),
            granted: settled.granted,
            level: settled.level,
        });
    }
    Ok(grants)
}

/// Refills the row of `client_id` to now at its current quota, inside the caller's
/// transaction: done before the quota changes, so that the time before the change refills at
/// the old rate and the time after at the new one.
pub(super) fn settle_in_place(
    conn: &mut DbConnection,
    client_id: &str,
    generation: i64,
) -> Result<(), StoreError> {
    let asks = [LeaseAsk {
        client_id: client_id.to_string(),
        returned: 0,
        asked: 0,
        generation,
    }];
    match conn {
        DbConnection::Pg(_) => lease(conn, &asks).map(drop),
        DbConnection::Sqlite(c) => settle_sqlite(c, &asks).map(drop),
    }
}

/// Lease tokens for a batch of clients (one round trip), within the database timeout.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<LeaseGrant>, StoreError>")]
pub struct Lease(pub Vec<LeaseAsk>);

impl Handler<Lease> for DbExecutor {
    type Result = ResponseFuture<Result<Vec<LeaseGrant>, StoreError>>;

    /// Bounded by the database timeout: a lease that comes too late is treated as a failure
    /// (its tokens, if the database granted them after all, are lost: fewer admitted, never more).
    fn handle(&mut self, msg: Lease, _: &mut Self::Context) -> Self::Result {
        let deadline = std::time::Instant::now() + self.timeout();
        self.run(Some(deadline), move |conn| lease(conn, &msg.0))
    }
}

/// A client's row bucket as read now, for the admin API's `tokens`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowBucketNow {
    /// The client's id.
    pub client_id: String,
    /// Whole tokens the row holds now (refilled to the database's clock, nothing taken).
    pub tokens: u64,
}

/// The tokens in the rows of `ids` now (no lease: nothing is written).
pub fn row_tokens(conn: &mut DbConnection, ids: &[String]) -> Result<Vec<RowBucketNow>, StoreError> {
    let rows: Vec<RowColumns> = match conn {
        DbConnection::Pg(c) => diesel::sql_query(format!(
            "{} WHERE client_id = ANY($1::text[])",
            select_columns(PG_NOW)
        ))
        .bind::<Array<Text>, _>(ids)
        .load(c)?,
        // Local and cheap: one query per id (a page holds at most a few hundred).
        DbConnection::Sqlite(c) => {
            let mut rows = Vec::with_capacity(ids.len());
            for id in ids {
                rows.extend(sqlite_row(c, id, None)?);
            }
            rows
        }
    };
    Ok(rows
        .into_iter()
        .map(|r| RowBucketNow {
            tokens: u64::try_from(settle(r.bucket(), r.now_ms, 0, 0).level / 1_000_000_000_000).unwrap_or(0),
            client_id: r.client_id,
        })
        .collect())
}

/// Read the tokens of some clients' rows, within the database timeout.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<RowBucketNow>, StoreError>")]
pub struct GetRowTokens(pub Vec<String>);

impl Handler<GetRowTokens> for DbExecutor {
    type Result = ResponseFuture<Result<Vec<RowBucketNow>, StoreError>>;

    fn handle(&mut self, msg: GetRowTokens, _: &mut Self::Context) -> Self::Result {
        let deadline = std::time::Instant::now() + self.timeout();
        self.run(Some(deadline), move |conn| row_tokens(conn, &msg.0))
    }
}
