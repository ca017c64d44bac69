//! Test fixtures: the real gateway on port 0, in-test backends on port 0, a raw HTTP client.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        mpsc, Arc, Mutex,
    },
    time::{Duration, Instant},
};

use actix_web::{dev::ServerHandle, web, App, HttpRequest, HttpResponse, HttpServer};
use clap::Parser;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tollgate::{
    config::{Cli, Settings},
    startup::Application,
};

/// What a test backend saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, Vec<String>>,
}

#[derive(Default)]
struct BackendState {
    hits: AtomicUsize,
    /// Requests that arrived, counted before the handler does anything slow.
    arrived: AtomicUsize,
    /// Delay before every answer but health checks.
    delay_ms: AtomicU64,
    seen: Mutex<Vec<Seen>>,
}

/// An actix-web backend on its own thread and System, so that a test can kill it.
pub struct TestBackend {
    pub name: String,
    pub addr: SocketAddr,
    state: Arc<BackendState>,
    handle: ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestBackend {
    /// Starts a backend on a free port.
    pub fn start(name: &str) -> TestBackend {
        Self::start_on(name, 0)
    }

    /// Starts a backend on `port` (0 = any free port).
    pub fn start_on(name: &str, port: u16) -> TestBackend {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind test backend");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(BackendState::default());
        let (tx, rx) = mpsc::channel();
        let (st, nm) = (state.clone(), name.to_string());
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let data = web::Data::from(st);
                let name = web::Data::new(nm);
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .app_data(name.clone())
                        .default_service(web::to(backend_handler))
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
        TestBackend {
            name: name.to_string(),
            addr,
            state,
            handle,
            thread: Some(thread),
        }
    }

    /// Base URL for `TOLLGATE_BACKENDS`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Makes every proxied answer wait `ms` first.
    pub fn set_delay_ms(&self, ms: u64) {
        self.state.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Proxied requests fully handled (health checks excluded).
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// Requests that arrived (a slow one counts here before it answers).
    pub fn arrived(&self) -> usize {
        self.state.arrived.load(Ordering::SeqCst)
    }

    /// Everything the backend saw, in order (health checks included).
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Proxied requests only (not health checks).
    pub fn proxied(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.path != "/" && s.path != "/health")
            .collect()
    }

    /// Kills the backend at once: listener closed, connections dropped.
    pub fn kill(mut self) -> u16 {
        self.stop_now();
        self.addr.port()
    }

    fn stop_now(&mut self) {
        let handle = self.handle.clone();
        // Run the stop on a throwaway runtime: the caller may be inside another System.
        std::thread::spawn(move || actix_rt::System::new().block_on(handle.stop(false)))
            .join()
            .unwrap();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop_now();
        }
    }
}

async fn backend_handler(
    req: HttpRequest,
    mut body: web::Payload,
    state: web::Data<BackendState>,
    name: web::Data<String>,
) -> HttpResponse {
    // Health checks (GET /) are not counted as traffic.
    let counted = req.path() != "/";
    if counted {
        state.arrived.fetch_add(1, Ordering::SeqCst);
    }
    let mut body_bytes = 0u64;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => body_bytes += c.len() as u64,
            Err(_) => return HttpResponse::BadRequest().finish(),
        }
    }
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in req.headers() {
        headers
            .entry(k.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let seen = Seen {
        method: req.method().to_string(),
        path: req.path().to_string(),
        headers: headers.clone(),
    };
    state.seen.lock().unwrap().push(seen);
    let query: BTreeMap<String, String> =
        web::Query::<BTreeMap<String, String>>::from_query(req.query_string())
            .map(|q| q.into_inner())
            .unwrap_or_default();
    let delay = query
        .get("sleep_ms")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(state.delay_ms.load(Ordering::SeqCst));
    if counted && delay > 0 {
        actix_rt::time::sleep(Duration::from_millis(delay)).await;
    }
    if counted {
        state.hits.fetch_add(1, Ordering::SeqCst);
    }
    match req.path() {
        "/bytes" => {
            // Streams `n` bytes in 64 KiB chunks, never held whole.
            let n: u64 = query.get("n").and_then(|v| v.parse().ok()).unwrap_or(0);
            let chunk = web::Bytes::from(vec![b'x'; 64 * 1024]);
            let chunks = futures_util::stream::unfold(n, move |left| {
                let chunk = chunk.clone();
                async move {
                    if left == 0 {
                        return None;
                    }
                    let take = left.min(chunk.len() as u64);
                    Some((
                        Ok::<_, actix_web::Error>(chunk.slice(..take as usize)),
                        left - take,
                    ))
                }
            });
            HttpResponse::Ok()
                .insert_header(("content-length", n.to_string()))
                .streaming(chunks)
        }
        "/status" => {
            let code: u16 = query.get("code").and_then(|v| v.parse().ok()).unwrap_or(200);
            HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap())
                .insert_header(("x-backend", name.get_ref().clone()))
                .body(format!("backend says {code}"))
        }
        _ => HttpResponse::Ok().json(json!({
            "backend": name.get_ref(),
            "method": req.method().as_str(),
            "path": req.path(),
            "body_bytes": body_bytes,
        })),
    }
}

