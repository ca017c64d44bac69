//! The pool's settings: selection strategy, health checks, ejection and panic mode.

use std::time::Duration;

use crate::{
    config::{
        cli::Cli,
        parse::{parse_int, parse_path, parse_strategy},
        problems::Problems,
    },
    pool::{PoolSettings, Thresholds},
};

/// Selection strategy and health checking.
pub(in crate::config) fn pool(p: &mut Problems, cli: &Cli) -> Option<PoolSettings> {
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
