//! The gateway in-process on port 0, and the awc client the tests speak to it with.

use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use tollgate::{
    config::{Cli, Settings},
    startup::Application,
};

use super::{eventually, TestDb};

/// Health checks every 100 ms, three failures to eject, two passes to re-admit: a dead
/// backend is down within a second.
pub const FAST_CHECKS: [&str; 8] = [
    "--health-interval",
    "100ms",
    "--health-timeout",
    "100ms",
    "--unhealthy-threshold",
    "3",
    "--healthy-threshold",
    "2",
];

/// The gateway, in-process, on free ports.
pub struct TestGateway {
    pub port: u16,
    pub admin_port: u16,
    pub client: awc::Client,
    /// The database of a gateway spawned without one of the test's own.
    _db: Option<TestDb>,
}

/// Starts the gateway with `backends` and extra flags (`--flag value` pairs), on a SQLite
/// database of its own.
pub async fn spawn_gateway(backends: &[String], flags: &[&str]) -> TestGateway {
    let db = TestDb::sqlite();
    let mut gw = spawn_gateway_db(backends, flags, &db.url()).await;
    gw._db = Some(db);
    gw
}

/// Starts the gateway on the database at `database_url`.
pub async fn spawn_gateway_db(backends: &[String], flags: &[&str], database_url: &str) -> TestGateway {
    let gw = start_gateway(backends, flags, database_url).await;
    gw.wait_ready().await;
    gw
}

/// Starts the gateway on a SQLite database of its own without waiting for `/readyz`.
pub async fn spawn_gateway_unready(backends: &[String], flags: &[&str]) -> TestGateway {
    let db = TestDb::sqlite();
    let mut gw = start_gateway(backends, flags, &db.url()).await;
    gw._db = Some(db);
    gw
}

/// Builds and starts the gateway; `--listen` in `flags` replaces the default `127.0.0.1:0`.
async fn start_gateway(backends: &[String], flags: &[&str], database_url: &str) -> TestGateway {
    let backends = backends.join(",");
    let mut args = vec!["tollgate"];
    if !flags.contains(&"--listen") {
        args.extend_from_slice(&["--listen", "127.0.0.1:0"]);
    }
    args.extend_from_slice(&[
        "--admin-listen",
        "127.0.0.1:0",
        "--backends",
        &backends,
        "--workers",
        "2",
        "--log",
        "warn",
        "--database-url",
        database_url,
    ]);
    // Tests of the proxy path send hundreds of requests from one address: unless a test is
    // about rate limiting, it is off.
    if !flags.contains(&"--rate-limit") {
        args.extend_from_slice(&["--rate-limit", "false"]);
    }
    args.extend_from_slice(flags);
    let cli = Cli::try_parse_from(&args).unwrap();
    let settings = Settings::from_cli(&cli).unwrap();
    let app = Application::build(settings).await.unwrap();
    let (port, admin_port) = (app.port(), app.admin_port());
    actix_rt::spawn(app.run_until_stopped());
    TestGateway {
        port,
        admin_port,
        client: client(),
        _db: None,
    }
}

/// An awc client with a generous timeout and no redirects.
pub fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .disable_redirects()
        .finish()
}

impl TestGateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// GET through the proxy: status, headers and JSON (or Null) body.
    pub async fn get(&self, path: &str) -> (u16, awc::http::header::HeaderMap, Value) {
        Self::fetch(self.client.get(self.url(path))).await
    }

    /// GET through the proxy with an API key.
    pub async fn get_with_key(&self, path: &str, key: &str) -> (u16, awc::http::header::HeaderMap, Value) {
        Self::fetch(self.client.get(self.url(path)).insert_header(("x-api-key", key))).await
    }

    /// GET through the proxy with one extra header.
    pub async fn get_with_header(
        &self,
        path: &str,
        name: &str,
        value: &str,
    ) -> (u16, awc::http::header::HeaderMap, Value) {
        Self::fetch(self.client.get(self.url(path)).insert_header((name, value))).await
    }

    async fn fetch(req: awc::ClientRequest) -> (u16, awc::http::header::HeaderMap, Value) {
        let mut resp = req.send().await.unwrap();
        let body = resp.body().limit(1 << 20).await.unwrap();
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (resp.status().as_u16(), resp.headers().clone(), json)
    }

    /// `GET /backends` from the admin API.
    pub async fn backends(&self) -> Vec<Value> {
        let mut resp = self.client.get(self.admin_url("/backends")).send().await.unwrap();
        let v: Value = resp.json().await.unwrap();
        v["backends"].as_array().unwrap().clone()
    }

    /// Polls `/readyz` until 200 (first health round done).
    pub async fn wait_ready(&self) {
        eventually("gateway ready", Duration::from_secs(10), || async {
            matches!(self.client.get(self.admin_url("/readyz")).send().await, Ok(r) if r.status() == 200)
        })
        .await;
    }

    /// Polls `/backends` until backend `url` has `healthy == want`.
    pub async fn wait_health(&self, url: &str, want: bool) {
        eventually(
            &format!("{url} healthy={want}"),
            Duration::from_secs(10),
            || async {
                self.backends()
                    .await
                    .iter()
                    .any(|b| b["url"] == url && b["healthy"] == want)
            },
        )
        .await;
    }
}
