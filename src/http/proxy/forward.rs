//! Forwarding one request: its target, its body, the attempts on backends, the response.

use std::{borrow::Cow, rc::Rc, time::Instant};

use actix_web::{
    body::{BodySize, BodyStream, SizedStream},
    dev::{Payload, ServiceRequest},
    http::{
        header::{self, HeaderMap, HeaderName},
        uri::PathAndQuery,
        Method, StatusCode,
    },
    web::{Bytes, BytesMut},
    HttpMessage, HttpRequest, HttpResponse,
};
use awc::error::SendRequestError;
use futures_util::{
    future::{select, Either},
    StreamExt,
};

use super::{
    body::{AccessRecord, BodySource, ClientBodyFailure, DownstreamBody, UpstreamRequestBody},
    copy_end_to_end,
    error::{limit_value, RATELIMIT, RATELIMIT_POLICY},
    headers, resend,
    retry::{self, BodyKind, Failure},
    target,
    upload::PacedPayload,
    ProxyError, ProxyHandler, ALLOWED_METHODS, MAX_TARGET_LEN, UPLOAD_ALLOWANCE,
};
use crate::{
    logfmt::Escaped,
    metrics::FailureKind,
    ratelimit::{Decision, Quota},
    request_id::RequestId,
    sweep::{within, Deadline},
};

/// The request body as far as sending it is concerned.
enum RequestBody {
    /// No body at all.
    Empty,
    /// Read whole before the first attempt: may be sent again.
    Buffered(Bytes),
    /// Streamed: can go to another backend only if the first attempt never touched it.
    Streamed(Rc<BodySource>, BodySize),
}

impl RequestBody {
    fn kind(&self) -> BodyKind {
        match self {
            RequestBody::Empty | RequestBody::Buffered(_) => BodyKind::Replayable,
            RequestBody::Streamed(src, _) => BodyKind::Streamed {
                touched: src.touched(),
            },
        }
    }
}

impl ProxyHandler {
    /// The path and query to send: dot segments resolved so no request leaves a backend's
    /// prefix; `None` for the asterisk form of `OPTIONS *`, which the gateway answers itself.
    fn target(req: &HttpRequest) -> Result<Option<PathAndQuery>, ProxyError> {
        if *req.method() == Method::CONNECT {
            return Err(ProxyError::MethodNotAllowed);
        }
        let raw = req.uri().path_and_query().map_or("/", PathAndQuery::as_str);
        if raw.len() > MAX_TARGET_LEN {
            return Err(ProxyError::UriTooLong { len: raw.len() });
        }
        if raw == "*" {
            return match *req.method() {
                Method::OPTIONS => Ok(None),
                _ => Err(ProxyError::BadTarget(
                    "the asterisk form is only for OPTIONS".into(),
                )),
            };
        }
        match target::resolve(raw).map_err(|e| ProxyError::BadTarget(e.to_string()))? {
            Cow::Borrowed(_) => Ok(Some(
                req.uri()
                    .path_and_query()
                    .cloned()
                    .unwrap_or_else(|| PathAndQuery::from_static("/")),
            )),
            Cow::Owned(resolved) => PathAndQuery::try_from(resolved)
                .map(Some)
                .map_err(|e| ProxyError::BadTarget(e.to_string())),
        }
    }

