//! The lease step on the real databases: the PostgreSQL statement computes what the pure
//! `settle` computes, and concurrent batches from several connections never grant more than
//! the row creates (`C + R·T`), nor deadlock.

use std::time::{Duration, Instant};

use diesel::{prelude::*, sql_types::BigInt};
use tollgate::{
    ratelimit::lease::{settle, RowBucket},
    store::{connect_with_retry, lease, DatabaseUrl, DbConnection, DbPool, LeaseAsk},
};

use crate::{both_databases, helpers::TestDb};

const U: i64 = 1_000_000_000_000;

fn pool(db: &TestDb) -> DbPool {
    let url = match db {
        TestDb::Sqlite(path) => DatabaseUrl::Sqlite(path.display().to_string()),
        TestDb::Postgres(_) => DatabaseUrl::Postgres(db.url().into()),
    };
    connect_with_retry(&url, Duration::from_secs(5), Duration::from_secs(10)).unwrap()
}

#[derive(QueryableByName)]
struct Now {
    #[diesel(sql_type = BigInt)]
    ms: i64,
}

fn db_now(conn: &mut DbConnection) -> i64 {
    let sql = match conn {
        DbConnection::Pg(_) => "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) AS ms",
        DbConnection::Sqlite(_) => {
            "SELECT CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER) AS ms"
        }
    };
    diesel::sql_query(sql).get_result::<Now>(conn).unwrap().ms
}

fn insert(conn: &mut DbConnection, id: &str, b: RowBucket) {
    diesel::sql_query(
        "INSERT INTO clients (client_id, name, api_key_hash, key_prefix, ips, capacity, rate_milli, \
         enabled, created_at, updated_at, bucket_level, bucket_at, admitted, refused) \
         VALUES ($1, NULL, $2, '', '', $3, $4, TRUE, 0, 0, $5, $6, 0, 0)",
    )
    .bind::<diesel::sql_types::Text, _>(id)
    .bind::<diesel::sql_types::Text, _>(format!(
        "{:0<64}",
        id.bytes().map(|b| format!("{b:02x}")).collect::<String>()
    ))
    .bind::<BigInt, _>(b.capacity)
    .bind::<BigInt, _>(b.rate_milli)
    .bind::<diesel::sql_types::Nullable<BigInt>, _>(b.level)
    .bind::<diesel::sql_types::Nullable<BigInt>, _>(b.at_ms)
    .execute(conn)
    .unwrap();
}

fn stored(db: &TestDb, id: &str) -> (Option<i64>, Option<i64>) {
    let row = db.client_row(id).unwrap();
    (row.bucket_level, row.bucket_at)
}

