//! Several gateway processes on one database: an admin change made on one instance reaches
//! the others through the change log (PostgreSQL notification + catch-up poll; SQLite poll).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

/// The propagation bound docs/cluster.md promises with the default `TOLLGATE_SYNC_INTERVAL`.
const WITHIN: Duration = Duration::from_secs(1);

fn instance(db_url: &str, backend: &TestBackend, env: &[(&str, &str)]) -> GatewayProcess {
    let mut b = GatewayProcess::builder()
        .backends(&[backend.url()])
        .args(&["--health-interval", "1h"])
        // Polling with a key not known yet costs the test's address anonymous tokens.
        .env("TOLLGATE_DEFAULT_CAPACITY", "1000000")
        .env("TOLLGATE_DEFAULT_RATE", "1000000")
        .database_url(db_url)
        .capture_stderr();
    for (k, v) in env {
        b = b.env(k, v);
    }
    b.spawn()
}

async fn admin(gw: &GatewayProcess, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let c = client();
    let req = c.request(method.parse().unwrap(), gw.admin_url(path));
    let mut resp = match body {
        Some(b) => req.send_json(&b).await.unwrap(),
        None => req.send().await.unwrap(),
    };
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

/// Polls `check` every 5 ms until it holds; returns the time taken, panics after `deadline`.
async fn time_until<F, Fut>(what: &str, deadline: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < deadline, "{what}: not within {deadline:?}");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

/// Time until every one of `gws` answers `status` for `key`, counted from `since`.
async fn reaches_all(
    gws: &[&GatewayProcess],
    key: &str,
    status: u16,
    since: Instant,
    what: &str,
) -> Duration {
    for gw in gws {
        let left = WITHIN.saturating_sub(since.elapsed());
        time_until(what, left, || async { gw.status_with_key(key).await == status }).await;
    }
    let took = since.elapsed();
    assert!(took <= WITHIN, "{what}: took {took:?}");
    took
}

fn key(i: usize) -> String {
    format!("sync-test-key-{i:04}-abcdefgh")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[actix_web::test]
async fn changes_on_one_instance_reach_the_two_others_within_a_second() {
    let db = TestDb::postgres();
    let backend = TestBackend::start("sync");
    let a = instance(&db.url(), &backend, &[]);
    let b = instance(&db.url(), &backend, &[]);
    let c = instance(&db.url(), &backend, &[]);
    for gw in [&a, &b, &c] {
        gw.wait_ready().await;
    }

    // 50 creations on A, each timed until B and C admit the new key.
    let mut times = Vec::new();
    for i in 0..50 {
        let body =
            json!({"client_id": format!("c{i}"), "capacity": 1000, "rate_per_sec": 100, "api_key": key(i)});
        let (status, resp) = admin(&a, "POST", "/clients", Some(body)).await;
        assert_eq!(status, 201, "{resp}");
        let since = Instant::now();
        times.push(reaches_all(&[&b, &c], &key(i), 200, since, &format!("client c{i} on B and C")).await);
    }
    times.sort();
    println!(
        "created on A, admitted on B and C: p50 {:?}, p99 {:?}, max {:?} over {} changes",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times[times.len() - 1],
        times.len()
    );

    // PATCH enabled=false: refused with 403 on B and C.
    let (status, _) = admin(&a, "PATCH", "/clients/c0", Some(json!({"enabled": false}))).await;
    assert_eq!(status, 200);
    reaches_all(&[&b, &c], &key(0), 403, Instant::now(), "disabled on B and C").await;

    // PATCH of the limit: B and C apply capacity 1. The bucket is the client's row: one token
    // for the whole cluster, so exactly one of four requests over B and C is admitted.
    let (status, _) = admin(
        &a,
        "PATCH",
        "/clients/c1",
        Some(json!({"capacity": 1, "rate_per_sec": 0.001})),
    )
    .await;
    assert_eq!(status, 200);
    let since = Instant::now();
    for gw in [&b, &c] {
        time_until("capacity 1 on B and C", WITHIN, || async {
            admin(gw, "GET", "/clients/c1", None).await.1["capacity"] == 1
        })
        .await;
    }
    assert!(since.elapsed() <= WITHIN);
    let mut statuses = Vec::new();
    for gw in [&b, &c, &b, &c] {
        statuses.push(gw.status_with_key(&key(1)).await);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 3, "{statuses:?}");

    // Key rotation by PUT: the new key works on B and C, the old one is unknown there.
    let rotated = "rotated-key-of-client-c2-0123";
    let (status, _) = admin(
        &a,
        "PUT",
        "/clients/c2",
        Some(json!({"capacity": 1000, "rate_per_sec": 100, "api_key": rotated})),
    )
    .await;
    assert_eq!(status, 200);
    let since = Instant::now();
    reaches_all(&[&b, &c], rotated, 200, since, "new key on B and C").await;
    reaches_all(&[&b, &c], &key(2), 401, since, "old key refused on B and C").await;

    // DELETE: the key is unknown on B and C.
    let (status, _) = admin(&a, "DELETE", "/clients/c3", None).await;
    assert_eq!(status, 204);
    reaches_all(&[&b, &c], &key(3), 401, Instant::now(), "deleted on B and C").await;
    for gw in [&b, &c] {
        assert_eq!(admin(gw, "GET", "/clients/c3", None).await.0, 404);
        assert_eq!(admin(gw, "GET", "/clients", None).await.1["total"], 49);
    }

    // A change made on B reaches A too (every instance writes and reads the same log).
    let (status, _) = admin(&b, "DELETE", "/clients/c4", None).await;
    assert_eq!(status, 204);
    reaches_all(
        &[&a, &c],
        &key(4),
        401,
        Instant::now(),
        "deleted from B on A and C",
    )
    .await;
    let logged: i64 = {
        use diesel::prelude::*;
        use tollgate::store::schema::changes;
        changes::table
            .filter(changes::entity.eq("client"))
            .count()
            .get_result(&mut db.connect())
            .unwrap()
    };
    // 50 creations, 2 patches, 1 replace, 2 deletes (the start list is one backend change more).
    assert_eq!(logged, 55);
}

/// Sessions of B's change listener, as PostgreSQL sees them.
fn listener_sessions(db: &TestDb, pid: u32) -> i64 {
    use diesel::{prelude::*, sql_types::BigInt};
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn = diesel::PgConnection::establish("postgres://postgres@127.0.0.1:5432/postgres").unwrap();
    let _ = &db;
    diesel::sql_query(format!(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'tollgate-listener-{pid}'"
    ))
    .get_result::<Count>(&mut conn)
    .unwrap()
    .n
}

#[actix_web::test]
async fn a_lost_notification_is_made_up_by_the_poll() {
    let db = TestDb::postgres();
    let backend = TestBackend::start("sync");
    let a = instance(&db.url(), &backend, &[]);
    let poll = Duration::from_millis(500);
    let b = instance(&db.url(), &backend, &[("TOLLGATE_SYNC_INTERVAL", "500ms")]);
    a.wait_ready().await;
    b.wait_ready().await;
    eventually("B's listener connected", Duration::from_secs(10), || async {
        listener_sessions(&db, b.pid()) == 1
    })
    .await;

    // Cut B's listener connection only (its pool stays up): the notification of the next
    // change cannot reach B, and the listener reconnects only after 2 s.
    {
        use diesel::prelude::*;
        let mut conn =
            diesel::PgConnection::establish("postgres://postgres@127.0.0.1:5432/postgres").unwrap();
        diesel::sql_query(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'tollgate-listener-{}'",
            b.pid()
        ))
        .execute(&mut conn)
        .unwrap();
    }
    eventually("B's listener gone", Duration::from_secs(5), || async {
        listener_sessions(&db, b.pid()) == 0
    })
    .await;
    let body = json!({"client_id": "late", "capacity": 10, "rate_per_sec": 1, "api_key": key(7)});
    assert_eq!(admin(&a, "POST", "/clients", Some(body)).await.0, 201);
    let since = Instant::now();
    let took = time_until(
        "the change on B through the poll",
        poll + Duration::from_millis(300),
        || async { b.status_with_key(&key(7)).await == 200 },
    )
    .await;
    assert!(
        since.elapsed() < tollgate::store::RECONNECT_AFTER,
        "must arrive before the listener is back"
    );
    assert_eq!(
        listener_sessions(&db, b.pid()),
        0,
        "arrived while B's listener was down"
    );
    println!("lost notification: the change reached B through the poll in {took:?} (poll {poll:?})");
    // The listener comes back by itself.
    eventually("B's listener reconnected", Duration::from_secs(10), || async {
        listener_sessions(&db, b.pid()) == 1
    })
    .await;
}

#[actix_web::test]
async fn two_processes_on_one_sqlite_file_share_changes_within_the_poll_period() {
    let db = TestDb::sqlite();
    let backend = TestBackend::start("sync");
    let a = instance(&db.url(), &backend, &[]);
    let b = instance(&db.url(), &backend, &[]);
    a.wait_ready().await;
    b.wait_ready().await;
    // One poll period plus the time of one catch-up.
    let period = Duration::from_secs(1) + Duration::from_millis(500);

    let body = json!({"client_id": "shared", "capacity": 10, "rate_per_sec": 0.001, "api_key": key(1)});
    assert_eq!(admin(&a, "POST", "/clients", Some(body)).await.0, 201);
    let took = time_until("created on A, admitted on B", period, || async {
        b.status_with_key(&key(1)).await == 200
    })
    .await;
    println!("SQLite: created on A, admitted on B after {took:?}");

    // B empties its bucket (one token went to the poll above); a change made on A re-reads
    // the settings but gives B's bucket no token back.
    for _ in 0..9 {
        assert_eq!(b.status_with_key(&key(1)).await, 200);
    }
    assert_eq!(b.status_with_key(&key(1)).await, 429);
    assert_eq!(
        admin(&a, "PATCH", "/clients/shared", Some(json!({"name": "renamed"})))
            .await
            .0,
        200
    );
    time_until("renamed on B", period, || async {
        admin(&b, "GET", "/clients/shared", None).await.1["name"] == "renamed"
    })
    .await;
    assert_eq!(b.status_with_key(&key(1)).await, 429);

    assert_eq!(
        admin(&b, "PATCH", "/clients/shared", Some(json!({"enabled": false})))
            .await
            .0,
        200
    );
    time_until("disabled on B, refused on A", period, || async {
        a.status_with_key(&key(1)).await == 403
    })
    .await;

    assert_eq!(admin(&a, "DELETE", "/clients/shared", None).await.0, 204);
    time_until("deleted on A, unknown on B", period, || async {
        b.status_with_key(&key(1)).await == 401
    })
    .await;
}

/// The change log of a database: the ids of the clients changed, oldest first, and the
/// newest version.
fn stored_changes(db: &TestDb) -> (Vec<String>, i64) {
    use diesel::{
        prelude::*,
        sql_types::{BigInt, Text},
    };
    #[derive(QueryableByName)]
    struct Change {
        #[diesel(sql_type = Text)]
        entity: String,
        #[diesel(sql_type = Text)]
        entity_id: String,
        #[diesel(sql_type = BigInt)]
        version: i64,
    }
    let rows = diesel::sql_query("SELECT entity, entity_id, version FROM changes ORDER BY version")
        .load::<Change>(&mut db.connect())
        .unwrap();
    let newest = rows.last().map_or(0, |c| c.version);
    // The clients' changes; the start list's backend change (written by the first instance to
    // start) counts for the newest version only.
    let clients = rows.into_iter().filter(|c| c.entity == "client");
    (clients.map(|c| c.entity_id).collect(), newest)
}

/// The `applied_version` `/cluster` on `on` shows for the instance `of`.
async fn applied_version(on: &GatewayProcess, of: &GatewayProcess) -> Option<i64> {
    let (status, view) = admin(on, "GET", "/cluster", None).await;
    assert_eq!(status, 200, "{view}");
    view["instances"]
        .as_array()?
        .iter()
        .find(|i| i["admin_addr"] == format!("127.0.0.1:{}", of.admin_port))?["applied_version"]
        .as_i64()
}

#[actix_web::test]
async fn a_batch_on_one_instance_reaches_the_other_and_cluster_shows_the_applied_version() {
    let db = TestDb::postgres();
    let backend = TestBackend::start("sync");
    let a = instance(&db.url(), &backend, &[]);
    let b = instance(&db.url(), &backend, &[]);
    a.wait_ready().await;
    b.wait_ready().await;

    let items: Vec<Value> = (20..23)
        .map(|i| json!({"client_id": format!("batch-{i}"), "capacity": 10, "rate_per_sec": 1, "api_key": key(i)}))
        .collect();
    assert_eq!(
        admin(&a, "POST", "/clients/batch", Some(Value::Array(items)))
            .await
            .0,
        201
    );
    let since = Instant::now();
    // One change row per client, written with the clients.
    let (changed, newest) = stored_changes(&db);
    assert_eq!(changed, ["batch-20", "batch-21", "batch-22"]);
    for i in 20..23 {
        reaches_all(&[&b], &key(i), 200, since, "batch-created on A, admitted on B").await;
    }

    // Both instances report the newest version in /cluster (heartbeat every second).
    eventually(
        "the newest version applied on both",
        Duration::from_secs(5),
        || async {
            applied_version(&a, &a).await == Some(newest) && applied_version(&a, &b).await == Some(newest)
        },
    )
    .await;
}

/// Instances started together on a new SQLite file: each finds the schema made by whichever
/// ran the migrations first, none fails on `table ... already exists`.
#[actix_web::test]
async fn instances_starting_together_on_a_new_database_all_become_ready() {
    let db = TestDb::sqlite();
    let backend = TestBackend::start("together");
    let gws: Vec<_> = (0..4).map(|_| instance(&db.url(), &backend, &[])).collect();
    for gw in &gws {
        gw.wait_ready().await;
    }
}
