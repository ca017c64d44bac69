//! Black-box tests: the real gateway on port 0 against in-test backends on port 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod batch;
mod client_limits;
mod clients;
mod cluster;
mod cluster_sync;
mod compose;
mod ejection;
mod failover;
mod forwarding;
mod h2c;
mod helpers;
mod hostile;
mod identity;
mod logcapture;
mod operations;
mod panic;
mod paths;
mod process;
mod proxy;
mod ratelimit;
mod sick_db;
mod slow;
mod start_errors;
mod wire;
