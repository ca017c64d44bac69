//! `GET /metrics`: parsed with a Prometheus text parser, the counters hold the exact numbers
//! of a known sequence of requests; the token, `TOLLGATE_METRICS_PUBLIC`, the client limit
//! and `TOLLGATE_METRICS=false`.

use std::time::Duration;

use prometheus_parse::{Scrape, Value as Sample};
use serde_json::json;

use crate::helpers::*;

const TOKEN: &str = "metrics-test-token-0123456789";

/// The scrape, parsed (panics on anything a Prometheus parser refuses).
pub async fn scrape(gw: &TestGateway, token: Option<&str>) -> (u16, String) {
    let mut req = gw.client.get(gw.admin_url("/metrics"));
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    let mut resp = req.send().await.unwrap();
    let body = resp.body().limit(16 << 20).await.unwrap();
    (resp.status().as_u16(), String::from_utf8(body.to_vec()).unwrap())
}

pub struct Metrics(Scrape);

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
        Metrics(Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("a valid exposition"))
    }

    /// The value of the one sample `name{labels}`; `None` when there is none.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<f64> = self
            .0
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                Sample::Counter(v) | Sample::Gauge(v) | Sample::Untyped(v) => *v,
                other => panic!("{name}: unexpected {other:?}"),
            })
            .collect();
        assert!(found.len() <= 1, "{name}{labels:?}: {} samples", found.len());
        found.first().copied()
    }

    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
    }

    fn series(&self, name: &str) -> usize {
        self.0.samples.iter().filter(|s| s.metric == name).count()
    }
}

#[actix_web::test]
async fn after_a_known_sequence_the_counters_hold_the_exact_numbers() {
    let (a, b) = (TestBackend::start("a"), TestBackend::start("b"));
    let dead = RefusingPort::new();
    let urls = [a.url(), b.url(), dead.url()];
    let flags = [
        &FAST_CHECKS[..],
        &[
            "--panic-threshold",
            "0",
            "--rate-limit",
            "true",
            "--admin-token",
            TOKEN,
        ],
    ]
    .concat();
    let gw = spawn_gateway(&urls, &flags).await;
    eventually("the dead backend down", Duration::from_secs(5), || async {
        let m = Metrics::parse(&scrape(&gw, Some(TOKEN)).await.1);
        m.get("tollgate_backend_up", &[("backend", &dead.url())]) == Some(0.0)
    })
    .await;
    let admin = |method: &str, path: &str| {
        gw.client
            .request(method.parse().unwrap(), gw.admin_url(path))
            .insert_header(("Authorization", format!("Bearer {TOKEN}")))
    };

    // Two admin writes: one made, one refused.
    let key = "metrics-client-key-0123456789";
    let created = admin("POST", "/clients")
        .send_json(&json!({"client_id": "metered", "capacity": 4, "rate_per_sec": 0.001, "api_key": key}))
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let refused = admin("POST", "/clients")
        .send_json(&json!({"client_id": "bad", "capacity": "four", "rate_per_sec": 1}))
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);

    // Six requests of a client with 4 tokens, three anonymous ones.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(gw.get_with_key("/metered", key).await.0);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429]);
    for _ in 0..3 {
        assert_eq!(gw.get("/anonymous").await.0, 200);
    }

    let (status, _) = scrape(&gw, None).await;
    assert_eq!(status, 401, "the token is needed");

    // A response's duration is recorded when actix has finished with its body, which may be
    // a moment after the client read it.
    let mut m = Metrics::parse(&scrape(&gw, Some(TOKEN)).await.1);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while m.value("tollgate_request_duration_seconds_count", &[]) < 9.0
        && std::time::Instant::now() < deadline
    {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
        m = Metrics::parse(&scrape(&gw, Some(TOKEN)).await.1);
    }

    let req = |class: &str, backend: &str| {
        m.value(
            "tollgate_requests_total",
            &[("status_class", class), ("backend", backend)],
        )
    };
    let (to_a, to_b) = (a.proxied().len() as f64, b.proxied().len() as f64);
    assert_eq!(to_a + to_b, 7.0);
    assert_eq!(req("2xx", &a.url()), to_a);
    assert_eq!(req("2xx", &b.url()), to_b);
    assert_eq!(req("2xx", &dead.url()), 0.0);
    assert_eq!(req("4xx", "none"), 2.0, "the two 429s");
    for class in ["1xx", "3xx", "5xx"] {
        assert_eq!(req(class, "none"), 0.0, "{class}");
    }
    assert_eq!(m.value("tollgate_request_duration_seconds_count", &[]), 9.0);
    assert_eq!(
        m.value("tollgate_upstream_response_duration_seconds_count", &[]),
        7.0
    );
    assert_eq!(m.value("tollgate_upstream_retries_total", &[]), 0.0);

    let up = |u: &str| m.value("tollgate_backend_up", &[("backend", u)]);
    assert_eq!((up(&a.url()), up(&b.url()), up(&dead.url())), (1.0, 1.0, 0.0));
    assert_eq!(
        m.value("tollgate_backend_in_flight", &[("backend", &a.url())]),
        0.0
    );

    let decided = |kind: &str, result: &str, shadow: &str| {
        m.value(
            "tollgate_ratelimit_decisions_total",
            &[("kind", kind), ("result", result), ("shadow", shadow)],
        )
    };
    assert_eq!(decided("client", "admitted", "false"), 4.0);
    assert_eq!(decided("client", "refused", "false"), 2.0);
    assert_eq!(decided("client", "refused", "true"), 0.0);
    assert_eq!(decided("anonymous", "admitted", "false"), 3.0);
    assert_eq!(decided("anonymous", "refused", "false"), 0.0);
    let client = |result: &str| {
        m.value(
            "tollgate_client_requests_total",
            &[("client", "metered"), ("result", result)],
        )
    };
    assert_eq!((client("admitted"), client("refused")), (4.0, 2.0));

    let writes = |result: &str| m.value("tollgate_admin_writes_total", &[("result", result)]);
    assert_eq!(
        (writes("ok"), writes("client_error"), writes("server_error")),
        (1.0, 1.0, 0.0)
    );

    assert!(m.value("process_resident_memory_bytes", &[]) > 1e6);
    assert!(m.value("process_open_fds", &[]) >= 3.0);
    assert!(m.value("process_start_time_seconds", &[]) > 1.7e9);
}

