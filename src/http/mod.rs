//! The two HTTP listeners: the proxy and the admin API.

pub mod admin;
pub mod proxy;
