//! Serving an actix-web app on a listener, the way `HttpServer::listen` does, with each
//! connection wrapped in [`JsonErrors`] so that the answers actix-http makes on its own carry
//! the gateway's JSON error body too.
//!
//! `HttpServer` offers no way to wrap a connection's I/O, so this builds the same service
//! (actix-http's `HttpService` over an `App`, on an actix-server `Server`) by hand, with the
//! same graceful-shutdown signal that closes idle keep-alive connections on stop.

use std::{fmt, net::TcpListener, time::Duration};

use actix_http::{body::MessageBody, HttpService, KeepAlive, Protocol, Request, Response};
use actix_rt::net::TcpStream;
use actix_service::{fn_service, map_config, IntoServiceFactory, ServiceFactory, ServiceFactoryExt};
use actix_web::dev::{AppConfig, Server};

use actix_web::HttpMessage;

use super::{
    bare_errors::JsonErrors,
    keepalive::{track_requests, ConnActivity, IdleConn},
    proxy::expect::refusal,
};

/// How a listener is served.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Worker threads.
    pub workers: usize,
    /// Whole seconds in-flight requests get on shutdown.
    pub shutdown_secs: u64,
    /// How long a client connection may stay idle between requests (zero: no keep-alive).
    pub keep_alive: Duration,
    /// The largest request body accepted, when the listener enforces one: a request with
    /// `Expect: 100-continue` that declares more gets `413` instead of `100 Continue`.
    pub max_body: Option<u64>,
}

/// How long a new connection gets to send its first request head (actix-http's default, which
/// answers `408` itself).
const FIRST_HEAD: Duration = Duration::from_secs(5);

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
    let keep_alive = options.keep_alive;
    let max_body = options.max_body;
    let server = builder
        .listen(name, listener, move || {
            let stop = stop.clone();
            let http = HttpService::build()
                // Idle connections are closed by the worker's deadline sweep (IdleConn), not by
                // a timer actix-http would re-arm after every response.
                .keep_alive(if keep_alive.is_zero() {
                    KeepAlive::Disabled
                } else {
                    KeepAlive::Os
                })
                .client_request_timeout(FIRST_HEAD)
                // actix-http sends `100 Continue` once this service lets the request go on.
                .expect(fn_service(move |req: Request| async move {
                    match max_body.and_then(|limit| refusal(req.headers(), limit)) {
                        Some(answer) => Err(answer),
                        None => Ok(req),
                    }
                }))
                .on_connect_ext(|io: &JsonErrors<IdleConn<TcpStream>>, ext| {
                    if let Some(activity) = io.get_ref().activity() {
                        ext.insert(activity.clone());
                    }
                })
                .graceful_shutdown_signal(move || {
                    let stop = stop.clone();
                    async move { stop.notified().await }
                })
                .client_disconnect_timeout(std::time::Duration::from_secs(1))
                .local_addr(local)
                .finish(map_config(
                    track_requests(
                        factory()
                            .into_factory()
                            .map_err(|err| err.into().error_response()),
                    ),
                    |_| AppConfig::default(),
                ));
            fn_service(move |io: TcpStream| async move {
                // Small answers must not wait for Nagle (HttpServer sets this too).
                let _ = io.set_nodelay(true);
                let peer = io.peer_addr().ok();
                let activity = (!keep_alive.is_zero()).then(|| ConnActivity::new(keep_alive, FIRST_HEAD));
                let io = IdleConn::new(io, activity);
                Ok::<_, ()>((JsonErrors::new(io, peer), Protocol::Http1, peer))
            })
            // Connection errors are the client's (or already answered and logged by JsonErrors).
            .and_then(http.map_err(|_| ()))
        })?
        .run();
    Ok(server)
}
