//! The proxy's settings: retries, idle backend connections, body limits and the deadlines of
//! both bodies.

use actix_web::http::header::HeaderName;

use crate::{
    config::{
        cli::Cli,
        parse::{parse_int, parse_size, parse_size_or_zero},
        problems::Problems,
    },
    http::proxy::{HeadLimits, ProxySettings, UploadPolicy, MAX_HEADER_LINES, MAX_HEAD_BYTES},
};

/// Forwarding limits; `strip_header` is the API-key header while rate limiting is on,
/// `trusted_proxies` those of TOLLGATE_TRUSTED_PROXIES.
pub(in crate::config) fn proxy(
    p: &mut Problems,
    cli: &Cli,
    strip_header: Option<HeaderName>,
    trusted_proxies: Vec<ipnet::IpNet>,
) -> Option<ProxySettings> {
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
    let upstream_idle = p.check(
        "TOLLGATE_UPSTREAM_IDLE",
        "upstream-idle",
        &cli.upstream_idle,
        parse_int(&cli.upstream_idle, 0, 100_000),
    );
    let upstream_idle_timeout = p.duration(
        "TOLLGATE_UPSTREAM_IDLE_TIMEOUT",
        "upstream-idle-timeout",
        &cli.upstream_idle_timeout,
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
        parse_size_or_zero(&cli.client_body_min_rate),
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
    let max_head = p.check(
        "TOLLGATE_UPSTREAM_MAX_HEAD",
        "upstream-max-head",
        &cli.upstream_max_head,
        parse_size(&cli.upstream_max_head).and_then(|n| match usize::try_from(n) {
            Ok(n) if (1024..=MAX_HEAD_BYTES).contains(&n) => Ok(n),
            _ => Err("expected a size from 1KiB to 128KiB".into()),
        }),
    );
    let max_lines = p.check(
        "TOLLGATE_UPSTREAM_MAX_HEADERS",
        "upstream-max-headers",
        &cli.upstream_max_headers,
        parse_int(&cli.upstream_max_headers, 1, MAX_HEADER_LINES as u32),
    );
    Some(ProxySettings {
        retries: retries?,
        upstream_idle: upstream_idle? as usize,
        upstream_idle_timeout: upstream_idle_timeout?,
        max_body_size: max_body_size?,
        request_buffer: request_buffer?,
        upload: UploadPolicy {
            idle: client_body_timeout?,
            min_rate: client_body_min_rate?,
            grace: client_body_grace?,
        },
        upstream_body_timeout: upstream_body_timeout?,
        upstream_head: HeadLimits {
            max_bytes: max_head?,
            max_lines: max_lines? as usize,
        },
        strip_header,
        trusted_proxies,
        upstream_timeout: upstream_timeout?,
    })
}
