//! Per-concern settings built from the raw command line, each recording its problems.
//!
//! Every function parses all of its values before giving up, so that one bad value never
//! hides another; a `None` result always comes with at least one recorded problem.

use std::time::Duration;

use actix_web::http::header::HeaderName;

use super::{
    cli::Cli,
    parse::{
        parse_addr, parse_backends, parse_bool, parse_database_url, parse_forwarded_header,
        parse_header_name, parse_int, parse_path, parse_size, parse_strategy,
    },
    problems::Problems,
    settings::ServerSettings,
};
use crate::{
    http::{
        admin::{AdminSettings, AdminToken},
        proxy::{ProxySettings, UploadPolicy},
    },
    pool::{BackendSpec, PoolSettings, Thresholds},
    ratelimit::{Quota, QuotaError, MAX_CAPACITY},
    registry::{parse_nets, LimitSettings, RegistrySettings},
    store::{redact_password, StoreSettings},
};

/// The proxy listener, its workers and shutdown timing.
pub(super) fn server(p: &mut Problems, cli: &Cli) -> Option<ServerSettings> {
    let listen = p.check("TOLLGATE_LISTEN", "listen", &cli.listen, parse_addr(&cli.listen));
    let workers = match cli.workers.as_deref() {
        None => Some(std::thread::available_parallelism().map_or(1, |n| n.get())),
        Some(raw) => p
            .check("TOLLGATE_WORKERS", "workers", raw, parse_int(raw, 1, 1024))
            .map(|n| n as usize),
    };
    let connect_timeout = p.duration(
        "TOLLGATE_CONNECT_TIMEOUT",
        "connect-timeout",
        &cli.connect_timeout,
    );
    let shutdown_timeout = p.duration(
        "TOLLGATE_SHUTDOWN_TIMEOUT",
        "shutdown-timeout",
        &cli.shutdown_timeout,
    );
    let drain_delay = match cli.drain_delay.trim() {
        "0" | "0s" | "0ms" => Some(Duration::ZERO),
        raw => p.duration("TOLLGATE_DRAIN_DELAY", "drain-delay", raw),
    };
    Some(ServerSettings {
        listen: listen?,
        workers: workers?,
        connect_timeout: connect_timeout?,
        shutdown_timeout: shutdown_timeout?,
        drain_delay: drain_delay?,
    })
}

/// The admin listener and its token, which a listener off loopback requires.
pub(super) fn admin(p: &mut Problems, cli: &Cli) -> Option<AdminSettings> {
    let listen = p.check(
        "TOLLGATE_ADMIN_LISTEN",
        "admin-listen",
        &cli.admin_listen,
        parse_addr(&cli.admin_listen),
    );
    let token = cli.admin_token.as_deref().map(|t| {
        // The token itself never appears in a message.
        if t.len() < 16 || t.chars().any(|c| !c.is_ascii_graphic()) {
            p.push(
                "TOLLGATE_ADMIN_TOKEN (--admin-token): invalid value (hidden): expected at \
                 least 16 visible ASCII characters, no spaces"
                    .to_string(),
            );
        }
        AdminToken::new(t.to_string())
    });
    if let Some(addr) = listen {
        if token.is_none() && !addr.ip().is_loopback() {
            p.push(format!(
                "TOLLGATE_ADMIN_TOKEN (--admin-token): unset, but the admin listener {addr} is \
                 not on loopback: set a token or listen on 127.0.0.1"
            ));
        }
    }
    Some(AdminSettings {
        listen: listen?,
        token,
    })
}

/// The backends; none only in demo mode, which adds its own.
pub(super) fn backends(p: &mut Problems, cli: &Cli) -> Option<Vec<BackendSpec>> {
    match cli.backends.as_deref() {
        Some(raw) if !raw.trim().is_empty() => {
            p.check("TOLLGATE_BACKENDS", "backends", raw, parse_backends(raw))
        }
        _ if cli.demo => Some(Vec::new()),
        _ => {
            p.push(
                "TOLLGATE_BACKENDS (--backends): unset: name at least one backend, e.g. \
                 http://127.0.0.1:9000, or run with --demo"
                    .to_string(),
            );
            None
        }
    }
}

/// Selection strategy and health checking.
pub(super) fn pool(p: &mut Problems, cli: &Cli) -> Option<PoolSettings> {
    let strategy = p.check(
        "TOLLGATE_LB_STRATEGY",
        "lb-strategy",
        &cli.lb_strategy,
        parse_strategy(&cli.lb_strategy),
    );
    let health_path = p.check(
        "TOLLGATE_HEALTH_PATH",
        "health-path",
        &cli.health_path,
        parse_path(&cli.health_path),
    );
    let interval = p.duration(
        "TOLLGATE_HEALTH_INTERVAL",
        "health-interval",
        &cli.health_interval,
    );
    let timeout = p.duration("TOLLGATE_HEALTH_TIMEOUT", "health-timeout", &cli.health_timeout);
    let healthy = p.check(
        "TOLLGATE_HEALTHY_THRESHOLD",
        "healthy-threshold",
        &cli.healthy_threshold,
        parse_int(&cli.healthy_threshold, 1, 100),
    );
    let unhealthy = p.check(
        "TOLLGATE_UNHEALTHY_THRESHOLD",
        "unhealthy-threshold",
        &cli.unhealthy_threshold,
        parse_int(&cli.unhealthy_threshold, 1, 100),
    );
    let passive_window = match cli.passive_eject_window.trim() {
        "0" | "0s" | "0ms" => Some(Duration::ZERO),
        raw => p.duration("TOLLGATE_PASSIVE_EJECT_WINDOW", "passive-eject-window", raw),
    };
    let panic_threshold = p.check(
        "TOLLGATE_PANIC_THRESHOLD",
        "panic-threshold",
        &cli.panic_threshold,
        parse_int(cli.panic_threshold.trim().trim_end_matches('%'), 0, 100)
            .map(|n| n as u8)
            .map_err(|e| format!("{e} (percent; 0 turns panic mode off)")),
    );
    if let (Some(timeout), Some(interval)) = (timeout, interval) {
        if timeout > interval {
            p.push(format!(
                "TOLLGATE_HEALTH_TIMEOUT (--health-timeout): invalid value \"{}\": must not be longer than TOLLGATE_HEALTH_INTERVAL ({})",
                cli.health_timeout, cli.health_interval
            ));
        }
    }
    Some(PoolSettings {
        strategy: strategy?,
        health_path: health_path?,
        interval: interval?,
        timeout: timeout?,
        thresholds: Thresholds {
            healthy: healthy?,
            unhealthy: unhealthy?,
            passive_window: passive_window?,
            // A check that timed out within one interval of a proxied answer measured the
            // checker's queue, not the backend.
            answer_grace: interval?,
        },
        panic_threshold: panic_threshold?,
    })
}

