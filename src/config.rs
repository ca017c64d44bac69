//! Settings from command-line flags and environment variables, validated all at once.
//!
//! clap reads every setting as a string (flag first, then environment), so that a bad value
//! never stops parsing early: [`Settings::from_cli`] checks each one and reports every problem
//! in one go, each naming the variable, the flag, the value and the accepted form.

use std::{fmt, net::SocketAddr, num::NonZeroU32, time::Duration};

use actix_web::http::Uri;
use clap::{Parser, Subcommand};
use ipnet::IpNet;

use crate::ratelimit::Quota;

/// Largest accepted backend weight; keeps the smooth round-robin cycle small.
pub const MAX_WEIGHT: u32 = 1000;

/// Command line and environment of the `tollgate` binary.
#[derive(Debug, Parser)]
#[command(
    name = "tollgate",
    version,
    about = "HTTP API gateway: load balancing across backends and per-client rate limits",
    after_help = "Every option can also be set by its environment variable, or in a .env file \
                  in the working directory; a flag beats the environment."
)]
pub struct Cli {
    /// Proxy listener address.
    #[arg(long, env = "TOLLGATE_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: String,

    /// Admin API listener address.
    #[arg(long, env = "TOLLGATE_ADMIN_LISTEN", default_value = "127.0.0.1:8081")]
    pub admin_listen: String,

    /// Bearer token for the admin API. Unset is only allowed while the admin listener is on
    /// loopback.
    #[arg(long, env = "TOLLGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Comma-separated backend base URLs, each optionally followed by `=WEIGHT` (1-1000,
    /// default 1), e.g. `http://10.0.0.5:9000=3,http://10.0.0.6:9000`.
    #[arg(long, env = "TOLLGATE_BACKENDS")]
    pub backends: Option<String>,

    /// Load-balancing strategy: round-robin (smooth weighted when weights differ),
    /// least-connections, or random (power of two choices).
    #[arg(long, env = "TOLLGATE_LB_STRATEGY", default_value = "round-robin")]
    pub lb_strategy: String,

    /// Path of the active health check, requested with GET on every backend.
    #[arg(long, env = "TOLLGATE_HEALTH_PATH", default_value = "/")]
    pub health_path: String,

    /// Time between two health checks of a backend (e.g. 500ms, 5s).
    #[arg(long, env = "TOLLGATE_HEALTH_INTERVAL", default_value = "5s")]
    pub health_interval: String,

    /// Time a health check may take before it counts as failed.
    #[arg(long, env = "TOLLGATE_HEALTH_TIMEOUT", default_value = "1s")]
    pub health_timeout: String,

    /// Consecutive passed checks that re-admit an ejected backend.
    #[arg(long, env = "TOLLGATE_HEALTHY_THRESHOLD", default_value = "2")]
    pub healthy_threshold: String,

    /// Consecutive failures (checks or proxy connect failures) that eject a backend.
    #[arg(long, env = "TOLLGATE_UNHEALTHY_THRESHOLD", default_value = "3")]
    pub unhealthy_threshold: String,

    /// Least time between the first and the last of the consecutive proxy connect failures
    /// that eject a backend (0s: the count alone ejects).
    #[arg(long, env = "TOLLGATE_PASSIVE_EJECT_WINDOW", default_value = "1s")]
    pub passive_eject_window: String,

    /// Panic mode: when the healthy share of the backends falls below this percentage, traffic
    /// goes to every backend as if all were healthy (0 turns it off).
    #[arg(long, env = "TOLLGATE_PANIC_THRESHOLD", default_value = "50")]
    pub panic_threshold: String,

    /// Time allowed to open a connection to a backend.
    #[arg(long, env = "TOLLGATE_CONNECT_TIMEOUT", default_value = "2s")]
    pub connect_timeout: String,

    /// Time allowed from sending a request to receiving the backend's response head.
    #[arg(long, env = "TOLLGATE_UPSTREAM_TIMEOUT", default_value = "30s")]
    pub upstream_timeout: String,

    /// Extra attempts on other backends when one fails, only where that is safe.
    #[arg(long, env = "TOLLGATE_RETRIES", default_value = "2")]
    pub retries: String,

    /// Largest request body accepted (e.g. 16MiB, 512KiB, 1000000); larger gets 413.
    #[arg(long, env = "TOLLGATE_MAX_BODY_SIZE", default_value = "16MiB")]
    pub max_body_size: String,

    /// Request bodies up to this size are read whole before any backend is contacted.
    #[arg(long, env = "TOLLGATE_REQUEST_BUFFER", default_value = "64KiB")]
    pub request_buffer: String,

    /// Longest wait between two reads of a client's request body; then 408.
    #[arg(long, env = "TOLLGATE_CLIENT_BODY_TIMEOUT", default_value = "10s")]
    pub client_body_timeout: String,

