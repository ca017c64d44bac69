//! One backend's answers by status class and failures by kind, kept beside its other counters.

use std::sync::atomic::{AtomicU64, Ordering};

use super::traffic::status_class;

/// How a request to a backend failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The connection could not be opened (refused, unreachable).
    Connect,
    /// The connect deadline passed.
    ConnectTimeout,
    /// The response head did not come within the upstream timeout.
    ResponseTimeout,
    /// The connection broke after the request was sent, before a response head.
    Broken,
    /// The response body failed or stalled after the head was sent on.
    Body,
    /// The response head could not be passed on (over the head limits, or not HTTP).
    BadHead,
}

/// The `kind` label of each [`FailureKind`], in slot order.
pub const FAILURE_KINDS: [&str; 6] = [
    "connect",
    "connect_timeout",
    "response_timeout",
    "broken",
    "body",
    "bad_head",
];

impl FailureKind {
    fn slot(self) -> usize {
        match self {
            FailureKind::Connect => 0,
            FailureKind::ConnectTimeout => 1,
            FailureKind::ResponseTimeout => 2,
            FailureKind::Broken => 3,
            FailureKind::Body => 4,
            FailureKind::BadHead => 5,
        }
    }
}

/// A backend's answers and failures since it was added.
#[derive(Debug, Default)]
pub struct UpstreamCounters {
    answers: [AtomicU64; 5],
    failures: [AtomicU64; FAILURE_KINDS.len()],
}

impl UpstreamCounters {
    /// Counts a response head with `status`.
    pub fn count_answer(&self, status: u16) {
        self.answers[status_class(status)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failure.
    pub fn count_failure(&self, kind: FailureKind) {
        self.failures[kind.slot()].fetch_add(1, Ordering::Relaxed);
    }

    /// Answers by status class (`1xx`..`5xx`).
    pub fn answers(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.answers[i].load(Ordering::Relaxed))
    }

    /// Failures in the order of [`FAILURE_KINDS`].
    pub fn failures(&self) -> [u64; FAILURE_KINDS.len()] {
        std::array::from_fn(|i| self.failures[i].load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_its_slot() {
        let kinds = [
            (FailureKind::Connect, "connect"),
            (FailureKind::ConnectTimeout, "connect_timeout"),
            (FailureKind::ResponseTimeout, "response_timeout"),
            (FailureKind::Broken, "broken"),
            (FailureKind::Body, "body"),
        ];
        for (kind, label) in kinds {
            let c = UpstreamCounters::default();
            c.count_failure(kind);
            let f = c.failures();
            let hit: Vec<&str> = (0..5).filter(|&i| f[i] == 1).map(|i| FAILURE_KINDS[i]).collect();
            assert_eq!(hit, vec![label]);
        }
    }

    #[test]
    fn answers_by_class() {
        let c = UpstreamCounters::default();
        for s in [200, 201, 404, 502] {
            c.count_answer(s);
        }
        assert_eq!(c.answers(), [0, 2, 0, 1, 1]);
    }
}
