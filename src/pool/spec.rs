//! What the configuration says about the backends: each backend's base URL and weight, and
//! the selection strategy.

use std::{fmt, num::NonZeroU32};

use actix_web::http::Uri;

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
    /// Relative share of traffic, 1 to [`BackendSpec::MAX_WEIGHT`].
    pub weight: NonZeroU32,
}

impl BackendSpec {
    /// Largest accepted backend weight; keeps the smooth round-robin cycle small.
    pub const MAX_WEIGHT: u32 = 1000;

    /// A backend at `url` with `weight`, validated as `TOLLGATE_BACKENDS` and the admin API
    /// validate it; the message says what is wrong in the operator's words.
    pub fn new(url: &str, weight: u32) -> Result<BackendSpec, String> {
        let base = Self::parse_url(url)?;
        match NonZeroU32::new(weight).filter(|w| w.get() <= Self::MAX_WEIGHT) {
            Some(weight) => Ok(BackendSpec { base, weight }),
            None => Err(format!(
                "weight must be a whole number from 1 to {}",
                Self::MAX_WEIGHT
            )),
        }
    }

    /// The base URL of `url` (no trailing slash): `http://host[:port][/prefix]`, with no
    /// query, fragment or user info.
    pub fn parse_url(url: &str) -> Result<String, String> {
        let bad = || {
            format!("{url} is not an http:// base URL like http://10.0.0.5:9000 or http://api.internal/v1")
        };
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
}