    /// Minimum average upload rate per second once the grace period is over (0: none); then 408.
    #[arg(long, env = "TOLLGATE_CLIENT_BODY_MIN_RATE", default_value = "1KiB")]
    pub client_body_min_rate: String,

    /// Time from the start of a request before the minimum upload rate applies.
    #[arg(long, env = "TOLLGATE_CLIENT_BODY_GRACE", default_value = "5s")]
    pub client_body_grace: String,

    /// Longest wait between two reads of a backend's response body; then the client
    /// connection is aborted.
    #[arg(long, env = "TOLLGATE_UPSTREAM_BODY_TIMEOUT", default_value = "30s")]
    pub upstream_body_timeout: String,

    /// On shutdown, time /readyz answers 503 while the proxy still serves, so that load
    /// balancers stop sending before the listener closes (0s: close at once).
    #[arg(long, env = "TOLLGATE_DRAIN_DELAY", default_value = "0s")]
    pub drain_delay: String,

    /// Deadline for in-flight requests to finish on shutdown.
    #[arg(long, env = "TOLLGATE_SHUTDOWN_TIMEOUT", default_value = "30s")]
    pub shutdown_timeout: String,

    /// HTTP worker threads of the proxy listener [default: number of cores].
    #[arg(long, env = "TOLLGATE_WORKERS")]
    pub workers: Option<String>,

    /// Database: `postgres://…` for PostgreSQL, else a SQLite file (`sqlite://PATH`).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://tollgate.db",
        hide_env_values = true
    )]
    pub database_url: String,

    /// Header that carries a client's API key.
    #[arg(long, env = "TOLLGATE_API_KEY_HEADER", default_value = "X-API-Key")]
    pub api_key_header: String,

    /// Bucket capacity (burst) of anonymous clients, a whole number [default: 100; 10000 with
    /// --demo, so that a load test of the demo is not refused].
    #[arg(long, env = "TOLLGATE_DEFAULT_CAPACITY")]
    pub default_capacity: Option<String>,

    /// Refill rate of anonymous clients, tokens per second (may be fractional, e.g. 0.2)
    /// [default: 10; 10000 with --demo].
    #[arg(long, env = "TOLLGATE_DEFAULT_RATE")]
    pub default_rate: Option<String>,

    /// Comma-separated CIDR blocks of proxies whose X-Forwarded-For / Forwarded headers are
    /// believed (empty: none; the direct peer is the client).
    #[arg(long, env = "TOLLGATE_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,

    /// Header the trusted proxies write the client address into: x-forwarded-for or
    /// forwarded (RFC 7239). Only this one is read.
    #[arg(long, env = "TOLLGATE_FORWARDED_HEADER", default_value = "x-forwarded-for")]
    pub forwarded_header: String,

    /// Refuse requests without an API key (401) instead of limiting them per IP.
    #[arg(long, env = "TOLLGATE_REQUIRE_API_KEY", default_value = "false")]
    pub require_api_key: String,

    /// Rate limiting on or off (off: every request is proxied, no client is charged).
    #[arg(long, env = "TOLLGATE_RATE_LIMIT", default_value = "true")]
    pub rate_limit: String,

    /// How often changed bucket states are written to the database.
    #[arg(long, env = "TOLLGATE_FLUSH_INTERVAL", default_value = "1s")]
    pub flush_interval: String,

    /// Time an admin write may wait for a database connection before it answers 503.
    #[arg(long, env = "TOLLGATE_DB_TIMEOUT", default_value = "2s")]
    pub db_timeout: String,

    /// How long to keep retrying an unreachable database at start before giving up.
    #[arg(long, env = "TOLLGATE_DB_STARTUP_TIMEOUT", default_value = "30s")]
    pub db_startup_timeout: String,

    /// Log filter in env_logger syntax (e.g. `info`, `warn,tollgate::access=off`).
    #[arg(long = "log", env = "RUST_LOG", default_value = "info")]
    pub log: String,

    /// Start three demo backends on loopback and proxy to them (TOLLGATE_BACKENDS is ignored).
    #[arg(long, env = "TOLLGATE_DEMO")]
    pub demo: bool,

    /// Run something other than the gateway.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands besides the gateway itself.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one demo backend: it answers every request with its name and what it received.
    DemoBackend {
        /// Listen address.
        #[arg(long, env = "DEMO_LISTEN", default_value = "0.0.0.0:9000")]
        listen: SocketAddr,
        /// Name the backend reports in each response.
        #[arg(long, env = "DEMO_NAME", default_value = "demo")]
        name: String,
    },
}

/// Names of every environment variable the gateway reads, straight from the clap definition.
pub fn env_vars() -> Vec<String> {
    use clap::CommandFactory;
    Cli::command()
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect()
}