    /// Reads the client's body as far as the request buffer before any backend is contacted,
    /// so that a slow small upload never holds a backend connection.
    async fn read_body(
        &self,
        req: &HttpRequest,
        payload: Payload,
        started: Instant,
    ) -> Result<RequestBody, ProxyError> {
        let limit = self.settings.max_body_size;
        let declared = declared_length(req);
        if declared.is_some_and(|n| n > limit) {
            return Err(ProxyError::BodyTooLarge { limit });
        }
        let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
        let size = match declared {
            // Declared empty: sent as `Content-Length: 0`, which some servers require on POST.
            Some(0) => return Ok(RequestBody::Buffered(Bytes::new())),
            None if !chunked => return Ok(RequestBody::Empty),
            Some(n) => BodySize::Sized(n),
            None => BodySize::Stream,
        };
        let mut paced = PacedPayload::new(payload, self.settings.upload, started);
        let buffer = self.settings.request_buffer.min(limit);
        let cap = match size {
            BodySize::Sized(n) => n.min(buffer),
            _ => buffer,
        };
        let mut buf = BytesMut::with_capacity(usize::try_from(cap).unwrap_or(0));
        while (buf.len() as u64) < buffer {
            match paced.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(client_body_error(e.into())),
                None => {
                    if buf.len() as u64 > limit {
                        return Err(ProxyError::BodyTooLarge { limit });
                    }
                    return Ok(RequestBody::Buffered(buf.freeze()));
                }
            }
        }
        if buf.len() as u64 > limit {
            return Err(ProxyError::BodyTooLarge { limit });
        }
        Ok(RequestBody::Streamed(
            BodySource::new(buf.freeze(), paced, limit),
            size,
        ))
    }

    /// Forwards `req`. Its headers are read first (rate limit, body framing), then moved into
    /// the request to the backend: `req` is left with an empty header map.
    pub(super) async fn forward(
        &self,
        req: &mut ServiceRequest,
        payload: Payload,
        request_id: &RequestId,
        started: Instant,
    ) -> Result<HttpResponse, ProxyError> {
        let Some(target) = Self::target(req.request())? else {
            if let Some(m) = &self.metrics {
                m.count_own_answer(StatusCode::NO_CONTENT.as_u16());
                m.request_duration.observe(started.elapsed());
            }
            return Ok(HttpResponse::NoContent()
                .insert_header((header::ALLOW, ALLOWED_METHODS))
                .finish());
        };
        let limit_state = self.admit(req.request()).await?;
        let body = self.read_body(req.request(), payload, started).await?;
        let mut headers = Some(self.upstream_headers(req, request_id));
        let req = req.request();
        let idempotent = matches!(
            *req.method(),
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
        );
        // Empty until an attempt fails: no allocation in the common case.
        let mut tried: Vec<std::sync::Arc<crate::pool::Backend>> = Vec::new();
        let mut previous: Option<ProxyError> = None;
        // Set when the first attempt's connection broke before any answer: once, that backend
        // (`tried[0]`) may take the request again when no other is left (see
        // `may_repeat_on_same_backend`).
        let mut same_again = false;
        // The request of the last attempt, kept to seed the next one's headers.
        let mut kept: Option<awc::FrozenClientRequest> = None;
        // Times the request was sent again because not a byte of it had been accepted.
        let mut resent = 0;
        loop {
            let picked = self.pool.pick(&tried).or_else(|| {
                std::mem::take(&mut same_again)
                    .then(|| self.pool.pick(&tried[1..]))
                    .flatten()
            });
            let Some(lease) = picked else {
                return Err(previous.unwrap_or(ProxyError::NoHealthyBackend));
            };
            // The first attempt takes the client's map itself; a retry copies the last
            // attempt's, kept frozen (retries are rare).
            let map = match (headers.take(), &kept) {
                (Some(moved), _) => moved,
                (None, Some(last)) => last.headers().clone(),
                // The first attempt's request could not even be frozen (awc refused its URL,
                // which the validation of backend URLs rules out) and took the headers along.
                (None, None) => return Err(previous.unwrap_or(ProxyError::NoHealthyBackend)),
            };
            if let Some(err) = previous.take() {
                if let Some(m) = &self.metrics {
                    m.count_retry();
                }
                // One line per second at most: with every backend refusing, each request retries.
                if let Some(left_out) = crate::logthrottle::admit("retry") {
                    log::warn!(
                        "[{}] {err}, retrying on {}{}",
                        Escaped(request_id.as_str()),
                        lease.backend().base,
                        crate::logthrottle::left_out_note(left_out)
                    );
                }
            }
            // no_decompress: the client's own Accept-Encoding goes through, untouched.
            let mut upstream = self
                .client
                .request(
                    req.method().clone(),
                    lease.backend().url(&target).map_err(bad_target)?,
                )
                .no_decompress();
            *upstream.headers_mut() = map;
            let sent_at = self.metrics.is_some().then(Instant::now);
            // From the request sent to the backend's response head, on the worker's sweep.
            let head_deadline = || Deadline::after(self.settings.upstream_timeout);
            let sent = 'send: {
                // Frozen, the request is sent without being consumed: a retry finds its
                // headers there.
                let upstream = match upstream.freeze() {
                    Ok(frozen) => &*kept.insert(frozen),
                    Err(e) => break 'send Err(SendRequestError::from(e)),
                };
                match &body {
                    RequestBody::Empty => {
                        send_within(upstream.send_body(actix_web::body::None::new()), head_deadline()).await
                    }
                    RequestBody::Buffered(bytes) => {
                        send_within(upstream.send_body(bytes.clone()), head_deadline()).await
                    }
                    RequestBody::Streamed(src, size) => {
                        // A deadline from the send would cover the upload too: a large body
                        // from a slow client must not time out. While the body is sent, a
                        // backend that stops reading it (awc stops asking for bytes, and not
                        // because the client is slow) for the upstream timeout is stalled; the
                        // deadline for the response head starts once the whole body is sent.
                        let send = send_within(
                            upstream.send_body(UpstreamRequestBody::new(src.clone(), *size)),
                            Deadline::after(UPLOAD_ALLOWANCE),
                        );
                        let head_deadline = {
                            let (src, after) = (src.clone(), self.settings.upstream_timeout);
                            async move {
                                let mut since = Instant::now();
                                while !src.is_finished() {
                                    since = src.last_asked().map_or(since, |asked| asked.max(since));
                                    let quiet = Deadline::at(since + after);
                                    if let Either::Right(_) = select(Box::pin(src.finished()), quiet).await {
                                        let asked = src.last_asked().unwrap_or(since);
                                        if asked <= since && !src.waiting_on_client() && !src.is_finished() {
                                            return;
                                        }
                                        if src.waiting_on_client() {
                                            since = Instant::now();
                                        }
                                    }
                                }
                                Deadline::after(after).await;
                            }
                        };
                        match select(Box::pin(send), Box::pin(head_deadline)).await {
                            Either::Left((sent, _)) => sent,
                            Either::Right(_) => Err(SendRequestError::Timeout),
                        }
                    }
                }
            };
            let e = match sent {
                Ok(resp) => {
                    if let (Some(m), Some(at)) = (&self.metrics, sent_at) {
                        m.upstream_head.observe(at.elapsed());
                    }
                    return Ok(self.respond(req, resp, lease, request_id, started, limit_state));
                }
                Err(e) => e,
            };
            if resend::was_not_sent(&e) && resend::may_resend(resent, body.kind()) {
                // Nothing reached the backend (a connection it had closed): not a failure of
                // the backend, and any method may go again.
                resent += 1;
                log::debug!("[{}] {e}; sending it again", Escaped(request_id.as_str()));
                continue;
            }
            if let RequestBody::Streamed(src, _) = &body {
                if src.too_large() {
                    return Err(ProxyError::BodyTooLarge {
                        limit: self.settings.max_body_size,
                    });
                }
                if let Some(failure) = src.client_error() {
                    // The client's fault, not the backend's: no failure counted against it.
                    return Err(client_body_error(failure));
                }
            }
            let failure = retry::classify(&e);
            lease.count_failure(failure_kind(failure));
            let base = lease.backend().base.clone();
            let cause = e.to_string();
            if let Failure::Connect { .. } = failure {
                self.pool.report_connect_failure(lease.backend(), cause.clone());
            }
            let err = match failure {
                _ if failure.is_timeout() => ProxyError::UpstreamTimeout { backend: base, cause },
                Failure::Answered {
                    too_large: Some(too_large),
                } => ProxyError::UpstreamHeadTooLarge {
                    backend: base,
                    cause: too_large,
                },
                _ => ProxyError::UpstreamFailed { backend: base, cause },
            };
            // Only a failed attempt is remembered (a reference to its backend is not free).
            tried.push(lease.backend().clone());
            same_again |= tried.len() == 1 && retry::may_repeat_on_same_backend(failure);
            if !retry::may_retry(
                failure,
                idempotent,
                body.kind(),
                tried.len(),
                self.settings.retries,
            ) {
                return Err(err);
            }
            previous = Some(err);
        }
    }

    /// Moves the client's headers out of `req` (everything reading them has run) and turns
    /// them into the headers of the request to a backend.
    fn upstream_headers(&self, req: &mut ServiceRequest, request_id: &RequestId) -> HeaderMap {
        let peer = req.peer_addr().map(|a| a.ip());
        // Absolute form: the request line's authority is the host (RFC 9112 §3.2.2), without
        // any user info.
        let authority = req.uri().authority().and_then(|authority| {
            let host_port = authority.as_str().rsplit('@').next().unwrap_or_default();
            header::HeaderValue::from_str(host_port).ok()
        });
        // `headers_mut` cannot panic here: it needs the only reference to the request, and
        // the request comes straight from actix-web's app (no middleware, no extractor clones
        // it; see `route::handle`). actix-http pools request heads with their maps: the one
        // left behind has room for a request like this one and its forwarding headers, so
        // the next request parsed into it does not grow it, and neither does `to_upstream`
        // then grow the map it moves on (one allocation, as the map built afresh was).
        let client = req.headers_mut();
        let capacity = client.len() + headers::ADDED;
        let mut map = std::mem::replace(client, HeaderMap::with_capacity(capacity));
        if !peer.is_some_and(|p| crate::registry::is_trusted_peer(p, &self.settings.trusted_proxies)) {
            headers::drop_client_forwarding(&mut map);
        }
        headers::to_upstream(&mut map, peer, request_id.header_value());
        if let Some(host) = authority {
            map.insert(header::HOST, host.clone());
            map.insert(HeaderName::from_static("x-forwarded-host"), host);
        }
        if let Some(name) = &self.settings.strip_header {
            // The client's credential for the gateway is not the backend's business.
            map.remove(name);
        }
        map
    }

    fn respond<S>(
        &self,
        req: &HttpRequest,
        mut resp: awc::ClientResponse<S>,
        lease: crate::pool::Lease,
        request_id: &RequestId,
        started: Instant,
        limit_state: Option<(Decision, Quota)>,
    ) -> HttpResponse
    where
        S: futures_util::Stream<Item = Result<Bytes, actix_web::error::PayloadError>> + Unpin + 'static,
    {
        let status = resp.status();
        lease.record_response(status.as_u16());
        if self.metrics.is_some() {
            lease.backend().upstream.count_answer(status.as_u16());
        }
        let mut out = HttpResponse::build(status);

        let length = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let no_body = *req.method() == Method::HEAD
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let record = self.access_log.then(|| {
            AccessRecord::new(
                req,
                request_id.as_str(),
                status.as_u16(),
                &lease.backend().base,
                started,
            )
        });
        let stream = DownstreamBody::new(
            resp.take_payload(),
            lease,
            record,
            self.settings.upstream_body_timeout,
            self.metrics.map(|m| (m, started)),
        );
        let head = *req.method() == Method::HEAD;
        let mut response = match (length, no_body) {
            // An empty body is never polled by actix-http: complete now, `Content-Length: 0` kept.
            (Some(0), _) if head || !no_body => {
                stream.end_without_body();
                out.body(())
            }
            // HEAD keeps the length of the body it would have had; the encoder sends none.
            (Some(n), _) if head || !no_body => out.body(SizedStream::new(n, stream)),
            (_, true) => {
                // 1xx, 204 and 304 have no body whatever Content-Length says: end here, so the
                // lease and the log line end now and the client connection stays usable.
                stream.end_without_body();
                out.body(actix_web::body::None::new())
            }
            (_, false) => out.body(BodyStream::new(stream)),
        };
        let headers = response.headers_mut();
        copy_end_to_end(resp.headers(), headers);
        // The gateway's own values replace any the backend sent.
        headers.insert(
            HeaderName::from_static(crate::error_body::REQUEST_ID),
            request_id.header_value().clone(),
        );
        if let Some((d, q)) = &limit_state {
            headers.insert(HeaderName::from_static(RATELIMIT_POLICY), self.policy_value(q));
            headers.insert(HeaderName::from_static(RATELIMIT), limit_value(d));
        }
        response
    }
}