#[actix_web::test]
async fn a_connect_failure_is_counted_with_its_retry() {
    let live = TestBackend::start("live");
    let dead = RefusingPort::new();
    // Checks far apart: the dead backend still counts as healthy, so the proxy meets it.
    let gw = spawn_gateway(
        &[dead.url(), live.url()],
        &["--health-interval", "1h", "--unhealthy-threshold", "10"],
    )
    .await;
    for _ in 0..2 {
        assert_eq!(gw.get("/x").await.0, 200);
    }
    let m = Metrics::parse(&scrape(&gw, None).await.1);
    let failures = |kind: &str| {
        m.value(
            "tollgate_upstream_failures_total",
            &[("backend", &dead.url()), ("kind", kind)],
        )
    };
    // Each request that met the dead backend first was retried on the live one.
    let met = failures("connect");
    assert!(met >= 1.0, "round robin meets the dead backend");
    for kind in ["connect_timeout", "response_timeout", "broken", "body"] {
        assert_eq!(failures(kind), 0.0, "{kind}");
    }
    assert_eq!(m.value("tollgate_upstream_retries_total", &[]), met);
    assert_eq!(
        m.value(
            "tollgate_requests_total",
            &[("status_class", "2xx"), ("backend", &live.url())]
        ),
        2.0
    );
}

