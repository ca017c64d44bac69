//! The gateway as a process: start-up validation, graceful shutdown, memory under a big upload.

use std::{process::Command, time::Duration};

use actix_web::web::Bytes;

use crate::helpers::*;

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
        .env("TOLLGATE_BACKENDS", "ftp://x")
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
    let settings = include_str!("../../docs/settings.md");
    let vars = tollgate::config::env_vars();
    assert!(vars.len() >= 19, "{vars:?}");
    for var in &vars {
        assert!(help.contains(var.as_str()), "{var} missing from --help");
        assert!(
            settings.contains(&format!("`{var}`")),
            "{var} missing from the settings table in docs/settings.md"
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
