//! The design card's literal shape, kept for measurement: one `ProxyHandler` actor per HTTP
//! worker, started on that worker's own arbiter (same thread), owning the worker's forwarder,
//! and receiving each request as a message from the route.
//!
//! Built only with `--features proxy-actor`; the default build forwards from the route
//! directly (docs/benchmarks.md, "Architecture: the forwarder is a per-worker struct, not an
//! actor", gives the measurement behind that choice).
//! actix's `Addr::send` requires `Send` messages while a request is bound to its worker
//! thread, so request and response travel in a `SendWrapper`, which checks at run time that
//! they never leave that thread (they cannot: the actor runs on the route's own arbiter).

use std::rc::Rc;

use actix::{Actor, Addr, Context, Handler, Message, ResponseFuture};
use actix_web::{
    dev::{ServiceRequest, ServiceResponse},
    error::InternalError,
    http::StatusCode,
    web,
};
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

/// One request to forward: the request itself, moved, so that its headers can be moved on
/// to the backend as in the default build.
pub struct Forward(SendWrapper<ServiceRequest>);

impl Message for Forward {
    type Result = SendWrapper<ServiceResponse>;
}

impl Handler<Forward> for ProxyActor {
    type Result = ResponseFuture<SendWrapper<ServiceResponse>>;

    fn handle(&mut self, msg: Forward, _: &mut Context<Self>) -> Self::Result {
        let handler = self.handler.clone();
        let mut req = msg.0.take();
        // Many requests in flight at once: the future does not hold the actor.
        Box::pin(async move {
            let resp = answer(&handler, &mut req).await;
            SendWrapper::new(req.into_response(resp))
        })
    }
}

/// The proxy's default service when the forwarder is an actor (through `fn_service`): one
/// message per request.
pub async fn handle(req: ServiceRequest) -> Result<ServiceResponse, actix_web::Error> {
    let rid = request_id(req.headers());
    let Some(actor) = req.app_data::<web::Data<Addr<ProxyActor>>>().cloned() else {
        log::error!("[{rid}] the proxy app has no forwarder");
        let resp = error_body::respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            &rid,
        );
        return Ok(req.into_response(resp));
    };
    match actor.send(Forward(SendWrapper::new(req))).await {
        Ok(resp) => Ok(resp.take()),
        Err(e) => {
            log::error!("[{rid}] proxy actor unavailable: {e}");
            // The request went with the message: the answer is made from the error.
            let resp =
                error_body::respond(StatusCode::SERVICE_UNAVAILABLE, "draining", "Shutting down", &rid);
            Err(InternalError::from_response(e, resp).into())
        }
    }
}
