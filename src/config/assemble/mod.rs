//! Per-concern settings built from the raw command line, each recording its problems.
//!
//! Every function parses all of its values before giving up, so that one bad value never
//! hides another; a `None` result always comes with at least one recorded problem. The
//! larger concerns have a file each: `pool`, `proxy`, `limits`.

mod limits;
mod pool;
mod proxy;

pub(super) use self::{limits::limits, pool::pool, proxy::proxy};

use std::time::Duration;

use super::{
    cli::Cli,
    parse::{parse_addr, parse_backends, parse_bool, parse_database_url, parse_int},
    problems::Problems,
    settings::ServerSettings,
};
use crate::{
    http::admin::{AdminSettings, AdminToken},
    metrics::MetricsSettings,
    pool::BackendSpec,
    registry::RegistrySettings,
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
    let keepalive_timeout = match cli.keepalive_timeout.trim() {
        "0" | "0s" | "0ms" => Some(Duration::ZERO),
        raw => p.duration("TOLLGATE_KEEPALIVE_TIMEOUT", "keepalive-timeout", raw),
    };
    let drain_delay = match cli.drain_delay.trim() {
        "0" | "0s" | "0ms" => Some(Duration::ZERO),
        raw => p.duration("TOLLGATE_DRAIN_DELAY", "drain-delay", raw),
    };
    Some(ServerSettings {
        listen: listen?,
        workers: workers?,
        connect_timeout: connect_timeout?,
        shutdown_timeout: shutdown_timeout?,
        keepalive_timeout: keepalive_timeout?,
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

/// The backends named at start, which replace the stored list; `None` (unset or blank) keeps
/// the stored list. Demo mode names its own, so the outer `Option` is only for a problem.
pub(super) fn backends(p: &mut Problems, cli: &Cli) -> Option<Option<Vec<BackendSpec>>> {
    match cli.backends.as_deref() {
        Some(raw) if !raw.trim().is_empty() => p
            .check("TOLLGATE_BACKENDS", "backends", raw, parse_backends(raw))
            .map(Some),
        _ => Some(None),
    }
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
    let sync_interval = p.duration("TOLLGATE_SYNC_INTERVAL", "sync-interval", &cli.sync_interval);
    let lease_tick = p.duration("TOLLGATE_LEASE_TICK", "lease-tick", &cli.lease_tick);
    Some(RegistrySettings {
        lease_tick: lease_tick?,
        flush_interval: flush_interval?,
        sweep_interval: Duration::from_secs(1),
        sync_interval: sync_interval?,
    })
}

/// Metrics on or off, who may read them, and how many clients get series of their own.
pub(super) fn metrics(p: &mut Problems, cli: &Cli) -> Option<MetricsSettings> {
    let enabled = p.check(
        "TOLLGATE_METRICS",
        "metrics",
        &cli.metrics,
        parse_bool(&cli.metrics),
    );
    let public = p.check(
        "TOLLGATE_METRICS_PUBLIC",
        "metrics-public",
        &cli.metrics_public,
        parse_bool(&cli.metrics_public),
    );
    let client_limit = p.check(
        "TOLLGATE_METRICS_CLIENT_LIMIT",
        "metrics-client-limit",
        &cli.metrics_client_limit,
        parse_int(&cli.metrics_client_limit, 0, 100_000),
    );
    Some(MetricsSettings {
        enabled: enabled?,
        public: public?,
        client_limit: usize::try_from(client_limit?).ok()?,
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
