//! Health state of one backend: consecutive-result thresholds, pure and clock-free.

/// Consecutive results needed to change state.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Passes that re-admit an ejected backend.
    pub healthy: u32,
    /// Failures that eject a healthy backend.
    pub unhealthy: u32,
}

/// A state change caused by a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The backend reached the unhealthy threshold.
    Ejected,
    /// The backend reached the healthy threshold.
    Readmitted,
}

/// Health of one backend. Starts healthy (HAProxy's convention).
#[derive(Debug, Clone)]
pub struct Health {
    healthy: bool,
    /// Consecutive results contrary to the current state.
    streak: u32,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            healthy: true,
            streak: 0,
        }
    }
}

impl Health {
    /// Whether the backend takes traffic.
    pub fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// Records one check result (or a passive failure) and returns the transition, if any.
    pub fn record(&mut self, passed: bool, t: Thresholds) -> Option<Transition> {
        if passed == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.healthy { t.unhealthy } else { t.healthy };
        if self.streak < needed {
            return None;
        }
        self.healthy = passed;
        self.streak = 0;
        Some(if passed {
            Transition::Readmitted
        } else {
            Transition::Ejected
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        healthy: 2,
        unhealthy: 3,
    };

    fn feed(h: &mut Health, results: &[bool]) -> Vec<Option<Transition>> {
        results.iter().map(|&r| h.record(r, T)).collect()
    }

    #[test]
    fn ejected_after_exactly_the_unhealthy_threshold() {
        let mut h = Health::default();
        assert!(h.is_healthy());
        assert_eq!(
            feed(&mut h, &[false, false, false]),
            vec![None, None, Some(Transition::Ejected)]
        );
        assert!(!h.is_healthy());
        assert_eq!(feed(&mut h, &[false]), vec![None]);
    }

    #[test]
    fn readmitted_after_exactly_the_healthy_threshold() {
        let mut h = Health::default();
        feed(&mut h, &[false, false, false]);
        assert_eq!(
            feed(&mut h, &[true, true]),
            vec![None, Some(Transition::Readmitted)]
        );
        assert!(h.is_healthy());
    }

    #[test]
    fn a_flap_shorter_than_the_threshold_changes_nothing() {
        let mut h = Health::default();
        let t = feed(
            &mut h,
            &[false, false, true, false, false, true, false, false, true],
        );
        assert!(t.iter().all(Option::is_none));
        assert!(h.is_healthy());
        feed(&mut h, &[false, false, false]);
        let t = feed(&mut h, &[true, false, true, false, true]);
        assert!(t.iter().all(Option::is_none));
        assert!(!h.is_healthy());
    }
}