/// How a raw backend treats each connection.
#[derive(Clone, Copy, Debug)]
pub enum RawMode {
    /// Read the request (head and declared body), then close without answering.
    DieAfterReceiving,
    /// Answer with `Content-Length: 100000`, send 10 bytes, then reset.
    ResetMidResponse,
    /// Answer with hop-by-hop headers, one of them named in `Connection`, and ids of its own.
    HopHeaders,
    /// Answer `304 Not Modified` with a `Content-Length` (allowed; there is still no body).
    NotModified,
}

/// A backend speaking raw TCP, for failures no HTTP framework would produce.
pub struct RawBackend {
    pub addr: SocketAddr,
    received: Arc<AtomicUsize>,
}

impl RawBackend {
    pub fn start(mode: RawMode) -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(AtomicUsize::new(0));
        let count = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let count = count.clone();
                std::thread::spawn(move || {
                    let Some(head) = read_request(&mut stream) else {
                        return;
                    };
                    // Health checks (GET /) are answered normally so the backend stays in.
                    if head.starts_with("GET / ") {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                        return;
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    match mode {
                        RawMode::DieAfterReceiving => drop(stream),
                        RawMode::HopHeaders => {
                            let _ = stream.write_all(
                                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close, x-resp-hop\r\n\
                                  x-resp-hop: secret\r\nkeep-alive: timeout=5\r\nx-end-to-end: kept\r\n\
                                  x-request-id: backend-own-id\r\n\r\nok",
                            );
                        }
                        RawMode::NotModified => {
                            let _ = stream.write_all(
                                b"HTTP/1.1 304 Not Modified\r\ncontent-length: 1234\r\netag: \"v1\"\r\n\r\n",
                            );
                        }
                        RawMode::ResetMidResponse => {
                            let _ = stream
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n0123456789");
                            let _ = stream.flush();
                            std::thread::sleep(Duration::from_millis(50));
                            drop(stream);
                        }
                    }
                });
            }
        });
        RawBackend { addr, received }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Proxied requests received (health checks excluded).
    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

/// Reads one request head and its `Content-Length` body; returns the head.
fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).ok()?;
    Some(head)
}

