//! Collects configuration problems so that all are reported together.

use std::time::Duration;

use super::parse::parse_duration;

/// Every problem found in the configuration, one per line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ConfigError(pub Vec<String>);

/// The problems found so far.
#[derive(Debug, Default)]
pub(super) struct Problems(Vec<String>);

impl Problems {
    /// Parses a duration setting, recording a problem if it is bad.
    pub(super) fn duration(&mut self, var: &str, flag: &str, raw: &str) -> Option<Duration> {
        self.check(var, flag, raw, parse_duration(raw))
    }

    /// Records `parsed`'s error as a message naming the variable, the flag and the value.
    /// `value` is what the message shows: the raw value, or a redacted form of it.
    pub(super) fn check<T>(
        &mut self,
        var: &str,
        flag: &str,
        value: &str,
        parsed: Result<T, String>,
    ) -> Option<T> {
        match parsed {
            Ok(v) => Some(v),
            Err(expected) => {
                self.0.push(format!(
                    "{var} (--{flag}): invalid value \"{}\": {expected}",
                    value.escape_debug()
                ));
                None
            }
        }
    }

    /// Records a problem worded by the caller.
    pub(super) fn push(&mut self, message: String) {
        self.0.push(message);
    }

    /// The error if any problem was found.
    pub(super) fn into_result(self) -> Result<(), ConfigError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(self.0))
        }
    }
}
