//! Regressions of what schemathesis (scripts/schemathesis.sh) found against the admin API.

use serde_json::Value;

use crate::helpers::*;

const TOKEN: &str = "finds-admin-token-0123456789";

async fn send(gw: &TestGateway, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut resp = gw
        .client
        .request(method.parse().unwrap(), gw.admin_url(path))
        .bearer_auth(TOKEN)
        .insert_header(("content-type", "application/json"))
        .send_body(body.to_string())
        .await
        .unwrap();
    let bytes = resp.body().await.unwrap();
    (
        resp.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// `30930.0` is a whole number (JSON Schema's `integer` takes it, and Python's json module
/// writes a float that way): the whole-number fields took only `30930` and refused it with
/// "invalid type: floating point `30930.0`, expected u64". A fraction is still refused.
#[actix_web::test]
async fn whole_numbers_written_as_floats_are_whole_numbers() {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(&[backend.url()], &["--admin-token", TOKEN]).await;

    let body = r#"{"client_id": "floaty", "capacity": 30930.0, "rate_per_sec": 2}"#;
    let (status, client) = send(&gw, "POST", "/clients", body).await;
    assert_eq!(status, 201, "{client}");
    assert_eq!(client["capacity"], 30930);
    assert_eq!(client["rate_per_sec"], 2.0);

    let (status, client) = send(&gw, "PATCH", "/clients/floaty", r#"{"capacity": 1e2}"#).await;
    assert_eq!(status, 200, "{client}");
    assert_eq!(client["capacity"], 100);

    let batch = r#"[{"client_id": "floaty-2", "capacity": 5.0, "rate_per_sec": 1.0}]"#;
    let (status, created) = send(&gw, "POST", "/clients/batch", batch).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["clients"][0]["capacity"], 5);

    let (_, list) = send(&gw, "GET", "/backends", "").await;
    let backend_path = format!("/backends/{}", list["backends"][0]["id"].as_str().unwrap());
    let (status, b) = send(&gw, "PATCH", &backend_path, r#"{"weight": 3.0}"#).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["weight"], 3);

    let client_path = "/clients/floaty".to_string();
    for (path, method, body, field) in [
        (&client_path, "PATCH", r#"{"capacity": 30930.5}"#, "capacity"),
        (&client_path, "PATCH", r#"{"capacity": 1e300}"#, "capacity"),
        (&client_path, "PATCH", r#"{"capacity": -0.0}"#, "capacity"),
        (&backend_path, "PATCH", r#"{"weight": 2.5}"#, "weight"),
    ] {
        let (status, error) = send(&gw, method, path.as_str(), body).await;
        assert_eq!(status, 422, "{body}: {error}");
        assert!(
            error["message"].as_str().unwrap().starts_with(field),
            "{body}: {error}"
        );
    }
}
