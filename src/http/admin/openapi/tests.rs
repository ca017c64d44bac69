//! The document against the routes actix really serves, both ways: every route of the admin
//! app is documented, and every documented operation is a route.
//!
//! actix has no public iterator over an app's resources, but its resource map prints every
//! resource definition (`patterns: Single("/clients/{client_id}")`) in `Debug`: the patterns
//! are read from there, so a route added to `configure` is seen without a list to keep. Each
//! pattern is then asked with every method; whatever answers other than 404/405 is a route.
//! The app runs without `AdminState`, so a handler that needs it answers 500 before doing
//! anything: still a route.

use std::{cell::RefCell, rc::Rc};

use actix_web::{
    body::MessageBody,
    dev::{Service, ServiceResponse},
    http::Method,
    test as web_test, App,
};
use utoipa::openapi::{path::Operation, PathItem};

use super::{document, BEARER};

const METHODS: [Method; 7] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::HEAD,
    Method::OPTIONS,
];

/// Every `patterns: Single("…")` of a resource map's `Debug` form, but the empty ones of the
/// app and its scopes.
fn patterns(debug: &str) -> Vec<String> {
    const MARK: &str = "patterns: Single(\"";
    let mut out: Vec<String> = debug
        .match_indices(MARK)
        .filter_map(|(at, _)| {
            let rest = &debug[at + MARK.len()..];
            rest.find('"').map(|end| rest[..end].to_string())
        })
        .filter(|p| !p.is_empty())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A path of `pattern` with each `{param}` given a value that is a valid id of either kind.
fn concrete(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|s| if s.starts_with('{') { "probe-1" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

fn operation<'a>(item: &'a PathItem, method: &Method) -> Option<&'a Operation> {
    match *method {
        Method::GET => item.get.as_ref(),
        Method::POST => item.post.as_ref(),
        Method::PUT => item.put.as_ref(),
        Method::PATCH => item.patch.as_ref(),
        Method::DELETE => item.delete.as_ref(),
        Method::HEAD => item.head.as_ref(),
        Method::OPTIONS => item.options.as_ref(),
        _ => None,
    }
}

/// Whether `template` (`/clients/{client_id}`) matches the concrete `path`.
fn matches(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| t.starts_with('{') || t == p)
}

/// Whether the document has an operation for `method` on a template matching `path`.
fn documented(path: &str, method: &Method) -> bool {
    document()
        .paths
        .paths
        .iter()
        .any(|(template, item)| matches(template, path) && operation(item, method).is_some())
}

/// The admin app without state, and the `Debug` form of its resource map.
async fn admin_app() -> (
    impl Service<actix_http::Request, Response = ServiceResponse<impl MessageBody>, Error = actix_web::Error>,
    String,
) {
    let rmap: Rc<RefCell<String>> = Rc::default();
    let seen = rmap.clone();
    let app = web_test::init_service(
        App::new()
            .wrap_fn(move |req, srv| {
                *seen.borrow_mut() = format!("{:?}", req.resource_map());
                srv.call(req)
            })
            .configure(super::super::configure),
    )
    .await;
    web_test::call_service(&app, web_test::TestRequest::get().uri("/healthz").to_request()).await;
    let debug = rmap.borrow().clone();
    (app, debug)
}

fn answers(status: u16) -> bool {
    status != 404 && status != 405
}

#[actix_web::test]
async fn every_route_is_documented() {
    let (app, rmap) = admin_app().await;
    let patterns = patterns(&rmap);
    // The probes, the document, backends (2), clients (3) and the cluster at least: fewer means
    // the resource map's Debug form changed and this test reads nothing.
    assert!(
        patterns.len() >= 9,
        "resource patterns read from actix: {patterns:?}"
    );
    let mut routes = 0;
    for pattern in &patterns {
        let path = concrete(pattern);
        for method in METHODS {
            let req = web_test::TestRequest::default()
                .method(method.clone())
                .uri(&path)
                .to_request();
            let status = web_test::call_service(&app, req).await.status().as_u16();
            if answers(status) {
                routes += 1;
                assert!(
                    documented(&path, &method),
                    "{method} {path} ({pattern}) answers {status} but is not in /openapi.json"
                );
            }
        }
    }
    assert!(routes >= 15, "{routes} routes found");
}

#[actix_web::test]
async fn every_documented_operation_is_a_route() {
    let (app, _) = admin_app().await;
    let mut operations = 0;
    for (template, item) in &document().paths.paths {
        let path = concrete(template);
        for method in METHODS.iter().filter(|m| operation(item, m).is_some()) {
            operations += 1;
            let req = web_test::TestRequest::default()
                .method(method.clone())
                .uri(&path)
                .to_request();
            let status = web_test::call_service(&app, req).await.status().as_u16();
            assert!(
                answers(status),
                "{method} {template} is documented but answers {status}"
            );
        }
    }
    // Not a count to keep in step: a floor, so that an empty document cannot pass.
    assert!(operations >= 17, "{operations} operations documented");
}

#[test]
fn the_document_is_openapi_3_1_with_unique_operation_ids_and_the_bearer_scheme_but_on_public_ones() {
    let doc = serde_json::to_value(document()).unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let scheme = &doc["components"]["securitySchemes"][BEARER];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    assert_eq!(doc["security"], serde_json::json!([{ BEARER: [] }]));
    let mut ids = std::collections::HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(
                ids.insert(id.to_string()),
                "{method} {path}: operationId {id:?} twice or none"
            );
            let public = ["/", "/healthz", "/readyz", "/openapi.json"].contains(&path.as_str());
            if public {
                assert_eq!(op["security"], serde_json::json!([]), "{method} {path}");
            } else {
                assert!(op.get("security").is_none(), "{method} {path}: the top level's");
                assert!(op["responses"]["401"].is_object(), "{method} {path}: no 401");
            }
        }
    }
}

#[test]
fn a_backend_patch_needs_a_field_and_a_client_post_its_id() {
    let doc = serde_json::to_value(document()).unwrap();
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["BackendPatchRequest"]["minProperties"], 1);
    assert!(schemas["BackendPatchRequest"].get("maxProperties").is_none());
    assert_eq!(schemas["NewClientRequest"]["required"][0], "client_id");
    assert_eq!(schemas["BackendRequest"]["additionalProperties"], false);
}

#[test]
fn patterns_are_read_from_the_debug_form() {
    let debug = r#"ResourceMap { pattern: ResourceDef { patterns: Single(""), .. }, nodes: Some([
        ResourceMap { pattern: ResourceDef { patterns: Single("/a/{id}"), .. } },
        ResourceMap { pattern: ResourceDef { patterns: Single("/b"), .. } } ]) }"#;
    assert_eq!(patterns(debug), ["/a/{id}", "/b"]);
    assert!(matches("/a/{id}", "/a/probe-1") && !matches("/a/{id}", "/a/b/c"));
}
