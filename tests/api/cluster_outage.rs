//! Cluster-wide limits under failures, three gateway processes on one PostgreSQL database with
//! traffic round-robin over them: a database outage (each instance falls back to its share and
//! comes back to leasing without restart), an instance killed while holding leases, and every
//! instance killed at once (a restart admits nothing the row no longer holds).

mod load;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;
use load::{admitted, Load, Tally};

const ID: &str = "outage";
const KEY: &str = "cluster-outage-key-0123456789";

fn member(backend: &TestBackend, database_url: &str) -> GatewayProcess {
    // A lease statement the database does not answer fails after 500 ms.
    member_with(backend, database_url, "500ms")
}

fn member_with(backend: &TestBackend, database_url: &str, db_timeout: &str) -> GatewayProcess {
    GatewayProcess::builder()
        .backends(&[backend.url()])
        .args(&["--health-interval", "1h", "--db-timeout", db_timeout])
        .database_url(database_url)
        .capture_stderr()
        .spawn()
}

async fn get_json(url: String) -> Option<Value> {
    let mut resp = client().get(url).send().await.ok()?;
    if resp.status().as_u16() != 200 {
        return None;
    }
    resp.json::<Value>().limit(1 << 20).await.ok()
}

/// `limits` of `GET /cluster` (`Null` when it does not answer).
async fn limits(gw: &GatewayProcess) -> Value {
    get_json(gw.admin_url("/cluster"))
        .await
        .map_or(Value::Null, |v| v["limits"].clone())
}

/// Registers the client on `gw` and waits until every gateway of `all` knows it (an admin
/// read: it takes no token).
async fn create_client(gw: &GatewayProcess, all: &[&GatewayProcess], capacity: u64, rate: f64) {
    let body = json!({"client_id": ID, "capacity": capacity, "rate_per_sec": rate, "api_key": KEY});
    let mut resp = client()
        .post(gw.admin_url("/clients"))
        .send_json(&body)
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201, "{:?}", resp.body().await);
    for other in all {
        eventually("the client known everywhere", Duration::from_secs(5), || async {
            get_json(other.admin_url(&format!("/clients/{ID}")))
                .await
                .is_some()
        })
        .await;
    }
}

/// Waits until `GET /cluster` on each of `gws` shows `mode` and `live` instances; returns the
/// time it took.
async fn wait_limits(gws: &[&GatewayProcess], mode: &str, live: u64, deadline: Duration) -> Duration {
    let start = Instant::now();
    for gw in gws {
        let mut last = Value::Null;
        while !(last["mode"] == mode && last["live_instances"] == live) {
            assert!(
                start.elapsed() < deadline,
                "instance {}: limits not mode {mode}, {live} live within {deadline:?}: {last}\n{}",
                gw.admin_port,
                gw.stderr()
            );
            actix_rt::time::sleep(Duration::from_millis(20)).await;
            last = limits(gw).await;
        }
    }
    start.elapsed()
}

fn per_instance(tallies: &[Tally]) -> String {
    tallies
        .iter()
        .enumerate()
        .map(|(i, t)| format!("\n  instance {i}: {t}"))
        .collect()
}

fn admitted_between(before: &[Tally], after: &[Tally]) -> u64 {
    admitted(after) - admitted(before)
}

/// The row's `bucket_at` (database clock, ms), read directly.
fn row_at(db: &TestDb) -> i64 {
    db.client_row(ID).and_then(|r| r.bucket_at).unwrap_or(0)
}

