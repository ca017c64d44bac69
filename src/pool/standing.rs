//! Where each listed backend stands (enabled, draining, waiting for its first check, healthy)
//! and what that makes of the routing set. Pure: the actor feeds it its members, tests feed
//! it tables.

use super::panic;

/// What the pool knows of one listed backend, for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// `enabled` as stored: `false` drains it but keeps it listed.
    pub enabled: bool,
    /// Deleted: listed until its requests in flight finish, then dropped.
    pub draining: bool,
    /// Added at run time and not checked yet: it takes traffic once a first check passes, so
    /// that a backend added while down is neither sent requests nor counted as ejected.
    pub pending: bool,
    /// Its health checks say it is up.
    pub healthy: bool,
}

/// The state `GET /backends` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Takes traffic.
    Healthy,
    /// Ejected by its checks (takes traffic only in panic mode).
    Unhealthy,
    /// Added, first check not finished.
    Pending,
    /// `enabled: false`.
    Disabled,
    /// Deleted, requests still in flight.
    Draining,
}

impl State {
    /// The name shown.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Healthy => "healthy",
            State::Unhealthy => "unhealthy",
            State::Pending => "pending",
            State::Disabled => "disabled",
            State::Draining => "draining",
        }
    }
}

impl Standing {
    /// The state shown; draining wins over disabled, which wins over health.
    pub fn state(&self) -> State {
        if self.draining {
            State::Draining
        } else if !self.enabled {
            State::Disabled
        } else if self.pending {
            State::Pending
        } else if self.healthy {
            State::Healthy
        } else {
            State::Unhealthy
        }
    }

    /// Whether it may take new requests at all (then health and panic mode decide).
    pub fn is_candidate(&self) -> bool {
        self.enabled && !self.draining && !self.pending
    }
}

/// A draining backend is dropped from the list once no request is in flight to it.
pub fn drained(s: &Standing, in_flight: usize) -> bool {
    s.draining && in_flight == 0
}

/// The routing set over `standings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// Indices into `standings` of the candidates, in list order.
    pub candidates: Vec<usize>,
    /// Indices into `candidates` of those that take traffic.
    pub routable: Vec<usize>,
    /// Panic mode: too few candidates are healthy, every candidate takes traffic.
    pub panic: bool,
    /// Healthy candidates.
    pub healthy: usize,
}

/// Candidates are the enabled, not draining, checked backends; panic mode is judged among
/// them only (a disabled or draining backend is the operator's choice, not an outage).
pub fn route(standings: &[Standing], panic_threshold: u8) -> Routing {
    let candidates: Vec<usize> = (0..standings.len())
        .filter(|&i| standings[i].is_candidate())
        .collect();
    let healthy: Vec<bool> = candidates.iter().map(|&i| standings[i].healthy).collect();
    let (routable, panic) = panic::routable(&healthy, panic_threshold);
    Routing {
        healthy: healthy.iter().filter(|&&h| h).count(),
        candidates,
        routable,
        panic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn s(enabled: bool, draining: bool, pending: bool, healthy: bool) -> Standing {
        Standing {
            enabled,
            draining,
            pending,
            healthy,
        }
    }
    const T: bool = true;
    const F: bool = false;

    #[test]
    fn state_and_candidacy() {
        #[rustfmt::skip]
        let cases = [
            // enabled, draining, pending, healthy => state, candidate
            (s(T, F, F, T), State::Healthy, T),
            (s(T, F, F, F), State::Unhealthy, T),
            (s(T, F, T, T), State::Pending, F),
            (s(F, F, F, T), State::Disabled, F),
            (s(F, F, T, F), State::Disabled, F),
            (s(T, T, F, T), State::Draining, F),
            (s(F, T, F, F), State::Draining, F),
        ];
        for (standing, state, candidate) in cases {
            assert_eq!(standing.state(), state, "{standing:?}");
            assert_eq!(standing.is_candidate(), candidate, "{standing:?}");
        }
    }

    #[test]
    fn drain_completes_when_nothing_is_in_flight() {
        let cases = [
            (s(T, T, F, T), 0, true),
            (s(T, T, F, T), 1, false),
            (s(F, T, F, F), 0, true),
            (s(F, F, F, T), 0, false), // disabled: stays listed
            (s(T, F, F, T), 0, false),
        ];
        for (standing, in_flight, want) in cases {
            assert_eq!(drained(&standing, in_flight), want, "{standing:?} {in_flight}");
        }
    }

    #[test]
    fn routing_table() {
        let ok = s(T, F, F, T);
        let down = s(T, F, F, F);
        let off = s(F, F, F, T);
        let leaving = s(T, T, F, T);
        let new = s(T, F, T, F);
        #[rustfmt::skip]
        // what, standings, threshold, candidates, routable, panic
        type Case = (&'static str, Vec<Standing>, u8, Vec<usize>, Vec<usize>, bool);
        let cases: Vec<Case> = vec![
            ("all healthy", vec![ok, ok], 50, vec![0, 1], vec![0, 1], F),
            (
                "disabled and draining are not candidates",
                vec![off, ok, leaving],
                50,
                vec![1],
                vec![0],
                F,
            ),
            (
                "pending is not a candidate",
                vec![new, ok],
                50,
                vec![1],
                vec![0],
                F,
            ),
            (
                "panic among candidates only",
                vec![down, down, ok, off, off],
                50,
                vec![0, 1, 2],
                vec![0, 1, 2],
                T,
            ),
            (
                "no panic when the disabled ones would have tipped it",
                vec![ok, down, off, off],
                50,
                vec![0, 1],
                vec![0],
                F,
            ),
            ("nothing listed", vec![], 50, vec![], vec![], F),
            ("only a disabled one", vec![off], 50, vec![], vec![], F),
        ];
        for (what, standings, threshold, candidates, routable, panic) in cases {
            let r = route(&standings, threshold);
            assert_eq!(
                (r.candidates, r.routable, r.panic),
                (candidates, routable, panic),
                "{what}"
            );
        }
    }
}
