//! The gateway as a process: start-up validation, graceful shutdown, memory under a big upload.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use actix_web::web::Bytes;

use crate::helpers::*;

pub struct GatewayProcess {
    child: Child,
    pub port: u16,
    pub admin_port: u16,
    _db: Option<TestDb>,
}

impl GatewayProcess {
    fn spawn(backends: &[String], extra: &[&str]) -> GatewayProcess {
        let db = TestDb::sqlite();
        let mut gw = Self::spawn_db(backends, extra, &db.url());
        gw._db = Some(db);
        gw
    }

    pub fn spawn_db(backends: &[String], extra: &[&str], database_url: &str) -> GatewayProcess {
        let (port, admin_port) = (dead_port(), dead_port());
        let child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .current_dir(std::env::temp_dir())
            .env_remove("RUST_LOG")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .args(["--backends", &backends.join(",")])
            .args(["--log", "info"])
            .args(["--database-url", database_url])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        GatewayProcess {
            child,
            port,
            admin_port,
            _db: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    pub async fn wait_ready(&self) {
        self.wait_readyz(200).await;
    }

    /// Polls `/readyz` until it answers `status` (200 ready, 503 draining).
    pub async fn wait_readyz(&self, status: u16) {
        let c = client();
        let url = self.admin_url("/readyz");
        eventually(&format!("readyz {status}"), Duration::from_secs(20), || async {
            matches!(c.get(&url).send().await, Ok(r) if r.status().as_u16() == status)
        })
        .await;
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    pub async fn wait_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < deadline,
                "gateway did not exit within {deadline:?}"
            );
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[actix_web::test]
async fn sigterm_drains_an_in_flight_slow_request_and_exits_zero() {
    let backend = TestBackend::start("slow");
    let mut gw = GatewayProcess::spawn(&[backend.url()], &["--health-interval", "1h"]);
    gw.wait_ready().await;

    let c = client();
    let url = gw.url("/slow?sleep_ms=1500");
    let in_flight = actix_rt::spawn(async move {
        let mut resp = c.get(url).send().await.unwrap();
        let body = resp.body().await.unwrap();
        (resp.status().as_u16(), body)
    });
    eventually("slow request at the backend", Duration::from_secs(10), || async {
        backend.arrived() == 1
    })
    .await;
    gw.signal("-TERM");

    // While draining: not ready, and no new connections.
    gw.wait_readyz(503).await;
    let port = gw.port;
    eventually("proxy stops accepting", Duration::from_secs(5), || async move {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    })
    .await;

    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["backend"], "slow");
    assert_eq!(json["path"], "/slow");
    assert_eq!(backend.hits(), 1);
    let exit = gw.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(exit.code(), Some(0));
}

#[actix_web::test]
async fn a_second_signal_exits_at_once() {
    let backend = TestBackend::start("slow");
    let mut gw = GatewayProcess::spawn(&[backend.url()], &["--health-interval", "1h"]);
    gw.wait_ready().await;
    let c = client();
    let url = gw.url("/slow?sleep_ms=20000");
    actix_rt::spawn(async move {
        let _ = c.get(url).send().await;
    });
    eventually("slow request at the backend", Duration::from_secs(10), || async {
        backend.arrived() == 1
    })
    .await;
    gw.signal("-TERM");
    gw.wait_readyz(503).await;
    gw.signal("-INT");
    let exit = gw.wait_exit(Duration::from_secs(5)).await;
    assert_eq!(exit.code(), Some(130));
}

#[test]
fn bad_configuration_exits_2_naming_every_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .current_dir(std::env::temp_dir())
        .env_remove("TOLLGATE_BACKENDS")
        .env("TOLLGATE_HEALTH_INTERVAL", "5x")
        .env("TOLLGATE_LB_STRATEGY", "fastest")
        .args(["--retries", "99", "--listen", "localhost"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for var in [
        "TOLLGATE_HEALTH_INTERVAL",
        "TOLLGATE_LB_STRATEGY",
        "TOLLGATE_RETRIES",
        "TOLLGATE_LISTEN",
        "TOLLGATE_BACKENDS",
    ] {
        assert!(err.contains(var), "{var} not named in:\n{err}");
    }
    assert!(
        err.contains("\"5x\"") && err.contains("500ms"),
        "value or accepted form missing:\n{err}"
    );
}

#[test]
fn help_lists_every_setting() {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let readme = include_str!("../../README.md");
    let vars = tollgate::config::env_vars();
    assert!(vars.len() >= 19, "{vars:?}");
    for var in &vars {
        assert!(help.contains(var.as_str()), "{var} missing from --help");
        assert!(
            readme.contains(&format!("`{var}`")),
            "{var} missing from the README settings table"
        );
    }
}

#[actix_web::test]
async fn a_512_mib_upload_and_download_keep_memory_flat() {
    const SIZE: u64 = 512 * 1024 * 1024;
    let backend = TestBackend::start("big");
    let gw = GatewayProcess::spawn(
        &[backend.url()],
        &[
            "--health-interval",
            "1h",
            "--max-body-size",
            "1GiB",
            "--workers",
            "1",
        ],
    );
    gw.wait_ready().await;
    let c = client();

    let chunk = Bytes::from(vec![b'u'; 256 * 1024]);
    let chunks = futures_util::stream::iter(
        (0..SIZE / chunk.len() as u64).map(move |_| Ok::<_, actix_web::Error>(chunk.clone())),
    );
    let mut resp = c.post(gw.url("/upload")).send_stream(chunks).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["body_bytes"], SIZE);

    let mut resp = c.get(gw.url(&format!("/bytes?n={SIZE}"))).send().await.unwrap();
    let mut got = 0u64;
    use futures_util::StreamExt;
    while let Some(chunk) = resp.next().await {
        got += chunk.unwrap().len() as u64;
    }
    assert_eq!(got, SIZE);

    let peak_mib = gw.peak_rss_kib() / 1024;
    assert!(
        peak_mib < 64,
        "peak RSS {peak_mib} MiB while streaming {} MiB",
        SIZE >> 20
    );
}
