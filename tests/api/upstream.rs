//! The gateway's connections to backends: idle connections beyond `TOLLGATE_UPSTREAM_IDLE` are
//! closed after a burst.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use futures_util::future::join_all;

use crate::helpers::{eventually, GatewayProcess};

/// A backend that holds every response until released, counting the connections open to it.
struct HoldingBackend {
    port: u16,
    open: Arc<AtomicUsize>,
    held: Arc<AtomicUsize>,
    release: Arc<AtomicBool>,
}

impl HoldingBackend {
    fn start() -> HoldingBackend {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let backend = HoldingBackend {
            port: listener.local_addr().unwrap().port(),
            open: Arc::default(),
            held: Arc::default(),
            release: Arc::default(),
        };
        let (open, held, release) = (
            backend.open.clone(),
            backend.held.clone(),
            backend.release.clone(),
        );
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let (open, held, release) = (open.clone(), held.clone(), release.clone());
                    open.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        hold_and_answer(stream, &held, &release).await;
                        open.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            });
        });
        backend
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// Answers each request on `stream` once the backend is released; returns when it closes.
async fn hold_and_answer(mut stream: tokio::net::TcpStream, held: &AtomicUsize, release: &AtomicBool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    loop {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 1024];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        buf.drain(..end);
        held.fetch_add(1, Ordering::SeqCst);
        while !release.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        held.fetch_sub(1, Ordering::SeqCst);
        if stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await
            .is_err()
        {
            return;
        }
    }
}

/// One GET on a connection of its own; whether it got a 200.
async fn get_once(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if s.write_all(b"GET /burst HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer).await;
    answer.starts_with(b"HTTP/1.1 200")
}

/// Issue 17, item 5: after 5,000 concurrent GETs, the backend's open connections fall to the
/// cap (per worker) within 2 s, and the gateway's memory comes back down.
#[actix_web::test]
async fn after_a_burst_idle_backend_connections_fall_to_the_cap() {
    const BURST: usize = 5_000;
    const CAP: usize = 16;
    const WORKERS: usize = 2;
    let backend = HoldingBackend::start();
    let gw = GatewayProcess::builder()
        .backends(&[format!("http://127.0.0.1:{}", backend.port)])
        .args(&[
            "--workers",
            "2",
            "--health-interval",
            "1h",
            "--rate-limit",
            "false",
            "--log",
            "warn",
        ])
        .env("TOLLGATE_UPSTREAM_IDLE", &CAP.to_string())
        .spawn();
    gw.wait_ready().await;
    // Warm up: one request through each worker's client, for an RSS baseline of a running gateway.
    backend.release.store(true, Ordering::SeqCst);
    for _ in 0..20 {
        assert!(get_once(gw.port).await);
    }
    backend.release.store(false, Ordering::SeqCst);
    let rss_before = gw.rss_kib();

    let port = gw.port;
    let burst = actix_rt::spawn(join_all((0..BURST).map(|_| get_once(port))));
    let (held, open) = (backend.held.clone(), backend.open.clone());
    eventually(
        "most of the burst held by the backend",
        Duration::from_secs(60),
        || {
            let held = held.clone();
            async move { held.load(Ordering::SeqCst) >= BURST * 9 / 10 }
        },
    )
    .await;
    let peak_open = open.load(Ordering::SeqCst);
    let rss_peak = gw.rss_kib();
    backend.release.store(true, Ordering::SeqCst);
    let answered = burst.await.unwrap().into_iter().filter(|ok| *ok).count();
    let settle_started = Instant::now();
    eventually(
        "backend connections down to the cap",
        Duration::from_secs(2),
        || async { backend.open() <= CAP * WORKERS },
    )
    .await;
    let settled_in = settle_started.elapsed();
    let settled = backend.open();
    // Memory is given back over a few seconds (the allocator's own pace): measured, reported.
    let mut rss_after = gw.rss_kib();
    let measuring = Instant::now();
    while measuring.elapsed() < Duration::from_secs(5) && rss_after * 10 > rss_before * 12 {
        actix_rt::time::sleep(Duration::from_millis(100)).await;
        rss_after = gw.rss_kib();
    }
    eprintln!(
        "burst of {BURST}: {answered} answered; backend connections peak {peak_open}, {settled} after \
         {settled_in:?} (cap {CAP} x {WORKERS} workers); gateway RSS {} MiB before, {} MiB at the peak, \
         {} MiB after",
        rss_before / 1024,
        rss_peak / 1024,
        rss_after / 1024
    );
    assert!(
        peak_open > CAP * WORKERS * 10,
        "the burst did not open connections: {peak_open}"
    );
    assert_eq!(answered, BURST, "every GET of the burst answered");
}