#[actix_web::test]
async fn a_database_outage_falls_back_to_shares_and_leasing_resumes_without_restart() {
    let db = TestDb::postgres();
    let relay = Relay::to_postgres();
    let backend = TestBackend::start("outage");
    let via = db.url_via(relay.port);
    let gws = [
        member(&backend, &via),
        member(&backend, &via),
        member(&backend, &via),
    ];
    let all: Vec<&GatewayProcess> = gws.iter().collect();
    for gw in &all {
        gw.wait_ready().await;
    }
    wait_limits(&all, "cluster", 3, Duration::from_secs(10)).await;
    let (capacity, rate) = (50u64, 10.0);
    create_client(&gws[0], &all, capacity, rate).await;

    let ports: Vec<u16> = all.iter().map(|g| g.port).collect();
    let load = Load::start(&ports, KEY, 16, Duration::from_millis(20));
    actix_rt::time::sleep(Duration::from_millis(1500)).await;
    let before_cut = load.snapshot();

    relay.cut();
    let cut = Instant::now();
    let took = wait_limits(&all, "degraded", 3, Duration::from_secs(5)).await;
    println!("outage: all three degraded (shares of 3) {took:?} after the cut");
    // The row is not touched while the database is away (read directly, not through the relay).
    let at_in_outage = row_at(&db);
    actix_rt::time::sleep(Duration::from_secs(2)).await;
    for gw in &all {
        let now = limits(gw).await;
        assert_eq!(now["mode"], "degraded", "still in the outage: {now}");
    }
    assert_eq!(row_at(&db), at_in_outage, "the row changed during the outage");
    let before_restore = load.snapshot();

    relay.restore();
    let restored = Instant::now();
    let outage = cut.elapsed();
    let took = wait_limits(&all, "cluster", 3, Duration::from_secs(5)).await;
    println!("outage of {outage:?}: all three back to cluster mode {took:?} after the restore");
    // Leasing resumes: lease statements (on ticks, or on demand for a client over its limit)
    // go on from cluster mode, and they reach the row.
    eventually("the row leased from again", Duration::from_secs(5), || async {
        row_at(&db) > at_in_outage
    })
    .await;
    println!(
        "the row leased from again {:?} after the restore",
        restored.elapsed()
    );
    for gw in &all {
        let at_switch = limits(gw).await["lease_statements"].clone();
        let mut now = at_switch.clone();
        let start = Instant::now();
        let sent = |s: &Value| s["tick"].as_u64().unwrap_or(0) + s["on_demand"].as_u64().unwrap_or(0);
        while sent(&now) <= sent(&at_switch) {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "instance {}: no lease statement in cluster mode: {at_switch} then {now}",
                gw.admin_port
            );
            actix_rt::time::sleep(Duration::from_millis(20)).await;
            now = limits(gw).await["lease_statements"].clone();
        }
        println!(
            "instance {}: lease statements back in cluster mode {at_switch}, then {now}",
            gw.admin_port
        );
    }
    let after_restore = load.snapshot();
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    let (tallies, run) = load.stop().await;

    let total = admitted(&tallies);
    let per_share = capacity.div_ceil(3);
    let bound = capacity as f64 + rate * run.as_secs_f64() + 3.0 * per_share as f64;
    println!(
        "outage run of {run:?} (outage {outage:?}): admitted {total} (backend saw {}), bound \
         C + R*T + 3*ceil(C/3) = {capacity} + {rate}*{:.2} + 3*{per_share} = {bound:.1}; admitted \
         before the cut {}, during the outage {}, until the checks above passed {}, after {}{}",
        backend.hits(),
        run.as_secs_f64(),
        admitted(&before_cut),
        admitted_between(&before_cut, &before_restore),
        admitted_between(&before_restore, &after_restore),
        admitted_between(&after_restore, &tallies),
        per_instance(&tallies)
    );
    for (i, t) in tallies.iter().enumerate() {
        assert!(t.clean(), "instance {i} answered other than 200/429: {t}");
    }
    assert_eq!(total, backend.hits() as u64, "200s seen vs requests proxied");
    assert!(
        total as f64 <= bound,
        "admitted {total} > bound {bound:.1} over {run:?}"
    );
    assert!(
        admitted_between(&after_restore, &tallies) > 0,
        "nothing admitted after the restore: {}",
        per_instance(&tallies)
    );
    // The switch is logged once each way on every instance.
    for gw in &all {
        let log = gw.stderr();
        let failed = log.matches("leasing tokens from the database failed").count();
        let back = log
            .matches("leasing tokens from the database works again")
            .count();
        assert_eq!((failed, back), (1, 1), "warnings/recoveries logged:\n{log}");
    }
}

