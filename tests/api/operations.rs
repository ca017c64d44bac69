//! What an operator relies on, against the real binary: `.env` and flag precedence, the
//! access-log line, the anonymous sweep, the drain delay, the shutdown timeout, `--demo` and
//! the `demo-backend` subcommand.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::helpers::*;

#[actix_web::test]
async fn dotenv_is_read_the_environment_beats_it_and_a_flag_beats_both() {
    let backend = TestBackend::start("from-dotenv");
    let dir = TempDir::new();
    std::fs::write(
        dir.0.join(".env"),
        format!(
            "TOLLGATE_BACKENDS={}\nTOLLGATE_DEFAULT_CAPACITY=5\nTOLLGATE_DEFAULT_RATE=0.5\n",
            backend.url()
        ),
    )
    .unwrap();
    let gw = GatewayProcess::builder()
        .current_dir(&dir.0)
        .env("TOLLGATE_DEFAULT_CAPACITY", "4")
        .env("TOLLGATE_DEFAULT_RATE", "1")
        .args(&["--default-capacity", "3", "--health-interval", "1h"])
        .spawn();
    gw.wait_ready().await;
    let mut resp = client().get(gw.url("/x")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // q: the flag's 3, not the environment's 4 nor .env's 5; w = 3 / 1 (the environment's
    // rate, not .env's 0.5, which would give 6).
    assert_eq!(
        resp.headers().get("ratelimit-policy").unwrap(),
        "\"default\";q=3;w=3"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["backend"], "from-dotenv", "the backend list came from .env");
}

#[actix_web::test]
async fn one_access_log_line_per_request_in_the_documented_format() {
    let backend = TestBackend::start("a");
    let gw = GatewayProcess::builder()
        .backends(&[backend.url()])
        .args(&["--health-interval", "1h"])
        .capture_stderr()
        .spawn();
    gw.wait_ready().await;
    let mut resp = client()
        .get(gw.url("/hello?secret=not-logged"))
        .insert_header(("x-request-id", "access-log-42"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sent = resp.body().await.unwrap().len();

    let line = gw
        .wait_log_line("the access-log line", |l| l.contains("access-log-42"))
        .await;
    // [<timestamp> INFO  tollgate::access] <id> <client> "<method> <path>" <status>
    //   backend=<url> <duration>us <bytes>B
    assert!(line.starts_with('['), "{line}");
    let (prefix, rest) = line.split_once("] ").unwrap();
    assert!(prefix.ends_with(" INFO  tollgate::access"), "{line}");
    let expected_start = format!(
        "access-log-42 127.0.0.1 \"GET /hello\" 200 backend={} ",
        backend.url()
    );
    assert!(rest.starts_with(&expected_start), "{line}");
    let tail: Vec<&str> = rest[expected_start.len()..].split(' ').collect();
    assert_eq!(tail.len(), 2, "nothing after the byte count on success: {line}");
    let micros = tail[0].strip_suffix("us").unwrap();
    assert!(micros.parse::<u64>().unwrap() > 0, "{line}");
    assert_eq!(tail[1], format!("{sent}B"), "{line}");
    assert!(!line.contains("secret"), "the query is not logged: {line}");
    // One line for one request.
    assert_eq!(gw.stderr().matches("access-log-42").count(), 1);
    // The listeners were the ones the test handed over (socket activation).
    assert!(
        gw.stderr().contains(&format!(
            "proxy: listening on the inherited socket 127.0.0.1:{} (fd 3)",
            gw.port
        )),
        "{}",
        gw.stderr()
    );
}

#[actix_web::test]
async fn anonymous_buckets_that_are_full_again_are_swept() {
    let backend = TestBackend::start("a");
    let gw = GatewayProcess::builder()
        .backends(&[backend.url()])
        .args(&[
            "--health-interval",
            "1h",
            "--default-capacity",
            "3",
            "--default-rate",
            "100",
            "--log",
            "info,tollgate::registry=debug",
        ])
        .capture_stderr()
        .spawn();
    gw.wait_ready().await;
    let c = client();
    for _ in 0..2 {
        assert_eq!(c.get(gw.url("/x")).send().await.unwrap().status(), 200);
    }
    // One address, one bucket: full again within 20 ms, then dropped by the next sweep.
    gw.wait_log_line("the sweep", |l| {
        l.contains("dropped 1 anonymous bucket(s) that were full again")
    })
    .await;
    assert!(!gw.stderr().contains("dropped 2"), "{}", gw.stderr());
}

#[actix_web::test]
async fn the_drain_delay_keeps_the_proxy_serving_while_readyz_says_draining() {
    let backend = TestBackend::start("a");
    let mut gw = GatewayProcess::spawn(
        &[backend.url()],
        &["--health-interval", "1h", "--drain-delay", "3s"],
    );
    gw.wait_ready().await;
    let signalled = Instant::now();
    gw.signal("-TERM");
    gw.wait_readyz(503).await;
    let c = client();
    let mut resp = c.get(gw.admin_url("/readyz")).send().await.unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_error_body(&body, resp.headers(), 503, "draining");
    // A new connection is still accepted and served during the delay.
    let resp = client().get(gw.url("/during-delay")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "too slow to observe the delay"
    );
    let exit = gw.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(exit.code(), Some(0));
    assert!(
        signalled.elapsed() >= Duration::from_secs(3),
        "exited before the drain delay: {:?}",
        signalled.elapsed()
    );
    assert_eq!(backend.proxied().len(), 1);
}

#[actix_web::test]
async fn a_request_longer_than_the_shutdown_timeout_is_cut_and_the_process_exits() {
    let backend = TestBackend::start("slow");
    let mut gw = GatewayProcess::spawn(
        &[backend.url()],
        &["--health-interval", "1h", "--shutdown-timeout", "1s"],
    );
    gw.wait_ready().await;
    let c = client();
    let url = gw.url("/slow?sleep_ms=30000");
    let in_flight = actix_rt::spawn(async move {
        match c.get(url).send().await {
            Ok(mut resp) => {
                let body = resp.body().await;
                Some((resp.status().as_u16(), body.is_ok()))
            }
            Err(_) => None,
        }
    });
    eventually("slow request at the backend", Duration::from_secs(10), || async {
        backend.arrived() == 1
    })
    .await;
    let signalled = Instant::now();
    gw.signal("-TERM");
    let exit = gw.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(exit.code(), Some(0));
    assert!(
        signalled.elapsed() < Duration::from_secs(8),
        "exit took {:?}",
        signalled.elapsed()
    );
    let outcome = in_flight.await.unwrap();
    assert!(
        !matches!(outcome, Some((200, true))),
        "the request outlived the shutdown timeout: {outcome:?}"
    );
}

#[actix_web::test]
async fn demo_starts_three_backends_that_answer_in_turn() {
    let gw = GatewayProcess::builder().args(&["--demo"]).spawn();
    gw.wait_ready().await;
    let c = client();
    let mut names = Vec::new();
    for _ in 0..3 {
        let mut resp = c.get(gw.url("/hello?x=1")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers().get("ratelimit-policy").unwrap(),
            "\"default\";q=10000;w=1"
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["method"], "GET");
        assert_eq!(body["path"], "/hello");
        assert_eq!(body["query"], "x=1");
        assert_eq!(body["headers"]["x-forwarded-for"], "127.0.0.1");
        names.push(body["backend"].as_str().unwrap().to_string());
    }
    names.sort();
    assert_eq!(names, ["demo-1", "demo-2", "demo-3"]);
    let mut resp = c.get(gw.admin_url("/backends")).send().await.unwrap();
    let v: Value = resp.json().await.unwrap();
    let backends = v["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 3);
    assert!(backends.iter().all(|b| b["healthy"] == true), "{v}");
}

/// A child process killed when the test ends.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[actix_web::test]
async fn the_demo_backend_subcommand_echoes_what_it_received() {
    let mut child = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .current_dir(std::env::temp_dir())
            .env_remove("RUST_LOG")
            .args(["demo-backend", "--listen", "127.0.0.1:0", "--name", "solo"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let log: Arc<Mutex<String>> = Arc::default();
    let sink = log.clone();
    let pipe = child.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let mut url = String::new();
    eventually("the demo backend's address", Duration::from_secs(10), || {
        let found = log.lock().unwrap().lines().find_map(|l| {
            l.split_once("demo backend solo listening on ")
                .map(|(_, u)| u.trim().to_string())
        });
        if let Some(u) = found {
            url = u;
        }
        std::future::ready(!url.is_empty())
    })
    .await;

    let mut resp = client()
        .post(format!("{url}/ping?a=b"))
        .insert_header(("x-test", "yes"))
        .send_body("12345")
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["backend"], "solo");
    assert_eq!(body["method"], "POST");
    assert_eq!(body["path"], "/ping");
    assert_eq!(body["query"], "a=b");
    assert_eq!(body["body_bytes"], 5);
    assert_eq!(body["headers"]["x-test"], "yes");

    // It stops by itself on SIGTERM.
    let ok = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "demo backend did not stop"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
}

/// SQLite's write-ahead log is copied into the file in the background (an admin write never
/// pays for it) and so reused from its start: its checkpoint sequence number (bytes 12-15 of
/// its header) moves while writes go on. With no checkpoint at all it would never move and
/// the log would grow without bound; with only passive checkpoints, writes landing during each
/// one could keep it from ever being wholly copied (a loaded CI run saw that), so the writes
/// here never pause.
#[actix_web::test]
async fn the_sqlite_write_ahead_log_is_checkpointed_in_the_background() {
    let db = TestDb::sqlite();
    let TestDb::Sqlite(path) = &db else { unreachable!() };
    let wal = std::path::PathBuf::from(format!("{}-wal", path.display()));
    let backend = TestBackend::start("a");
    let gw = GatewayProcess::builder()
        .backends(&[backend.url()])
        .database_url(&db.url())
        .spawn();
    gw.wait_ready().await;
    let sequence = || {
        let header = std::fs::read(&wal).unwrap_or_default();
        header
            .get(12..16)
            .map(|b| u32::from_be_bytes(b.try_into().unwrap()))
    };
    let c = client();
    let write = |n: usize| {
        let body = serde_json::json!({"client_id": format!("c{n}"), "capacity": 1, "rate_per_sec": 1});
        let req = c.post(gw.admin_url("/clients"));
        async move { assert_eq!(req.send_json(&body).await.unwrap().status(), 201) }
    };
    write(0).await;
    let first = sequence().expect("a write-ahead log after a write");
    let since = std::time::Instant::now();
    let mut n = 1;
    // Writes without a pause, four at a time: some land during every checkpoint.
    while sequence() == Some(first) {
        assert!(
            since.elapsed() < Duration::from_secs(20),
            "the write-ahead log was never checkpointed and restarted"
        );
        futures_util::future::join_all((n..n + 4).map(write)).await;
        n += 4;
    }
}