/// `send` unless `deadline` passes first (then awc's own timeout error, as its timer gave).
async fn send_within<F, R>(send: F, deadline: Deadline) -> Result<R, SendRequestError>
where
    F: std::future::Future<Output = Result<R, SendRequestError>> + Unpin,
{
    within(send, deadline)
        .await
        .unwrap_or(Err(SendRequestError::Timeout))
}

/// The `/metrics` kind of a failed attempt.
fn failure_kind(failure: Failure) -> FailureKind {
    match failure {
        Failure::Connect { timeout: false } => FailureKind::Connect,
        Failure::Connect { timeout: true } => FailureKind::ConnectTimeout,
        Failure::AfterSend { timeout: true } => FailureKind::ResponseTimeout,
        Failure::AfterSend { timeout: false } => FailureKind::Broken,
        Failure::Answered { .. } => FailureKind::BadHead,
    }
}

fn client_body_error(failure: ClientBodyFailure) -> ProxyError {
    match failure {
        ClientBodyFailure::Broken(cause) => ProxyError::ClientBody(cause),
        ClientBodyFailure::Slow(slow) => ProxyError::ClientTooSlow(slow),
    }
}

fn bad_target(cause: String) -> ProxyError {
    ProxyError::UpstreamFailed {
        backend: "-".into(),
        cause: format!("cannot build the backend URL: {cause}"),
    }
}

fn declared_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}
