//! Heap allocations per proxied request (issue 10), counted by a global allocator wrapping the
//! system allocator (`stats_alloc`), which is why this is a test binary of its own. The gateway
//! itself allocates with mimalloc; the count of calls does not depend on the allocator.
//!
//! `cargo test --release --test allocs -- --nocapture` prints the table; the assertion is a
//! loose regression guard, not a measurement.
//!
//! In one process: two in-test backends answering `200 ok\n`, the real gateway (one worker,
//! rate limiting on for one anonymous client whose limit is never reached, as in
//! `scripts/bench.sh`) and the reference forwarder of `examples/floor`. A client that allocates
//! nothing per request sends sequential keep-alive GETs: first straight to a backend, then
//! through each proxy. Every allocation in the process is counted, so the direct requests
//! measure what the backend costs, and "proxied − direct" is the proxy's own cost.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../examples/floor/forward.rs"]
mod floor;
mod raw;

use std::{alloc::System, path::PathBuf, time::Duration};

use clap::Parser;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tollgate::{
    config::{Cli, Settings},
    startup::Application,
};

use raw::RawClient;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Requests before counting: connections, pools and buffers reach their steady state.
const WARMUP: usize = 500;
/// Requests counted.
const REQUESTS: usize = 5_000;
/// The guard: the gateway's own allocations per proxied request stay below this. Measured: 39
/// (and 1 realloc) at issue 10's start, release and debug alike; the bound leaves room for
/// changes that are not about allocations, and catches a per-request loop or copy.
const MAX_OWN_ALLOCS: f64 = 100.0;
/// The guard on the gateway's own bytes allocated per proxied request (measured: 34,670, of
/// which the awc and actix-http buffers that the floor allocates too are about 31,000).
const MAX_OWN_BYTES: f64 = 96.0 * 1024.0;

/// Counts per request over one run of `REQUESTS`.
#[derive(Debug, Clone, Copy)]
struct PerRequest {
    allocs: f64,
    reallocs: f64,
    bytes: f64,
}

impl PerRequest {
    fn minus(self, other: PerRequest) -> PerRequest {
        PerRequest {
            allocs: self.allocs - other.allocs,
            reallocs: self.reallocs - other.reallocs,
            bytes: self.bytes - other.bytes,
        }
    }

    fn row(&self, what: &str) -> String {
        format!(
            "{what:<34} {:>9.2} {:>9.2} {:>10.0}",
            self.allocs, self.reallocs, self.bytes
        )
    }
}

/// `WARMUP` then `REQUESTS` GETs on one connection to `port`, counting the latter.
fn measure(port: u16, rate_limited: bool) -> PerRequest {
    let mut client = RawClient::connect(port, "/allocs?probe=1");
    for _ in 0..WARMUP {
        let answer = client.get();
        assert_eq!(answer.status, 200, "warm-up request to :{port}");
        assert_eq!(
            answer.rate_limited_headers, rate_limited,
            "RateLimit header from :{port}"
        );
    }
    let region = Region::new(GLOBAL);
    let mut ok = 0;
    for _ in 0..REQUESTS {
        ok += usize::from(client.get().status == 200);
    }
    let change = region.change();
    assert_eq!(ok, REQUESTS, "every counted request answered 200");
    let n = REQUESTS as f64;
    PerRequest {
        allocs: change.allocations as f64 / n,
        reallocs: change.reallocations as f64 / n,
        bytes: change.bytes_allocated as f64 / n,
    }
}

/// `measure` off the System's thread: the gateway's actors run there.
async fn measure_blocking(port: u16, rate_limited: bool) -> PerRequest {
    actix_rt::task::spawn_blocking(move || measure(port, rate_limited))
        .await
        .unwrap()
}

/// The SQLite file of the gateway (and its -wal and -shm), removed at the end.
struct DbFile(PathBuf);

impl Drop for DbFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The gateway as `scripts/bench.sh` runs it, less its periodic work (health checks, sync,
/// write-behind flushes every hour instead of every second or five), so that the window
/// counts requests only. Returns the proxy port once `/readyz` answers 200.
async fn start_gateway(backends: &[String], db: &DbFile) -> u16 {
    let backends = backends.join(",");
    let database_url = format!("sqlite://{}", db.0.display());
    let args = [
        "tollgate",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--backends",
        &backends,
        "--workers",
        "1",
        "--log",
        "warn",
        "--database-url",
        &database_url,
        "--rate-limit",
        "true",
        "--default-capacity",
        "1000000",
        "--default-rate",
        "1000000",
        "--health-interval",
        "1h",
        "--sync-interval",
        "1h",
        "--flush-interval",
        "1h",
    ];
    let cli = Cli::try_parse_from(args).unwrap();
    let settings = Settings::from_cli(&cli).unwrap();
    let app = Application::build(settings).await.unwrap();
    let (port, admin_port) = (app.port(), app.admin_port());
    actix_rt::spawn(app.run_until_stopped());
    let client = awc::Client::default();
    let ready = format!("http://127.0.0.1:{admin_port}/readyz");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !matches!(client.get(&ready).send().await, Ok(r) if r.status() == 200) {
        assert!(
            std::time::Instant::now() < deadline,
            "gateway not ready within 10 s"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    port
}

/// The reference forwarder, one worker, in this System.
fn start_floor(backends: &[String]) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let backends = backends
        .iter()
        .map(|b| floor::Backend::parse(b).unwrap())
        .collect();
    actix_rt::spawn(floor::serve(listener, backends, 1).unwrap());
    port
}

#[actix_web::test]
async fn allocations_per_proxied_request() {
    let backends = [raw::start_backend(), raw::start_backend()];
    let urls: Vec<String> = backends.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
    let db =
        DbFile(std::env::temp_dir().join(format!("tollgate-allocs-{}.db", uuid::Uuid::new_v4().simple())));
    let gateway = start_gateway(&urls, &db).await;
    let floor = start_floor(&urls);

    let direct = measure_blocking(backends[0], false).await;
    let proxied = measure_blocking(gateway, true).await;
    let floored = measure_blocking(floor, false).await;
    let own = proxied.minus(direct);
    let floor_own = floored.minus(direct);

    println!("heap allocations per request, {REQUESTS} sequential keep-alive GETs after {WARMUP}:");
    println!("{:<34} {:>9} {:>9} {:>10}", "", "allocs", "reallocs", "bytes");
    for (what, counts) in [
        ("direct (backend and client)", direct),
        ("tollgate (proxied)", proxied),
        ("floor (proxied)", floored),
        ("tollgate's own (proxied - direct)", own),
        ("floor's own (proxied - direct)", floor_own),
    ] {
        println!("{}", counts.row(what));
    }

    assert!(
        own.allocs > 0.0 && own.allocs < MAX_OWN_ALLOCS,
        "tollgate's own allocations per request: {own:?}, expected within (0, {MAX_OWN_ALLOCS})"
    );
    assert!(
        own.bytes > 0.0 && own.bytes < MAX_OWN_BYTES,
        "tollgate's own bytes per request: {own:?}, expected within (0, {MAX_OWN_BYTES})"
    );
    assert!(
        floor_own.allocs > 0.0,
        "the floor forwards, so it allocates: {floor_own:?}"
    );
}
