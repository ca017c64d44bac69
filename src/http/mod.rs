//! The two HTTP listeners: the proxy and the admin API.

pub mod admin;
pub mod bare_errors;
pub mod keepalive;
pub mod proxy;
pub mod server;
