//! Health checks that must not refuse traffic: panic mode when checks eject (nearly) every
//! backend, and check timeouts that do not count while the backend answers proxied traffic.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use actix_web::{dev::ServerHandle, web, HttpRequest, HttpResponse};
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
        let (handle, _thread) = serve_on_own_thread(listener, state.clone(), name, checked_handler);
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
pub async fn pool_status(admin_port: u16) -> Value {
    let url = format!("http://127.0.0.1:{admin_port}/backends");
    let mut resp = client().get(url).send().await.unwrap();
    resp.json().await.unwrap()
}

/// The gateway as a process with its log captured, so that a test can count log lines.
struct LoggedGateway {
    gw: GatewayProcess,
    port: u16,
    admin_port: u16,
}

impl LoggedGateway {
    fn spawn(backends: &[String], extra: &[&str]) -> LoggedGateway {
        let gw = GatewayProcess::builder()
            .backends(backends)
            .args(&["--log", "info,tollgate::access=off", "--rate-limit", "false"])
            .args(extra)
            .capture_stderr()
            .spawn();
        let (port, admin_port) = (gw.port, gw.admin_port);
        LoggedGateway { gw, port, admin_port }
    }

    fn log_lines(&self, level: &str, text: &str) -> usize {
        self.gw
            .stderr()
            .lines()
            .filter(|l| l.contains(level) && l.contains(text))
            .count()
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
