//! Cluster-wide rate limits end to end: three gateway processes on one PostgreSQL database,
//! traffic round-robin over them. A client's bucket is its row, so the cluster admits at most
//! `C + R·T` however the traffic is spread, hardly fewer under heavy demand, exactly `C` of a
//! burst; the lease statements do not follow the traffic; an empty bucket stays empty when
//! every instance restarts.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::{both_databases, helpers::*};

/// `TOLLGATE_LEASE_TICK` (the default).
const TICK: Duration = Duration::from_millis(100);

fn key(name: &str) -> String {
    format!("cluster-limits-{name}-0123456789")
}

fn client_body(id: &str, capacity: u64, rate: f64) -> Value {
    json!({"client_id": id, "capacity": capacity, "rate_per_sec": rate, "api_key": key(id)})
}

/// Three instances on a PostgreSQL database of their own, and client `id` with `capacity`
/// and `rate`, created on the first instance and known to all three.
async fn three_with_client(id: &str, capacity: u64, rate: f64) -> TestCluster {
    let cluster = TestCluster::start(TestDb::postgres(), 3, &[], &[]).await;
    create_clients(cluster.gw(0), &[client_body(id, capacity, rate)]).await;
    wait_known(&cluster.instances, &[id]).await;
    cluster
}

/// How the traffic of a run is placed on the instances A, B, C.
#[derive(Debug, Clone, Copy)]
enum Placement {
    /// Round-robin over the three.
    Spread,
    /// All on A.
    OneInstance,
    /// First half on A only, second half on B and C.
    Moving,
}

/// 64 connections for 5 s against C = 50, R = 10: at most `floor(C + R·T)` admitted, and
/// nothing but 200 and 429 answered.
async fn never_over_admits(placement: Placement) {
    let (capacity, rate) = (50, 10.0);
    let cluster = three_with_client("hot", capacity, rate).await;
    let (a, b, c) = (cluster.gw(0), cluster.gw(1), cluster.gw(2));
    let half = Duration::from_millis(2500);
    let k = key("hot");
    let load = Load::new(&[&k], 64);
    let load = match placement {
        Placement::Spread => load.phase(2 * half, &[a, b, c]),
        Placement::OneInstance => load.phase(2 * half, &[a]),
        Placement::Moving => load.phase(half, &[a]).phase(half, &[b, c]),
    };
    let run = load.run().await;
    let bound = run.bound(capacity as f64, rate).floor();
    println!(
        "never over-admits ({placement:?}): {run}; floor(C + R·T) = {bound}, admitted / bound = {:.3}",
        run.total.ok as f64 / bound
    );
    assert_eq!(
        run.total.other,
        0,
        "only 200 and 429 may come back: {run}\n{}",
        cluster.logs()
    );
    assert!(
        run.total.ok as f64 <= bound,
        "over-admitted ({placement:?}): {} admitted > floor(C + R·T) = {bound} (T = {:.3} s)\n{}",
        run.total.ok,
        run.elapsed.as_secs_f64(),
        cluster.logs()
    );
    assert_eq!(
        cluster.backend.hits() as u64,
        run.total.ok,
        "the backend saw exactly the admitted requests"
    );
}

#[actix_web::test]
async fn never_over_admits_with_traffic_spread_over_three_instances() {
    never_over_admits(Placement::Spread).await;
}

#[actix_web::test]
async fn never_over_admits_with_all_traffic_on_one_instance() {
    never_over_admits(Placement::OneInstance).await;
}

#[actix_web::test]
async fn never_over_admits_with_traffic_moving_between_instances() {
    never_over_admits(Placement::Moving).await;
}

/// Demand far over the rate, spread over the three instances: at least 90 % of
/// `min(sent, C + R·T)` admitted. `pace` is the demand in requests per second (None: as fast
/// as the connections go).
async fn hardly_under_admits(
    capacity: u64,
    rate: f64,
    run_for: Duration,
    pace: Option<f64>,
    connections: usize,
) {
    let cluster = three_with_client("busy", capacity, rate).await;
    let k = key("busy");
    let mut load =
        Load::new(&[&k], connections).phase(run_for, &cluster.instances.iter().collect::<Vec<_>>());
    if let Some(per_sec) = pace {
        load = load.rate(per_sec);
    }
    let run = load.run().await;
    let bound = run.bound(capacity as f64, rate);
    let sent = run.sent() as f64;
    let due = bound.min(sent);
    println!(
        "hardly under-admits (C = {capacity}, R = {rate}): {run}; demand {:.1} × R; C + R·T = {bound:.2}, \
         min(sent, C + R·T) = {due:.2}, admitted / that = {:.3}",
        run.demand_per_sec() / rate,
        run.total.ok as f64 / due
    );
    assert_eq!(run.total.other, 0, "{run}\n{}", cluster.logs());
    assert!(
        run.total.ok as f64 <= bound.floor(),
        "over-admitted: {run}; C + R·T = {bound:.2}"
    );
    assert!(
        run.total.ok as f64 >= 0.9 * due,
        "under-admitted (C = {capacity}, R = {rate}): {} admitted < 0.9 × {due:.2}; {run}",
        run.total.ok
    );
}

