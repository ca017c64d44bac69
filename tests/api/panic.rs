//! Health that must not refuse traffic: panic mode, check timeouts under traffic, quick
//! backend restarts, passive ejection spread over time, and fast errors when all is gone.

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    rc::Rc,
    sync::{
        atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use actix_web::{dev::ServerHandle, web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

use crate::helpers::*;

/// How a [`CheckedBackend`] answers its health checks.
#[derive(Default)]
struct CheckState {
    status: AtomicU16,
    delay_ms: AtomicU64,
    checks: AtomicUsize,
    proxied: AtomicUsize,
}

/// A backend whose `/health` answers are set by the test (status, delay), while every other
/// path answers 200 at once: a checker that disagrees with the traffic.
struct CheckedBackend {
    addr: SocketAddr,
    state: Arc<CheckState>,
    handle: ServerHandle,
}

impl CheckedBackend {
    fn start(name: &str) -> CheckedBackend {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(CheckState::default());
        state.status.store(200, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel();
        let (st, name) = (state.clone(), name.to_string());
        std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let data = web::Data::from(st);
                let name = web::Data::new(name);
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .app_data(name.clone())
                        .default_service(web::to(checked_handler))
                })
                .workers(1)
                .disable_signals()
                .shutdown_timeout(0)
                .listen(listener)
                .unwrap()
                .run();
                tx.send(server.handle()).unwrap();
                let _ = server.await;
            })
        });
        let handle = rx.recv().unwrap();
        CheckedBackend { addr, state, handle }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set_check(&self, status: u16, delay_ms: u64) {
        self.state.status.store(status, Ordering::SeqCst);
        self.state.delay_ms.store(delay_ms, Ordering::SeqCst);
    }

    fn checks(&self) -> usize {
        self.state.checks.load(Ordering::SeqCst)
    }

    fn proxied(&self) -> usize {
        self.state.proxied.load(Ordering::SeqCst)
    }
}

impl Drop for CheckedBackend {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        std::thread::spawn(move || actix_rt::System::new().block_on(handle.stop(false)));
    }
}

async fn checked_handler(
    req: HttpRequest,
    state: web::Data<CheckState>,
    name: web::Data<String>,
) -> HttpResponse {
    if req.path() != "/health" {
        state.proxied.fetch_add(1, Ordering::SeqCst);
        return HttpResponse::Ok().json(json!({"backend": name.get_ref()}));
    }
    state.checks.fetch_add(1, Ordering::SeqCst);
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        actix_rt::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = state.status.load(Ordering::SeqCst);
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).finish()
}

/// `GET /backends` of an admin API at `admin_port`, whole.
async fn pool_status(admin_port: u16) -> Value {
    let url = format!("http://127.0.0.1:{admin_port}/backends");
    let mut resp = client().get(url).send().await.unwrap();
    resp.json().await.unwrap()
}

/// The gateway as a process, its log in a file, so that a test can count log lines.
struct LoggedGateway {
    child: Child,
    port: u16,
    admin_port: u16,
    log: std::path::PathBuf,
    _db: TestDb,
}

