//! What the configuration says about the backends: each backend's base URL and weight, and
//! the selection strategy.

use std::{fmt, num::NonZeroU32};

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
}