#[actix_web::test]
async fn hardly_under_admits_at_rate_10() {
    // 20 × R, paced, for 10 s.
    hardly_under_admits(50, 10.0, Duration::from_secs(10), Some(200.0), 16).await;
}

#[actix_web::test]
async fn hardly_under_admits_at_rate_half_a_token_per_second() {
    // 20 × R, paced. 11 s rather than 10: C + R·T over 10.0x s is just over 10, so 90 % of it
    // needs all 10 tokens, and the 10th is created 10 s after the first lease, which comes
    // after the first request: a 10 s run cannot have it. Over 11 s, 10 tokens are due and
    // the 10th has a second to be spent.
    hardly_under_admits(5, 0.5, Duration::from_secs(11), Some(10.0), 4).await;
}

#[actix_web::test]
async fn hardly_under_admits_at_rate_500() {
    // As fast as 64 connections go. A debug build on two cores sends 1,000-1,300 requests per
    // second while the rest of the suite runs: at R = 1000 (this test's rate until issue 17)
    // that was a demand of 1.0-1.3 × R, not the demand over the rate this test is about, and
    // it failed at 0.87-0.90 on unchanged code under the suite's load. At R = 500 the demand
    // is about 2 × R.
    hardly_under_admits(50, 500.0, Duration::from_secs(5), None, 64).await;
}

/// A full bucket of 30 (refill 0.001/s) and 90 requests at once over the three instances:
/// exactly 30 admitted.
#[actix_web::test]
async fn a_full_bucket_admits_exactly_its_capacity_of_a_burst_over_three_instances() {
    let cluster = three_with_client("burst", 30, 0.001).await;
    let k = key("burst");
    let started = Instant::now();
    let requests = (0..90).map(|i| {
        let url = cluster.gw(i % 3).url("/burst");
        let k = k.clone();
        async move {
            match client().get(url).insert_header(("x-api-key", k)).send().await {
                Ok(mut r) => {
                    let _ = r.body().await;
                    r.status().as_u16()
                }
                Err(_) => 0,
            }
        }
    });
    let statuses = join_all(requests).await;
    let took = started.elapsed();
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let limited = statuses.iter().filter(|&&s| s == 429).count();
    let by_instance: Vec<usize> = (0..3)
        .map(|n| statuses.iter().skip(n).step_by(3).filter(|&&s| s == 200).count())
        .collect();
    // Where the tokens are now: left in the row, or held by an instance (an instance's view
    // counts the row's tokens plus its own).
    let in_row = cluster
        .db
        .client_row("burst")
        .unwrap()
        .bucket_level
        .map(|l| l as f64 / 1e12);
    let mut views = Vec::new();
    for gw in &cluster.instances {
        views.push(admin_json(gw, "GET", "/clients/burst", None).await.1["tokens"].clone());
    }
    println!(
        "burst of 90 over 3 instances in {took:?}: {ok} × 200, {limited} × 429 (admitted per instance \
         {by_instance:?}); then tokens in the row {in_row:?}, row + held per instance {views:?}"
    );
    assert_eq!(
        (ok, limited),
        (30, 60),
        "admitted per instance {by_instance:?}; statuses {statuses:?}; then tokens in the row {in_row:?}, \
         row + held per instance {views:?}\n{}",
        cluster.logs()
    );
}

/// Statements one instance sent during a run, and the time they were counted over.
struct Counted {
    port: u16,
    statements: LeaseStatements,
    window: Duration,
}

/// Runs `load` and reads every instance's lease statements just before and just after.
async fn statements_during(cluster: &TestCluster, load: Load) -> (LoadReport, Vec<Counted>) {
    let mut before = Vec::new();
    for gw in &cluster.instances {
        before.push((lease_statements(gw).await, Instant::now()));
    }
    let run = load.run().await;
    let mut counted = Vec::new();
    for (gw, (earlier, at)) in cluster.instances.iter().zip(before) {
        let now = lease_statements(gw).await;
        counted.push(Counted {
            port: gw.port,
            statements: now - earlier,
            window: at.elapsed(),
        });
    }
    (run, counted)
}

/// Per instance: at most one tick statement per tick and one on-demand statement per tick
/// (plus 2), and fewer statements than a tenth of the requests it answered. Every instance's
/// figures are printed before any is asserted.
fn assert_statements_bounded(what: &str, run: &LoadReport, counted: &[Counted]) {
    println!("{what}: {run}");
    let secs = run.elapsed.as_secs_f64();
    let mut over = Vec::new();
    for c in counted {
        let s = c.statements;
        let window = c.window.as_secs_f64();
        let requests = run.by_port.get(&c.port).map_or(0, Counts::sent);
        let bound = (window / TICK.as_secs_f64()).floor() + 2.0;
        println!(
            "{what}: instance :{}: {} tick + {} on-demand statements (counted over {window:.2} s; \
             bound {bound} per kind) = {:.1} statements/s, for {requests} requests ({:.0} requests/s)",
            c.port,
            s.tick,
            s.on_demand,
            (s.tick + s.on_demand) as f64 / secs,
            requests as f64 / secs,
        );
        if s.tick as f64 > bound {
            over.push(format!(":{} {} tick statements > {bound}", c.port, s.tick));
        }
        if s.on_demand as f64 > bound {
            over.push(format!(
                ":{} {} on-demand statements > {bound}",
                c.port, s.on_demand
            ));
        }
        if s.tick + s.on_demand >= requests / 10 {
            over.push(format!(
                ":{} {} statements for {requests} requests (not under a tenth)",
                c.port,
                s.tick + s.on_demand
            ));
        }
    }
    assert!(over.is_empty(), "{what}: {over:?}");
}

