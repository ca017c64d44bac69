//! Black-box tests: the real gateway on port 0 against in-test backends on port 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod clients;
mod compose;
mod failover;
mod helpers;
mod process;
mod proxy;
mod ratelimit;
mod start_errors;
