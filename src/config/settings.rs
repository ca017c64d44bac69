//! [`Settings`]: the validated configuration, one part per concern, and its summary line.

use std::{net::SocketAddr, time::Duration};

use super::{assemble, cli::Cli, problems::ConfigError, problems::Problems};
use crate::{
    http::{admin::AdminSettings, proxy::ProxySettings},
    logging::LogFormat,
    metrics::MetricsSettings,
    pool::{BackendSpec, PoolSettings},
    registry::{LimitSettings, RegistrySettings},
    store::StoreSettings,
};

/// The proxy listener, its workers, and the timing of shutdown: what `startup` itself uses.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Proxy listener address.
    pub listen: SocketAddr,
    /// Proxy worker threads.
    pub workers: usize,
    /// Connect deadline of each worker's awc client towards backends.
    pub connect_timeout: Duration,
    /// Deadline for in-flight requests on shutdown.
    pub shutdown_timeout: Duration,
    /// Longest idle time of a client connection between requests (zero: no keep-alive).
    pub keepalive_timeout: Duration,
    /// Time between readiness turning 503 and the listener closing.
    pub drain_delay: Duration,
}

/// Validated settings of the gateway, one part per concern.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Proxy listener, workers, shutdown.
    pub server: ServerSettings,
    /// Admin listener and token.
    pub admin: AdminSettings,
    /// Backends named at start (`TOLLGATE_BACKENDS`), which replace the stored list; `None`
    /// keeps the stored list. Demo mode sets its own demo backends here.
    pub backends: Option<Vec<BackendSpec>>,
    /// Selection and health checks.
    pub pool: PoolSettings,
    /// Forwarding limits and deadlines.
    pub proxy: ProxySettings,
    /// Client matching and the anonymous quota.
    pub limits: LimitSettings,
    /// Rate limiting on or off.
    pub rate_limit: bool,
    /// Prometheus metrics.
    pub metrics: MetricsSettings,
    /// Timers of the client registry.
    pub registry: RegistrySettings,
    /// Database and its timeouts.
    pub store: StoreSettings,
    /// env_logger filter.
    pub log: String,
    /// Log line format.
    pub log_format: LogFormat,
    /// Demo mode: start three demo backends.
    pub demo: bool,
}