/// A port with nothing listening on it.
pub fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A database of its own for one test: a SQLite file, or a PostgreSQL database created from a
/// migrated template. Removed (dropped) when the test ends.
pub enum TestDb {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const PG_TEMPLATE: &str = "tollgate_test_template";

fn pg_admin() -> diesel::PgConnection {
    use diesel::Connection;
    diesel::PgConnection::establish(PG_ADMIN_URL)
        .unwrap_or_else(|e| panic!("PostgreSQL must run on 127.0.0.1:5432 for these tests: {e}"))
}

/// Creates the migrated template once per test process; serialises `CREATE DATABASE`, which
/// refuses a template that another `CREATE DATABASE` is copying.
fn pg_template_lock() -> std::sync::MutexGuard<'static, ()> {
    use diesel::RunQueryDsl;
    static TEMPLATE: std::sync::OnceLock<Mutex<()>> = std::sync::OnceLock::new();
    let lock = TEMPLATE.get_or_init(|| {
        let mut admin = pg_admin();
        diesel::sql_query(format!("DROP DATABASE IF EXISTS {PG_TEMPLATE} WITH (FORCE)"))
            .execute(&mut admin)
            .unwrap();
        diesel::sql_query(format!("CREATE DATABASE {PG_TEMPLATE}"))
            .execute(&mut admin)
            .unwrap();
        let url = tollgate::store::DatabaseUrl::Postgres(
            format!("postgres://postgres@127.0.0.1:5432/{PG_TEMPLATE}").into(),
        );
        // Runs the migrations; the pool is dropped so that no session holds the template.
        drop(
            tollgate::store::connect_with_retry(&url, Duration::from_secs(5), Duration::from_secs(5))
                .unwrap(),
        );
        Mutex::new(())
    });
    lock.lock().unwrap_or_else(|p| p.into_inner())
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        TestDb::Sqlite(
            std::env::temp_dir().join(format!("tollgate-test-{}.db", uuid::Uuid::new_v4().simple())),
        )
    }

    pub fn postgres() -> TestDb {
        use diesel::RunQueryDsl;
        let name = format!("tollgate_test_{}", uuid::Uuid::new_v4().simple());
        let _guard = pg_template_lock();
        diesel::sql_query(format!("CREATE DATABASE {name} TEMPLATE {PG_TEMPLATE}"))
            .execute(&mut pg_admin())
            .unwrap();
        TestDb::Postgres(name)
    }

    /// `DATABASE_URL` for the gateway.
    pub fn url(&self) -> String {
        self.url_via(5432)
    }

    /// The URL through a relay on `port` (PostgreSQL only).
    pub fn url_via(&self, port: u16) -> String {
        match self {
            TestDb::Sqlite(path) => format!("sqlite://{}", path.display()),
            TestDb::Postgres(name) => format!("postgres://postgres@127.0.0.1:{port}/{name}"),
        }
    }

    /// A direct connection, to check what is stored.
    pub fn connect(&self) -> tollgate::store::DbConnection {
        use diesel::Connection;
        use tollgate::store::DbConnection;
        match self {
            TestDb::Sqlite(path) => DbConnection::Sqlite(
                diesel::SqliteConnection::establish(&path.display().to_string()).unwrap(),
            ),
            TestDb::Postgres(_) => DbConnection::Pg(diesel::PgConnection::establish(&self.url()).unwrap()),
        }
    }

    /// The stored row of client `id`.
    pub fn client_row(&self, id: &str) -> Option<tollgate::store::ClientRow> {
        use diesel::prelude::*;
        use tollgate::store::{schema::clients, ClientRow};
        clients::table
            .find(id)
            .select(ClientRow::as_select())
            .first(&mut self.connect())
            .optional()
            .unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match self {
            TestDb::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            TestDb::Postgres(name) => {
                use diesel::RunQueryDsl;
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut pg_admin());
            }
        }
    }
}

/// Runs a test body once against SQLite and once against PostgreSQL.
#[macro_export]
macro_rules! both_databases {
    ($name:ident) => {
        mod $name {
            #[actix_web::test]
            async fn sqlite() {
                super::$name($crate::helpers::TestDb::sqlite()).await
            }
            #[actix_web::test]
            async fn postgres() {
                super::$name($crate::helpers::TestDb::postgres()).await
            }
        }
    };
}

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
    let backends = backends.join(",");
    let mut args = vec![
        "tollgate",
        "--listen",
        "127.0.0.1:0",
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
    ];
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
    let gw = TestGateway {
        port,
        admin_port,
        client: client(),
        _db: None,
    };
    gw.wait_ready().await;
    gw
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

/// Polls `check` every 20 ms until it holds; panics with `what` at the deadline.
pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends raw bytes to `port` and reads the whole answer (the request should ask to close).
pub fn raw_request(port: u16, request: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Asserts the gateway's JSON error body and that its request id matches the header.
pub fn assert_error_body(body: &Value, headers: &awc::http::header::HeaderMap, code: u16, error: &str) {
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    let rid = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(!rid.is_empty());
    assert_eq!(body["request_id"], rid, "{body}");
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4, "{body}");
}

/// A TCP relay to PostgreSQL that a test can cut (every connection closed, new ones closed at
/// once) and restore, to simulate a database outage without touching the shared server.
pub struct Relay {
    pub port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    pub fn to_postgres() -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (up2, open2) = (up.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect("127.0.0.1:5432") else {
                    continue;
                };
                {
                    let mut o = open2.lock().unwrap();
                    o.push(client.try_clone().unwrap());
                    o.push(server.try_clone().unwrap());
                }
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Relay { port, up, open }
    }

    /// Closes every relayed connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Relays new connections again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
