//! The design card's literal shape, kept for measurement: one `ProxyHandler` actor per HTTP
//! worker, started on that worker's own arbiter (same thread), owning the worker's forwarder,
//! and receiving each request as a message from the route.
//!
//! Built only with `--features proxy-actor`; the default build forwards from the route
//! directly (the README's Architecture section gives the measurement behind that choice).
//! actix's `Addr::send` requires `Send` messages while a request is bound to its worker
//! thread, so request and response travel in a `SendWrapper`, which checks at run time that
//! they never leave that thread (they cannot: the actor runs on the route's own arbiter).

use std::rc::Rc;

use actix::{Actor, Addr, Context, Handler, Message, ResponseFuture};
use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use send_wrapper::SendWrapper;

use super::{route::answer, ProxyHandler};
use crate::{error_body, request_id::request_id};

/// The per-worker forwarder as an actor.
pub struct ProxyActor {
    handler: Rc<ProxyHandler>,
}

impl ProxyActor {
    /// Starts the actor on the current (worker) arbiter.
    pub fn start_here(handler: ProxyHandler) -> Addr<ProxyActor> {
        ProxyActor {
            handler: Rc::new(handler),
        }
        .start()
    }
}

impl Actor for ProxyActor {
    type Context = Context<Self>;
}

/// One request to forward.
pub struct Forward(SendWrapper<(HttpRequest, web::Payload)>);

impl Message for Forward {
    type Result = SendWrapper<HttpResponse>;
}

impl Handler<Forward> for ProxyActor {
    type Result = ResponseFuture<SendWrapper<HttpResponse>>;

    fn handle(&mut self, msg: Forward, _: &mut Context<Self>) -> Self::Result {
        let handler = self.handler.clone();
        let (req, payload) = msg.0.take();
        // Many requests in flight at once: the future does not hold the actor.
        Box::pin(async move { SendWrapper::new(answer(&handler, req, payload).await) })
    }
}

/// The proxy's route when the forwarder is an actor: one message per request.
pub async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    actor: web::Data<Addr<ProxyActor>>,
) -> HttpResponse {
    let rid = request_id(req.headers());
    match actor.send(Forward(SendWrapper::new((req, payload)))).await {
        Ok(resp) => resp.take(),
        Err(e) => {
            log::error!("[{rid}] proxy actor unavailable: {e}");
            error_body::respond(StatusCode::SERVICE_UNAVAILABLE, "draining", "Shutting down", &rid)
        }
    }
}
