//! Route choice, in ns: a request's route among 10 routes beside among 10,000 (1,000 hosts ×
//! 10 paths, a tenth of the hosts as wildcards, plus routes for any host), over the same
//! number (1,000) of distinct requests for both sizes, so that the large table is not measured
//! through one cached entry. Target (issue 18): the 10,000 case within 2× of the 10 case.
//!
//! `cargo bench --bench routing`
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use actix_web::http::{header::HeaderMap, Method};
use criterion::{criterion_group, Criterion};
use tollgate::routing::{HostPattern, PathPattern, RouteRule, RouteTable};

const PATHS: [&str; 10] = [
    "/users",
    "/billing",
    "/search",
    "/orders",
    "=/login",
    "/v1/items",
    "/v2/items",
    "/static",
    "/admin",
    "/health",
];

fn host(i: usize) -> String {
    format!("svc-{i}.example{}.com", i % 7)
}

/// `hosts` hosts × 10 paths (every tenth host a `*.` wildcard), and the paths for any host.
fn table(hosts: usize) -> RouteTable<usize> {
    let mut routes = Vec::new();
    for h in 0..hosts {
        let pattern = if h % 10 == 9 {
            format!("*.{}", host(h))
        } else {
            host(h)
        };
        for (j, p) in PATHS.iter().enumerate() {
            routes.push(RouteRule {
                id: format!("r-{h}-{j}"),
                hosts: vec![HostPattern::parse(&pattern).unwrap()],
                paths: vec![PathPattern::parse(p).unwrap()],
                methods: vec![],
                headers: vec![],
                priority: 0,
                target: h,
            });
        }
    }
    for (j, p) in PATHS.iter().enumerate() {
        routes.push(RouteRule {
            id: format!("any-{j}"),
            hosts: vec![],
            paths: vec![PathPattern::parse(p).unwrap()],
            methods: vec![],
            headers: vec![],
            priority: 0,
            target: usize::MAX,
        });
    }
    RouteTable::build(routes).unwrap()
}

/// 1,000 requests spread over the table's hosts (wildcard hosts asked by a name under them)
/// and paths, a few for hosts it does not name.
fn requests(hosts: usize) -> Vec<(String, String)> {
    (0..1000)
        .map(|k| {
            let h = (k * 7919) % (hosts + 1);
            let name = if h == hosts {
                "unknown.test".to_string()
            } else if h % 10 == 9 {
                format!("a.{}", host(h))
            } else {
                host(h)
            };
            let p = PATHS[k % PATHS.len()].trim_start_matches('=');
            (name, format!("{p}/item-{k}"))
        })
        .collect()
}

fn choice(c: &mut Criterion) {
    let mut g = c.benchmark_group("route choice among N routes");
    // 1 host × 10 paths (+ 10 for any host) against 1,000 hosts × 10 paths (+ 10).
    for hosts in [1usize, 1000] {
        let t = table(hosts);
        let reqs = requests(hosts);
        let none = HeaderMap::new();
        let mut i = 0usize;
        g.bench_function(format!("among {}", t.len() - PATHS.len()), |b| {
            b.iter(|| {
                i = (i + 1) % reqs.len();
                let (h, p) = &reqs[i];
                let chosen = t.choose(Some(black_box(h)), black_box(p), &Method::GET, &none);
                black_box(chosen.map(|c| c.route.target))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, choice);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