/// How the load balancer picks a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Smooth weighted round robin (plain round robin when all weights are equal).
    RoundRobin,
    /// Fewest in-flight requests relative to weight.
    LeastConnections,
    /// Two random candidates, the less loaded one wins.
    Random,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::RoundRobin => "round-robin",
            Strategy::LeastConnections => "least-connections",
            Strategy::Random => "random",
        })
    }
}

/// One backend as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    /// Base URL without a trailing slash: `http://host:port` or `http://host:port/prefix`.
    pub base: String,
    /// Relative share of traffic, 1 to [`MAX_WEIGHT`].
    pub weight: NonZeroU32,
}

/// Which database the gateway keeps its state in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A PostgreSQL connection URL.
    Postgres(String),
    /// Path of a SQLite file.
    Sqlite(String),
}

impl DatabaseUrl {
    /// The URL with any password replaced, for logs.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{path}"),
            DatabaseUrl::Postgres(url) => redact_password(url),
        }
    }
}

/// Validated settings of the gateway.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Proxy listener address.
    pub listen: SocketAddr,
    /// Admin listener address.
    pub admin_listen: SocketAddr,
    /// Admin bearer token, if any.
    pub admin_token: Option<String>,
    /// Backends to balance over (empty only in demo mode, which adds its own).
    pub backends: Vec<BackendSpec>,
    /// Selection strategy.
    pub strategy: Strategy,
    /// Health-check path, starting with `/`.
    pub health_path: String,
    /// Time between health checks.
    pub health_interval: Duration,
    /// Health-check deadline.
    pub health_timeout: Duration,
    /// Passes that re-admit a backend.
    pub healthy_threshold: u32,
    /// Failures that eject a backend.
    pub unhealthy_threshold: u32,
    /// Least span of the proxy connect failures that eject a backend.
    pub passive_eject_window: Duration,
    /// Healthy percentage below which every backend takes traffic (0: never).
    pub panic_threshold: u8,
    /// Connect deadline towards backends.
    pub connect_timeout: Duration,
    /// Deadline for the backend's response head.
    pub upstream_timeout: Duration,
    /// Extra attempts on other backends.
    pub retries: u32,
    /// Largest accepted request body in bytes.
    pub max_body_size: u64,
    /// Bodies up to this size are read whole before a backend is contacted.
    pub request_buffer: u64,
    /// How slowly a client may send its body.
    pub upload: crate::http::proxy::UploadPolicy,
    /// Longest wait for a backend's next response-body bytes.
    pub upstream_body_timeout: Duration,
    /// Drain deadline on shutdown.
    pub shutdown_timeout: Duration,
    /// Proxy worker threads.
    pub workers: usize,
    /// Database location.
    pub database_url: DatabaseUrl,
    /// env_logger filter.
    pub log: String,
    /// Header carrying API keys.
    pub api_key_header: actix_web::http::header::HeaderName,
    /// Quota of anonymous clients.
    pub default_quota: Quota,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// The header they write.
    pub forwarded_header: crate::registry::ForwardedHeader,
    /// Time between readiness turning 503 and the listener closing.
    pub drain_delay: Duration,
    /// Refuse requests without an API key.
    pub require_api_key: bool,
    /// Rate limiting on or off.
    pub rate_limit: bool,
    /// Write-behind interval of bucket state.
    pub flush_interval: Duration,
    /// Wait for a database connection.
    pub db_timeout: Duration,
    /// Retry bound for the database at start.
    pub db_startup_timeout: Duration,
    /// Demo mode: start three demo backends.
    pub demo: bool,
}

/// Every problem found in the configuration, one per line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ConfigError(pub Vec<String>);

/// Collects problems so that all are reported together.
struct Problems(Vec<String>);

impl Problems {
    fn duration(&mut self, var: &str, flag: &str, raw: &str) -> Option<Duration> {
        self.check(var, flag, raw, parse_duration(raw))
    }

    fn check<T>(&mut self, var: &str, flag: &str, value: &str, parsed: Result<T, String>) -> Option<T> {
        match parsed {
            Ok(v) => Some(v),
            Err(expected) => {
                self.0.push(format!(
                    "{var} (--{flag}): invalid value \"{}\": {expected}",
                    value.escape_debug()
                ));
                None
            }
        }
    }
}

