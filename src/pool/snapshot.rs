//! The routing table the actor publishes and handlers read: which backends take traffic now.

use std::sync::Arc;

use super::{backend::Backend, select::smooth_weighted_cycle};

/// The backends that take traffic, as the actor last published them.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The candidates: listed, enabled, not draining, not waiting for their first check.
    pub backends: Vec<Arc<Backend>>,
    /// Indices into `backends` of those that take traffic, ascending: the healthy ones, or
    /// every candidate in panic mode.
    pub routable: Vec<usize>,
    /// Smooth weighted round-robin cycle; entries index into `routable`.
    pub cycle: Vec<usize>,
}

impl Snapshot {
    /// The snapshot routing over `routable` (indices into `backends`), with the weights the
    /// backends have now.
    pub fn build(backends: Vec<Arc<Backend>>, routable: Vec<usize>) -> Snapshot {
        let weights: Vec<u32> = routable.iter().map(|&i| backends[i].weight()).collect();
        Snapshot {
            cycle: smooth_weighted_cycle(&weights),
            backends,
            routable,
        }
    }
}
