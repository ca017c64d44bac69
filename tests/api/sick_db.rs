//! Admin writes under a sick database: an outage, a connection that passes nothing, a locked
//! table. Every write answers within `--db-timeout` plus a small margin, concurrent writes do
//! not wait for each other, and the database and memory agree afterwards.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::helpers::*;

/// The database timeout of these tests.
const DB_TIMEOUT: Duration = Duration::from_secs(1);
/// What docs/clients-and-limits.md ("Persistence") allows on top of it (measured from the client, on a busy machine).
const MARGIN: Duration = Duration::from_millis(1000);

async fn gateway(db: &TestDb, relay: &Relay) -> TestGateway {
    let backend = TestBackend::start("a");
    let flags = ["--db-timeout", "1s", "--health-interval", "1h"];
    spawn_gateway_db(&[backend.url()], &flags, &db.url_via(relay.port)).await
}

/// Sends an admin request with a client timeout far above the bound; returns the status, the
/// error code of the body and the time it took.
async fn timed(method: &str, url: String, body: Value) -> (u16, Value, Duration) {
    let c = awc::Client::builder().timeout(Duration::from_secs(20)).finish();
    let started = Instant::now();
    let mut resp = c
        .request(method.parse().unwrap(), url)
        .send_json(&body)
        .await
        .unwrap_or_else(|e| panic!("no answer within 20 s: {e}"));
    let bytes = resp.body().await.unwrap();
    (
        resp.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        started.elapsed(),
    )
}

fn assert_bounded_503(what: &str, (status, body, took): &(u16, Value, Duration)) {
    assert_eq!(*status, 503, "{what}: {body}");
    assert_eq!(body["error"], "database_unavailable", "{what}: {body}");
    assert!(
        *took < DB_TIMEOUT + MARGIN,
        "{what} took {took:?}, more than {DB_TIMEOUT:?} + {MARGIN:?}"
    );
}

async fn status_of(gw: &TestGateway, path: &str) -> u16 {
    gw.client
        .get(gw.admin_url(path))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// After the trouble: a write goes through again, and `id` is neither stored nor in memory.
async fn recovers_without_a_trace_of(gw: &TestGateway, db: &TestDb, ids: &[String]) {
    let url = gw.admin_url("/clients");
    eventually("admin writes recover", Duration::from_secs(15), || {
        let url = url.clone();
        async move {
            let body = json!({"client_id": "after", "capacity": 1, "rate_per_sec": 1});
            timed("POST", url, body).await.0 == 201
        }
    })
    .await;
    for id in ids {
        assert!(db.client_row(id).is_none(), "{id} was stored after a 503");
        assert_eq!(
            status_of(gw, &format!("/clients/{id}")).await,
            404,
            "{id} in memory"
        );
    }
}

#[actix_web::test]
async fn concurrent_writes_during_an_outage_each_answer_503_within_the_timeout() {
    let db = TestDb::postgres();
    let relay = Relay::to_postgres();
    let gw = gateway(&db, &relay).await;
    let body = json!({"client_id": "before", "capacity": 5, "rate_per_sec": 1});
    assert_eq!(timed("POST", gw.admin_url("/clients"), body).await.0, 201);

    relay.cut();
    let ids: Vec<String> = (0..4).map(|i| format!("during{i}")).collect();
    let answers = join_all(ids.iter().map(|id| {
        let body = json!({"client_id": id, "capacity": 1, "rate_per_sec": 1});
        timed("POST", gw.admin_url("/clients"), body)
    }))
    .await;
    for (id, answer) in ids.iter().zip(&answers) {
        assert_bounded_503(&format!("POST {id}"), answer);
    }

    relay.restore();
    recovers_without_a_trace_of(&gw, &db, &ids).await;
    assert!(db.client_row("before").is_some());
}

#[actix_web::test]
async fn a_connection_that_passes_nothing_bounds_writes_too() {
    let db = TestDb::postgres();
    let relay = Relay::to_postgres();
    let gw = gateway(&db, &relay).await;
    let body = json!({"client_id": "before", "capacity": 5, "rate_per_sec": 1});
    assert_eq!(timed("POST", gw.admin_url("/clients"), body).await.0, 201);

    relay.stall();
    // One after the other: a database thread stuck on the silent connection must not make
    // the next write wait.
    let body = json!({"client_id": "during", "capacity": 1, "rate_per_sec": 1});
    assert_bounded_503("POST", &timed("POST", gw.admin_url("/clients"), body).await);
    let patch = json!({"capacity": 9});
    assert_bounded_503(
        "PATCH",
        &timed("PATCH", gw.admin_url("/clients/before"), patch).await,
    );
    assert_bounded_503(
        "DELETE",
        &timed("DELETE", gw.admin_url("/clients/before"), Value::Null).await,
    );

    relay.cut();
    relay.restore();
    recovers_without_a_trace_of(&gw, &db, &["during".to_string()]).await;
    assert_eq!(db.client_row("before").map(|r| r.capacity), Some(5));
}

#[actix_web::test]
async fn a_table_locked_by_another_session_bounds_writes() {
    use diesel::connection::SimpleConnection;
    let db = TestDb::postgres();
    let relay = Relay::to_postgres();
    let gw = gateway(&db, &relay).await;

    let mut locker = db.connect();
    locker
        .batch_execute("BEGIN; LOCK TABLE clients IN ACCESS EXCLUSIVE MODE;")
        .unwrap();
    let body = json!({"client_id": "during", "capacity": 1, "rate_per_sec": 1});
    assert_bounded_503("POST", &timed("POST", gw.admin_url("/clients"), body).await);
    locker.batch_execute("ROLLBACK;").unwrap();

    recovers_without_a_trace_of(&gw, &db, &["during".to_string()]).await;
}

async fn readyz(gw: &TestGateway) -> (u16, Value) {
    let mut resp = gw.client.get(gw.admin_url("/readyz")).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

#[actix_web::test]
async fn a_sqlite_file_deleted_or_moved_away_stops_admin_writes_and_readiness() {
    let dir = TempDir::new();
    let path = dir.0.join("gateway.db");
    let backend = TestBackend::start("a");
    let url = format!("sqlite://{}", path.display());
    let gw = spawn_gateway_db(&[backend.url()], &["--health-interval", "1h"], &url).await;
    let create = |id: &str| {
        let body = json!({"client_id": id, "capacity": 1, "rate_per_sec": 1});
        timed("POST", gw.admin_url("/clients"), body)
    };
    assert_eq!(create("first").await.0, 201);

    // Moved away: writes would go to a file nobody will open again.
    let aside = dir.0.join("aside.db");
    std::fs::rename(&path, &aside).unwrap();
    eventually("/readyz 503", Duration::from_secs(5), || async {
        readyz(&gw).await.0 == 503
    })
    .await;
    assert_eq!(readyz(&gw).await.1["error"], "database_unavailable");
    let answer = create("lost").await;
    assert_eq!(answer.0, 503, "{}", answer.1);
    assert_eq!(answer.1["error"], "database_unavailable");
    assert_eq!(status_of(&gw, "/clients/lost").await, 404);

    // Back in place: all resumes.
    std::fs::rename(&aside, &path).unwrap();
    eventually("/readyz 200", Duration::from_secs(5), || async {
        readyz(&gw).await.0 == 200
    })
    .await;
    assert_eq!(create("second").await.0, 201);

    // Deleted: the same refusals, without waiting for the periodic check.
    std::fs::remove_file(&path).unwrap();
    let answer = create("gone").await;
    assert_eq!(answer.0, 503, "{}", answer.1);
    assert_eq!(readyz(&gw).await.0, 503);
}
