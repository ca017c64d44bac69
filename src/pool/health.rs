//! Health of one backend: when it is ejected and when it is re-admitted. Pure: time comes in
//! as an argument (nanoseconds on the pool's clock), so tests never sleep.
//!
//! - Active checks: `unhealthy` consecutive failed checks eject, `healthy` consecutive passed
//!   checks re-admit. A check that timed out while the backend answered proxied traffic within
//!   the last `answer_grace` is not counted at all: the checker, not the backend, was slow.
//! - Passive failures (connects refused or timed out in the proxy): `unhealthy` consecutive ones
//!   eject only if at least `passive_window` lies between the first and the last, so a backend
//!   restart of a few milliseconds does not eject it. A proxied answer or a passed check in
//!   between starts the count again.

use std::time::Duration;

/// When results change a backend's state.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Consecutive passed checks that re-admit an ejected backend.
    pub healthy: u32,
    /// Consecutive failures (checks, or passive failures) that eject a healthy backend.
    pub unhealthy: u32,
    /// Least time between the first and the last of the passive failures that eject.
    pub passive_window: Duration,
    /// A check timeout is forgiven when the backend answered proxied traffic this recently.
    pub answer_grace: Duration,
}

/// One thing learnt about a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// An active check passed (2xx or 3xx in time).
    CheckPassed,
    /// An active check failed for any reason but its own deadline (refused, reset, status).
    CheckFailed,
    /// An active check hit its deadline.
    CheckTimedOut,
    /// The proxy could not connect to the backend.
    ConnectFailed,
}

/// What an event did to the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Counted; no change of state.
    Counted,
    /// A check timeout not counted because the backend answered proxied traffic recently.
    Forgiven,
    /// The backend reached the unhealthy threshold.
    Ejected,
    /// The backend reached the healthy threshold.
    Readmitted,
}

/// Health of one backend. Starts healthy (HAProxy's convention).
#[derive(Debug, Clone)]
pub struct Health {
    healthy: bool,
    /// While ejected: consecutive passed checks.
    passes: u32,
    /// While healthy: consecutive failed checks.
    check_failures: u32,
    /// While healthy: consecutive passive failures and the time of the first.
    passive: Option<(u32, u64)>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            healthy: true,
            passes: 0,
            check_failures: 0,
            passive: None,
        }
    }
}

impl Health {
    /// An ejected backend, re-admitted after `healthy` consecutive passed checks like any
    /// other (a backend added at run time whose first check failed).
    pub fn ejected() -> Health {
        Health {
            healthy: false,
            ..Health::default()
        }
    }

    /// Whether the backend counts as healthy.
    pub fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// Records `event` at `now`; `last_answer` is when the backend last answered proxied
    /// traffic (same clock, `None` if never).
    pub fn record(&mut self, event: Event, now: u64, last_answer: Option<u64>, t: &Thresholds) -> Outcome {
        let answered_since = |since: u64| last_answer.is_some_and(|a| a >= since);
        match event {
            Event::CheckTimedOut if answered_since(now.saturating_sub(nanos(t.answer_grace))) => {
                Outcome::Forgiven
            }
            Event::CheckPassed if self.healthy => {
                self.check_failures = 0;
                self.passive = None;
                Outcome::Counted
            }
            Event::CheckPassed => {
                self.passes += 1;
                if self.passes < t.healthy {
                    return Outcome::Counted;
                }
                *self = Health::default();
                Outcome::Readmitted
            }
            _ if !self.healthy => {
                self.passes = 0;
                Outcome::Counted
            }
            Event::CheckFailed | Event::CheckTimedOut => {
                self.check_failures += 1;
                self.eject_if(self.check_failures >= t.unhealthy)
            }
            Event::ConnectFailed => {
                let (count, first) = match self.passive {
                    // An answer after the first failure broke the run: this one starts anew.
                    Some((count, first)) if !answered_since(first) => (count + 1, first),
                    _ => (1, now),
                };
                self.passive = Some((count, first));
                let spread = now.saturating_sub(first) >= nanos(t.passive_window);
                self.eject_if(count >= t.unhealthy && spread)
            }
        }
    }

