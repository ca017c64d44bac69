//! Backends changed on one instance reach every instance on the database through the change
//! log: an added backend serves traffic through another instance, and a delete drains on all
//! of them without a failed request.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use serde_json::json;

use crate::{
    backends_live::{admin_of, call, entry, listed, proxied},
    helpers::*,
};

/// Outcomes of proxied requests (status, answering backend), collected by spawned tasks.
type Outcomes = Arc<Mutex<Vec<(u16, Option<String>)>>>;

fn cluster_instance(db_url: &str, backend: &TestBackend) -> GatewayProcess {
    GatewayProcess::builder()
        .backends(&[backend.url()])
        .args(&["--health-interval", "1h", "--rate-limit", "false"])
        .database_url(db_url)
        .spawn()
}

/// Sends requests to `port` one after the other until `stop`, recording every outcome.
fn keep_sending(port: u16, stop: Arc<AtomicBool>, outcomes: Outcomes) -> actix_rt::task::JoinHandle<()> {
    actix_rt::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            let outcome = proxied(port).await;
            outcomes.lock().unwrap().push(outcome);
        }
    })
}

#[actix_web::test]
async fn a_backend_added_on_one_instance_serves_the_others_and_a_delete_drains_everywhere() {
    let db = TestDb::postgres();
    let base = TestBackend::start("base");
    let extra = TestBackend::start("extra");
    let gws = [
        cluster_instance(&db.url(), &base),
        cluster_instance(&db.url(), &base),
        cluster_instance(&db.url(), &base),
    ];
    for gw in &gws {
        gw.wait_ready().await;
    }
    let admins: Vec<String> = gws.iter().map(|g| admin_of(g.admin_port)).collect();
    // Started with the same list: one backend, one id everywhere.
    let base_id = listed(&admins[0]).await[0]["id"].clone();
    for admin in &admins {
        let list = listed(admin).await;
        assert_eq!((list.len(), &list[0]["id"]), (1, &base_id), "{list:?}");
    }

    // Added on A: serves traffic through B within a second.
    let (status, _, body) = call(&admins[0], "POST", "/backends", Some(json!({"url": extra.url()}))).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let since = Instant::now();
    while proxied(gws[1].port).await.1.as_deref() != Some("extra") {
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "not routed through B within 1 s"
        );
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    println!("added on A, answered through B after {:?}", since.elapsed());
    for admin in &admins {
        eventually("extra healthy everywhere", Duration::from_secs(5), || async {
            entry(admin, &extra.url())
                .await
                .is_some_and(|e| e["state"] == "healthy" && e["id"] == json!(id))
        })
        .await;
    }

    // A slow request in flight to `extra` through each instance, steady traffic on all three.
    extra.set_delay_ms(3000);
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes: Outcomes = Arc::default();
    let slow: Outcomes = Arc::default();
    let senders: Vec<_> = gws
        .iter()
        .map(|gw| keep_sending(gw.port, stop.clone(), outcomes.clone()))
        .collect();
    for (gw, admin) in gws.iter().zip(&admins) {
        // Round robin over two: of two requests sent together, one goes to `extra`.
        for _ in 0..2 {
            let (port, slow) = (gw.port, slow.clone());
            actix_rt::spawn(async move {
                let outcome = proxied(port).await;
                slow.lock().unwrap().push(outcome);
            });
        }
        eventually("a request in flight to extra", Duration::from_secs(2), || async {
            entry(admin, &extra.url())
                .await
                .is_some_and(|e| e["in_flight"].as_u64().unwrap_or(0) >= 1)
        })
        .await;
    }

    // Deleted on A: draining on all three while those requests run, then gone everywhere.
    let (status, _, _) = call(&admins[0], "DELETE", &format!("/backends/{id}"), None).await;
    assert_eq!(status, 204);
    for admin in &admins {
        eventually("extra draining", Duration::from_secs(1), || async {
            entry(admin, &extra.url())
                .await
                .is_some_and(|e| e["state"] == "draining")
        })
        .await;
    }
    for admin in &admins {
        eventually("extra gone once idle", Duration::from_secs(10), || async {
            entry(admin, &extra.url()).await.is_none()
        })
        .await;
    }
    let arrived = extra.arrived();
    for gw in &gws {
        for _ in 0..10 {
            assert_eq!(proxied(gw.port).await, (200, Some("base".to_string())));
        }
    }
    stop.store(true, Ordering::SeqCst);
    assert_eq!(extra.arrived(), arrived, "a request reached the deleted backend");

    eventually("the slow requests finished", Duration::from_secs(10), || async {
        slow.lock().unwrap().len() == 6
    })
    .await;
    let slow = slow.lock().unwrap().clone();
    assert!(slow.iter().all(|(s, b)| *s == 200 && b.is_some()), "{slow:?}");
    for sender in senders {
        sender.await.unwrap();
    }
    let outcomes = outcomes.lock().unwrap().clone();
    // Each instance had a request in flight to `extra` when it was deleted (a slow one or a
    // steady one, whichever round robin gave it): all of them finished, answered by it.
    let by_extra = slow
        .iter()
        .chain(&outcomes)
        .filter(|(s, b)| *s == 200 && b.as_deref() == Some("extra"))
        .count();
    assert!(
        by_extra >= 3,
        "{by_extra} answered by the drained backend: {slow:?}"
    );
    assert!(outcomes.len() >= 30, "{}", outcomes.len());
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|(s, b)| *s != 200 || b.is_none())
        .collect();
    assert!(failed.is_empty(), "failed during the drain: {failed:?}");
}