/// The longest time without an admission from `from` until the last admission of `times`.
fn longest_gap(times: &[Instant], from: Instant) -> Duration {
    let mut last = from;
    let mut longest = Duration::ZERO;
    for t in times.iter().filter(|t| **t > from) {
        longest = longest.max(*t - last);
        last = *t;
    }
    longest
}

/// With the default database timeout (2 s), a cut lease statement is not waited out: a client
/// under its limit is served from the shares within a few ticks of the cut.
#[actix_web::test]
async fn a_client_under_its_limit_is_served_from_its_share_within_ticks_of_a_cut() {
    let db = TestDb::postgres();
    let relay = Relay::to_postgres();
    let backend = TestBackend::start("overdue");
    let via = db.url_via(relay.port);
    let gws = [
        member_with(&backend, &via, "2s"),
        member_with(&backend, &via, "2s"),
        member_with(&backend, &via, "2s"),
    ];
    let all: Vec<&GatewayProcess> = gws.iter().collect();
    for gw in &all {
        gw.wait_ready().await;
    }
    wait_limits(&all, "cluster", 3, Duration::from_secs(10)).await;
    // 60/s; the load below asks for at most 30/s: each instance's share (20/s) covers its third.
    let (capacity, rate) = (60u64, 60.0);
    create_client(&gws[0], &all, capacity, rate).await;
    let ports: Vec<u16> = all.iter().map(|g| g.port).collect();
    let load = Load::start(&ports, KEY, 3, Duration::from_millis(100));
    eventually("admissions before the cut", Duration::from_secs(10), || async {
        load.admissions().len() >= 30
    })
    .await;

    relay.cut();
    let cut = Instant::now();
    let switched = wait_limits(&all, "degraded", 3, Duration::from_secs(5)).await;
    eventually(
        "three seconds of admissions after the cut",
        Duration::from_secs(10),
        || async {
            load.admissions()
                .last()
                .is_some_and(|t| *t > cut + Duration::from_secs(3))
        },
    )
    .await;
    let admissions = load.admissions();
    let (tallies, run) = load.stop().await;

    let first = admissions
        .iter()
        .find(|t| **t > cut)
        .map(|t| *t - cut)
        .unwrap_or_default();
    let gap = longest_gap(&admissions, cut);
    let total = admitted(&tallies);
    let bound = capacity as f64 + rate * run.as_secs_f64() + 3.0 * capacity.div_ceil(3) as f64;
    println!(
        "cut under load (database timeout 2 s): all three degraded {switched:?} after the cut; \
         first admission {first:?} after it, longest stretch without one {gap:?}; admitted \
         {total} over {run:?} (bound {bound:.1}){}",
        per_instance(&tallies)
    );
    for (i, t) in tallies.iter().enumerate() {
        assert!(t.clean(), "instance {i} answered other than 200/429: {t}");
    }
    assert!(
        gap < Duration::from_secs(1),
        "nothing admitted for {gap:?} after the cut: the lease was waited out{}",
        per_instance(&tallies)
    );
    assert!(
        switched < Duration::from_millis(1500),
        "degraded only {switched:?} after the cut"
    );
    assert!(
        total as f64 <= bound,
        "admitted {total} > bound {bound:.1} over {run:?}"
    );
}

