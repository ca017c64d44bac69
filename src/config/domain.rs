//! Domain types the configuration produces (moving to their owners next).

use std::{fmt, num::NonZeroU32};

/// Largest accepted backend weight; keeps the smooth round-robin cycle small.
pub const MAX_WEIGHT: u32 = 1000;

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

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_password("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
    }
}