impl Settings {
    /// Validates the raw command line into settings, reporting every problem at once.
    pub fn from_cli(cli: &Cli) -> Result<Settings, ConfigError> {
        let mut p = Problems::default();
        let server = assemble::server(&mut p, cli);
        let admin = assemble::admin(&mut p, cli);
        let backends = assemble::backends(&mut p, cli);
        let pool = assemble::pool(&mut p, cli);
        let store = assemble::store(&mut p, cli);
        let registry = assemble::registry(&mut p, cli);
        let limits = assemble::limits(&mut p, cli);
        let rate_limit = assemble::rate_limit(&mut p, cli);
        let metrics = assemble::metrics(&mut p, cli);
        // Backends never see the API key while the gateway is the one checking it.
        let strip_header = match (&limits, rate_limit) {
            (Some(l), Some(true)) => Some(l.api_key_header.clone()),
            _ => None,
        };
        // The proxy strips a client's own forwarding headers unless its peer is trusted.
        let trusted = limits
            .as_ref()
            .map(|l| l.trusted_proxies.clone())
            .unwrap_or_default();
        let proxy = assemble::proxy(&mut p, cli, strip_header, trusted);
        let log = assemble::log(&mut p, cli);
        let log_format = p.check(
            "TOLLGATE_LOG_FORMAT",
            "log-format",
            &cli.log_format,
            LogFormat::parse(&cli.log_format),
        );
        p.into_result()?;
        // Every part is Some: a None always recorded a problem, and there are none.
        let all = || {
            Some(Settings {
                server: server?,
                admin: admin?,
                backends: backends?,
                pool: pool?,
                proxy: proxy?,
                limits: limits?,
                rate_limit: rate_limit?,
                metrics: metrics?,
                registry: registry?,
                store: store?,
                log: log?,
                log_format: log_format?,
                demo: cli.demo,
            })
        };
        all().ok_or_else(|| ConfigError(vec!["internal: a setting was not parsed".into()]))
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use clap::Parser;

    use super::*;
    use crate::{pool::Strategy, store::DatabaseUrl};

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
        assert_eq!(s.server.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(s.admin.listen, "127.0.0.1:8081".parse().unwrap());
        assert_eq!(s.pool.strategy, Strategy::RoundRobin);
        assert_eq!(s.pool.interval, Duration::from_secs(5));
        assert_eq!(s.pool.timeout, Duration::from_secs(1));
        assert_eq!(
            (
                s.pool.thresholds.healthy,
                s.pool.thresholds.unhealthy,
                s.proxy.retries
            ),
            (2, 3, 2)
        );
        assert_eq!(s.proxy.max_body_size, 16 * 1024 * 1024);
        assert_eq!(s.proxy.upstream_idle, 32);
        assert!(matches!(&s.store.url, DatabaseUrl::Sqlite(p) if p == "tollgate.db"));
        assert_eq!(
            s.backends,
            Some(vec![BackendSpec {
                base: "http://127.0.0.1:9000".into(),
                weight: NonZeroU32::MIN
            }])
        );
        // Rate limiting is on by default, so backends never see the API key.
        assert_eq!(
            s.proxy.strip_header.as_ref().map(|h| h.as_str()),
            Some("x-api-key")
        );
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
            "--upstream-idle",
            "many",
            "--max-body-size",
            "lots",
            "--lb-strategy",
            "fastest",
            "--backends",
            "ftp://x",
        ]);
        let all = p.join("\n");
        for var in [
            "TOLLGATE_LISTEN",
            "TOLLGATE_HEALTH_INTERVAL",
            "TOLLGATE_RETRIES",
            "TOLLGATE_UPSTREAM_IDLE",
            "TOLLGATE_MAX_BODY_SIZE",
            "TOLLGATE_LB_STRATEGY",
            "TOLLGATE_BACKENDS",
        ] {
            assert!(all.contains(var), "{var} missing from:\n{all}");
        }
        assert_eq!(p.len(), 7, "{all}");
        assert!(all.contains("\"5x\""), "value not quoted: {all}");
    }

    #[test]
    fn the_backend_list_is_optional() {
        // Unset or blank: the stored list is used.
        for args in [&["--listen", "127.0.0.1:0"][..], &["--backends", " "]] {
            let s = Settings::from_cli(&cli(args)).unwrap();
            assert_eq!(s.backends, None, "{args:?}");
        }
    }

    #[test]
    fn panic_threshold_and_passive_window() {
        let s = Settings::from_cli(&cli(&["--backends", "http://a:1"])).unwrap();
        assert_eq!(
            (s.pool.panic_threshold, s.pool.thresholds.passive_window),
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
                (s.pool.panic_threshold, s.pool.thresholds.passive_window),
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
    fn debug_of_the_settings_shows_neither_token_nor_password() {
        let s = Settings::from_cli(&cli(&[
            "--backends",
            "http://a:1",
            "--admin-token",
            "0123456789abcdef-secret",
            "--database-url",
            "postgres://u:hunter2@h/db",
        ]))
        .unwrap();
        let shown = format!("{s:?} {s:#?}");
        assert!(shown.contains("REDACTED"), "{shown}");
        assert!(
            !shown.contains("0123456789abcdef") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn summary_redacts_the_database_password() {
        let s = Settings::from_cli(&cli(&[
            "--backends",
            "http://a:1",
            "--database-url",
            "postgres://u:pw@h/db",
        ]))
        .unwrap();
        assert!(!s.summary().contains("pw@"), "{}", s.summary());
    }

    #[test]
    fn health_timeout_longer_than_the_interval_is_refused() {
        let p = problems(&[
            "--backends",
            "http://a:1",
            "--health-interval",
            "1s",
            "--health-timeout",
            "2s",
        ]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("TOLLGATE_HEALTH_TIMEOUT"), "{p:?}");
    }
}