async fn the_lease_step_is_settle_on_each_row(db: TestDb) {
    let pool = pool(&db);
    let mut conn = pool.get().unwrap();
    let now = db_now(&mut conn);
    // (id, row, returned, asked)
    let cases = [
        (
            "never-leased",
            RowBucket {
                capacity: 50,
                rate_milli: 10_000,
                level: None,
                at_ms: None,
            },
            0,
            20,
        ),
        (
            "all-of-it",
            RowBucket {
                capacity: 50,
                rate_milli: 10_000,
                level: None,
                at_ms: None,
            },
            0,
            80,
        ),
        (
            "refilled",
            RowBucket {
                capacity: 50,
                rate_milli: 10_000,
                level: Some(0),
                at_ms: Some(now - 1_000),
            },
            0,
            5,
        ),
        (
            "returns",
            RowBucket {
                capacity: 50,
                rate_milli: 10_000,
                level: Some(48 * U),
                at_ms: Some(now),
            },
            7,
            1,
        ),
        (
            "idle-years",
            RowBucket {
                capacity: 1_000_000,
                rate_milli: 1_000_000_000,
                level: Some(0),
                at_ms: Some(0),
            },
            0,
            3,
        ),
        (
            "slow",
            RowBucket {
                capacity: 1,
                rate_milli: 500,
                level: Some(0),
                at_ms: Some(now - 500),
            },
            0,
            1,
        ),
        (
            "future",
            RowBucket {
                capacity: 5,
                rate_milli: 1_000,
                level: Some(2 * U),
                at_ms: Some(now + 60_000),
            },
            0,
            9,
        ),
    ];
    for (id, row, _, _) in &cases {
        insert(&mut conn, id, *row);
    }
    let mut asks: Vec<LeaseAsk> = cases
        .iter()
        .map(|(id, _, returned, asked)| LeaseAsk {
            client_id: id.to_string(),
            returned: *returned,
            asked: *asked,
            generation: 0,
        })
        .collect();
    asks.push(LeaseAsk {
        client_id: "no-such-client".into(),
        returned: 3,
        asked: 3,
        generation: 0,
    });
    // A lease for another incarnation of an existing id (deleted and created again while the
    // statement was on its way) neither grants nor takes anything back.
    let reborn = RowBucket {
        capacity: 50,
        rate_milli: 10_000,
        level: None,
        at_ms: None,
    };
    insert(&mut conn, "reborn", reborn);
    asks.push(LeaseAsk {
        client_id: "reborn".into(),
        returned: 3,
        asked: 3,
        generation: 7,
    });
    let grants = lease(&mut conn, &asks).unwrap();
    assert_eq!(
        grants.len(),
        cases.len(),
        "one grant per existing client of the asked generation: {grants:?}"
    );
    assert_eq!(
        stored(&db, "reborn"),
        (None, None),
        "the other incarnation's row is untouched"
    );
    for (id, row, returned, asked) in cases {
        let grant = grants.iter().find(|g| g.client_id == id).unwrap();
        let (level, at) = stored(&db, id);
        // The row was settled at the database's time, which it stored (a stored time in the
        // future is kept: no refill until then).
        let at = at.unwrap();
        let settled_at = match row.at_ms {
            Some(later) if later > now + 10_000 => {
                assert_eq!(at, later, "{id}: the later refill time was kept");
                now
            }
            _ => {
                assert!(
                    (now..now + 10_000).contains(&at),
                    "{id}: settled at {at}, now {now}"
                );
                at
            }
        };
        let want = settle(row, settled_at, returned, asked);
        assert_eq!((grant.granted, grant.level), (want.granted, want.level), "{id}");
        assert_eq!(level, Some(want.level), "{id}: stored level");
    }
}
both_databases!(the_lease_step_is_settle_on_each_row);

/// Four connections lease from the same 20 clients (each batch in its own order) as fast as
/// they can for a while: nothing deadlocks, and each client granted at most `C + R·T`.
async fn concurrent_batches_never_grant_more_than_the_row_creates(db: TestDb) {
    let pool = pool(&db);
    let (capacity, rate) = (50i64, 200i64);
    let ids: Vec<String> = (0..20).map(|i| format!("c{i:02}")).collect();
    {
        let mut conn = pool.get().unwrap();
        for id in &ids {
            insert(
                &mut conn,
                id,
                RowBucket {
                    capacity,
                    rate_milli: rate * 1000,
                    level: None,
                    at_ms: None,
                },
            );
        }
    }
    let started = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (pool, mut ids) = (pool.clone(), ids.clone());
            std::thread::spawn(move || {
                let mut granted = std::collections::HashMap::<String, i64>::new();
                let mut conn = pool.get().unwrap();
                let mut n = 0;
                while started.elapsed() < Duration::from_millis(1500) {
                    ids.rotate_left(t + 1);
                    let asks: Vec<LeaseAsk> = ids
                        .iter()
                        .map(|id| LeaseAsk {
                            client_id: id.clone(),
                            returned: 0,
                            asked: 7,
                            generation: 0,
                        })
                        .collect();
                    for g in lease(&mut conn, &asks).unwrap() {
                        *granted.entry(g.client_id).or_default() += g.granted;
                    }
                    n += 1;
                }
                (granted, n)
            })
        })
        .collect();
    let mut total = std::collections::HashMap::<String, i64>::new();
    let mut statements = 0;
    for t in threads {
        let (granted, n) = t.join().unwrap();
        statements += n;
        for (id, g) in granted {
            *total.entry(id).or_default() += g;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The database's clock counts whole milliseconds: the refills telescope to the last
    // statement's millisecond minus the first's, up to a millisecond more than the time that
    // really passed (0.2 of a token at this rate).
    let bound = capacity as f64 + rate as f64 * (elapsed + 0.001);
    assert!(statements >= 8, "only {statements} statements ran");
    for id in &ids {
        let got = total.get(id).copied().unwrap_or(0) as f64;
        assert!(got <= bound, "{id}: granted {got} > C + R·T = {bound:.1}");
        // The demand (4 × 7 per round) exceeds the rate: nearly all of it was granted.
        assert!(got >= 0.5 * bound, "{id}: granted only {got} of {bound:.1}");
    }
}
both_databases!(concurrent_batches_never_grant_more_than_the_row_creates);