/// Forwarding limits; `strip_header` is the API-key header while rate limiting is on.
pub(super) fn proxy(p: &mut Problems, cli: &Cli, strip_header: Option<HeaderName>) -> Option<ProxySettings> {
    let upstream_timeout = p.duration(
        "TOLLGATE_UPSTREAM_TIMEOUT",
        "upstream-timeout",
        &cli.upstream_timeout,
    );
    let retries = p.check(
        "TOLLGATE_RETRIES",
        "retries",
        &cli.retries,
        parse_int(&cli.retries, 0, 10),
    );
    let max_body_size = p.check(
        "TOLLGATE_MAX_BODY_SIZE",
        "max-body-size",
        &cli.max_body_size,
        parse_size(&cli.max_body_size),
    );
    let request_buffer = p.check(
        "TOLLGATE_REQUEST_BUFFER",
        "request-buffer",
        &cli.request_buffer,
        parse_size(&cli.request_buffer),
    );
    let client_body_timeout = p.duration(
        "TOLLGATE_CLIENT_BODY_TIMEOUT",
        "client-body-timeout",
        &cli.client_body_timeout,
    );
    let client_body_min_rate = p.check(
        "TOLLGATE_CLIENT_BODY_MIN_RATE",
        "client-body-min-rate",
        &cli.client_body_min_rate,
        parse_size(&cli.client_body_min_rate),
    );
    let client_body_grace = p.duration(
        "TOLLGATE_CLIENT_BODY_GRACE",
        "client-body-grace",
        &cli.client_body_grace,
    );
    let upstream_body_timeout = p.duration(
        "TOLLGATE_UPSTREAM_BODY_TIMEOUT",
        "upstream-body-timeout",
        &cli.upstream_body_timeout,
    );
    Some(ProxySettings {
        retries: retries?,
        max_body_size: max_body_size?,
        request_buffer: request_buffer?,
        upload: UploadPolicy {
            idle: client_body_timeout?,
            min_rate: client_body_min_rate?,
            grace: client_body_grace?,
        },
        upstream_body_timeout: upstream_body_timeout?,
        strip_header,
        upstream_timeout: upstream_timeout?,
    })
}

/// The database and its timeouts.
pub(super) fn store(p: &mut Problems, cli: &Cli) -> Option<StoreSettings> {
    let url = p.check(
        "DATABASE_URL",
        "database-url",
        &redact_password(&cli.database_url),
        parse_database_url(&cli.database_url),
    );
    let checkout_timeout = p.duration("TOLLGATE_DB_TIMEOUT", "db-timeout", &cli.db_timeout);
    let startup_timeout = p.duration(
        "TOLLGATE_DB_STARTUP_TIMEOUT",
        "db-startup-timeout",
        &cli.db_startup_timeout,
    );
    Some(StoreSettings {
        url: url?,
        checkout_timeout: checkout_timeout?,
        startup_timeout: startup_timeout?,
    })
}

/// Timers of the client registry.
pub(super) fn registry(p: &mut Problems, cli: &Cli) -> Option<RegistrySettings> {
    let flush_interval = p.duration("TOLLGATE_FLUSH_INTERVAL", "flush-interval", &cli.flush_interval);
    Some(RegistrySettings {
        flush_interval: flush_interval?,
        sweep_interval: Duration::from_secs(1),
    })
}

/// How requests are matched to clients and limited.
pub(super) fn limits(p: &mut Problems, cli: &Cli) -> Option<LimitSettings> {
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
    Some(LimitSettings {
        api_key_header: api_key_header?,
        default_quota: default_quota?,
        trusted_proxies: trusted_proxies?,
        forwarded_header: forwarded_header?,
        require_api_key: require_api_key?,
    })
}

/// Rate limiting on or off.
pub(super) fn rate_limit(p: &mut Problems, cli: &Cli) -> Option<bool> {
    p.check(
        "TOLLGATE_RATE_LIMIT",
        "rate-limit",
        &cli.rate_limit,
        parse_bool(&cli.rate_limit),
    )
}

/// The env_logger filter, checked here so that a typo is reported with the rest.
pub(super) fn log(p: &mut Problems, cli: &Cli) -> Option<String> {
    match env_filter::Builder::new().try_parse(&cli.log) {
        Ok(_) => Some(cli.log.clone()),
        Err(e) => {
            p.push(format!(
                "RUST_LOG (--log): invalid value \"{}\": {e}; expected an env_logger filter like info or warn,tollgate=debug",
                cli.log.escape_debug()
            ));
            None
        }
    }
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