impl Settings {
    /// Validates the raw command line into settings, reporting every problem at once.
    pub fn from_cli(cli: &Cli) -> Result<Settings, ConfigError> {
        let mut p = Problems(Vec::new());
        let listen = p.check("TOLLGATE_LISTEN", "listen", &cli.listen, parse_addr(&cli.listen));
        let admin_listen = p.check(
            "TOLLGATE_ADMIN_LISTEN",
            "admin-listen",
            &cli.admin_listen,
            parse_addr(&cli.admin_listen),
        );
        let admin_token = match cli.admin_token.as_deref() {
            None => None,
            Some(t) => {
                // The token itself never appears in a message.
                if t.len() < 16 || t.chars().any(|c| !c.is_ascii_graphic()) {
                    p.0.push(
                        "TOLLGATE_ADMIN_TOKEN (--admin-token): invalid value (hidden): expected at \
                         least 16 visible ASCII characters, no spaces"
                            .to_string(),
                    );
                }
                Some(t.to_string())
            }
        };
        if let Some(addr) = admin_listen {
            if admin_token.is_none() && !addr.ip().is_loopback() {
                p.0.push(format!(
                    "TOLLGATE_ADMIN_TOKEN (--admin-token): unset, but the admin listener {addr} is \
                     not on loopback: set a token or listen on 127.0.0.1"
                ));
            }
        }
        let backends = match cli.backends.as_deref() {
            Some(raw) if !raw.trim().is_empty() => {
                p.check("TOLLGATE_BACKENDS", "backends", raw, parse_backends(raw))
            }
            _ if cli.demo => Some(Vec::new()),
            _ => {
                p.0.push(
                    "TOLLGATE_BACKENDS (--backends): unset: name at least one backend, e.g. \
                     http://127.0.0.1:9000, or run with --demo"
                        .to_string(),
                );
                None
            }
        };
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
        let health_interval = p.duration(
            "TOLLGATE_HEALTH_INTERVAL",
            "health-interval",
            &cli.health_interval,
        );
        let health_timeout = p.duration("TOLLGATE_HEALTH_TIMEOUT", "health-timeout", &cli.health_timeout);
        let connect_timeout = p.duration(
            "TOLLGATE_CONNECT_TIMEOUT",
            "connect-timeout",
            &cli.connect_timeout,
        );
        let upstream_timeout = p.duration(
            "TOLLGATE_UPSTREAM_TIMEOUT",
            "upstream-timeout",
            &cli.upstream_timeout,
        );
        let shutdown_timeout = p.duration(
            "TOLLGATE_SHUTDOWN_TIMEOUT",
            "shutdown-timeout",
            &cli.shutdown_timeout,
        );
        let healthy_threshold = p.check(
            "TOLLGATE_HEALTHY_THRESHOLD",
            "healthy-threshold",
            &cli.healthy_threshold,
            parse_int(&cli.healthy_threshold, 1, 100),
        );
        let unhealthy_threshold = p.check(
            "TOLLGATE_UNHEALTHY_THRESHOLD",
            "unhealthy-threshold",
            &cli.unhealthy_threshold,
            parse_int(&cli.unhealthy_threshold, 1, 100),
        );
        let passive_eject_window = match cli.passive_eject_window.trim() {
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
        let workers = match cli.workers.as_deref() {
            None => Some(std::thread::available_parallelism().map_or(1, |n| n.get())),
            Some(raw) => p
                .check("TOLLGATE_WORKERS", "workers", raw, parse_int(raw, 1, 1024))
                .map(|n| n as usize),
        };
        let database_url = p.check(
            "DATABASE_URL",
            "database-url",
            &redact_password(&cli.database_url),
            parse_database_url(&cli.database_url),
        );
        let flush_interval = p.duration("TOLLGATE_FLUSH_INTERVAL", "flush-interval", &cli.flush_interval);
        let db_timeout = p.duration("TOLLGATE_DB_TIMEOUT", "db-timeout", &cli.db_timeout);
        let db_startup_timeout = p.duration(
            "TOLLGATE_DB_STARTUP_TIMEOUT",
            "db-startup-timeout",
            &cli.db_startup_timeout,
        );
        let api_key_header = p.check(
            "TOLLGATE_API_KEY_HEADER",
            "api-key-header",
            &cli.api_key_header,
            actix_web::http::header::HeaderName::from_bytes(cli.api_key_header.trim().as_bytes())
                .map_err(|_| "expected an HTTP header name, e.g. X-API-Key".to_string()),
        );
        // The demo answers a newcomer's load test (ab -n 5000 -c 1000) from one address.
        let (cap_default, rate_default) = if cli.demo {
            ("10000", "10000")
        } else {
            ("100", "10")
        };
        let raw_capacity = cli.default_capacity.as_deref().unwrap_or(cap_default);
        let raw_rate = cli.default_rate.as_deref().unwrap_or(rate_default);
        let default_capacity = p.check(
            "TOLLGATE_DEFAULT_CAPACITY",
            "default-capacity",
            raw_capacity,
            raw_capacity.trim().parse::<u64>().map_err(|_| {
                format!(
                    "expected a whole number from 1 to {}",
                    crate::ratelimit::MAX_CAPACITY
                )
            }),
        );
        let default_rate = p.check(
            "TOLLGATE_DEFAULT_RATE",
            "default-rate",
            raw_rate,
            raw_rate
                .trim()
                .parse::<f64>()
                .map_err(|_| "expected tokens per second, e.g. 10 or 0.2".to_string()),
        );
        let default_quota = match (default_capacity, default_rate) {
            (Some(c), Some(r)) => match Quota::new(c, r) {
                Ok(q) => Some(q),
                Err(crate::ratelimit::QuotaError::Capacity) => p.check::<Quota>(
                    "TOLLGATE_DEFAULT_CAPACITY",
                    "default-capacity",
                    raw_capacity,
                    Err(crate::ratelimit::QuotaError::Capacity.to_string()),
                ),
                Err(e) => p.check::<Quota>(
                    "TOLLGATE_DEFAULT_RATE",
                    "default-rate",
                    raw_rate,
                    Err(e.to_string()),
                ),
            },
            _ => None,
        };
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
            match cli.forwarded_header.trim().to_ascii_lowercase().as_str() {
                "x-forwarded-for" => Ok(crate::registry::ForwardedHeader::XForwardedFor),
                "forwarded" => Ok(crate::registry::ForwardedHeader::Forwarded),
                _ => Err("expected x-forwarded-for or forwarded".to_string()),
            },
        );
        let drain_delay = match cli.drain_delay.trim() {
            "0" | "0s" | "0ms" => Some(Duration::ZERO),
            raw => p.duration("TOLLGATE_DRAIN_DELAY", "drain-delay", raw),
        };
        let rate_limit = p.check(
            "TOLLGATE_RATE_LIMIT",
            "rate-limit",
            &cli.rate_limit,
            parse_bool(&cli.rate_limit),
        );
        if let Err(e) = env_filter::Builder::new().try_parse(&cli.log) {
            p.0.push(format!(
                "RUST_LOG (--log): invalid value \"{}\": {e}; expected an env_logger filter like info or warn,tollgate=debug",
                cli.log.escape_debug()
            ));
        }
        if let (Some(timeout), Some(interval)) = (health_timeout, health_interval) {
            if timeout > interval {
                p.0.push(format!(
                    "TOLLGATE_HEALTH_TIMEOUT (--health-timeout): invalid value \"{}\": must not be longer than TOLLGATE_HEALTH_INTERVAL ({})",
                    cli.health_timeout, cli.health_interval
                ));
            }
        }
        if !p.0.is_empty() {
            return Err(ConfigError(p.0));
        }
        // Every Option below is Some: a None always pushed a problem, and there are none.
        match (
            listen,
            admin_listen,
            backends,
            strategy,
            health_path,
            (
                health_interval,
                health_timeout,
                connect_timeout,
                upstream_timeout,
                shutdown_timeout,
            ),
            (
                healthy_threshold,
                unhealthy_threshold,
                retries,
                max_body_size,
                workers,
            ),
            database_url,
            (
                api_key_header,
                default_quota,
                trusted_proxies,
                require_api_key,
                rate_limit,
            ),
            (
                flush_interval,
                db_timeout,
                db_startup_timeout,
                forwarded_header,
                drain_delay,
            ),
            (
                request_buffer,
                client_body_timeout,
                client_body_min_rate,
                client_body_grace,
                upstream_body_timeout,
            ),
            (passive_eject_window, panic_threshold),
        ) {
            (
                Some(listen),
                Some(admin_listen),
                Some(backends),
                Some(strategy),
                Some(health_path),
                (
                    Some(health_interval),
                    Some(health_timeout),
                    Some(connect_timeout),
                    Some(upstream_timeout),
                    Some(shutdown_timeout),
                ),
                (
                    Some(healthy_threshold),
                    Some(unhealthy_threshold),
                    Some(retries),
                    Some(max_body_size),
                    Some(workers),
                ),
                Some(database_url),
                (
                    Some(api_key_header),
                    Some(default_quota),
                    Some(trusted_proxies),
                    Some(require_api_key),
                    Some(rate_limit),
                ),
                (
                    Some(flush_interval),
                    Some(db_timeout),
                    Some(db_startup_timeout),
                    Some(forwarded_header),
                    Some(drain_delay),
                ),
                (
                    Some(request_buffer),
                    Some(client_body_timeout),
                    Some(client_body_min_rate),
                    Some(client_body_grace),
                    Some(upstream_body_timeout),
                ),
                (Some(passive_eject_window), Some(panic_threshold)),
            ) => Ok(Settings {
                listen,
                admin_listen,
                admin_token,
                backends,
                strategy,
                health_path,
                health_interval,
                health_timeout,
                healthy_threshold,
                unhealthy_threshold,
                passive_eject_window,
                panic_threshold,
                connect_timeout,
                upstream_timeout,
                retries,
                max_body_size,
                request_buffer,
                upload: crate::http::proxy::UploadPolicy {
                    idle: client_body_timeout,
                    min_rate: client_body_min_rate,
                    grace: client_body_grace,
                },
                upstream_body_timeout,
                shutdown_timeout,
                workers,
                database_url,
                log: cli.log.clone(),
                demo: cli.demo,
                api_key_header,
                default_quota,
                trusted_proxies,
                require_api_key,
                rate_limit,
                flush_interval,
                db_timeout,
                db_startup_timeout,
                forwarded_header,
                drain_delay,
            }),
            _ => Err(ConfigError(vec!["internal: a setting was not parsed".into()])),
        }
    }

