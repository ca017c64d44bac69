//! The gateway as a child process (the real binary): start-up, signals, exit codes, memory.
//!
//! The test binds the proxy and admin listeners itself and hands them over as fds 3 and 4
//! (systemd socket activation, `LISTEN_FDS=2`), so the ports are known before the child runs
//! and no other process can take them in between.

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    os::fd::OwnedFd,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use command_fds::{CommandFdExt, FdMapping};

use super::{client, eventually, TestDb};

/// The `tollgate` binary running as a child process; killed when dropped.
pub struct GatewayProcess {
    child: Child,
    pub port: u16,
    pub admin_port: u16,
    /// Everything written to stderr so far (when captured).
    stderr: Arc<Mutex<String>>,
    _db: Option<TestDb>,
}

/// How to start a [`GatewayProcess`]: backends, flags, environment, working directory.
pub struct ProcessBuilder {
    args: Vec<String>,
    env: Vec<(String, String)>,
    dir: PathBuf,
    database_url: Option<String>,
    capture_stderr: bool,
}

impl ProcessBuilder {
    /// Adds `--backends` with these URLs.
    pub fn backends(mut self, backends: &[String]) -> ProcessBuilder {
        self.args.push("--backends".into());
        self.args.push(backends.join(","));
        self
    }

    /// Adds command-line arguments.
    pub fn args(mut self, args: &[&str]) -> ProcessBuilder {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Sets an environment variable of the child.
    pub fn env(mut self, key: &str, value: &str) -> ProcessBuilder {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs the child in `dir` (where it reads `.env`); the default is the temporary directory.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> ProcessBuilder {
        self.dir = dir.into();
        self
    }

    /// Uses this database (default: a SQLite file of the process's own).
    pub fn database_url(mut self, url: &str) -> ProcessBuilder {
        self.database_url = Some(url.into());
        self
    }

    /// Keeps the child's stderr (the log) for [`GatewayProcess::stderr`].
    pub fn capture_stderr(mut self) -> ProcessBuilder {
        self.capture_stderr = true;
        self
    }

    /// Binds the two listeners and starts the child on them.
    pub fn spawn(self) -> GatewayProcess {
        let (db, database_url) = match self.database_url {
            Some(url) => (None, url),
            None => {
                let db = TestDb::sqlite();
                let url = db.url();
                (Some(db), url)
            }
        };
        let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").unwrap();
        let (port, admin_port) = (
            proxy.local_addr().unwrap().port(),
            admin.local_addr().unwrap().port(),
        );
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
        if !self.args.iter().any(|a| a == "--log") {
            cmd.args(["--log", "info"]);
        }
        cmd.current_dir(&self.dir)
            .env_remove("RUST_LOG")
            .env("LISTEN_FDS", "2")
            .env_remove("LISTEN_PID")
            .args(["--database-url", &database_url])
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(if self.capture_stderr {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        // command-fds moves the sockets to fds 3 and 4 in the child (dup2 between fork and
        // exec), so the test code needs no `unsafe` of its own.
        cmd.fd_mappings(vec![
            FdMapping {
                parent_fd: OwnedFd::from(proxy),
                child_fd: 3,
            },
            FdMapping {
                parent_fd: OwnedFd::from(admin),
                child_fd: 4,
            },
        ])
        .unwrap();
        let mut child = cmd.spawn().unwrap();
        // The parent's copies close here: once the child closes its listeners, connections
        // are refused rather than queued on a socket nobody accepts on.
        drop(cmd);
        let stderr: Arc<Mutex<String>> = Arc::default();
        if let Some(pipe) = child.stderr.take() {
            let sink = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { return };
                    let mut s = sink.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
            });
        }
        GatewayProcess {
            child,
            port,
            admin_port,
            stderr,
            _db: db,
        }
    }
}

impl GatewayProcess {
    /// A builder with nothing set (no `--backends`).
    pub fn builder() -> ProcessBuilder {
        ProcessBuilder {
            args: Vec::new(),
            env: Vec::new(),
            dir: std::env::temp_dir(),
            database_url: None,
            capture_stderr: false,
        }
    }

    /// Starts the gateway with `backends` and extra flags on a SQLite database of its own.
    pub fn spawn(backends: &[String], extra: &[&str]) -> GatewayProcess {
        Self::builder().backends(backends).args(extra).spawn()
    }

    /// Starts the gateway with `backends` and extra flags on the database at `database_url`.
    pub fn spawn_db(backends: &[String], extra: &[&str], database_url: &str) -> GatewayProcess {
        Self::builder()
            .backends(backends)
            .args(extra)
            .database_url(database_url)
            .spawn()
    }

    /// The child's stderr so far (empty unless captured).
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Polls the captured stderr until a line satisfies `pred`; returns that line.
    pub async fn wait_log_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let mut found = None;
        eventually(what, Duration::from_secs(10), || {
            found = self.stderr().lines().find(|l| pred(l)).map(str::to_string);
            std::future::ready(found.is_some())
        })
        .await;
        found.unwrap()
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The status of a proxied GET with API key `key` (its body read); 0 when the connection
    /// failed.
    pub async fn status_with_key(&self, key: &str) -> u16 {
        match crate::helpers::client()
            .get(self.url("/keyed"))
            .insert_header(("x-api-key", key))
            .send()
            .await
        {
            Ok(mut r) => {
                let _ = r.body().await;
                r.status().as_u16()
            }
            Err(_) => 0,
        }
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    pub async fn wait_ready(&self) {
        self.wait_readyz(200).await;
    }

    /// Polls `/readyz` until it answers `status` (200 ready, 503 draining).
    /// At the deadline it panics with the gateway's log (when captured).
    pub async fn wait_readyz(&self, status: u16) {
        let c = client();
        let url = self.admin_url("/readyz");
        let start = std::time::Instant::now();
        while !matches!(c.get(&url).send().await, Ok(r) if r.status().as_u16() == status) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out waiting for readyz {status}; the gateway's log:\n{}",
                self.stderr()
            );
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Resident memory now (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// Highest resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
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
