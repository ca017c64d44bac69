//! The clap schema: every flag, its environment variable and its default.
//!
//! Every setting is read as a string, so that a bad value never stops parsing early: the
//! values are checked all together by [`super::Settings::from_cli`].

use std::net::SocketAddr;

use clap::{Parser, Subcommand};

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

    /// Most idle connections kept open to each backend, per worker; more are closed as soon
    /// as they go idle (0: none kept, a connection per request).
    #[arg(long, env = "TOLLGATE_UPSTREAM_IDLE", default_value = "32")]
    pub upstream_idle: String,

    /// Longest a backend connection may sit idle and still be reused; keep it below the
    /// backends' own keep-alive timeout (5s in Node.js, Apache and actix-web).
    #[arg(long, env = "TOLLGATE_UPSTREAM_IDLE_TIMEOUT", default_value = "4s")]
    pub upstream_idle_timeout: String,

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

    /// Largest response head a backend may send (status line and header lines), at most
    /// 128KiB; a larger one is answered 502 `upstream_head_too_large`.
    #[arg(long, env = "TOLLGATE_UPSTREAM_MAX_HEAD", default_value = "64KiB")]
    pub upstream_max_head: String,

    /// Most header lines in a backend's response head (1-1024); more is answered 502
    /// `upstream_head_too_large`.
    #[arg(long, env = "TOLLGATE_UPSTREAM_MAX_HEADERS", default_value = "256")]
    pub upstream_max_headers: String,

    /// On shutdown, time /readyz answers 503 while the proxy still serves, so that load
    /// balancers stop sending before the listener closes (0s: close at once).
    #[arg(long, env = "TOLLGATE_DRAIN_DELAY", default_value = "0s")]
    pub drain_delay: String,

    /// Deadline for in-flight requests to finish on shutdown.
    #[arg(long, env = "TOLLGATE_SHUTDOWN_TIMEOUT", default_value = "30s")]
    pub shutdown_timeout: String,

    /// How long a client connection may stay idle between requests (`0`: no keep-alive).
    #[arg(long, env = "TOLLGATE_KEEPALIVE_TIMEOUT", default_value = "5s")]
    pub keepalive_timeout: String,

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

    /// Where registered clients' buckets live: `cluster` (the database row; instances lease
    /// tokens from it, so the limit holds across all instances) or `local` (each instance
    /// keeps its own bucket: N instances admit up to N times the limit).
    #[arg(long, env = "TOLLGATE_LIMIT_SCOPE", default_value = "cluster")]
    pub limit_scope: String,

    /// How often an instance leases tokens for its busy clients and gives back the unused
    /// tokens of idle ones (one statement per tick).
    #[arg(long, env = "TOLLGATE_LEASE_TICK", default_value = "100ms")]
    pub lease_tick: String,

    /// Prometheus metrics on or off (off: nothing is recorded on the request path and
    /// `/metrics` answers 404; for measuring what recording costs).
    #[arg(long, env = "TOLLGATE_METRICS", default_value = "true")]
    pub metrics: String,

    /// Serve `/metrics` without the admin token (for a scraper that cannot send one).
    #[arg(long, env = "TOLLGATE_METRICS_PUBLIC", default_value = "false")]
    pub metrics_public: String,

    /// Registered clients given series of their own in `/metrics`: the busiest this many.
    #[arg(long, env = "TOLLGATE_METRICS_CLIENT_LIMIT", default_value = "1000")]
    pub metrics_client_limit: String,

    /// How often changed bucket states are written to the database.
    #[arg(long, env = "TOLLGATE_FLUSH_INTERVAL", default_value = "1s")]
    pub flush_interval: String,

    /// How often the change log is polled for changes made by other instances (the truth;
    /// on PostgreSQL a notification also wakes the poll at once).
    #[arg(long, env = "TOLLGATE_SYNC_INTERVAL", default_value = "1s")]
    pub sync_interval: String,

    /// Time an admin write may wait for a database connection before it answers 503.
    #[arg(long, env = "TOLLGATE_DB_TIMEOUT", default_value = "2s")]
    pub db_timeout: String,

    /// How long to keep retrying an unreachable database at start before giving up.
    #[arg(long, env = "TOLLGATE_DB_STARTUP_TIMEOUT", default_value = "30s")]
    pub db_startup_timeout: String,

    /// Log filter in env_logger syntax (e.g. `info`, `warn,tollgate::access=off`).
    #[arg(long = "log", env = "RUST_LOG", default_value = "info")]
    pub log: String,

    /// Log line format: `text` (env_logger's) or `json` (one object per line: timestamp,
    /// level, target, message, and the access log's fields as their own keys).
    #[arg(long, env = "TOLLGATE_LOG_FORMAT", default_value = "text")]
    pub log_format: String,

    /// Start three demo backends on loopback and proxy to them only (TOLLGATE_BACKENDS and the
    /// stored backend list are ignored and left alone).
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
