//! Client matching and the anonymous quota: API-key header, trusted proxies, defaults.

use crate::{
    config::{
        cli::Cli,
        parse::{parse_bool, parse_forwarded_header, parse_header_name, parse_limit_scope},
        problems::Problems,
    },
    ratelimit::{Quota, QuotaError, MAX_CAPACITY},
    registry::{parse_nets, LimitSettings},
};

/// How requests are matched to clients and limited.
pub(in crate::config) fn limits(p: &mut Problems, cli: &Cli) -> Option<LimitSettings> {
    let api_key_header = p.check(
        "TOLLGATE_API_KEY_HEADER",
        "api-key-header",
        &cli.api_key_header,
        parse_header_name(&cli.api_key_header),
    );
    let default_quota = default_quota(p, cli);
    let trusted_proxies = p.check(
        "TOLLGATE_TRUSTED_PROXIES",
        "trusted-proxies",
        &cli.trusted_proxies,
        parse_nets(&cli.trusted_proxies),
    );
    let require_api_key = p.check(
        "TOLLGATE_REQUIRE_API_KEY",
        "require-api-key",
        &cli.require_api_key,
        parse_bool(&cli.require_api_key),
    );
    let forwarded_header = p.check(
        "TOLLGATE_FORWARDED_HEADER",
        "forwarded-header",
        &cli.forwarded_header,
        parse_forwarded_header(&cli.forwarded_header),
    );
    let scope = p.check(
        "TOLLGATE_LIMIT_SCOPE",
        "limit-scope",
        &cli.limit_scope,
        parse_limit_scope(&cli.limit_scope),
    );
    Some(LimitSettings {
        scope: scope?,
        api_key_header: api_key_header?,
        default_quota: default_quota?,
        trusted_proxies: trusted_proxies?,
        forwarded_header: forwarded_header?,
        require_api_key: require_api_key?,
    })
}

/// The quota of anonymous clients, with defaults that depend on `--demo`.
fn default_quota(p: &mut Problems, cli: &Cli) -> Option<Quota> {
    // The demo answers a newcomer's load test (ab -n 5000 -c 1000) from one address.
    let (cap_default, rate_default) = if cli.demo {
        ("10000", "10000")
    } else {
        ("100", "10")
    };
    let raw_capacity = cli.default_capacity.as_deref().unwrap_or(cap_default);
    let raw_rate = cli.default_rate.as_deref().unwrap_or(rate_default);
    let capacity = p.check(
        "TOLLGATE_DEFAULT_CAPACITY",
        "default-capacity",
        raw_capacity,
        raw_capacity
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("expected a whole number from 1 to {MAX_CAPACITY}")),
    );
    let rate = p.check(
        "TOLLGATE_DEFAULT_RATE",
        "default-rate",
        raw_rate,
        raw_rate
            .trim()
            .parse::<f64>()
            .map_err(|_| "expected tokens per second, e.g. 10 or 0.2".to_string()),
    );
    match Quota::new(capacity?, rate?) {
        Ok(q) => Some(q),
        Err(QuotaError::Capacity) => p.check(
            "TOLLGATE_DEFAULT_CAPACITY",
            "default-capacity",
            raw_capacity,
            Err(QuotaError::Capacity.to_string()),
        ),
        Err(e) => p.check(
            "TOLLGATE_DEFAULT_RATE",
            "default-rate",
            raw_rate,
            Err(e.to_string()),
        ),
    }
}