#[actix_web::test]
async fn public_metrics_show_only_the_busiest_clients() {
    let backend = TestBackend::start("a");
    let flags = [
        "--health-interval",
        "1h",
        "--rate-limit",
        "true",
        "--admin-token",
        TOKEN,
        "--metrics-public",
        "true",
        "--metrics-client-limit",
        "1",
    ];
    let gw = spawn_gateway(&[backend.url()], &flags).await;
    for (id, key) in [
        ("quiet", "quiet-client-key-0123456789"),
        ("busy", "busy-client-key-01234567890"),
    ] {
        let resp = gw
            .client
            .post(gw.admin_url("/clients"))
            .insert_header(("Authorization", format!("Bearer {TOKEN}")))
            .send_json(&json!({"client_id": id, "capacity": 100, "rate_per_sec": 1, "api_key": key}))
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    assert_eq!(gw.get_with_key("/q", "quiet-client-key-0123456789").await.0, 200);
    for _ in 0..3 {
        assert_eq!(gw.get_with_key("/b", "busy-client-key-01234567890").await.0, 200);
    }
    let (status, text) = scrape(&gw, None).await;
    assert_eq!(status, 200, "public: no token needed");
    let m = Metrics::parse(&text);
    assert_eq!(
        m.series("tollgate_client_requests_total"),
        2,
        "one client, two results"
    );
    assert_eq!(
        m.value(
            "tollgate_client_requests_total",
            &[("client", "busy"), ("result", "admitted")]
        ),
        3.0
    );
    assert_eq!(
        m.get(
            "tollgate_client_requests_total",
            &[("client", "quiet"), ("result", "admitted")]
        ),
        None
    );
    // The rest of the admin API still needs the token.
    assert_eq!(
        gw.client
            .get(gw.admin_url("/clients"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[actix_web::test]
async fn metrics_off_answers_404_json() {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(
        &[backend.url()],
        &["--health-interval", "1h", "--metrics", "false"],
    )
    .await;
    assert_eq!(gw.get("/x").await.0, 200);
    let mut resp = gw.client.get(gw.admin_url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("TOLLGATE_METRICS=false"),
        "{body}"
    );
}

#[actix_web::test]
async fn a_request_its_client_gives_up_is_counted_once() {
    let backend = TestBackend::start("slow");
    backend.set_delay_ms(1_000);
    let gw = spawn_gateway(&[backend.url()], &["--health-interval", "1h"]).await;
    // The client sends its request and leaves once the backend has it, before the answer.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    std::io::Write::write_all(&mut s, b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    eventually("the backend has the request", Duration::from_secs(5), || async {
        backend.arrived() == 1
    })
    .await;
    drop(s);
    // HTTP/1.1: actix-http finishes the handler and finds the client gone when it writes, so
    // the request counts as answered; a handler dropped before any answer (an HTTP/2 stream
    // reset, a forced shutdown) counts as abandoned. Either way, once.
    eventually("counted", Duration::from_secs(5), || async {
        let m = Metrics::parse(&scrape(&gw, None).await.1);
        m.value("tollgate_request_duration_seconds_count", &[]) == 1.0
    })
    .await;
    let m = Metrics::parse(&scrape(&gw, None).await.1);
    let answered: f64 = ["1xx", "2xx", "3xx", "4xx", "5xx"]
        .iter()
        .map(|c| {
            m.value(
                "tollgate_requests_total",
                &[("status_class", c), ("backend", &backend.url())],
            ) + m.value(
                "tollgate_requests_total",
                &[("status_class", c), ("backend", "none")],
            )
        })
        .sum();
    assert_eq!(answered + m.value("tollgate_requests_abandoned_total", &[]), 1.0);
}

#[actix_web::test]
async fn a_wrong_api_key_is_not_counted_as_admitted() {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(
        &[backend.url()],
        &["--health-interval", "1h", "--rate-limit", "true"],
    )
    .await;
    for _ in 0..3 {
        assert_eq!(gw.get_with_key("/x", "no-such-key-0123456789abcdef").await.0, 401);
    }
    let m = Metrics::parse(&scrape(&gw, None).await.1);
    let decided = |kind: &str, result: &str| {
        m.value(
            "tollgate_ratelimit_decisions_total",
            &[("kind", kind), ("result", result), ("shadow", "false")],
        )
    };
    assert_eq!(decided("anonymous", "admitted"), 0.0);
    assert_eq!(decided("anonymous", "refused"), 0.0);
    assert_eq!(
        m.value(
            "tollgate_requests_total",
            &[("status_class", "4xx"), ("backend", "none")]
        ),
        3.0
    );
}