#[actix_web::test]
async fn a_client_over_its_limit_costs_each_instance_at_most_a_statement_per_tick() {
    let cluster = three_with_client("over", 10, 10.0).await;
    let k = key("over");
    let load = Load::new(&[&k], 64).phase(
        Duration::from_secs(3),
        &cluster.instances.iter().collect::<Vec<_>>(),
    );
    let (run, counted) = statements_during(&cluster, load).await;
    assert_eq!(run.total.other, 0, "{run}");
    assert!(
        run.total.limited > run.total.ok,
        "the client must be over its limit: {run}"
    );
    assert_statements_bounded("one client over its limit", &run, &counted);
}

#[actix_web::test]
async fn two_hundred_clients_under_their_limit_cost_each_instance_at_most_a_statement_per_tick() {
    let cluster = TestCluster::start(TestDb::postgres(), 3, &[], &[]).await;
    let ids: Vec<String> = (0..200).map(|i| format!("c{i:03}")).collect();
    let bodies: Vec<Value> = ids.iter().map(|id| client_body(id, 1000, 1000.0)).collect();
    create_clients(cluster.gw(0), &bodies).await;
    // Changes apply in order: the last one known means all are.
    wait_known(&cluster.instances, &[&ids[199]]).await;
    let keys: Vec<String> = ids.iter().map(|id| key(id)).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let all = cluster.instances.iter().collect::<Vec<_>>();
    // Warm: each client's first request on each instance waits for a lease (coalesced, but
    // one statement per round trip while first requests keep coming); measured is the
    // steady state that follows.
    let _ = statements_during(&cluster, Load::new(&keys, 64).phase(Duration::from_secs(2), &all)).await;
    let load = Load::new(&keys, 64).phase(Duration::from_secs(3), &all);
    let (run, counted) = statements_during(&cluster, load).await;
    assert_eq!(run.total.other, 0, "{run}");
    println!(
        "200 clients under their limit: {:.1} requests per client per second",
        run.demand_per_sec() / 200.0
    );
    assert_statements_bounded("200 clients under their limit", &run, &counted);
}

/// An exhausted client (C = 5, R = 0.001) is still exhausted once every instance stopped
/// gracefully and started again (PostgreSQL: three instances; SQLite: one).
async fn an_exhausted_client_stays_exhausted_when_every_instance_restarts(db: TestDb) {
    let n = match db {
        TestDb::Sqlite(_) => 1,
        TestDb::Postgres(_) => 3,
    };
    let mut cluster = TestCluster::start(db, n, &[], &[]).await;
    create_clients(cluster.gw(0), &[client_body("spent", 5, 0.001)]).await;
    wait_known(&cluster.instances, &["spent"]).await;
    let k = key("spent");

    // Round-robin until the five tokens are spent (an instance may hold leased tokens another
    // has not: the cluster admits exactly five however they are spread).
    let mut statuses = Vec::new();
    for i in 0..40 {
        statuses.push(cluster.gw(i % n).status_with_key(&k).await);
    }
    let admitted = statuses.iter().filter(|&&s| s == 200).count();
    println!("before the restart ({n} instances): {statuses:?}");
    assert_eq!(admitted, 5, "{statuses:?}");
    assert!(statuses.iter().all(|&s| s == 200 || s == 429), "{statuses:?}");
    assert!(
        statuses[statuses.len() - 3 * n..].iter().all(|&s| s == 429),
        "exhausted on every instance: {statuses:?}"
    );

    cluster.stop_all().await;
    let row = cluster.db.client_row("spent").unwrap();
    let stored = row.bucket_level.map(|l| l as f64 / 1e12);
    println!("stored after the graceful stop: {stored:?} tokens");
    assert!(
        stored.is_some_and(|t| t < 1.0),
        "the row must hold less than a token: {stored:?}"
    );

    cluster.start_instances(n).await;
    wait_known(&cluster.instances, &["spent"]).await;
    let mut after = Vec::new();
    for gw in &cluster.instances {
        after.push(gw.status_with_key(&k).await);
    }
    println!("first request on each restarted instance: {after:?}");
    assert!(
        after.iter().all(|&s| s == 429),
        "still exhausted after the restart: {after:?}\n{}",
        cluster.logs()
    );
}
both_databases!(an_exhausted_client_stays_exhausted_when_every_instance_restarts);