/// A database that answers every statement, slowly (300 ms and more: each answer is held
/// back), is not taken for a lost one statement after statement. Failed before the fix: the
/// instance switched to its share and back on every statement (each switch drops the tokens
/// on hand, and a share admits beside the row); now at most once, for the first slow
/// statement, which cannot be told from a cut.
#[actix_web::test]
async fn a_slow_database_is_not_taken_for_a_lost_one_on_every_statement() {
    let db = TestDb::postgres();
    let relay = Relay::to_postgres();
    let backend = TestBackend::start("slow-db");
    let gw = member_with(&backend, &db.url_via(relay.port), "5s");
    gw.wait_ready().await;
    let all = [&gw];
    wait_limits(&all, "cluster", 1, Duration::from_secs(10)).await;
    create_client(&gw, &all, 60, 60.0).await;
    let load = Load::start(&[gw.port], KEY, 3, Duration::from_millis(100));
    eventually(
        "admissions before the database slows",
        Duration::from_secs(10),
        || async { load.admissions().len() >= 20 },
    )
    .await;

    relay.slow(Duration::from_millis(300));
    let slowed = Instant::now();
    eventually(
        "four seconds of admissions with a slow database",
        Duration::from_secs(15),
        || async {
            load.admissions()
                .last()
                .is_some_and(|t| *t > slowed + Duration::from_secs(4))
        },
    )
    .await;
    let admissions = load.admissions();
    let (tallies, _) = load.stop().await;
    relay.slow(Duration::ZERO);

    let switches = gw.stderr().matches("instance's share of its limit").count();
    let gap = longest_gap(&admissions, slowed);
    println!("database answering in 300 ms and more: {switches} switch(es) to the share; longest stretch without an admission {gap:?}");
    assert!(tallies.iter().all(|t| t.clean()), "{}", per_instance(&tallies));
    assert!(
        switches <= 1,
        "switched to the share {switches} times with a database that answers\n{}",
        gw.stderr()
    );
    // Statements of 300 ms and more: a request may wait for one or two of them.
    assert!(gap < Duration::from_secs(2), "nothing admitted for {gap:?}");
}

#[actix_web::test]
async fn an_instance_killed_holding_leases_loses_them_and_the_others_count_two() {
    let db = TestDb::postgres();
    let backend = TestBackend::start("killed");
    let mut gws = [
        member(&backend, &db.url()),
        member(&backend, &db.url()),
        member(&backend, &db.url()),
    ];
    for gw in &gws {
        gw.wait_ready().await;
    }
    {
        let all: Vec<&GatewayProcess> = gws.iter().collect();
        wait_limits(&all, "cluster", 3, Duration::from_secs(10)).await;
        create_client(&gws[0], &all, 50, 10.0).await;
    }
    let (capacity, rate) = (50u64, 10.0);

    let ports: Vec<u16> = gws.iter().map(|g| g.port).collect();
    let load = Load::start(&ports, KEY, 16, Duration::from_millis(20));
    actix_rt::time::sleep(Duration::from_millis(1500)).await;
    load.drop_target(2);
    gws[2].signal("-KILL");
    let killed = Instant::now();
    gws[2].wait_exit(Duration::from_secs(5)).await;
    let before_kill = load.snapshot();

    let took = wait_limits(&[&gws[0], &gws[1]], "cluster", 2, Duration::from_secs(5)).await;
    let since_kill = killed.elapsed();
    println!(
        "killed instance: both others count 2 live instances {since_kill:?} after SIGKILL ({took:?} polling)"
    );
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    let (tallies, run) = load.stop().await;

    let total = admitted(&tallies);
    let bound = capacity as f64 + rate * run.as_secs_f64();
    println!(
        "kill run of {run:?}: admitted {total} (backend saw {}), bound C + R*T = {capacity} + \
         {rate}*{:.2} = {bound:.1}; admitted before the kill {}, after {}{}",
        backend.hits(),
        run.as_secs_f64(),
        admitted(&before_kill),
        admitted_between(&before_kill, &tallies),
        per_instance(&tallies)
    );
    for (i, t) in tallies.iter().enumerate().take(2) {
        assert!(
            t.clean(),
            "surviving instance {i} answered other than 200/429: {t}"
        );
    }
    assert!(
        tallies[2].other_count == 0,
        "the killed instance answered other than 200/429 before it died: {}",
        tallies[2]
    );
    assert!(
        since_kill <= Duration::from_secs(5),
        "live instances 2 after {since_kill:?}"
    );
    // Requests the killed instance admitted but could not answer reached the backend.
    let seen = total.max(backend.hits() as u64);
    assert!(
        seen as f64 <= bound,
        "admitted {seen} > bound {bound:.1} over {run:?}"
    );
    assert!(
        admitted_between(&before_kill, &tallies) > 0,
        "the survivors admitted nothing after the kill"
    );
}

