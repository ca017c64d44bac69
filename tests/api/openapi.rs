//! `GET /openapi.json` against the real admin listener: the document is OpenAPI 3.1 with the
//! bearer scheme, served without the token, and every operation it lists is answered by a
//! route (not 404/405); the protected ones refuse a request without the token. The other
//! direction (every route actix serves is documented) is the unit test beside the document,
//! src/http/admin/openapi/tests.rs, which reads the routes from actix itself.

use serde_json::{json, Value};

use crate::helpers::*;

const TOKEN: &str = "openapi-admin-token-0123456789";

/// Every documented `(method, path template, operation)`, `DELETE`s last so that the
/// resources named in the paths exist until then.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops: Vec<(String, String, Value)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .iter()
                .map(|(method, op)| (method.to_uppercase(), path.clone(), op.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    ops.sort_by_key(|(method, path, _)| (method == "DELETE", path.clone()));
    ops
}

/// `template` with each `{param}` replaced by the value of an existing resource.
fn fill(template: &str, client_id: &str, backend_id: &str) -> String {
    template
        .split('/')
        .map(|segment| match segment {
            "{client_id}" => client_id,
            "{id}" => backend_id,
            s if s.starts_with('{') => panic!("no sample value for the path parameter {s} of {template}"),
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[actix_web::test]
async fn every_documented_operation_is_served_and_guarded_as_documented() {
    let backend = TestBackend::start("a");
    let gw = spawn_gateway(&[backend.url()], &["--admin-token", TOKEN]).await;

    // The document holds no data: no token needed.
    let mut resp = gw.client.get(gw.admin_url("/openapi.json")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers().get("content-type").unwrap().to_str().unwrap();
    assert!(content_type.starts_with("application/json"), "{content_type}");
    let doc: Value = resp.json().limit(1 << 20).await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(
        (&scheme["type"], &scheme["scheme"]),
        (&json!("http"), &json!("bearer"))
    );
    assert_eq!(doc["security"], json!([{"bearer": []}]));

    let mut resp = gw
        .client
        .post(gw.admin_url("/clients"))
        .bearer_auth(TOKEN)
        .send_json(&json!({"client_id": "openapi-probe", "capacity": 5, "rate_per_sec": 1}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{:?}", resp.body().await);
    let mut resp = gw
        .client
        .get(gw.admin_url("/backends"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let backends: Value = resp.json().await.unwrap();
    let backend_id = backends["backends"][0]["id"].as_str().unwrap().to_string();

    let ops = operations(&doc);
    assert!(ops.len() >= 16, "{} operations", ops.len());
    for (method, template, op) in &ops {
        let path = fill(template, "openapi-probe", &backend_id);
        let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
        let public = op["security"] == json!([]);
        // Without the token first: a protected operation refuses before it does anything.
        let status = gw
            .client
            .request(method.clone(), gw.admin_url(&path))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if public {
            assert_ne!(status, 401, "{method} {template} is documented as public");
        } else {
            assert_eq!(status, 401, "{method} {template} without the token");
            assert!(
                op["responses"]["401"].is_object(),
                "{method} {template}: 401 undocumented"
            );
        }
        // With it, an empty request: whatever it answers (200, 204, 415, ...), the route exists.
        let status = gw
            .client
            .request(method.clone(), gw.admin_url(&path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert!(
            status != 404 && status != 405,
            "{method} {path} ({template}) is documented but answers {status}"
        );
        assert!(
            op["responses"][status.to_string()].is_object(),
            "{method} {template} answered {status}, which it does not document"
        );
    }
}
