//! Rate-limit decisions by kind of caller and result, counted where the limiter decides.

use std::sync::atomic::{AtomicU64, Ordering};

/// Who was charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerKind {
    /// A registered client (by API key or address).
    Client,
    /// An anonymous caller, by address.
    Anonymous,
}

/// What the limiter decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A token was taken.
    Admitted,
    /// Refused with 429.
    Refused,
    /// A client in shadow mode would have been refused; it was let through.
    ShadowRefused,
}

/// The label values of one counted decision: `(kind, result, shadow)`.
/// Anonymous callers have no shadow mode.
pub const LABELS: [(&str, &str, &str); 5] = [
    ("client", "admitted", "false"),
    ("client", "refused", "false"),
    ("client", "refused", "true"),
    ("anonymous", "admitted", "false"),
    ("anonymous", "refused", "false"),
];

fn slot(kind: CallerKind, outcome: Outcome) -> usize {
    match (kind, outcome) {
        (CallerKind::Client, Outcome::Admitted) => 0,
        (CallerKind::Client, Outcome::Refused) => 1,
        (CallerKind::Client, Outcome::ShadowRefused) => 2,
        (CallerKind::Anonymous, Outcome::Admitted) => 3,
        (CallerKind::Anonymous, _) => 4,
    }
}

/// Decisions since start, in the order of [`LABELS`]. Counted even with
/// `TOLLGATE_METRICS=false`: the status page's refusals come from here.
#[derive(Debug, Default)]
pub struct DecisionCounts {
    counts: [AtomicU64; 5],
}

impl DecisionCounts {
    /// Counts one decision.
    pub fn count(&self, kind: CallerKind, outcome: Outcome) {
        self.counts[slot(kind, outcome)].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now, in the order of [`LABELS`].
    pub fn snapshot(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_decision_has_its_own_labels() {
        let cases = [
            (
                CallerKind::Client,
                Outcome::Admitted,
                ("client", "admitted", "false"),
            ),
            (
                CallerKind::Client,
                Outcome::Refused,
                ("client", "refused", "false"),
            ),
            (
                CallerKind::Client,
                Outcome::ShadowRefused,
                ("client", "refused", "true"),
            ),
            (
                CallerKind::Anonymous,
                Outcome::Admitted,
                ("anonymous", "admitted", "false"),
            ),
            (
                CallerKind::Anonymous,
                Outcome::Refused,
                ("anonymous", "refused", "false"),
            ),
            (
                CallerKind::Anonymous,
                Outcome::ShadowRefused,
                ("anonymous", "refused", "false"),
            ),
        ];
        for (kind, outcome, labels) in cases {
            let d = DecisionCounts::default();
            d.count(kind, outcome);
            let snap = d.snapshot();
            let hit: Vec<_> = (0..5).filter(|&i| snap[i] == 1).map(|i| LABELS[i]).collect();
            assert_eq!(hit, vec![labels]);
        }
    }
}
