//! Black-box tests: the real gateway on port 0 against in-test backends on port 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod clients;
mod compose;
mod failover;
mod forwarding;
mod helpers;
mod identity;
mod operations;
mod process;
mod proxy;
mod ratelimit;
