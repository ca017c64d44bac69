//! The routing table the actor publishes and handlers read: which backends take traffic now.

use super::{backend::Backend, select::smooth_weighted_cycle};

/// The backends that take traffic, as the actor last published them.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Indices of the backends that take traffic, ascending: the healthy ones, or every one in
    /// panic mode.
    pub routable: Vec<usize>,
    /// Smooth weighted round-robin cycle; entries index into `routable`.
    pub cycle: Vec<usize>,
}

impl Snapshot {
    /// The snapshot routing over `routable` (indices into `backends`).
    pub fn build(backends: &[Backend], routable: Vec<usize>) -> Snapshot {
        let weights: Vec<u32> = routable.iter().map(|&i| backends[i].weight).collect();
        Snapshot {
            cycle: smooth_weighted_cycle(&weights),
            routable,
        }
    }
}