    /// One-line summary of the effective configuration, secrets redacted.
    pub fn summary(&self) -> String {
        let backends: Vec<String> = self
            .backends
            .iter()
            .map(|b| format!("{}={}", b.base, b.weight))
            .collect();
        format!(
            "listen={} admin_listen={} admin_token={} backends=[{}] lb_strategy={} health_path={} \
             health_interval={:?} health_timeout={:?} healthy_threshold={} unhealthy_threshold={} \
             passive_eject_window={:?} panic_threshold={}% \
             connect_timeout={:?} upstream_timeout={:?} retries={} max_body_size={} \
             shutdown_timeout={:?} workers={} database_url={} demo={} rate_limit={} api_key_header={} \
             default_capacity={} default_rate={} trusted_proxies=[{}] require_api_key={} flush_interval={:?} \
             db_timeout={:?} db_startup_timeout={:?} request_buffer={} client_body_timeout={:?} \
             client_body_min_rate={} client_body_grace={:?} upstream_body_timeout={:?}",
            self.listen,
            self.admin_listen,
            if self.admin_token.is_some() {
                "(set)"
            } else {
                "(unset)"
            },
            backends.join(","),
            self.strategy,
            self.health_path,
            self.health_interval,
            self.health_timeout,
            self.healthy_threshold,
            self.unhealthy_threshold,
            self.passive_eject_window,
            self.panic_threshold,
            self.connect_timeout,
            self.upstream_timeout,
            self.retries,
            self.max_body_size,
            self.shutdown_timeout,
            self.workers,
            self.database_url.redacted(),
            self.demo,
            self.rate_limit,
            self.api_key_header,
            self.default_quota.capacity(),
            self.default_quota.rate_per_sec(),
            self.trusted_proxies
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            self.require_api_key,
            self.flush_interval,
            self.db_timeout,
            self.db_startup_timeout,
            self.request_buffer,
            self.upload.idle,
            self.upload.min_rate,
            self.upload.grace,
            self.upstream_body_timeout,
        )
    }
}

fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

/// Parses a comma-separated list of addresses or CIDR blocks (an address is its own /32 or
/// /128); empty gives an empty list.
pub fn parse_nets(raw: &str) -> Result<Vec<IpNet>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .map(|n| n.trunc())
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{s} is not an IP address or CIDR block like 10.0.0.0/8"))
        })
        .collect()
}

fn parse_addr(raw: &str) -> Result<SocketAddr, String> {
    raw.trim()
        .parse()
        .map_err(|_| "expected IP:PORT, e.g. 0.0.0.0:8080 or [::1]:8080".to_string())
}

fn parse_strategy(raw: &str) -> Result<Strategy, String> {
    match raw.trim() {
        "round-robin" => Ok(Strategy::RoundRobin),
        "least-connections" => Ok(Strategy::LeastConnections),
        "random" => Ok(Strategy::Random),
        _ => Err("expected round-robin, least-connections or random".into()),
    }
}

fn parse_path(raw: &str) -> Result<String, String> {
    let ok = raw.starts_with('/')
        && raw.len() <= 1024
        && raw.parse::<actix_web::http::uri::PathAndQuery>().is_ok();
    if ok {
        Ok(raw.to_string())
    } else {
        Err("expected an absolute path starting with /, e.g. /healthz".into())
    }
}

/// Parses a positive duration such as `500ms`, `5s` or `1m 30s`.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    const EXPECTED: &str = "expected a positive duration with a unit, e.g. 500ms, 5s, 2m";
    match humantime::parse_duration(raw.trim()) {
        Ok(d) if !d.is_zero() && d <= Duration::from_secs(24 * 3600) => Ok(d),
        Ok(_) => Err(format!("{EXPECTED} (at most 24h)")),
        Err(_) => Err(EXPECTED.into()),
    }
}

fn parse_int(raw: &str, min: u32, max: u32) -> Result<u32, String> {
    match raw.trim().parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number from {min} to {max}")),
    }
}

