//! Value parsers: each takes the raw string of one setting and returns the value or the
//! accepted form (`expected …`), which [`super::problems::Problems`] turns into a message
//! naming the variable and the flag.

use std::{net::SocketAddr, num::NonZeroU32, time::Duration};

use actix_web::http::{header::HeaderName, Uri};

use crate::{
    pool::{BackendSpec, Strategy},
    registry::ForwardedHeader,
    store::DatabaseUrl,
};

/// Parses true/false, 1/0, yes/no, on/off.
pub(super) fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

/// Parses `TOLLGATE_LIMIT_SCOPE`.
pub(super) fn parse_limit_scope(raw: &str) -> Result<crate::registry::LimitScope, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "cluster" => Ok(crate::registry::LimitScope::Cluster),
        "local" => Ok(crate::registry::LimitScope::Local),
        _ => Err("expected cluster or local".into()),
    }
}

/// Parses a listener address `IP:PORT`.
pub(super) fn parse_addr(raw: &str) -> Result<SocketAddr, String> {
    raw.trim()
        .parse()
        .map_err(|_| "expected IP:PORT, e.g. 0.0.0.0:8080 or [::1]:8080".to_string())
}

/// Parses a load-balancing strategy name.
pub(super) fn parse_strategy(raw: &str) -> Result<Strategy, String> {
    match raw.trim() {
        "round-robin" => Ok(Strategy::RoundRobin),
        "least-connections" => Ok(Strategy::LeastConnections),
        "random" => Ok(Strategy::Random),
        _ => Err("expected round-robin, least-connections or random".into()),
    }
}

/// Parses an absolute request path (the health-check path).
pub(super) fn parse_path(raw: &str) -> Result<String, String> {
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

/// Parses a whole number from `min` to `max`.
pub(super) fn parse_int(raw: &str, min: u32, max: u32) -> Result<u32, String> {
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

/// Parses a size that may be zero (a rate or limit that `0` turns off).
pub fn parse_size_or_zero(raw: &str) -> Result<u64, String> {
    match raw.trim().parse::<bytesize::ByteSize>() {
        Ok(size) => Ok(size.as_u64()),
        _ => Err("expected a size, e.g. 1KiB, 512 or 0 (off)".into()),
    }
}

/// Parses `URL[=WEIGHT],URL[=WEIGHT],...`.
pub fn parse_backends(raw: &str) -> Result<Vec<BackendSpec>, String> {
    const MAX_WEIGHT: u32 = BackendSpec::MAX_WEIGHT;
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
        let base = BackendSpec::parse_url(url)?;
        if out.iter().any(|b| b.base == base) {
            return Err(format!("{base} is listed twice"));
        }
        // `weight` is at least 1 by the range check above.
        let weight = NonZeroU32::new(weight).unwrap_or(NonZeroU32::MIN);
        out.push(BackendSpec { base, weight });
    }
    Ok(out)
}

/// Parses `postgres://…` or a SQLite file (`sqlite://PATH`, `sqlite:PATH` or a bare path).
pub(super) fn parse_database_url(raw: &str) -> Result<DatabaseUrl, String> {
    let raw = raw.trim();
    if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        match raw.parse::<Uri>() {
            Ok(u) if u.host().is_some() => Ok(DatabaseUrl::Postgres(raw.to_string().into())),
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

/// Parses an HTTP header name (the API-key header).
pub(super) fn parse_header_name(raw: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(raw.trim().as_bytes())
        .map_err(|_| "expected an HTTP header name, e.g. X-API-Key".to_string())
}

/// Parses which forwarding header the trusted proxies write.
pub(super) fn parse_forwarded_header(raw: &str) -> Result<ForwardedHeader, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "x-forwarded-for" => Ok(ForwardedHeader::XForwardedFor),
        "forwarded" => Ok(ForwardedHeader::Forwarded),
        _ => Err("expected x-forwarded-for or forwarded".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn durations_sizes_and_database_urls() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("0s").is_err() && parse_duration("5").is_err());
        assert_eq!(parse_size("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("0").is_err());
        assert_eq!(parse_size_or_zero("0"), Ok(0));
        assert_eq!(parse_size_or_zero("1KiB"), Ok(1024));
        assert!(parse_size_or_zero("fast").is_err());
        assert!(matches!(
            parse_database_url("sqlite://x.db"),
            Ok(DatabaseUrl::Sqlite(p)) if p == "x.db"
        ));
        assert!(matches!(
            parse_database_url("postgres://u@h/db"),
            Ok(DatabaseUrl::Postgres(_))
        ));
    }

    #[test]
    fn bools_ints_paths_and_headers() {
        for (raw, want) in [
            ("true", true),
            (" ON ", true),
            ("1", true),
            ("no", false),
            ("off", false),
        ] {
            assert_eq!(parse_bool(raw), Ok(want), "{raw}");
        }
        assert!(parse_bool("maybe").is_err());
        assert_eq!(parse_int("7", 1, 10), Ok(7));
        assert!(parse_int("0", 1, 10).is_err() && parse_int("-1", 0, 10).is_err());
        assert_eq!(
            parse_forwarded_header(" Forwarded "),
            Ok(ForwardedHeader::Forwarded)
        );
        assert!(parse_header_name("bad header").is_err());
        assert!(parse_path("healthz").is_err() && parse_path("/healthz?x=1").is_ok());
        assert!(parse_addr("[::1]:8080").is_ok() && parse_addr("localhost:80").is_err());
    }
}
