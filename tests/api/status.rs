//! `GET /status` (the numbers the status page shows) and `GET /` (the page itself): the page
//! is served without the token under a strict policy, the numbers need the token, and they
//! hold what a known sequence of requests did, with metrics and rate limiting on or off.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

pub const TOKEN: &str = "status-page-test-token-0123456789";
pub const GREEDY_KEY: &str = "greedy-client-key-0123456789";

/// A gateway with two live backends and a dead one, and a client driven over its limit.
pub struct Scene {
    pub gw: TestGateway,
    pub live: [TestBackend; 2],
    pub dead: RefusingPort,
}

impl Scene {
    /// Starts it: `greedy` (3 tokens, one more every 100 s) sent 8 requests (3 admitted,
    /// 5 refused) and 4 anonymous ones went through; the dead backend is shown down.
    pub async fn start(extra: &[&str]) -> Scene {
        let live = [TestBackend::start("a"), TestBackend::start("b")];
        let dead = RefusingPort::new();
        let urls = [live[0].url(), live[1].url(), dead.url()];
        let flags = [&FAST_CHECKS[..], &["--admin-token", TOKEN], extra].concat();
        let gw = spawn_gateway(&urls, &flags).await;
        let scene = Scene { gw, live, dead };
        scene.wait_dead_down().await;
        scene
    }

    pub async fn admin(&self, path: &str) -> (u16, Value) {
        let mut resp = self
            .gw
            .client
            .get(self.gw.admin_url(path))
            .insert_header(("Authorization", format!("Bearer {TOKEN}")))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
    }

    async fn wait_dead_down(&self) {
        eventually("the dead backend down", Duration::from_secs(10), || async {
            let (_, b) = self.admin("/backends").await;
            b["backends"].as_array().is_some_and(|v| {
                v.iter()
                    .any(|b| b["url"] == self.dead.url() && b["state"] == "unhealthy")
            })
        })
        .await;
    }

    /// The greedy client over its limit, and some anonymous traffic.
    pub async fn drive(&self) {
        let created = self
            .gw
            .client
            .post(self.gw.admin_url("/clients"))
            .insert_header(("Authorization", format!("Bearer {TOKEN}")))
            .send_json(&json!({
                "client_id": "greedy", "name": "Greedy batch job",
                "capacity": 3, "rate_per_sec": 0.01, "api_key": GREEDY_KEY
            }))
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        let mut statuses = Vec::new();
        for _ in 0..8 {
            statuses.push(self.gw.get_with_key("/work", GREEDY_KEY).await.0);
        }
        assert_eq!(statuses, [200, 200, 200, 429, 429, 429, 429, 429]);
        for _ in 0..4 {
            assert_eq!(self.gw.get("/anonymous").await.0, 200);
        }
    }
}

