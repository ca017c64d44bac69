//! The proxy's route and the per-worker awc client.

use std::time::Instant;

use actix_web::{
    dev::{ServiceRequest, ServiceResponse},
    http::StatusCode,
    web, HttpMessage, HttpResponse,
};

use super::{body::AccessRecord, framing, ProxyHandler};
use crate::{error_body, logfmt::Escaped, request_id::RequestId};

/// The proxy's catch-all service (the app's default service, through `fn_service`): any
/// method, any path.
///
/// It takes the `ServiceRequest` itself rather than extractors, so that the client's header
/// map can be moved into the request to the backend instead of copied. Moving needs the only
/// reference to the request: actix-web's app builds it for this call (from its pool only when
/// no other reference is left), and nothing in between (no middleware, no extractor) keeps a
/// clone.
pub async fn handle(mut req: ServiceRequest) -> Result<ServiceResponse, actix_web::Error> {
    let Some(proxy) = req.app_data::<web::Data<ProxyHandler>>().cloned() else {
        let id = RequestId::of(req.headers());
        log::error!("[{}] the proxy app has no forwarder", Escaped(id.as_str()));
        let resp = error_body::respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            id.as_str(),
        );
        return Ok(req.into_response(resp));
    };
    let resp = answer(&proxy, &mut req).await;
    Ok(req.into_response(resp))
}

/// Forwards `req` and turns a failure into the gateway's error answer (logged, throttled).
/// `req` is left without its headers (they went to the backend).
pub(super) async fn answer(proxy: &ProxyHandler, req: &mut ServiceRequest) -> HttpResponse {
    let started = Instant::now();
    let id = RequestId::of(req.headers());
    let rid = id.as_str();
    let mut pending = Unanswered {
        traffic: proxy.metrics,
        started,
    };
    let payload = req.take_payload();
    let forwarded = proxy.forward(req, payload, &id, started).await;
    // Answered: counted below or by the response body.
    pending.traffic = None;
    match forwarded {
        Ok(resp) => resp,
        Err(err) => {
            let resp = err.to_response(rid);
            if let Some(m) = &proxy.metrics {
                m.count_own_answer(resp.status().as_u16());
                m.request_duration.observe(started.elapsed());
            }
            if resp.status().is_server_error() {
                // A flood of failing requests gets one line per second per cause.
                if let Some(left_out) = crate::logthrottle::admit(err.parts().1) {
                    log::warn!(
                        "[{}] {} {}: {err}{}",
                        Escaped(rid),
                        req.method(),
                        Escaped(req.path()),
                        crate::logthrottle::left_out_note(left_out)
                    );
                }
            }
            if proxy.access_log {
                AccessRecord::new(req.request(), rid, resp.status().as_u16(), "-", started).log(0, "");
            }
            resp
        }
    }
}

/// Counts a request whose client went away (the handler dropped) before any answer.
struct Unanswered {
    traffic: Option<&'static crate::metrics::Traffic>,
    started: Instant,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(t) = self.traffic {
            t.count_abandoned();
            t.request_duration.observe(self.started.elapsed());
        }
    }
}

/// Builds the awc client of one worker, keeping at most `idle_cap` idle connections per
/// backend (reused only while idle less than `idle_timeout`) and holding response heads to
/// `head`. awc's own request timeout is off: it would arm a timer per request; the forwarder
/// puts each attempt under a deadline of the worker's sweep.
pub fn build_client(
    connect_timeout: std::time::Duration,
    idle_cap: usize,
    idle_timeout: std::time::Duration,
    head: super::head::HeadLimits,
) -> awc::Client {
    let idle = std::rc::Rc::new(super::idle::IdleConns::new(idle_cap));
    awc::Client::builder()
        .disable_redirects()
        .no_default_headers()
        .connector(
            awc::Connector::new()
                .connector(framing::GuardedConnector::new(idle, head))
                .timeout(connect_timeout)
                // A connection idle longer than this is closed rather than reused: a backend
                // closing its own idle ones at its keep-alive timeout would otherwise race the
                // next request written onto it (awc's default is 15 s; most servers close at 5).
                .conn_keep_alive(idle_timeout)
                // No cap on connections per worker: a cap only queues requests inside the
                // gateway, where the upstream timeout cannot see them.
                .limit(0),
        )
        .disable_timeout()
        .finish()
}