    fn eject_if(&mut self, eject: bool) -> Outcome {
        if !eject {
            return Outcome::Counted;
        }
        *self = Health::ejected();
        Outcome::Ejected
    }
}

/// Whether a proxied response with `status` shows the backend up: anything but a 5xx.
pub fn is_answer(status: u16) -> bool {
    status < 500
}

/// `d` in nanoseconds, saturating (durations here are at most a day).
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::{Event::*, Outcome::*, *};

    const MS: u64 = 1_000_000;

    const T: Thresholds = Thresholds {
        healthy: 2,
        unhealthy: 3,
        passive_window: Duration::from_secs(1),
        answer_grace: Duration::from_millis(500),
    };

    /// One step of a case: an event at a time (ms), or a proxied answer at a time.
    #[derive(Clone, Copy)]
    enum S {
        E(Event, u64),
        Answer(u64),
    }
    use S::{Answer, E};

    /// Runs the steps and returns the outcome of each event.
    fn feed(h: &mut Health, steps: &[S]) -> Vec<Outcome> {
        let mut last_answer = None;
        let mut out = Vec::new();
        for step in steps {
            match *step {
                Answer(at) => last_answer = Some(at * MS),
                E(e, at) => out.push(h.record(e, at * MS, last_answer, &T)),
            }
        }
        out
    }

    fn ejected() -> Health {
        let mut h = Health::default();
        feed(&mut h, &[E(CheckFailed, 0), E(CheckFailed, 1), E(CheckFailed, 2)]);
        assert!(!h.is_healthy());
        h
    }

    #[test]
    fn table_of_event_runs() {
        struct Case {
            name: &'static str,
            start_ejected: bool,
            steps: &'static [S],
            want: &'static [Outcome],
            healthy_after: bool,
        }
        #[rustfmt::skip]
        let cases = [
            Case {
                name: "three failed checks eject",
                start_ejected: false,
                steps: &[E(CheckFailed, 0), E(CheckFailed, 100), E(CheckFailed, 200)],
                want: &[Counted, Counted, Ejected],
                healthy_after: false,
            },
            Case {
                name: "a passed check in between resets the count",
                start_ejected: false,
                steps: &[E(CheckFailed, 0), E(CheckFailed, 100), E(CheckPassed, 200), E(CheckFailed, 300), E(CheckFailed, 400)],
                want: &[Counted; 5],
                healthy_after: true,
            },
            Case {
                name: "timeouts with no proxied answer count as failures",
                start_ejected: false,
                steps: &[E(CheckTimedOut, 0), E(CheckTimedOut, 100), E(CheckTimedOut, 200)],
                want: &[Counted, Counted, Ejected],
                healthy_after: false,
            },
            Case {
                name: "timeouts while proxied traffic is answered are forgiven",
                start_ejected: false,
                steps: &[Answer(800), E(CheckTimedOut, 900), Answer(950), E(CheckTimedOut, 1000), Answer(1090), E(CheckTimedOut, 1100)],
                want: &[Forgiven; 3],
                healthy_after: true,
            },
            Case {
                name: "an answer older than the grace does not forgive",
                start_ejected: false,
                steps: &[Answer(100), E(CheckTimedOut, 600), E(CheckTimedOut, 700), E(CheckTimedOut, 800), E(CheckTimedOut, 900)],
                want: &[Forgiven, Counted, Counted, Ejected],
                healthy_after: false,
            },
            Case {
                name: "a refused check is a failure whatever the traffic",
                start_ejected: false,
                steps: &[Answer(0), E(CheckFailed, 10), E(CheckFailed, 100), Answer(150), E(CheckFailed, 200)],
                want: &[Counted, Counted, Ejected],
                healthy_after: false,
            },
            Case {
                name: "three refusals within a millisecond do not eject",
                start_ejected: false,
                steps: &[Answer(4000), E(ConnectFailed, 5000), E(ConnectFailed, 5000), E(ConnectFailed, 5001)],
                want: &[Counted; 3],
                healthy_after: true,
            },
            Case {
                name: "refusals spread over the window eject",
                start_ejected: false,
                steps: &[E(ConnectFailed, 0), E(ConnectFailed, 1), E(ConnectFailed, 999), E(ConnectFailed, 1000)],
                want: &[Counted, Counted, Counted, Ejected],
                healthy_after: false,
            },
            Case {
                name: "the window alone is not enough: the count is too",
                start_ejected: false,
                steps: &[E(ConnectFailed, 0), E(ConnectFailed, 5000)],
                want: &[Counted, Counted],
                healthy_after: true,
            },
            Case {
                name: "an answer after the first refusal starts the run again",
                start_ejected: false,
                steps: &[E(ConnectFailed, 0), E(ConnectFailed, 10), Answer(50), E(ConnectFailed, 1100), E(ConnectFailed, 1200), E(ConnectFailed, 2100)],
                want: &[Counted, Counted, Counted, Counted, Ejected],
                healthy_after: false,
            },
            Case {
                name: "a passed check breaks a run of refusals",
                start_ejected: false,
                steps: &[E(ConnectFailed, 0), E(ConnectFailed, 500), E(CheckPassed, 600), E(ConnectFailed, 1100)],
                want: &[Counted; 4],
                healthy_after: true,
            },
            Case {
                name: "passive and active failures are counted apart",
                start_ejected: false,
                steps: &[E(CheckFailed, 0), E(ConnectFailed, 600), E(CheckFailed, 1200), E(ConnectFailed, 1800)],
                want: &[Counted; 4],
                healthy_after: true,
            },
            Case {
                name: "two passes re-admit",
                start_ejected: true,
                steps: &[E(CheckPassed, 0), E(CheckPassed, 100)],
                want: &[Counted, Readmitted],
                healthy_after: true,
            },
            Case {
                name: "any counted failure resets the passes of an ejected backend",
                start_ejected: true,
                steps: &[E(CheckPassed, 0), E(ConnectFailed, 50), E(CheckPassed, 100), E(CheckTimedOut, 200), E(CheckPassed, 300)],
                want: &[Counted; 5],
                healthy_after: false,
            },
            Case {
                name: "a forgiven timeout does not reset the passes",
                start_ejected: true,
                steps: &[E(CheckPassed, 0), Answer(90), E(CheckTimedOut, 100), E(CheckPassed, 200)],
                want: &[Counted, Forgiven, Readmitted],
                healthy_after: true,
            },
        ];
        for c in cases {
            let mut h = if c.start_ejected {
                ejected()
            } else {
                Health::default()
            };
            assert_eq!(feed(&mut h, c.steps), c.want, "{}", c.name);
            assert_eq!(h.is_healthy(), c.healthy_after, "{}", c.name);
        }
    }

    #[test]
    fn a_zero_window_ejects_on_the_count_alone() {
        let t = Thresholds {
            passive_window: Duration::ZERO,
            ..T
        };
        let mut h = Health::default();
        let out: Vec<Outcome> = (0..3).map(|_| h.record(ConnectFailed, 7, None, &t)).collect();
        assert_eq!(out, vec![Counted, Counted, Ejected]);
    }

    #[test]
    fn readmission_starts_with_clean_counts() {
        let mut h = ejected();
        feed(&mut h, &[E(CheckPassed, 10), E(CheckPassed, 20)]);
        assert_eq!(
            feed(&mut h, &[E(CheckFailed, 30), E(CheckFailed, 40)]),
            vec![Counted, Counted]
        );
        assert!(h.is_healthy());
    }
}
