//! Settings from command-line flags and environment variables, validated all at once.
//!
//! clap reads every setting as a string (flag first, then environment), so that a bad value
//! never stops parsing early: [`Settings::from_cli`] checks each one and reports every problem
//! in one go, each naming the variable, the flag, the value and the accepted form.
//!
//! - `cli`: the clap schema ([`Cli`], [`Command`], [`env_vars`]).
//! - `parse`: one parser per kind of value, with its unit tests.
//! - `problems`: collects every problem into one [`ConfigError`].
//! - `assemble`: the settings of each concern (proxy, pool, limits, store, admin…) from the
//!   command line.
//! - `settings`: [`Settings`], the parts together.
//! - `summary`: its one-line summary for the log, secrets redacted.

mod assemble;
mod cli;
mod parse;
mod problems;
mod settings;
mod summary;

pub use cli::{env_vars, Cli, Command};
pub use parse::{parse_backends, parse_duration, parse_size};
pub use problems::ConfigError;
pub use settings::{ServerSettings, Settings};