/// Parses a byte size such as `16MiB`, `512KiB`, `1GB` or a plain number of bytes.
pub fn parse_size(raw: &str) -> Result<u64, String> {
    match raw.trim().parse::<bytesize::ByteSize>() {
        Ok(size) if size.as_u64() > 0 => Ok(size.as_u64()),
        _ => Err("expected a positive size, e.g. 16MiB, 512KiB or 1000000 (bytes)".into()),
    }
}

/// Parses `URL[=WEIGHT],URL[=WEIGHT],...`.
pub fn parse_backends(raw: &str) -> Result<Vec<BackendSpec>, String> {
    let mut out: Vec<BackendSpec> = Vec::new();
    for entry in raw.split(',').map(str::trim) {
        if entry.is_empty() {
            return Err("empty entry: expected URL[=WEIGHT],URL[=WEIGHT],...".into());
        }
        let (url, weight) = match entry.rsplit_once('=') {
            Some((url, w)) if !url.contains('?') => match w.parse::<u32>() {
                Ok(w) if (1..=MAX_WEIGHT).contains(&w) => (url, w),
                _ => {
                    return Err(format!(
                        "weight of {url} must be a whole number from 1 to {MAX_WEIGHT}"
                    ))
                }
            },
            _ => (entry, 1),
        };
        let base = parse_backend_url(url)?;
        if out.iter().any(|b| b.base == base) {
            return Err(format!("{base} is listed twice"));
        }
        // `weight` is at least 1 by the range check above.
        let weight = NonZeroU32::new(weight).unwrap_or(NonZeroU32::MIN);
        out.push(BackendSpec { base, weight });
    }
    Ok(out)
}

fn parse_backend_url(url: &str) -> Result<String, String> {
    let bad =
        || format!("{url} is not an http:// base URL like http://10.0.0.5:9000 or http://api.internal/v1");
    let uri: Uri = url.parse().map_err(|_| bad())?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(bad());
    }
    if uri.query().is_some() || url.contains('#') || url.contains('@') {
        return Err(format!(
            "{url}: a backend base URL takes no query, fragment or user info"
        ));
    }
    Ok(url.trim_end_matches('/').to_string())
}

fn parse_database_url(raw: &str) -> Result<DatabaseUrl, String> {
    let raw = raw.trim();
    if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        match raw.parse::<Uri>() {
            Ok(u) if u.host().is_some() => Ok(DatabaseUrl::Postgres(raw.to_string())),
            _ => Err("expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE".into()),
        }
    } else {
        let path = raw
            .strip_prefix("sqlite://")
            .or_else(|| raw.strip_prefix("sqlite:"))
            .unwrap_or(raw);
        if path.is_empty() || raw.contains("://") && !raw.starts_with("sqlite://") {
            Err("expected postgres://… or sqlite://PATH (a SQLite file)".into())
        } else {
            Ok(DatabaseUrl::Sqlite(path.to_string()))
        }
    }
}

