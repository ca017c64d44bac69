//! Serving an actix-web app on a listener, the way `HttpServer::listen` does, with each
//! connection wrapped in [`JsonErrors`] so that the answers actix-http makes on its own carry
//! the gateway's JSON error body too.
//!
//! `HttpServer` offers no way to wrap a connection's I/O, so this builds the same service
//! (actix-http's `HttpService` over an `App`, on an actix-server `Server`) by hand, with the
//! same graceful-shutdown signal that closes idle keep-alive connections on stop.

use std::{fmt, net::TcpListener};

use actix_http::{body::MessageBody, HttpService, Protocol, Request, Response};
use actix_rt::net::TcpStream;
use actix_service::{fn_service, map_config, IntoServiceFactory, ServiceFactory, ServiceFactoryExt};
use actix_web::dev::{AppConfig, Server};

use super::bare_errors::JsonErrors;

/// How a listener is served.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Worker threads.
    pub workers: usize,
    /// Whole seconds in-flight requests get on shutdown.
    pub shutdown_secs: u64,
}

/// Serves the app that `factory` builds (once per worker) on `listener`, named `name` in logs.
pub fn serve<F, I, S, B>(
    name: &str,
    listener: TcpListener,
    options: ServeOptions,
    factory: F,
) -> std::io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let local = listener.local_addr()?;
    let builder = actix_server::Server::build()
        .workers(options.workers)
        .disable_signals()
        .shutdown_timeout(options.shutdown_secs);
    let stop = builder.graceful_shutdown_signal();
    let server = builder
        .listen(name, listener, move || {
            let stop = stop.clone();
            let http = HttpService::build()
                .graceful_shutdown_signal(move || {
                    let stop = stop.clone();
                    async move { stop.notified().await }
                })
                .client_disconnect_timeout(std::time::Duration::from_secs(1))
                .local_addr(local)
                .finish(map_config(
                    factory()
                        .into_factory()
                        .map_err(|err| err.into().error_response()),
                    |_| AppConfig::default(),
                ));
            fn_service(|io: TcpStream| async move {
                // Small answers must not wait for Nagle (HttpServer sets this too).
                let _ = io.set_nodelay(true);
                let peer = io.peer_addr().ok();
                Ok::<_, ()>((JsonErrors::new(io, peer), Protocol::Http1, peer))
            })
            // Connection errors are the client's (or already answered and logged by JsonErrors).
            .and_then(http.map_err(|_| ()))
        })?
        .run();
    Ok(server)
}
