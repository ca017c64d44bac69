//! The admin listener: auth, health and readiness.

use crate::helpers::*;

const TOKEN: &str = "s3cret-admin-token-0123456789";

#[actix_web::test]
async fn backends_need_the_bearer_token_but_health_does_not() {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(&[backend.url()], &["--admin-token", TOKEN]).await;

    for auth in [
        None,
        Some("Bearer wrong-token-wrong-token"),
        Some("Basic Zm9vOmJhcg=="),
    ] {
        let mut req = gw.client.get(gw.admin_url("/backends"));
        if let Some(a) = auth {
            req = req.insert_header(("authorization", a));
        }
        let mut resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{auth:?}");
        assert!(resp
            .headers()
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_error_body(&body, resp.headers(), 401, "unauthorized");
    }

    let mut resp = gw
        .client
        .get(gw.admin_url("/backends"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    let b = &body["backends"][0];
    assert_eq!(b["url"], backend.url());
    assert_eq!(b["healthy"], true);
    assert_eq!(b["weight"], 1);
    assert_eq!(b["in_flight"], 0);
    assert_eq!(b["last_check"]["ok"], true);
    assert_eq!(body["strategy"], "round-robin");

    assert_eq!(
        gw.client
            .get(gw.admin_url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        gw.client
            .get(gw.admin_url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[actix_web::test]
async fn unknown_admin_paths_get_404_json() {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(&[backend.url()], &[]).await;
    let mut resp = gw.client.get(gw.admin_url("/nope")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_error_body(&body, resp.headers(), 404, "not_found");
}

#[actix_web::test]
async fn backends_report_traffic_counts() {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(&[backend.url()], &[]).await;
    for _ in 0..5 {
        gw.get("/c").await;
    }
    let b = &gw.backends().await[0];
    assert_eq!(b["requests_total"], 5);
    assert_eq!(b["failures_total"], 0);
}

#[actix_web::test]
async fn wrong_methods_get_405_json_with_allow() {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(&[backend.url()], &["--admin-token", TOKEN]).await;
    for (method, path, allowed) in [
        ("POST", "/healthz", vec!["GET"]),
        ("DELETE", "/backends", vec!["GET", "POST"]),
        ("POST", "/backends/some-id", vec!["DELETE", "GET", "PATCH"]),
        ("PATCH", "/clients", vec!["GET", "POST"]),
        ("POST", "/clients/some-id", vec!["DELETE", "GET", "PATCH", "PUT"]),
    ] {
        let mut resp = gw
            .client
            .request(method.parse().unwrap(), gw.admin_url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405, "{method} {path}");
        let allow = resp
            .headers()
            .get("allow")
            .unwrap_or_else(|| panic!("{method} {path}: no Allow header"))
            .to_str()
            .unwrap();
        let mut got: Vec<&str> = allow.split(',').map(str::trim).collect();
        got.sort_unstable();
        assert_eq!(got, allowed, "{method} {path}: Allow: {allow}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_error_body(&body, resp.headers(), 405, "method_not_allowed");
    }
}

#[actix_web::test]
async fn an_admin_body_over_the_limit_gets_413_json() {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(&[backend.url()], &[]).await;
    // A valid JSON document, only too big: 300 KiB of padding in a string.
    let body = format!(
        "{{\"id\":\"big\",\"capacity\":1,\"rate\":1,\"note\":\"{}\"}}",
        "x".repeat(300 * 1024)
    );
    let mut resp = gw
        .client
        .post(gw.admin_url("/clients"))
        .insert_header(("content-type", "application/json"))
        .send_body(body)
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_error_body(&body, resp.headers(), 413, "body_too_large");
    assert!(body["message"].as_str().unwrap().contains("256 KiB"), "{body}");
}

#[actix_web::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(&[backend.url()], &["--admin-token", TOKEN]).await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let resp = gw
            .client
            .get(gw.admin_url("/backends"))
            .insert_header(("authorization", format!("{scheme} {TOKEN}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{scheme}");
    }
    // The token itself stays case-sensitive, and the scheme must be followed by a space.
    for wrong in [
        format!("Bearer {}", TOKEN.to_uppercase()),
        format!("Bearer{TOKEN}"),
        format!("Bearerx {TOKEN}"),
    ] {
        let resp = gw
            .client
            .get(gw.admin_url("/backends"))
            .insert_header(("authorization", wrong.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{wrong}");
    }
}