/// Replaces the password of a `scheme://user:password@host` URL, and the value of any
/// `password`-like query parameter, with `***`.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    // The last '@' ends the user info, even when the password holds a '/' or '@'.
    let mut out = match main.rfind('@') {
        Some(at) if main[..at].contains(':') => {
            let user = main[..at].split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***{}", &main[at..])
        }
        _ => format!("{scheme}://{main}"),
    };
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.to_ascii_lowercase().contains("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut all = vec!["tollgate"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap_or_else(|e| panic!("clap rejected {args:?}: {e}"))
    }

    fn problems(args: &[&str]) -> Vec<String> {
        match Settings::from_cli(&cli(args)) {
            Ok(_) => panic!("{args:?} was accepted"),
            Err(ConfigError(p)) => p,
        }
    }

    #[test]
    fn defaults_with_one_backend() {
        let s = Settings::from_cli(&cli(&["--backends", "http://127.0.0.1:9000"])).unwrap();
        assert_eq!(s.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(s.admin_listen, "127.0.0.1:8081".parse().unwrap());
        assert_eq!(s.strategy, Strategy::RoundRobin);
        assert_eq!(s.health_interval, Duration::from_secs(5));
        assert_eq!(s.health_timeout, Duration::from_secs(1));
        assert_eq!((s.healthy_threshold, s.unhealthy_threshold, s.retries), (2, 3, 2));
        assert_eq!(s.max_body_size, 16 * 1024 * 1024);
        assert_eq!(s.database_url, DatabaseUrl::Sqlite("tollgate.db".into()));
        assert_eq!(
            s.backends,
            vec![BackendSpec {
                base: "http://127.0.0.1:9000".into(),
                weight: NonZeroU32::MIN
            }]
        );
    }

    #[test]
    fn backend_weights_and_prefixes() {
        let b = parse_backends("http://a:1=3, http://b:2/api/ ,http://c").unwrap();
        let got: Vec<(&str, u32)> = b.iter().map(|b| (b.base.as_str(), b.weight.get())).collect();
        assert_eq!(
            got,
            vec![("http://a:1", 3), ("http://b:2/api", 1), ("http://c", 1)]
        );
    }

    #[test]
    fn bad_backends_are_refused() {
        for bad in [
            "",
            "a,,b",
            "https://x:1",
            "ftp://x",
            "http://x:1=0",
            "http://x:1=1001",
            "http://x/?q=1",
            "http://u:p@x",
            "http://x,http://x",
        ] {
            assert!(parse_backends(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_variable() {
        let p = problems(&[
            "--listen",
            "nowhere",
            "--health-interval",
            "5x",
            "--retries",
            "99",
            "--max-body-size",
            "lots",
            "--lb-strategy",
            "fastest",
        ]);
        let all = p.join("\n");
        for var in [
            "TOLLGATE_LISTEN",
            "TOLLGATE_HEALTH_INTERVAL",
            "TOLLGATE_RETRIES",
            "TOLLGATE_MAX_BODY_SIZE",
            "TOLLGATE_LB_STRATEGY",
            "TOLLGATE_BACKENDS",
        ] {
            assert!(all.contains(var), "{var} missing from:\n{all}");
        }
        assert_eq!(p.len(), 6, "{all}");
        assert!(all.contains("\"5x\""), "value not quoted: {all}");
    }

    #[test]
    fn panic_threshold_and_passive_window() {
        let s = Settings::from_cli(&cli(&["--backends", "http://a:1"])).unwrap();
        assert_eq!(
            (s.panic_threshold, s.passive_eject_window),
            (50, Duration::from_secs(1))
        );
        for (threshold, window, want) in [
            ("0", "0s", (0, Duration::ZERO)),
            ("100%", "250ms", (100, Duration::from_millis(250))),
            (" 30 ", "2s", (30, Duration::from_secs(2))),
        ] {
            let args = ["--backends", "http://a:1", "--panic-threshold", threshold];
            let s =
                Settings::from_cli(&cli(&[&args[..], &["--passive-eject-window", window]].concat())).unwrap();
            assert_eq!(
                (s.panic_threshold, s.passive_eject_window),
                want,
                "{threshold} {window}"
            );
        }
        for bad in ["101", "50.5", "half"] {
            let p = problems(&["--backends", "http://a:1", "--panic-threshold", bad]);
            assert!(
                p[0].starts_with("TOLLGATE_PANIC_THRESHOLD (--panic-threshold)"),
                "{p:?}"
            );
        }
        let p = problems(&["--backends", "http://a:1", "--passive-eject-window", "soon"]);
        assert!(p[0].starts_with("TOLLGATE_PASSIVE_EJECT_WINDOW"), "{p:?}");
    }

    #[test]
    fn public_admin_listener_needs_a_token() {
        let p = problems(&["--backends", "http://a:1", "--admin-listen", "0.0.0.0:8081"]);
        assert!(p[0].starts_with("TOLLGATE_ADMIN_TOKEN"), "{p:?}");
        let ok = Settings::from_cli(&cli(&[
            "--backends",
            "http://a:1",
            "--admin-listen",
            "0.0.0.0:8081",
            "--admin-token",
            "0123456789abcdef-secret",
        ]));
        assert!(ok.is_ok());
    }

    #[test]
    fn secrets_never_appear_in_messages() {
        let p = problems(&[
            "--backends",
            "http://a:1",
            "--admin-token",
            "short secret",
            "--database-url",
            "mysql://u:hunter2@h/db",
        ]);
        let all = p.join("\n");
        assert!(!all.contains("short secret") && !all.contains("hunter2"), "{all}");
        assert!(
            all.contains("DATABASE_URL") && all.contains("TOLLGATE_ADMIN_TOKEN"),
            "{all}"
        );
    }

    #[test]
    fn durations_sizes_and_database_urls() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("0s").is_err() && parse_duration("5").is_err());
        assert_eq!(parse_size("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("0").is_err());
        assert_eq!(
            parse_database_url("sqlite://x.db"),
            Ok(DatabaseUrl::Sqlite("x.db".into()))
        );
        assert!(matches!(
            parse_database_url("postgres://u@h/db"),
            Ok(DatabaseUrl::Postgres(_))
        ));
        assert_eq!(
            redact_password("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        let s = Settings::from_cli(&cli(&[
            "--backends",
            "http://a:1",
            "--database-url",
            "postgres://u:pw@h/db",
        ]))
        .unwrap();
        assert!(!s.summary().contains("pw@"), "{}", s.summary());
    }
}