/// Sends requests round-robin over `gws` until `want` were admitted (at most `limit`
/// requests); returns the statuses.
async fn consume(gws: &[GatewayProcess], want: usize, limit: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for i in 0..limit {
        if statuses.iter().filter(|s| **s == 200).count() == want {
            break;
        }
        statuses.push(gws[i % gws.len()].status_with_key(KEY).await);
    }
    statuses
}

/// SIGKILLs every gateway of `gws` at once; returns the time between the first signal and
/// the last.
async fn kill_all(gws: &mut [GatewayProcess]) -> Duration {
    let start = Instant::now();
    for gw in gws.iter() {
        gw.signal("-KILL");
    }
    let spread = start.elapsed();
    for gw in gws.iter_mut() {
        gw.wait_exit(Duration::from_secs(5)).await;
    }
    assert!(
        spread <= Duration::from_millis(200),
        "kills spread over {spread:?}"
    );
    spread
}

async fn three(backend: &TestBackend, db: &TestDb) -> [GatewayProcess; 3] {
    let gws = [
        member(backend, &db.url()),
        member(backend, &db.url()),
        member(backend, &db.url()),
    ];
    for gw in &gws {
        gw.wait_ready().await;
    }
    gws
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

/// Consumes `used` of a client's 100 tokens (no refill to speak of: 0.001 per second), kills
/// every instance at once, restarts three: the restarted cluster admits at most what the row
/// still holds (what the killed instances held is lost). Returns what it admitted.
async fn killed_all_after(used: usize) -> usize {
    let db = TestDb::postgres();
    let backend = TestBackend::start("killall");
    let mut gws = three(&backend, &db).await;
    {
        let all: Vec<&GatewayProcess> = gws.iter().collect();
        wait_limits(&all, "cluster", 3, Duration::from_secs(10)).await;
        create_client(&gws[0], &all, 100, 0.001).await;
    }
    let statuses = consume(&gws, used, 3 * used).await;
    let admitted = count(&statuses, 200);
    let first = statuses.iter().position(|s| *s != 200);
    println!(
        "consumed {admitted} of 100 in {} requests (first other than 200 at {first:?})",
        statuses.len()
    );
    assert_eq!(admitted, used, "{statuses:?}");
    assert_eq!(count(&statuses, 429) + admitted, statuses.len(), "{statuses:?}");
    if used == 100 {
        // Nothing is left anywhere: two more on each instance are refused.
        let more = consume(&gws, 1, 6).await;
        assert_eq!(count(&more, 429), 6, "after 100 admitted: {more:?}");
    }

    let spread = kill_all(&mut gws).await;
    let row = db.client_row(ID).unwrap();
    println!(
        "all three SIGKILLed within {spread:?}; the row holds {:.3} tokens",
        row.bucket_level.map_or(100.0, |l| l as f64 / 1e12)
    );
    drop(gws);

    let gws = three(&backend, &db).await;
    for gw in &gws {
        eventually("the client loaded", Duration::from_secs(5), || async {
            get_json(gw.admin_url(&format!("/clients/{ID}"))).await.is_some()
        })
        .await;
    }
    let after = consume(&gws, usize::MAX, 100 - used + 20).await;
    let again = count(&after, 200);
    println!(
        "after killing all with {used} used and restarting: {again} admitted of {} (at most {}), \
         {} refused",
        after.len(),
        100 - used,
        count(&after, 429)
    );
    assert_eq!(count(&after, 429) + again, after.len(), "{after:?}");
    assert!(
        again <= 100 - used,
        "{again} admitted after the restart, more than the {} left: {after:?}\n{}",
        100 - used,
        gws.iter().map(|g| g.stderr()).collect::<Vec<_>>().join("\n---\n")
    );
    again
}

#[actix_web::test]
async fn killing_every_instance_after_the_bucket_is_spent_admits_nothing_after_restart() {
    assert_eq!(killed_all_after(100).await, 0);
}

#[actix_web::test]
async fn killing_every_instance_with_tokens_left_admits_at_most_those_after_restart() {
    killed_all_after(60).await;
}