#[actix_web::test]
async fn the_page_needs_no_token_and_carries_a_strict_policy() {
    let scene = Scene::start(&["--rate-limit", "true"]).await;
    let gw = &scene.gw;
    let mut resp = gw.client.get(gw.admin_url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let h = |name: &str| resp.headers().get(name).unwrap().to_str().unwrap().to_string();
    assert_eq!(h("content-type"), "text/html; charset=utf-8");
    assert_eq!(h("cache-control"), "no-store");
    assert_eq!(h("x-content-type-options"), "nosniff");
    let csp = h("content-security-policy");
    for directive in [
        "default-src 'none'",
        "script-src 'sha256-",
        "style-src 'sha256-",
        "connect-src 'self'",
        "img-src 'self' data:",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    let body = String::from_utf8(resp.body().await.unwrap().to_vec()).unwrap();
    assert!(body.starts_with("<!doctype html>"), "{body:.100}");
    assert!(body.contains("<script>") && body.contains("/status"));

    // The numbers need the token; unknown paths still answer the JSON 404.
    let mut unauthorized = gw.client.get(gw.admin_url("/status")).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    let body: Value = unauthorized.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");
    let (status, body) = scene.admin("/no-such-page").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found");
    let post = gw.client.post(gw.admin_url("/")).send().await.unwrap();
    assert_eq!(post.status(), 405);
}

#[actix_web::test]
async fn status_shows_backends_clients_totals_and_history() {
    let scene = Scene::start(&["--rate-limit", "true"]).await;
    scene.drive().await;
    let (a, b, dead) = (scene.live[0].url(), scene.live[1].url(), scene.dead.url());
    // 3 admitted + 4 anonymous answered by backends, 5 refused by the gateway; the first
    // look starts the scan for the busiest clients.
    let last = std::cell::RefCell::new(Value::Null);
    eventually(
        "the status to show the sequence",
        Duration::from_secs(10),
        || async {
            let s = scene.admin("/status").await.1;
            let done =
                s["totals"]["requests"] == 12 && s["clients"].as_array().is_some_and(|c| !c.is_empty());
            *last.borrow_mut() = s;
            done
        },
    )
    .await;
    let s = last.into_inner();
    assert_eq!(s["counted"], "answers");
    assert_eq!(s["totals"]["by_class"]["2xx"], 7, "{s}");
    assert_eq!(s["totals"]["by_class"]["4xx"], 5, "{s}");
    assert_eq!(s["totals"]["refused"], 5, "{s}");
    assert!(s["instance_id"].as_str().is_some_and(|i| !i.is_empty()));
    let state = |url: &str| {
        s["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["url"] == url)
            .map(|b| b["state"].clone())
    };
    assert_eq!(state(&a), Some(json!("healthy")));
    assert_eq!(state(&b), Some(json!("healthy")));
    assert_eq!(state(&dead), Some(json!("unhealthy")));
    let greedy = &s["clients"][0];
    assert_eq!(greedy["client_id"], "greedy", "{s}");
    assert_eq!(greedy["admitted"], 3);
    assert_eq!(greedy["refused"], 5);
    assert_eq!(greedy["tokens"], 0);
    assert_eq!(greedy["capacity"], 3);
    assert_eq!(greedy["limited"], true);
    assert_eq!(s["limits"]["registered"], 1);

    // One point a second: the chart fills while the gateway runs, and its sum is the traffic.
    let points = |s: &Value| s["history"]["points"].as_array().unwrap().len();
    let before = points(&s);
    eventually("two more points", Duration::from_secs(5), || async {
        points(&scene.admin("/status").await.1) >= before + 2
    })
    .await;
    let s = scene.admin("/status").await.1;
    assert_eq!(s["history"]["interval_s"], 1);
    let times: Vec<u64> = s["history"]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["t"].as_u64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "oldest first: {times:?}");
}

#[actix_web::test]
async fn without_metrics_or_rate_limiting_status_counts_backend_requests() {
    let scene = Scene::start(&["--metrics", "false"]).await;
    for _ in 0..6 {
        assert_eq!(scene.gw.get("/anything").await.0, 200);
    }
    eventually("six requests counted", Duration::from_secs(10), || async {
        scene.admin("/status").await.1["totals"]["requests"] == 6
    })
    .await;
    let s = scene.admin("/status").await.1;
    assert_eq!(s["counted"], "backend_requests");
    assert_eq!(s["totals"]["by_class"], Value::Null);
    assert_eq!(s["totals"]["refused"], Value::Null);
    assert_eq!(s["clients"], Value::Null);
    assert_eq!(s["limits"], Value::Null);
    assert_eq!(s["backends"].as_array().unwrap().len(), 3);
}

#[actix_web::test]
async fn with_metrics_off_the_refusals_are_still_counted() {
    let scene = Scene::start(&["--metrics", "false", "--rate-limit", "true"]).await;
    scene.drive().await;
    eventually("five refusals counted", Duration::from_secs(10), || async {
        scene.admin("/status").await.1["totals"]["refused"] == 5
    })
    .await;
    let s = scene.admin("/status").await.1;
    assert_eq!(s["counted"], "backend_requests");
    assert_eq!(s["clients"][0]["client_id"], "greedy");
    assert_eq!(s["clients"][0]["refused"], 5);
}
