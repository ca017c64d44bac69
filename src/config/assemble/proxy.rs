//! The proxy's settings: retries, body limits and the deadlines of both bodies.

use actix_web::http::header::HeaderName;

use crate::{
    config::{
        cli::Cli,
        parse::{parse_int, parse_size, parse_size_or_zero},
        problems::Problems,
    },
    http::proxy::{ProxySettings, UploadPolicy},
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
        trusted_proxies,
        upstream_timeout: upstream_timeout?,
    })
}
