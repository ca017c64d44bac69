//! The change-log version this instance has applied, shared between whoever applies changes
//! (it sets it) and the heartbeat (it publishes it in the `instances` table).

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

/// The last change version applied by this instance; 0 until the change log sets it.
#[derive(Debug, Clone, Default)]
pub struct AppliedVersion(Arc<AtomicU64>);

impl AppliedVersion {
    /// Records that every change up to `version` is applied. Never moves back.
    pub fn set(&self, version: u64) {
        self.0.fetch_max(version, Ordering::Release);
    }

    /// The version applied so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_only_moves_forward_and_is_shared() {
        let a = AppliedVersion::default();
        let b = a.clone();
        assert_eq!(b.get(), 0);
        a.set(7);
        a.set(5);
        assert_eq!(b.get(), 7);
    }
}
