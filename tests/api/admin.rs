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
