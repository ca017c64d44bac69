//! The choice between routes, case by case (the order is documented in `table.rs`).

use actix_web::http::{
    header::{HeaderMap, HeaderName, HeaderValue},
    Method,
};

use super::*;

fn rule(
    id: &str,
    hosts: &[&str],
    paths: &[&str],
    methods: &[&str],
    headers: &[(&str, &str)],
    priority: i32,
) -> RouteRule<()> {
    RouteRule {
        id: id.to_string(),
        hosts: hosts.iter().map(|h| HostPattern::parse(h).unwrap()).collect(),
        paths: paths.iter().map(|p| PathPattern::parse(p).unwrap()).collect(),
        methods: methods
            .iter()
            .map(|m| Method::from_bytes(m.as_bytes()).unwrap())
            .collect(),
        headers: headers
            .iter()
            .map(|(n, v)| (HeaderName::from_bytes(n.as_bytes()).unwrap(), v.to_string()))
            .collect(),
        priority,
        target: (),
    }
}

fn table() -> RouteTable<()> {
    RouteTable::build(vec![
        rule("any-root", &[], &["/"], &[], &[], 0),
        rule("any-api", &[], &["/api"], &[], &[], 0),
        rule("exact-host", &["api.example.com"], &[], &[], &[], 0),
        rule("exact-users", &["api.example.com"], &["/users"], &[], &[], 0),
        rule(
            "exact-login",
            &["api.example.com"],
            &["=/users/login"],
            &[],
            &[],
            0,
        ),
        rule(
            "exact-users-post",
            &["api.example.com"],
            &["/users"],
            &["POST"],
            &[],
            0,
        ),
        rule(
            "tenant-a",
            &["api.example.com"],
            &["/users"],
            &["GET"],
            &[("x-tenant", "a")],
            0,
        ),
        rule("wild", &["*.example.com"], &["/users/admin"], &[], &[], 0),
        rule("wild-deep", &["*.eu.example.com"], &[], &[], &[], 0),
        rule("billing-low", &[], &["/billing"], &[], &[], 1),
        rule(
            "billing-high",
            &[],
            &["/billing"],
            &["GET", "POST", "PUT"],
            &[],
            0,
        ),
        rule("prio-low", &[], &["/p"], &["GET"], &[], 1),
        rule("prio-high", &[], &["/p"], &["POST"], &[], 5),
    ])
    .unwrap()
}