impl LoggedGateway {
    fn spawn(backends: &[String], extra: &[&str]) -> LoggedGateway {
        let db = TestDb::sqlite();
        let (port, admin_port) = (dead_port(), dead_port());
        let log = std::env::temp_dir().join(format!("tollgate-panic-{}.log", uuid::Uuid::new_v4().simple()));
        let child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .current_dir(std::env::temp_dir())
            .env_remove("RUST_LOG")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .args(["--backends", &backends.join(",")])
            .args(["--log", "info,tollgate::access=off"])
            .args(["--database-url", &db.url()])
            .args(["--rate-limit", "false"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        LoggedGateway {
            child,
            port,
            admin_port,
            log,
            _db: db,
        }
    }

    fn log_lines(&self, level: &str, text: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(level) && l.contains(text))
            .count()
    }
}

impl Drop for LoggedGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

#[actix_web::test]
async fn panic_mode_routes_to_all_when_checks_eject_every_backend_and_ends_when_they_pass() {
    let backends: Vec<CheckedBackend> = ["a", "b", "c"].iter().map(|n| CheckedBackend::start(n)).collect();
    let urls: Vec<String> = backends.iter().map(CheckedBackend::url).collect();
    let flags = [
        "--health-path",
        "/health",
        "--health-interval",
        "100ms",
        "--health-timeout",
        "100ms",
        "--unhealthy-threshold",
        "2",
        "--healthy-threshold",
        "2",
    ];
    let gw = LoggedGateway::spawn(&urls, &flags);
    let c = client();
    eventually("gateway ready", Duration::from_secs(20), || async {
        matches!(c.get(format!("http://127.0.0.1:{}/readyz", gw.admin_port)).send().await, Ok(r) if r.status() == 200)
    })
    .await;
    assert_eq!(pool_status(gw.admin_port).await["panic"], false);

    // The checker says every backend is down while each of them answers traffic.
    for b in &backends {
        b.set_check(500, 0);
    }
    eventually(
        "every backend ejected, panic shown",
        Duration::from_secs(10),
        || async {
            let s = pool_status(gw.admin_port).await;
            s["panic"] == true
                && s["backends"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|b| b["healthy"] == false)
        },
    )
    .await;
    for i in 0..30 {
        let mut resp = c
            .get(format!("http://127.0.0.1:{}/in-panic", gw.port))
            .send()
            .await
            .unwrap();
        let body = resp.body().await.unwrap();
        assert_eq!(resp.status(), 200, "request {i} in panic mode: {body:?}");
    }
    for b in &backends {
        assert!(b.proxied() >= 5, "panic mode balances over all: {}", b.proxied());
    }

    for b in &backends {
        b.set_check(200, 0);
    }
    eventually(
        "every backend re-admitted, panic over",
        Duration::from_secs(10),
        || async {
            let s = pool_status(gw.admin_port).await;
            s["panic"] == false
                && s["backends"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|b| b["healthy"] == true)
        },
    )
    .await;
    eventually(
        "the log says panic mode is over",
        Duration::from_secs(5),
        || async { gw.log_lines(" INFO ", "panic mode over") == 1 },
    )
    .await;
    assert_eq!(
        gw.log_lines(" WARN ", "panic mode:"),
        1,
        "the switch is logged once"
    );
    assert_eq!(
        gw.log_lines(" INFO ", "panic mode over"),
        1,
        "and the way back once"
    );
}

#[actix_web::test]
async fn a_check_that_times_out_does_not_eject_a_backend_that_answers_traffic() {
    let slow_checks = CheckedBackend::start("slow-checks");
    let fine = CheckedBackend::start("fine");
    // The checker's deadline is shorter than the check answer; the traffic is answered at once.
    slow_checks.set_check(200, 400);
    let flags = [
        "--health-path",
        "/health",
        "--health-interval",
        "150ms",
        "--health-timeout",
        "100ms",
        "--unhealthy-threshold",
        "3",
    ];
    let gw = spawn_gateway(&[slow_checks.url(), fine.url()], &flags).await;
    let checks_before = slow_checks.checks();
    let mut sent = 0;
    // Traffic flows while at least six checks (twice the threshold) time out.
    while slow_checks.checks() < checks_before + 6 {
        let (status, _, body) = gw.get("/traffic").await;
        assert_eq!(status, 200, "{body}");
        sent += 1;
        assert!(sent < 20_000, "the checks did not run");
    }
    let status = gw.backends().await;
    let slow = status.iter().find(|b| b["url"] == slow_checks.url()).unwrap();
    assert_eq!(slow["last_check"]["ok"], false, "the checks did time out: {slow}");
    assert_eq!(
        slow["healthy"], true,
        "ejected by timed-out checks while answering: {slow}"
    );
    assert!(
        slow_checks.proxied() * 3 > sent,
        "it kept its share of the traffic"
    );
}

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
    let urls: Vec<String> = (0..3)
        .map(|_| format!("http://127.0.0.1:{}", dead_port()))
        .collect();
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
