//! The gateway as a child process (the real binary): start-up, signals, exit codes, memory.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::{client, dead_port, eventually, TestDb};

/// The `tollgate` binary running as a child process; killed when dropped.
pub struct GatewayProcess {
    child: Child,
    pub port: u16,
    pub admin_port: u16,
    _db: Option<TestDb>,
}

impl GatewayProcess {
    pub fn spawn(backends: &[String], extra: &[&str]) -> GatewayProcess {
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

    pub fn peak_rss_kib(&self) -> u64 {
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
