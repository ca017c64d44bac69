//! Routes: which upstream service a request goes to, by host, path, method and headers (issue
//! 18). Pure: patterns parsed once ([`pattern`]) and a table built whole and never changed
//! ([`table`]), so that a request sees one table or the next, never half of one.

pub mod pattern;
pub mod table;

pub use pattern::{normalize_host, HostPattern, PathPattern, PatternError};
pub use table::{Chosen, RouteRule, RouteTable, SameMatch};

#[cfg(test)]
mod tests;
