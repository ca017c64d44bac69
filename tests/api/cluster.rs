//! `GET /cluster`: instances sharing one database register, heartbeat, show dead when killed
//! and leave on graceful shutdown.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;

const TOKEN: &str = "cluster-admin-token-0123456789";

fn spawn_member(backend: &TestBackend, db: &TestDb) -> GatewayProcess {
    GatewayProcess::builder()
        .backends(&[backend.url()])
        .args(&["--admin-token", TOKEN, "--health-interval", "1h"])
        .database_url(&db.url())
        .spawn()
}

async fn cluster(gw: &GatewayProcess) -> Value {
    let mut resp = client()
        .get(gw.admin_url("/cluster"))
        .insert_header(("authorization", format!("Bearer {TOKEN}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    serde_json::from_slice(&resp.body().await.unwrap()).unwrap()
}

/// The instance of `/cluster` listening for the admin API on `admin_port`.
fn instance(view: &Value, admin_port: u16) -> Option<Value> {
    let addr = format!("127.0.0.1:{admin_port}");
    view["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["admin_addr"] == addr.as_str())
        .cloned()
}

fn stored_instances(db: &TestDb) -> i64 {
    use diesel::{prelude::*, sql_types::BigInt};
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    diesel::sql_query("SELECT COUNT(*) AS n FROM instances")
        .get_result::<Count>(&mut db.connect())
        .unwrap()
        .n
}

#[actix_web::test]
async fn three_instances_on_postgres_see_each_other_and_a_killed_one_turns_dead_within_5s() {
    let db = TestDb::postgres();
    let backend = TestBackend::start("a");
    let (a, b, mut c) = (
        spawn_member(&backend, &db),
        spawn_member(&backend, &db),
        spawn_member(&backend, &db),
    );
    for gw in [&a, &b, &c] {
        gw.wait_ready().await;
    }

    // The bearer token guards it like every admin endpoint.
    let resp = client().get(a.admin_url("/cluster")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    // A registers at start, so the three are listed once all are ready (A reads every second).
    eventually("three alive instances on A", Duration::from_secs(10), || async {
        let v = cluster(&a).await;
        let alive = v["instances"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["alive"] == true)
            .count();
        alive == 3
    })
    .await;
    let view = cluster(&a).await;
    assert_eq!(view["database"], "ok", "{view}");
    assert_eq!(view["heartbeat_interval_ms"], 1000, "{view}");
    for (gw, me) in [(&a, true), (&b, false), (&c, false)] {
        let i = instance(&view, gw.admin_port).unwrap_or_else(|| panic!("{} missing: {view}", gw.admin_port));
        assert_eq!(i["proxy_addr"], format!("127.0.0.1:{}", gw.port), "{i}");
        assert_eq!(i["version"], env!("CARGO_PKG_VERSION"), "{i}");
        // The one change so far: the start list, written by the first instance to start.
        assert_eq!(i["applied_version"], 1, "{i}");
        assert_eq!(i["self"], me, "{i}");
        assert!(i["seconds_since_heartbeat"].as_f64().unwrap() <= 3.0, "{i}");
        assert!(i["started_at"].as_str().unwrap().ends_with('Z'), "{i}");
        assert_eq!(i["instance_id"].as_str().unwrap().len(), 32, "{i}");
    }
    assert_eq!(
        view["instance_id"],
        instance(&view, a.admin_port).unwrap()["instance_id"]
    );
    // B sees the same three (from its own next read).
    eventually("three instances on B", Duration::from_secs(5), || async {
        cluster(&b).await["instances"].as_array().unwrap().len() == 3
    })
    .await;

    // SIGKILL: no goodbye, so the row stays and turns dead after 3 missed heartbeats.
    c.signal("-KILL");
    c.wait_exit(Duration::from_secs(5)).await;
    let killed = Instant::now();
    eventually(
        "the killed instance shown dead",
        Duration::from_secs(5),
        || async { instance(&cluster(&a).await, c.admin_port).is_some_and(|i| i["alive"] == false) },
    )
    .await;
    let took = killed.elapsed();
    assert!(took <= Duration::from_secs(5), "{took:?}");
    let view = cluster(&a).await;
    let dead = instance(&view, c.admin_port).unwrap();
    assert!(dead["seconds_since_heartbeat"].as_f64().unwrap() > 3.0, "{dead}");
    assert_eq!(instance(&view, a.admin_port).unwrap()["alive"], true);
    assert_eq!(instance(&view, b.admin_port).unwrap()["alive"], true);

    // A graceful shutdown removes the instance's own row.
    let mut b = b;
    b.signal("-TERM");
    assert!(b.wait_exit(Duration::from_secs(10)).await.success());
    assert_eq!(stored_instances(&db), 2, "A and the dead C stay stored");
    eventually(
        "the stopped instance gone from A's list",
        Duration::from_secs(3),
        || async { instance(&cluster(&a).await, b.admin_port).is_none() },
    )
    .await;
}

#[actix_web::test]
async fn one_instance_on_sqlite_lists_itself() {
    let db = TestDb::sqlite();
    let backend = TestBackend::start("a");
    let gw = spawn_member(&backend, &db);
    gw.wait_ready().await;
    let view = cluster(&gw).await;
    assert_eq!(view["database"], "ok", "{view}");
    let all = view["instances"].as_array().unwrap();
    assert_eq!(all.len(), 1, "{view}");
    let me = instance(&view, gw.admin_port).unwrap();
    assert_eq!(me["alive"], true);
    assert_eq!(me["self"], true);
    assert_eq!(me["proxy_addr"], format!("127.0.0.1:{}", gw.port));
    assert_eq!(stored_instances(&db), 1);
    // Heartbeats move forward.
    let first = me["last_heartbeat"].clone();
    eventually("a later heartbeat", Duration::from_secs(5), || async {
        instance(&cluster(&gw).await, gw.admin_port).unwrap()["last_heartbeat"] != first
    })
    .await;
}

#[actix_web::test]
async fn a_database_outage_is_logged_once_shown_unreachable_and_the_heartbeat_resumes() {
    let db = TestDb::postgres();
    let relay = Relay::to_postgres();
    let backend = TestBackend::start("a");
    let gw = GatewayProcess::builder()
        .backends(&[backend.url()])
        .args(&[
            "--admin-token",
            TOKEN,
            "--health-interval",
            "1h",
            "--db-timeout",
            "500ms",
        ])
        .database_url(&db.url_via(relay.port))
        .capture_stderr()
        .spawn();
    gw.wait_ready().await;

    relay.cut();
    // Unreachable, and silent long enough for several failed heartbeats (the own row turns
    // dead only after 3 missed ones).
    eventually(
        "database unreachable and own row dead",
        Duration::from_secs(10),
        || async {
            let v = cluster(&gw).await;
            v["database"] == "unreachable" && instance(&v, gw.admin_port).is_some_and(|i| i["alive"] == false)
        },
    )
    .await;
    let failures = gw.stderr().matches("instance heartbeat failed").count();
    assert_eq!(failures, 1, "{}", gw.stderr());

    relay.restore();
    eventually("heartbeat resumed", Duration::from_secs(10), || async {
        let v = cluster(&gw).await;
        v["database"] == "ok" && instance(&v, gw.admin_port).is_some_and(|i| i["alive"] == true)
    })
    .await;
    gw.wait_log_line("recovery logged", |l| {
        l.contains("instance heartbeat reaches the database again")
    })
    .await;
    assert_eq!(gw.stderr().matches("instance heartbeat failed").count(), 1);
}

/// Polls `limits.live_instances` of every one of `gws` until each shows `n`; the time it took
/// (at most `deadline`, then it panics).
async fn settle(gws: &[&GatewayProcess], n: u64, deadline: Duration) -> Duration {
    let start = Instant::now();
    for gw in gws {
        loop {
            let live = cluster_view(gw).await["limits"]["live_instances"].clone();
            if live == n {
                break;
            }
            assert!(
                start.elapsed() < deadline,
                "instance :{} counts {live} live instances, not {n}, {:?} on",
                gw.port,
                start.elapsed()
            );
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
    }
    start.elapsed()
}

/// A join and a leave wake the other instances: they count it within a few hundred ms of the
/// newcomer turning ready (or of the leaver's exit), not at their next heartbeat (up to 1 s
/// later). Three changes are measured, so a heartbeat falling just right cannot pass it.
#[actix_web::test]
async fn a_join_or_a_leave_is_counted_by_the_others_at_once() {
    let mut cluster = TestCluster::start(TestDb::postgres(), 2, &[], &[]).await;
    let mut took = Vec::new();
    for round in 0..2 {
        let newcomer = cluster.instance_on(&cluster.db.url());
        newcomer.wait_ready().await;
        // Ready means it counts every instance registered before it, too.
        let own = cluster_view(&newcomer).await["limits"]["live_instances"].clone();
        assert_eq!(own, 3, "the newcomer was ready counting {own} live instances");
        let mut all: Vec<&GatewayProcess> = cluster.instances.iter().collect();
        all.push(&newcomer);
        let joined = settle(&all, 3, Duration::from_secs(5)).await;
        println!("round {round}: a join counted by all three {joined:?} after the newcomer was ready (it counted {own} at once)");
        took.push(joined);
        if round == 0 {
            newcomer.signal("-TERM");
            let mut newcomer = newcomer;
            newcomer.wait_exit(Duration::from_secs(15)).await;
            let others: Vec<&GatewayProcess> = cluster.instances.iter().collect();
            let left = settle(&others, 2, Duration::from_secs(5)).await;
            println!("round {round}: a leave counted by the other two {left:?} after the exit");
            took.push(left);
        } else {
            cluster.instances.push(newcomer);
        }
    }
    let slowest = took.iter().max().copied().unwrap_or_default();
    assert!(
        slowest < Duration::from_millis(300),
        "membership settled in {took:?}: not woken by the join or leave"
    );
}

/// Three instances started at once: each counts all three as soon as all are ready (the
/// membership is read again after the listener is up, and each join wakes the others).
#[actix_web::test]
async fn three_started_at_once_count_three_as_soon_as_all_are_ready() {
    let mut cluster = TestCluster::start(TestDb::postgres(), 0, &[], &[]).await;
    let spawned = Instant::now();
    for _ in 0..3 {
        let gw = cluster.instance_on(&cluster.db.url());
        cluster.instances.push(gw);
    }
    for gw in &cluster.instances {
        gw.wait_ready().await;
    }
    let ready = spawned.elapsed();
    let all: Vec<&GatewayProcess> = cluster.instances.iter().collect();
    let settled = settle(&all, 3, Duration::from_secs(5)).await;
    println!(
        "three started at once: all ready {ready:?} after the spawn, all counting three {settled:?} later"
    );
    assert!(
        settled < Duration::from_millis(300),
        "live_instances settled {settled:?} after all three were ready"
    );
}
