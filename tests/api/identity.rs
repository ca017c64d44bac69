//! Who the client is, end to end: registered IP addresses and CIDR blocks (longest prefix
//! wins), anonymous IPv6 clients grouped by /64, the `Forwarded` header of trusted proxies,
//! and a custom API-key header.
//!
//! The loopback interface gives the tests 127.0.0.0/8 as source addresses and ::1 for IPv6;
//! other IPv6 addresses reach the gateway the way they do in production behind a proxy: in
//! the header of a trusted proxy (a second address in ::1's /64 cannot be had without
//! reconfiguring the machine's network).

use std::net::IpAddr;

use serde_json::{json, Value};

use crate::helpers::*;

/// `q` (the capacity) of the `RateLimit-Policy` header of a raw answer.
fn policy_q(answer: &str) -> Option<u64> {
    let policy = raw_header(answer, "ratelimit-policy")?;
    policy
        .split(';')
        .find_map(|p| p.trim().strip_prefix("q="))
        .and_then(|q| q.parse().ok())
}

/// A GET from source address `from` (IPv4 from 127.0.0.0/8, or ::1) with extra header lines.
async fn get_from(port: u16, from: &str, extra_headers: &str) -> String {
    let from: IpAddr = from.parse().unwrap();
    let request = format!("GET /who HTTP/1.1\r\nHost: x\r\n{extra_headers}Connection: close\r\n\r\n");
    actix_rt::task::spawn_blocking(move || raw_request_from(from, port, &request))
        .await
        .unwrap()
}

async fn create_client(gw: &TestGateway, body: Value) {
    let resp = gw
        .client
        .post(gw.admin_url("/clients"))
        .send_json(&body)
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{body}");
}

