//! When SQLite's write-ahead log is copied into the file, and how forcefully.
//!
//! A passive checkpoint a second never blocks an admin write, but it can be starved: while
//! writes keep landing during each checkpoint, the log is never wholly copied, so the next
//! writer never starts it over and it grows without bound (SQLite's "checkpoint starvation").
//! When the log has not started over for [`STARVED_TICKS`] checkpoints in a row, the next one
//! is a `RESTART` checkpoint: it waits (within the busy timeout) for writers and readers to
//! finish, so that the next write starts the log from its beginning.

use diesel::{
    sql_types::{BigInt, Integer},
    QueryableByName,
};

/// Checkpoints in a row that found the log no shorter than the one before, after which the
/// next checkpoint waits for writers and readers.
pub const STARVED_TICKS: u32 = 3;

/// How a checkpoint treats the writers and readers it meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Copy what no reader still needs; wait for nobody.
    Passive,
    /// Wait for writers and readers, copy everything, and have the next writer restart the log.
    Restart,
}

impl Mode {
    /// The statement that runs a checkpoint in this mode.
    pub fn statement(self) -> &'static str {
        match self {
            Mode::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
            Mode::Restart => "PRAGMA wal_checkpoint(RESTART)",
        }
    }
}

/// What `PRAGMA wal_checkpoint` answers.
#[derive(Debug, Clone, Copy, QueryableByName)]
pub struct Outcome {
    /// 1 when the checkpoint could not finish because of another connection.
    #[diesel(sql_type = Integer)]
    pub busy: i32,
    /// Frames in the log (-1 when the database is not in WAL mode).
    #[diesel(sql_type = BigInt)]
    pub log: i64,
}

/// Chooses each checkpoint's mode from the log sizes the previous ones reported.
#[derive(Debug, Default)]
pub struct Policy {
    last_log: i64,
    streak: u32,
}

impl Policy {
    /// The mode of the next checkpoint.
    pub fn next(&self) -> Mode {
        if self.streak >= STARVED_TICKS {
            Mode::Restart
        } else {
            Mode::Passive
        }
    }

    /// Learns what a checkpoint in `mode` reported. A log that got shorter was started over;
    /// a restart checkpoint that finished has the next writer start it over.
    pub fn observe(&mut self, mode: Mode, outcome: Outcome) {
        let restarted =
            outcome.log < self.last_log || outcome.log <= 0 || (mode == Mode::Restart && outcome.busy == 0);
        self.streak = if restarted { 0 } else { self.streak + 1 };
        self.last_log = outcome.log;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(busy: i32, log: i64) -> Outcome {
        Outcome { busy, log }
    }

    #[test]
    fn a_log_that_keeps_growing_gets_a_restart_checkpoint_and_only_then() {
        // (log reported by each passive checkpoint, mode of the next one)
        let cases: &[(&[i64], Mode)] = &[
            (&[], Mode::Passive),
            (&[10], Mode::Passive),
            (&[10, 20], Mode::Passive),
            (&[10, 20, 30], Mode::Restart),
            (&[10, 10, 10], Mode::Restart),
            (&[10, 20, 5], Mode::Passive),
            (&[10, 20, 5, 6], Mode::Passive),
            (&[0, 0, 0, 0], Mode::Passive),
            (&[-1, -1, -1], Mode::Passive),
        ];
        for (logs, want) in cases {
            let mut p = Policy::default();
            for &log in *logs {
                p.observe(Mode::Passive, outcome(0, log));
            }
            assert_eq!(p.next(), *want, "{logs:?}");
        }
    }

    #[test]
    fn a_restart_that_finished_ends_the_streak_and_a_busy_one_does_not() {
        let mut p = Policy::default();
        for log in [10, 20, 30] {
            p.observe(Mode::Passive, outcome(0, log));
        }
        assert_eq!(p.next(), Mode::Restart);
        p.observe(Mode::Restart, outcome(1, 40));
        assert_eq!(
            p.next(),
            Mode::Restart,
            "a restart that met a busy reader is tried again"
        );
        p.observe(Mode::Restart, outcome(0, 40));
        assert_eq!(p.next(), Mode::Passive);
    }
}
