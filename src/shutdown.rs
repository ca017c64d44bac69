//! Ordered graceful shutdown.
//!
//! On SIGTERM or SIGINT: `/readyz` turns 503, the proxy stops accepting and drains in-flight
//! requests within `TOLLGATE_SHUTDOWN_TIMEOUT`, bucket state is flushed to the database,
//! health checks and the backend pool stop, then
//! the admin listener and demo backends; `main` then stops the actix `System` and exits 0.
//! A second signal during the drain exits at once (code 130).

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use actix_rt::{
    signal::unix::{signal, SignalKind},
    task::JoinHandle,
};
use actix_web::dev::ServerHandle;
use futures_util::future::{select, Either};

use crate::{
    pool::{PoolHandle, Stop},
    registry::{Flush, RegistryHandle},
};

/// How long shutdown waits for the final write of bucket state.
const FLUSH_DEADLINE: Duration = Duration::from_secs(10);

/// Handles of the servers to stop, in order.
pub struct Servers {
    /// The proxy listener, drained first.
    pub proxy: ServerHandle,
    /// The admin listener, kept up during the drain so `/readyz` can say 503.
    pub admin: ServerHandle,
    /// Demo backends, stopped last (in-flight proxied requests may still need them).
    pub demos: Vec<ServerHandle>,
}

/// The signals that stop the gateway, registered once so that none is missed between two waits.
/// Registered before the listeners serve anything: a SIGTERM that arrives once `/readyz`
/// answers must never find the default action (killing the process) still in place.
pub struct Signals {
    term: actix_rt::signal::unix::Signal,
    int: actix_rt::signal::unix::Signal,
}

impl Signals {
    /// Takes over SIGTERM and SIGINT (inside the actix `System`).
    pub fn register() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next SIGTERM or SIGINT; returns its name.
    async fn next(&mut self) -> &'static str {
        match select(Box::pin(self.term.recv()), Box::pin(self.int.recv())).await {
            Either::Left(_) => "SIGTERM",
            Either::Right(_) => "SIGINT",
        }
    }
}

/// Runs until a signal (or the proxy server ending by itself), then shuts down in order.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    mut signals: Signals,
    proxy_task: JoinHandle<std::io::Result<()>>,
    servers: Servers,
    pool: PoolHandle,
    registry: RegistryHandle,
    draining: Arc<AtomicBool>,
    deadline: Duration,
    drain_delay: Duration,
) -> std::io::Result<()> {
    let mut failure = None;
    match select(Box::pin(signals.next()), proxy_task).await {
        Either::Left((name, _)) => {
            log::info!("{name} received: draining in-flight requests (deadline {deadline:?}); a second signal stops at once");
        }
        Either::Right((ended, _)) => {
            log::error!("proxy server ended by itself: {ended:?}");
            failure = Some(std::io::Error::other(format!(
                "proxy server ended by itself: {ended:?}"
            )));
        }
    }
    draining.store(true, Ordering::Release);
    actix_rt::spawn(async move {
        let name = signals.next().await;
        log::warn!("{name} received again: exiting without waiting for in-flight requests");
        std::process::exit(130);
    });
    if failure.is_none() && !drain_delay.is_zero() {
        // Load balancers see /readyz fail and stop sending before the listener closes.
        log::info!("not ready any more; closing the proxy listener in {drain_delay:?}");
        actix_rt::time::sleep(drain_delay).await;
    }

    servers.proxy.stop(true).await;
    log::info!("proxy drained");
    // Bounded: a database that does not answer must not hold the exit forever.
    match tokio::time::timeout(FLUSH_DEADLINE, registry.give_back()).await {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => log::info!("{n} leased token(s) given back to the clients' rows"),
        Ok(Err(e)) => log::warn!("could not give leased tokens back at shutdown (they are lost): {e}"),
        Err(_) => log::warn!("giving leased tokens back took longer than {FLUSH_DEADLINE:?} (they are lost)"),
    }
    match registry.addr().send(Flush).timeout(FLUSH_DEADLINE).await {
        Ok(Ok(n)) => log::info!("bucket state of {n} client(s) written"),
        Ok(Err(e)) => log::error!("could not write bucket state at shutdown: {e}"),
        Err(e) => log::error!("client registry did not answer the flush within {FLUSH_DEADLINE:?}: {e}"),
    }
    if let Err(e) = pool.addr().send(Stop).await {
        log::warn!("backend pool was already stopped: {e}");
    }
    servers.admin.stop(true).await;
    for demo in servers.demos {
        demo.stop(true).await;
    }
    log::info!("shutdown complete");
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
