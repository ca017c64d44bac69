//! Passive ejection (connect failures seen by the proxy): a quick backend restart costs a
//! handful of requests, a backend that keeps refusing is ejected once the failures span the
//! window, and errors stay fast when every backend refuses.

use std::{
    rc::Rc,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use crate::{helpers::*, panic::pool_status};

/// Requests sent by a [`Load`] in flight: (started, status); 0 when the request itself failed.
type Log = Rc<std::cell::RefCell<Vec<(Instant, u16)>>>;

/// Steady traffic from `tasks` concurrent loops, each pausing `pace` between requests.
struct Load {
    log: Log,
    stop: Rc<AtomicBool>,
}

impl Load {
    fn start(gw: &TestGateway, tasks: usize, pace: Duration) -> Load {
        let (log, stop): (Log, Rc<AtomicBool>) = Default::default();
        for _ in 0..tasks {
            let (log, stop, url, c) = (log.clone(), stop.clone(), gw.url("/steady"), client());
            actix_rt::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let status = match c.get(&url).send().await {
                        Ok(mut r) => {
                            let _ = r.body().await;
                            r.status().as_u16()
                        }
                        Err(_) => 0,
                    };
                    log.borrow_mut().push((started, status));
                    actix_rt::time::sleep(pace).await;
                }
            });
        }
        Load { log, stop }
    }

    /// Requests started at or after `t`: (sent, failed).
    fn since(&self, t: Instant) -> (usize, usize) {
        let log = self.log.borrow();
        let after: Vec<_> = log.iter().filter(|(s, _)| *s >= t).collect();
        (after.len(), after.iter().filter(|(_, st)| *st != 200).count())
    }

    fn failed(&self) -> usize {
        self.log.borrow().iter().filter(|(_, st)| *st != 200).count()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Kills `backend` and starts it again on the same port ~50 ms later, off the test's thread so
/// that traffic keeps flowing meanwhile; returns when it is back, with the new backend.
async fn restart(backend: TestBackend) -> TestBackend {
    let (tx, rx) = mpsc::channel();
    let name = backend.name.clone();
    std::thread::spawn(move || {
        let port = backend.kill();
        std::thread::sleep(Duration::from_millis(50));
        tx.send(TestBackend::start_on(&name, port)).unwrap();
    });
    let mut back = None;
    eventually("backend restarted", Duration::from_secs(10), || {
        if let Ok(b) = rx.try_recv() {
            back = Some(b);
        }
        let done = back.is_some();
        async move { done }
    })
    .await;
    back.unwrap()
}

#[actix_web::test]
async fn a_quick_restart_of_the_only_backend_costs_a_handful_of_requests_not_seconds() {
    let a = TestBackend::start("only");
    // Checks far apart: only the proxy's own failures could eject the backend.
    let gw = spawn_gateway(&[a.url()], &["--health-interval", "3s"]).await;
    let load = Load::start(&gw, 4, Duration::from_millis(2));
    eventually("traffic flowing", Duration::from_secs(5), || async {
        load.since(Instant::now() - Duration::from_secs(60)).0 > 20
    })
    .await;
    let failed_before = load.failed();
    assert_eq!(failed_before, 0);

    let a = restart(a).await;
    let back = Instant::now();
    let during = load.failed();
    assert!(
        during > 0,
        "the restart was not noticed: no request failed while the backend was down"
    );
    eventually(
        "200 requests after the restart",
        Duration::from_secs(10),
        || async { load.since(back).0 >= 200 },
    )
    .await;
    let (sent, failed) = load.since(back);
    drop(load);
    assert!(
        failed <= 4,
        "{failed} of {sent} requests failed after the backend was back ({during} failed while it was down)"
    );
    assert!(
        a.hits() >= 190,
        "the restarted backend took the traffic: {}",
        a.hits()
    );
}

#[actix_web::test]
async fn a_quickly_restarted_backend_of_three_takes_its_share_at_once() {
    let (a, b, c) = (
        TestBackend::start("a"),
        TestBackend::start("b"),
        TestBackend::start("c"),
    );
    let b_url = b.url();
    let gw = spawn_gateway(&[a.url(), b.url(), c.url()], &["--health-interval", "3s"]).await;
    let load = Load::start(&gw, 4, Duration::from_millis(2));
    eventually("traffic flowing", Duration::from_secs(5), || async {
        b.hits() > 20
    })
    .await;

    let b = restart(b).await;
    let back = Instant::now();
    eventually(
        "300 requests after the restart",
        Duration::from_secs(10),
        || async { load.since(back).0 >= 300 },
    )
    .await;
    let (sent, failed) = load.since(back);
    drop(load);
    // Failover hides the restart from clients either way; what matters is that b is not
    // ejected for seconds.
    assert_eq!(failed, 0, "{failed} of {sent} failed");
    let s = gw.backends().await;
    assert!(
        s.iter().any(|x| x["url"] == b_url && x["healthy"] == true),
        "{s:?}"
    );
    assert!(
        b.hits() >= 80,
        "the restarted backend got {} of {sent} requests",
        b.hits()
    );
    drop((a, c));
}

#[actix_web::test]
async fn a_backend_that_keeps_refusing_is_ejected_once_the_failures_span_the_window() {
    let a = TestBackend::start("a");
    let live = TestBackend::start("live");
    let a_url = a.url();
    // Checks far apart: the ejection comes from the proxy's failures alone.
    let gw = spawn_gateway(&[a.url(), live.url()], &["--health-interval", "1h"]).await;
    let killed = Instant::now();
    a.kill();
    let mut sent = 0;
    eventually(
        "a ejected by the proxy's failures",
        Duration::from_secs(10),
        || {
            sent += 1;
            let gw = &gw;
            let a_url = a_url.clone();
            async move {
                let (status, _, body) = gw.get("/refused").await;
                assert_eq!(status, 200, "failover hides the dead backend: {body}");
                gw.backends()
                    .await
                    .iter()
                    .any(|b| b["url"] == a_url && b["healthy"] == false)
            }
        },
    )
    .await;
    let took = killed.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "ejected {took:?} after the kill, before the failures spanned TOLLGATE_PASSIVE_EJECT_WINDOW (1s); {sent} requests"
    );
    // Ejected: the next requests go straight to the live backend.
    let before = live.hits();
    for _ in 0..10 {
        assert_eq!(gw.get("/after").await.0, 200);
    }
    assert_eq!(live.hits(), before + 10);
    assert_eq!(
        pool_status(gw.admin_port).await["panic"],
        false,
        "one of two healthy is not below 50 %"
    );
}

#[actix_web::test]
async fn every_backend_refusing_gives_a_json_error_within_100ms_each() {
    let dead = [RefusingPort::new(), RefusingPort::new(), RefusingPort::new()];
    let urls: Vec<String> = dead.iter().map(RefusingPort::url).collect();
    let flags = ["--health-interval", "100ms", "--health-timeout", "100ms"];
    let gw = spawn_gateway(&urls, &flags).await;
    for u in &urls {
        gw.wait_health(u, false).await;
    }
    for i in 0..20 {
        let start = Instant::now();
        let (status, headers, body) = gw.get(&format!("/gone/{i}")).await;
        let took = start.elapsed();
        assert!(status == 502 || status == 503, "request {i}: {status} {body}");
        let error = if status == 502 {
            "bad_gateway"
        } else {
            "no_healthy_backend"
        };
        assert_error_body(&body, &headers, status, error);
        assert!(took < Duration::from_millis(100), "request {i} took {took:?}");
    }
}
