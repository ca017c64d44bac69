//! Headless Chromium driven over the DevTools protocol (a WebSocket, with awc): no driver
//! binary to keep in step with the browser. Chromium missing is a failure, not a skip:
//! `.ci/run` installs Debian's `chromium`; `CHROMIUM` names another binary.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use actix_codec::Framed;
use actix_http::ws::Item;
use awc::{ws, BoxedSocket};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

use super::TempDir;

/// Width of the window, CSS pixels.
pub const WIDTH: u64 = 1280;

/// The Chromium process, killed on drop (also when the start fails half-way).
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One headless Chromium with one page, killed on drop.
pub struct Browser {
    // Dropped before the profile directory is removed.
    child: Process,
    profile: TempDir,
    conn: Framed<BoxedSocket, ws::Codec>,
    next_id: u64,
    /// Events the page sent (console, log entries, exceptions), oldest first.
    pub events: Vec<Value>,
}

impl Browser {
    /// Starts Chromium and connects to its blank page; panics (with what to install) when
    /// there is no Chromium.
    pub async fn launch() -> Browser {
        let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let profile = TempDir::new();
        let log = std::fs::File::create(profile.0.join("chromium.log")).unwrap();
        let child = Command::new(&binary)
            .args([
                "--headless",
                // Root in a container has no user namespace for the sandbox.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--hide-scrollbars",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                &format!("--window-size={WIDTH},900"),
                &format!("--user-data-dir={}", profile.0.display()),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {binary:?} ({e}): the status page test needs Chromium \
                     (apt-get install chromium; .ci/run installs it; CHROMIUM=/path/to/it)"
                )
            });
        let mut child = Process(child);
        let conn = connect(&mut child.0, &profile).await;
        Browser {
            child,
            profile,
            conn,
            next_id: 1,
            events: Vec::new(),
        }
    }

    /// Chromium's own log (for failures).
    pub fn log(&self) -> String {
        log_of(&self.profile)
    }

    /// Calls a DevTools method and returns its result; events met on the way are kept.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.conn.send(ws::Message::Text(msg.into())).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = actix_rt::time::timeout(left, self.read())
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer within 30 s"));
            if msg["id"] == id {
                assert!(msg.get("error").is_none(), "{method}: {}", msg["error"]);
                return msg["result"].clone();
            }
            if msg.get("method").is_some() {
                self.events.push(msg);
            }
        }
    }

    async fn read(&mut self) -> Value {
        let mut text = Vec::new();
        loop {
            let frame = self
                .conn
                .next()
                .await
                .expect("DevTools connection closed")
                .unwrap();
            match frame {
                ws::Frame::Text(b) => return serde_json::from_slice(&b).unwrap(),
                ws::Frame::Continuation(Item::FirstText(b)) => text = b.to_vec(),
                ws::Frame::Continuation(Item::Continue(b)) => text.extend_from_slice(&b),
                ws::Frame::Continuation(Item::Last(b)) => {
                    text.extend_from_slice(&b);
                    return serde_json::from_slice(&text).unwrap();
                }
                ws::Frame::Ping(p) => self.conn.send(ws::Message::Pong(p)).await.unwrap(),
                ws::Frame::Close(reason) => panic!("DevTools connection closed: {reason:?}"),
                _ => {}
            }
        }
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(
            r.get("exceptionDetails").is_none(),
            "{expression}: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    /// Evaluates `expression` every 100 ms until it gives something other than `null` or
    /// `false`, and returns that; panics with the last value at the deadline.
    pub async fn wait_for(&mut self, what: &str, deadline: Duration, expression: &str) -> Value {
        let start = Instant::now();
        loop {
            let v = self.eval(expression).await;
            if !(v.is_null() || v == false) {
                return v;
            }
            assert!(
                start.elapsed() < deadline,
                "timed out waiting for {what}; last: {v}"
            );
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Opens `url` and waits for its load event.
    pub async fn open(&mut self, url: &str) {
        self.call("Page.enable", json!({})).await;
        self.call("Runtime.enable", json!({})).await;
        self.call("Log.enable", json!({})).await;
        self.call("Page.navigate", json!({"url": url})).await;
        self.wait_for(
            "the page to load",
            Duration::from_secs(20),
            "document.readyState === 'complete'",
        )
        .await;
    }

    /// A PNG of the whole page (the window grown to the page's height) at `path`.
    pub async fn screenshot(&mut self, path: &Path) {
        let height = self
            .eval("document.documentElement.scrollHeight")
            .await
            .as_u64()
            .unwrap();
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// Messages the page logged (console, CSP and network reports, uncaught exceptions).
    pub fn messages(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e["method"].as_str()? {
                "Log.entryAdded" => Some(format!(
                    "log {} {}: {}",
                    e["params"]["entry"]["source"],
                    e["params"]["entry"]["level"],
                    e["params"]["entry"]["text"]
                )),
                "Runtime.consoleAPICalled" => Some(format!(
                    "console {}: {}",
                    e["params"]["type"], e["params"]["args"]
                )),
                "Runtime.exceptionThrown" => Some(format!("exception: {}", e["params"]["exceptionDetails"])),
                _ => None,
            })
            .collect()
    }
}

/// The page's WebSocket: Chromium writes its port to `DevToolsActivePort` in the profile.
async fn connect(child: &mut Child, profile: &TempDir) -> Framed<BoxedSocket, ws::Codec> {
    let file = profile.0.join("DevToolsActivePort");
    let start = Instant::now();
    let port = loop {
        if let Some(port) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<u16>().ok()))
        {
            break port;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("chromium exited ({status}) at start:\n{}", log_of(profile));
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "chromium did not open its DevTools port within 30 s:\n{}",
            log_of(profile)
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    };
    let http = awc::Client::new();
    let targets: Value = http
        .get(format!("http://127.0.0.1:{port}/json/list"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = targets
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "page")
        .and_then(|t| t["webSocketDebuggerUrl"].as_str())
        .unwrap_or_else(|| panic!("no page among {targets}"))
        .to_string();
    let (_, conn) = http.ws(url).max_frame_size(64 << 20).connect().await.unwrap();
    conn
}

fn log_of(profile: &TempDir) -> String {
    std::fs::read_to_string(profile.0.join("chromium.log")).unwrap_or_default()
}