#[test]
fn routes_are_chosen_by_host_class_then_path_then_conditions_then_priority() {
    let t = table();
    let tenant_a: &[(&str, &str)] = &[("x-tenant", "a")];
    // (host, method, path, headers, chosen route)
    type Case<'a> = (
        Option<&'a str>,
        &'a str,
        &'a str,
        &'a [(&'a str, &'a str)],
        Option<&'a str>,
    );
    let cases: &[Case] = &[
        // An exact host beats the longer path of a wildcard or of any host.
        (
            Some("api.example.com"),
            "GET",
            "/users/admin",
            &[],
            Some("exact-users"),
        ),
        (
            Some("API.Example.com:8443"),
            "GET",
            "/users/1",
            &[],
            Some("exact-users"),
        ),
        // Within the host: the longest path, an exact one before a prefix.
        (
            Some("api.example.com"),
            "GET",
            "/users/login",
            &[],
            Some("exact-login"),
        ),
        (Some("api.example.com"), "GET", "/other", &[], Some("exact-host")),
        // Same path: more conditions first (method + header beats method beats none).
        (
            Some("api.example.com"),
            "POST",
            "/users",
            &[],
            Some("exact-users-post"),
        ),
        (
            Some("api.example.com"),
            "GET",
            "/users",
            tenant_a,
            Some("tenant-a"),
        ),
        (
            Some("api.example.com"),
            "GET",
            "/users",
            &[("x-tenant", "b")],
            Some("exact-users"),
        ),
        // A wildcard when no exact host matches; never the bare name; the longer suffix first.
        (
            Some("www.example.com"),
            "GET",
            "/users/admin/x",
            &[],
            Some("wild"),
        ),
        (Some("example.com"), "GET", "/users/admin", &[], Some("any-root")),
        (
            Some("a.eu.example.com"),
            "GET",
            "/users/admin",
            &[],
            Some("wild-deep"),
        ),
        // Any host: segment-aware prefixes.
        (Some("other.test"), "GET", "/api/v1", &[], Some("any-api")),
        (Some("other.test"), "GET", "/apix", &[], Some("any-root")),
        (None, "GET", "/api", &[], Some("any-api")),
        // More conditions beat a higher priority; priority decides between equals.
        (None, "GET", "/billing", &[], Some("billing-high")),
        (None, "DELETE", "/billing", &[], Some("billing-low")),
        (None, "GET", "/p", &[], Some("prio-low")),
        (None, "POST", "/p", &[], Some("prio-high")),
    ];
    for (host, method, path, headers, want) in cases {
        let mut map = HeaderMap::new();
        for (n, v) in *headers {
            map.insert(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let got = t.choose(*host, path, &method, &map).map(|c| c.route.id.as_str());
        assert_eq!(got, *want, "{host:?} {method} {path} {headers:?}");
    }
}

#[test]
fn priority_decides_between_routes_that_match_alike() {
    let t = RouteTable::build(vec![
        rule("a", &[], &["/x"], &["GET"], &[], 0),
        rule("b", &[], &["/x"], &["POST", "GET"], &[], 3),
    ])
    .unwrap();
    let got = t
        .choose(None, "/x", &Method::GET, &HeaderMap::new())
        .map(|c| c.route.id.clone());
    assert_eq!(got.as_deref(), Some("b"));
    // Equal in everything: the id decides, so the choice never depends on insertion order.
    for order in [vec!["m", "n"], vec!["n", "m"]] {
        let t = RouteTable::build(
            order
                .iter()
                .map(|id| rule(id, &[], &["/x"], &["GET"], &[("h", id)], 0))
                .collect(),
        )
        .unwrap();
        let mut h = HeaderMap::new();
        h.insert(HeaderName::from_static("h"), HeaderValue::from_static("n"));
        assert_eq!(
            t.choose(None, "/x", &Method::GET, &h)
                .map(|c| c.route.id.clone())
                .as_deref(),
            Some("n")
        );
    }
}

#[test]
fn no_route_matches_outside_every_condition() {
    let t = RouteTable::build(vec![rule("only", &["a.test"], &["=/x"], &["GET"], &[], 0)]).unwrap();
    let none = |host, path, method: Method| t.choose(host, path, &method, &HeaderMap::new()).is_none();
    assert!(none(Some("b.test"), "/x", Method::GET));
    assert!(none(Some("a.test"), "/x/", Method::GET));
    assert!(none(Some("a.test"), "/x", Method::POST));
    assert!(none(None, "/x", Method::GET));
    assert!(!none(Some("A.TEST:80"), "/x", Method::GET));
}

#[test]
fn two_routes_with_the_same_match_are_refused_naming_both() {
    let err = RouteTable::build(vec![
        rule("first", &["a.test", "b.test"], &["/x"], &["GET", "POST"], &[], 0),
        rule("second", &["b.test"], &["/x", "/y"], &["POST", "GET"], &[], 7),
    ])
    .unwrap_err();
    assert_eq!(
        err,
        SameMatch {
            first: "first".into(),
            second: "second".into(),
            host: "b.test".into(),
            path: "/x".into()
        }
    );
    // A different method set, header or path kind is a different match.
    for other in [
        rule("second", &["b.test"], &["/x"], &["GET"], &[], 0),
        rule("second", &["b.test"], &["/x"], &["GET", "POST"], &[("h", "v")], 0),
        rule("second", &["b.test"], &["=/x"], &["GET", "POST"], &[], 0),
    ] {
        RouteTable::build(vec![
            rule("first", &["b.test"], &["/x"], &["GET", "POST"], &[], 0),
            other,
        ])
        .unwrap();
    }
}

#[test]
fn the_matched_path_condition_is_returned_for_stripping() {
    let t = RouteTable::build(vec![rule("users", &[], &["/v1/users", "/users"], &[], &[], 0)]).unwrap();
    let chosen = t
        .choose(None, "/users/7", &Method::GET, &HeaderMap::new())
        .unwrap();
    assert_eq!(chosen.path.map(|p| p.strip("/users/7")), Some("/7"));
    let chosen = t
        .choose(None, "/v1/users", &Method::GET, &HeaderMap::new())
        .unwrap();
    assert_eq!(chosen.path.map(|p| p.strip("/v1/users")), Some("/"));
}
