//! One rate-limit decision, in ns: tollgate's registry lookup + bucket take beside the
//! `governor` crate's keyed limiter, measured in the same run; then the memory an anonymous
//! bucket costs under a flood of distinct addresses; the decision for a key among 1,000,000
//! registered clients beside the one among 10 (`scripts/scale-bench.sh` measures the memory a
//! registered client costs in the whole process).
//!
//! `cargo bench --bench ratelimit`
#![allow(clippy::unwrap_used)]

use std::{
    hint::black_box,
    net::{IpAddr, Ipv4Addr},
    num::NonZeroU32,
    sync::Arc,
};

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use criterion::{criterion_group, Criterion};
use tollgate::{
    ratelimit::{Bucket, MonotonicClock, Quota},
    registry::{
        hash_key, key_id, BucketCell, Check, ClientEntry, ClientTable, ClusterShare, KeyPrefix, LimitScope,
        LimitSettings, Limiter,
    },
};

const KEY: &str = "bench-api-key-0123456789abcdef";

fn registry() -> Arc<Limiter> {
    // Never limited during the run: the decision path is what is measured, not refusals.
    let quota = Quota::new(1_000_000, 1_000_000.0).unwrap();
    let entry = ClientEntry {
        id: "bench".into(),
        key_id: key_id(&hash_key(KEY.as_bytes())),
        key_prefix: KeyPrefix::of_key(KEY),
        extra: None,
        enabled: true,
        enforce: true,
        created_at: 0,
        updated_at: 0,
        cell: Arc::new(BucketCell::new(Bucket::full(quota, 0), 0, 0, 0)),
    };
    let limits = LimitSettings {
        api_key_header: HeaderName::from_static("x-api-key"),
        default_quota: quota,
        trusted_proxies: vec![],
        forwarded_header: tollgate::registry::ForwardedHeader::XForwardedFor,
        require_api_key: false,
        // The decision itself; a leased bucket takes the same lock and less arithmetic.
        scope: LimitScope::Local,
    };
    Limiter::new(
        ClientTable::build([Arc::new(entry)]),
        limits,
        MonotonicClock::default(),
        Arc::new(ClusterShare::new(LimitScope::Local)),
    )
}

fn decisions(c: &mut Criterion) {
    let shared = registry();
    let mut with_key = HeaderMap::new();
    with_key.insert(
        HeaderName::from_static("x-api-key"),
        HeaderValue::from_static(KEY),
    );
    let none = HeaderMap::new();
    let peer = Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)));

    let mut g = c.benchmark_group("one decision");
    g.bench_function("tollgate registry: API key (SHA-256 + lookup + bucket)", |b| {
        b.iter(|| black_box(shared.check(black_box(&with_key), peer)))
    });
    g.bench_function("tollgate registry: anonymous IP (one key)", |b| {
        b.iter(|| black_box(shared.check(black_box(&none), peer)))
    });
    let mut n = 0u32;
    g.bench_function("tollgate registry: anonymous IP (65536 keys)", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (n & 0xffff)));
            black_box(shared.check(black_box(&none), Some(ip)))
        })
    });

    let quota = governor::Quota::per_second(NonZeroU32::new(1_000_000).unwrap());
    let keyed = governor::RateLimiter::<IpAddr, _, _>::keyed(quota);
    let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    g.bench_function("governor keyed limiter: IP (one key)", |b| {
        b.iter(|| black_box(keyed.check_key(black_box(&ip))))
    });
    let keyed_many = governor::RateLimiter::<IpAddr, _, _>::keyed(quota);
    let mut m = 0u32;
    g.bench_function("governor keyed limiter: IP (65536 keys)", |b| {
        b.iter(|| {
            m = m.wrapping_add(1);
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (m & 0xffff)));
            black_box(keyed_many.check_key(black_box(&ip)))
        })
    });
    g.finish();
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A flood of distinct anonymous addresses: how much memory their buckets take.
fn memory_per_anonymous_key() {
    const KEYS: u32 = 1_000_000;
    let shared = registry();
    let none = HeaderMap::new();
    let before = rss_kib();
    for i in 0..KEYS {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        let _ = shared.check(&none, Some(ip));
    }
    let after = rss_kib();
    let kept = shared.anonymous().len();
    let bytes = (after.saturating_sub(before)) * 1024;
    println!(
        "anonymous buckets: {kept} distinct addresses kept, RSS +{} MiB, {} bytes per key",
        bytes >> 20,
        bytes / u64::from(KEYS)
    );
}

fn entry(id: String, key: &str, quota: Quota) -> Arc<ClientEntry> {
    Arc::new(ClientEntry {
        key_id: key_id(&hash_key(key.as_bytes())),
        key_prefix: KeyPrefix::of_key(key),
        id: id.into(),
        extra: None,
        enabled: true,
        enforce: true,
        created_at: 0,
        updated_at: 0,
        cell: Arc::new(BucketCell::new(Bucket::full(quota, 0), 0, 0, 0)),
    })
}

/// A limiter over `n` registered clients, and the same number (1,000) of request headers for
/// any `n`, with keys spread over the whole table: a large table is not measured through one
/// cached key, and both sizes read the same amount of request memory.
fn registered(n: usize) -> (Arc<Limiter>, Vec<HeaderMap>) {
    let quota = Quota::new(1_000_000, 1_000_000.0).unwrap();
    let key = |i: usize| format!("bench-api-key-{i:010}");
    let table = ClientTable::build((0..n).map(|i| entry(format!("client-{i}"), &key(i), quota)));
    let limits = LimitSettings {
        api_key_header: HeaderName::from_static("x-api-key"),
        default_quota: quota,
        trusted_proxies: vec![],
        forwarded_header: tollgate::registry::ForwardedHeader::XForwardedFor,
        require_api_key: false,
        // The decision itself; a leased bucket takes the same lock and less arithmetic.
        scope: LimitScope::Local,
    };
    let step = (n / 1000).max(1);
    let headers = (0..1000)
        .map(|j| (j * step) % n)
        .map(|i| {
            let mut h = HeaderMap::new();
            h.insert(
                HeaderName::from_static("x-api-key"),
                HeaderValue::from_str(&key(i)).unwrap(),
            );
            h
        })
        .collect();
    let share = Arc::new(ClusterShare::new(LimitScope::Local));
    (
        Limiter::new(table, limits, MonotonicClock::default(), share),
        headers,
    )
}

/// The target: a decision for a key among 1,000,000 registered clients within 1.5×
/// of the decision among 10.
fn table_size(c: &mut Criterion) {
    let mut g = c.benchmark_group("decision for a key among N registered clients");
    for n in [10usize, 1_000_000] {
        let (limiter, headers) = registered(n);
        let peer = Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)));
        let mut i = 0usize;
        g.bench_function(format!("among {n}"), |b| {
            b.iter(|| {
                i = (i + 1) % headers.len();
                let d = limiter.check(black_box(&headers[i]), peer);
                assert!(matches!(d, Check::Done(Ok(_))));
                black_box(d)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, decisions);
criterion_group!(tables, table_size);

fn main() {
    benches();
    // Before the large tables: a table freed earlier would leave memory the allocator reuses.
    memory_per_anonymous_key();
    tables();
    Criterion::default().configure_from_args().final_summary();
}
