//! Which instances count as alive, and when a dead one's row is removed: a pure policy over
//! the time since an instance's last heartbeat.

use std::time::Duration;

/// How often instances heartbeat, how many missed heartbeats make one dead, and how long a
/// dead one stays listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// Time between two heartbeats of an instance.
    pub interval: Duration,
    /// Heartbeats an instance may miss before it is shown dead.
    pub missed: u32,
    /// How long after its last heartbeat a dead instance's row is removed.
    pub retention: Duration,
}

impl Default for Liveness {
    /// One heartbeat a second; dead after 3 missed; removed after an hour.
    fn default() -> Self {
        Liveness {
            interval: Duration::from_secs(1),
            missed: 3,
            retention: Duration::from_secs(3600),
        }
    }
}

/// What an instance is, seen from its last heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Heartbeating.
    Alive,
    /// Missed too many heartbeats; still listed.
    Dead,
    /// Dead for longer than the retention: its row goes.
    Expired,
}

impl Liveness {
    /// The state of an instance whose last heartbeat was `since` ago.
    pub fn state(&self, since: Duration) -> State {
        if since <= self.interval * self.missed {
            State::Alive
        } else if since <= self.retention {
            State::Dead
        } else {
            State::Expired
        }
    }

    /// The retention in ms, for the removal query.
    pub fn retention_ms(&self) -> i64 {
        i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_missed_heartbeats_make_an_instance_dead() {
        let l = Liveness::default();
        for (since_ms, want) in [
            (0, State::Alive),
            (999, State::Alive),
            (2_500, State::Alive),
            (3_000, State::Alive),
            (3_001, State::Dead),
            (60_000, State::Dead),
            (3_600_000, State::Dead),
            (3_600_001, State::Expired),
        ] {
            assert_eq!(l.state(Duration::from_millis(since_ms)), want, "{since_ms} ms");
        }
    }

    #[test]
    fn the_thresholds_follow_the_settings() {
        let l = Liveness {
            interval: Duration::from_millis(100),
            missed: 5,
            retention: Duration::from_secs(2),
        };
        assert_eq!(l.state(Duration::from_millis(500)), State::Alive);
        assert_eq!(l.state(Duration::from_millis(501)), State::Dead);
        assert_eq!(l.state(Duration::from_millis(2_001)), State::Expired);
        assert_eq!(l.retention_ms(), 2_000);
    }
}