async fn client_view(gw: &TestGateway, id: &str) -> Value {
    let mut resp = gw
        .client
        .get(gw.admin_url(&format!("/clients/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[actix_web::test]
async fn registered_ip_and_cidr_clients_longest_prefix_wins() {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(
        &[backend.url()],
        &["--rate-limit", "true", "--health-interval", "1h"],
    )
    .await;
    for (id, capacity, ips) in [
        ("net8", 7, json!(["127.0.0.0/8"])),
        ("net24", 5, json!(["127.0.1.0/24"])),
        ("host", 3, json!(["127.0.1.5"])),
    ] {
        create_client(
            &gw,
            json!({"client_id": id, "capacity": capacity, "rate_per_sec": 0.001, "ips": ips}),
        )
        .await;
    }

    // Each address gets the most specific client's limit.
    for (from, q) in [("127.0.1.5", 3), ("127.0.1.9", 5), ("127.0.2.1", 7)] {
        let answer = get_from(gw.port, from, "").await;
        assert_eq!(raw_status(&answer), 200, "{from}: {answer}");
        assert_eq!(policy_q(&answer), Some(q), "{from}: {answer}");
    }
    for (id, admitted) in [("host", 1), ("net24", 1), ("net8", 1)] {
        assert_eq!(client_view(&gw, id).await["admitted"], admitted, "{id}");
    }

    // The /32 client's bucket is its own: emptied, it refuses 127.0.1.5 only.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(raw_status(&get_from(gw.port, "127.0.1.5", "").await));
    }
    assert_eq!(statuses, vec![200, 200, 429]);
    assert_eq!(raw_status(&get_from(gw.port, "127.0.1.6", "").await), 200);
    let host = client_view(&gw, "host").await;
    assert_eq!(
        (host["admitted"].as_u64(), host["refused"].as_u64()),
        (Some(3), Some(1))
    );
}

#[actix_web::test]
async fn anonymous_ipv6_clients_share_a_bucket_per_64() {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(
        &[backend.url()],
        &[
            "--listen",
            "[::1]:0",
            "--rate-limit",
            "true",
            "--health-interval",
            "1h",
            "--default-capacity",
            "2",
            "--default-rate",
            "0.001",
            "--trusted-proxies",
            "::1/128",
        ],
    )
    .await;
    // A direct IPv6 peer (::1) is a client like any other.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(raw_status(&get_from(gw.port, "::1", "").await));
    }
    assert_eq!(statuses, vec![200, 200, 429], "::1 directly");

    // Behind the trusted proxy (::1): two addresses of one /64 share one bucket.
    let xff = |ip: &str| format!("X-Forwarded-For: {ip}\r\n");
    let a = get_from(gw.port, "::1", &xff("2001:db8:1:2::a")).await;
    assert_eq!(raw_status(&a), 200, "{a}");
    assert_eq!(
        raw_header(&a, "ratelimit").as_deref(),
        Some("\"default\";r=1;t=1000")
    );
    let b = get_from(gw.port, "::1", &xff("2001:db8:1:2:ffff:ffff:ffff:b")).await;
    assert_eq!(raw_status(&b), 200, "{b}");
    assert_eq!(
        raw_header(&b, "ratelimit").as_deref(),
        Some("\"default\";r=0;t=2000")
    );
    let c = get_from(gw.port, "::1", &xff("2001:db8:1:2::c")).await;
    assert_eq!(raw_status(&c), 429, "same /64: {c}");
    // The next /64 is another client.
    let d = get_from(gw.port, "::1", &xff("2001:db8:1:3::a")).await;
    assert_eq!(raw_status(&d), 200, "next /64: {d}");
    assert_eq!(backend.proxied().len(), 5);
}

#[actix_web::test]
async fn a_registered_ipv6_block_is_matched_behind_a_trusted_proxy() {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(
        &[backend.url()],
        &[
            "--rate-limit",
            "true",
            "--health-interval",
            "1h",
            "--trusted-proxies",
            "127.0.0.1/32",
        ],
    )
    .await;
    create_client(
        &gw,
        json!({"client_id": "v6net", "capacity": 4, "rate_per_sec": 1, "ips": ["2001:db8:9::/48"]}),
    )
    .await;
    let answer = get_from(gw.port, "127.0.0.1", "X-Forwarded-For: 2001:db8:9:1::77\r\n").await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(policy_q(&answer), Some(4), "{answer}");
    let other = get_from(gw.port, "127.0.0.1", "X-Forwarded-For: 2001:db8:8::1\r\n").await;
    assert_eq!(policy_q(&other), Some(100), "anonymous default: {other}");
    assert_eq!(client_view(&gw, "v6net").await["admitted"], 1);
}

#[actix_web::test]
async fn the_forwarded_header_of_a_trusted_proxy_names_the_client() {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(
        &[backend.url()],
        &[
            "--rate-limit",
            "true",
            "--health-interval",
            "1h",
            "--default-capacity",
            "1",
            "--default-rate",
            "0.001",
            "--trusted-proxies",
            "127.0.0.1/32",
            "--forwarded-header",
            "forwarded",
        ],
    )
    .await;
    let status = |headers: &'static [(&'static str, &'static str)]| {
        let gw = &gw;
        async move {
            let mut req = gw.client.get(gw.url("/who"));
            for h in headers {
                req = req.insert_header(*h);
            }
            req.send().await.unwrap().status().as_u16()
        }
    };
    // Each forwarded address has a bucket of one token.
    assert_eq!(status(&[("forwarded", "for=198.51.100.1")]).await, 200);
    assert_eq!(status(&[("forwarded", "for=198.51.100.1;proto=http")]).await, 429);
    assert_eq!(status(&[("forwarded", "for=198.51.100.2")]).await, 200);
    // X-Forwarded-For is not read when the proxies write Forwarded.
    assert_eq!(
        status(&[
            ("forwarded", "for=198.51.100.1"),
            ("x-forwarded-for", "198.51.100.3")
        ])
        .await,
        429
    );
    assert_eq!(status(&[("x-forwarded-for", "198.51.100.4")]).await, 200);
    assert_eq!(
        status(&[("x-forwarded-for", "198.51.100.5")]).await,
        429,
        "without Forwarded the client is the peer, whose token is spent"
    );
    // An IPv6 address with a port, quoted as RFC 7239 requires.
    assert_eq!(status(&[("forwarded", "for=\"[2001:db8::1]:4711\"")]).await, 200);
    assert_eq!(status(&[("forwarded", "for=\"[2001:db8::1]\"")]).await, 429);
    // Trusted hops are skipped right to left: the client is the first untrusted address.
    assert_eq!(
        status(&[("forwarded", "for=198.51.100.9, for=127.0.0.1")]).await,
        200
    );
    assert_eq!(status(&[("forwarded", "for=198.51.100.9")]).await, 429);
}

#[actix_web::test]
async fn a_custom_api_key_header_identifies_the_client_and_is_not_forwarded() {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(
        &[backend.url()],
        &[
            "--rate-limit",
            "true",
            "--health-interval",
            "1h",
            "--api-key-header",
            "X-Token",
        ],
    )
    .await;
    let key = "custom-header-key-0123456789";
    create_client(
        &gw,
        json!({"client_id": "tok", "capacity": 3, "rate_per_sec": 0.001, "api_key": key}),
    )
    .await;

    let resp = gw
        .client
        .get(gw.url("/with-token"))
        .insert_header(("x-token", key))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("ratelimit-policy").unwrap(),
        "\"default\";q=3;w=3000"
    );
    // The default header name means nothing now: that request is anonymous.
    let resp = gw
        .client
        .get(gw.url("/with-default-header"))
        .insert_header(("x-api-key", key))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("ratelimit-policy").unwrap(),
        "\"default\";q=100;w=10"
    );
    let (status, headers, body) = gw
        .get_with_header("/wrong", "x-token", "not-a-key-0123456789")
        .await;
    assert_eq!(status, 401);
    assert_error_body(&body, &headers, 401, "unknown_api_key");

    let view = client_view(&gw, "tok").await;
    assert_eq!(view["admitted"], 1);
    let seen = backend.proxied();
    let with_token = seen.iter().find(|s| s.path == "/with-token").unwrap();
    assert!(
        !with_token.headers.contains_key("x-token"),
        "{:?}",
        with_token.headers
    );
}
