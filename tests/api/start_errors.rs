//! Start errors after validation: one clear line on stderr and exit 1, never a panic.

use std::{
    net::TcpListener,
    process::Command,
    time::{Duration, Instant},
};

use crate::helpers::TestDb;

/// Starts the binary with `flag` on an address this test holds bound, the other listener on
/// port 0 and logging off: what is left on stderr is what the gateway prints itself.
fn start_on_a_taken_address(flag: &str, what: &str, database_url: &str) -> Duration {
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().to_string();
    let other = if flag == "--listen" {
        "--admin-listen"
    } else {
        "--listen"
    };
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .current_dir(std::env::temp_dir())
        .env_remove("RUST_LOG")
        .env("RUST_BACKTRACE", "1")
        .args(["--backends", "http://127.0.0.1:9"])
        .args(["--database-url", database_url])
        .args(["--log", "off"])
        .args([other, "127.0.0.1:0"])
        .args([flag, &taken])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{flag}:\n{err}");
    assert!(!err.contains("panicked"), "{flag}:\n{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{flag}: not one line:\n{err}");
    let want = format!("tollgate: cannot listen on {taken} ({what}): ");
    assert!(
        lines[0].starts_with(&want) && lines[0].contains("in use"),
        "{flag}: expected {want:?}… naming the cause, got:\n{err}"
    );
    drop(held);
    started.elapsed()
}

#[test]
fn a_taken_proxy_address_is_one_line_and_exit_1() {
    let db = TestDb::sqlite();
    start_on_a_taken_address("--listen", "proxy, TOLLGATE_LISTEN", &db.url());
}

#[test]
fn a_taken_admin_address_is_one_line_and_exit_1() {
    let db = TestDb::sqlite();
    start_on_a_taken_address("--admin-listen", "admin, TOLLGATE_ADMIN_LISTEN", &db.url());
}

/// The ports are bound before the database is waited for: a taken port is reported at once,
/// not after `TOLLGATE_DB_STARTUP_TIMEOUT` (30 s) of retrying a database that never answers.
#[test]
fn a_taken_port_is_reported_before_the_database_is_waited_for() {
    // A listener that never accepts: the database connection hangs until it times out.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "postgres://postgres@{}/tollgate?connect_timeout=2",
        silent.local_addr().unwrap()
    );
    for (flag, what) in [
        ("--listen", "proxy, TOLLGATE_LISTEN"),
        ("--admin-listen", "admin, TOLLGATE_ADMIN_LISTEN"),
    ] {
        let took = start_on_a_taken_address(flag, what, &url);
        assert!(
            took < Duration::from_secs(5),
            "{flag}: the error came after {took:?}"
        );
    }
}
