//! The in-test HTTP backend: an actix-web server on its own thread that records what it saw.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        mpsc, Arc, Mutex,
    },
    time::Duration,
};

use actix_web::{dev::ServerHandle, web, App, HttpRequest, HttpResponse, HttpServer};
use futures_util::StreamExt;
use serde_json::json;

use super::RefusingPort;

/// Serves `handler` (with `web::Data<S>` of `state` and `web::Data<String>` of `name` as app
/// data) on `listener`, one worker, on a thread and System of its own, so that a test can stop
/// it; returns its handle and thread.
pub fn serve_on_own_thread<S, H, Args>(
    listener: std::net::TcpListener,
    state: Arc<S>,
    name: &str,
    handler: H,
) -> (ServerHandle, std::thread::JoinHandle<()>)
where
    S: Send + Sync + 'static,
    H: actix_web::Handler<Args> + Clone + Send + 'static,
    Args: actix_web::FromRequest + 'static,
    H::Output: actix_web::Responder + 'static,
{
    let (tx, rx) = mpsc::channel();
    let name = name.to_string();
    let thread = std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let data = web::Data::from(state);
            let name = web::Data::new(name);
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(data.clone())
                    .app_data(name.clone())
                    .default_service(web::to(handler.clone()))
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
    (rx.recv().unwrap(), thread)
}

/// What a test backend saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
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
    /// The port, reserved from start to drop: refused, never free, while the backend is dead.
    port: Option<RefusingPort>,
    handle: ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestBackend {
    /// Starts a backend on a free port.
    pub fn start(name: &str) -> TestBackend {
        Self::start_on(name, RefusingPort::new())
    }

    /// Starts a backend on a reserved port (the one [`TestBackend::kill`] gave back, to
    /// restart a backend where it was).
    pub fn start_on(name: &str, port: RefusingPort) -> TestBackend {
        let listener = port.listener();
        let addr = port.addr();
        let state = Arc::new(BackendState::default());
        let (handle, thread) = serve_on_own_thread(listener, state.clone(), name, backend_handler);
        TestBackend {
            name: name.to_string(),
            addr,
            state,
            port: Some(port),
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

    /// Kills the backend at once: listener closed, connections dropped. Its port stays
    /// reserved (connections refused) in the value returned, for [`TestBackend::start_on`].
    pub fn kill(mut self) -> RefusingPort {
        self.stop_now();
        self.port.take().unwrap()
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
        query: req.query_string().to_string(),
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
