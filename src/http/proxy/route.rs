//! The proxy's route and the per-worker awc client.

use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};

use super::{body::AccessRecord, framing, ProxyHandler};
use crate::{logfmt::Escaped, request_id::RequestId};

/// The proxy's catch-all route: any method, any path.
pub async fn handle(req: HttpRequest, payload: web::Payload, proxy: web::Data<ProxyHandler>) -> HttpResponse {
    answer(&proxy, req, payload).await
}

/// Forwards `req` and turns a failure into the gateway's error answer (logged, throttled).
pub(super) async fn answer(proxy: &ProxyHandler, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let started = Instant::now();
    let id = RequestId::of(req.headers());
    let rid = id.as_str();
    let mut pending = Unanswered {
        traffic: proxy.metrics,
        started,
    };
    let forwarded = proxy.forward(&req, payload, &id, started).await;
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
                AccessRecord::new(&req, rid, resp.status().as_u16(), "-", started).log(0, "");
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

/// Builds the awc client of one worker. awc's own request timeout is off: it would arm a
/// timer per request; the forwarder puts each attempt under a deadline of the worker's sweep.
pub fn build_client(connect_timeout: std::time::Duration) -> awc::Client {
    awc::Client::builder()
        .disable_redirects()
        .no_default_headers()
        .connector(
            awc::Connector::new()
                .connector(framing::GuardedConnector::default())
                .timeout(connect_timeout)
                // No cap on connections per worker: a cap only queues requests inside the
                // gateway, where the upstream timeout cannot see them.
                .limit(0),
        )
        .disable_timeout()
        .finish()
}
