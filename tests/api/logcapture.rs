//! Captures the gateway's log records in memory, so that tests of an in-process gateway can
//! assert on the access-log line of a request (found by its request id).

use std::{
    sync::{Mutex, OnceLock},
    time::Duration,
};

use crate::helpers::eventually;

struct Capture {
    lines: Mutex<Vec<String>>,
}

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.target().starts_with("tollgate")
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {} {}", record.level(), record.target(), record.args());
            self.lines.lock().unwrap().push(line);
        }
    }

    fn flush(&self) {}
}

static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();

/// Installs the capturing logger (once per test binary; later calls do nothing). Must run
/// before the gateway is built: the gateway reads whether the access log is on at start.
pub fn install() {
    CAPTURE.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::new(Capture {
            lines: Mutex::new(Vec::new()),
        }));
        if log::set_logger(c).is_ok() {
            log::set_max_level(log::LevelFilter::Debug);
        }
        c
    });
}

/// Every captured line that contains `needle`.
pub fn lines_with(needle: &str) -> Vec<String> {
    CAPTURE
        .get()
        .map(|c| {
            c.lines
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(needle))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Waits for the access-log line of request `rid` and returns it.
pub async fn wait_access_line(rid: &str) -> String {
    let needle = format!("tollgate::access {rid} ");
    eventually(&format!("access line of {rid}"), Duration::from_secs(10), || {
        let found = !lines_with(&needle).is_empty();
        async move { found }
    })
    .await;
    lines_with(&needle).remove(0)
}
