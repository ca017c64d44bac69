//! The proxy listener: every request is forwarded with awc to a backend the pool picks.
//!
//! One [`ProxyHandler`] per worker (built in the `HttpServer` factory) holds that worker's awc
//! client and connection pool. Bodies stream both ways; nothing is collected except a small
//! body of an idempotent request, kept so the request can be retried on another backend.

mod body;
mod deadline;
mod error;
mod framing;
mod headers;
mod retry;
mod target;
mod upload;

use std::{
    borrow::Cow,
    rc::Rc,
    time::{Duration, Instant},
};

use actix_web::{
    body::{BodySize, BodyStream, SizedStream},
    http::{
        header::{self, HeaderName},
        uri::PathAndQuery,
        Method, StatusCode,
    },
    web::{self, Bytes, BytesMut},
    HttpMessage, HttpRequest, HttpResponse,
};
use awc::error::SendRequestError;
use futures_util::{
    future::{select, Either},
    StreamExt,
};

pub use body::AccessRecord;
pub use error::{rate_limit_headers, ProxyError};
pub use headers::{copy_end_to_end, upstream_request_headers};
pub use upload::UploadPolicy;

use body::{BodySource, ClientBodyFailure, DownstreamBody, UpstreamRequestBody};
use retry::{BodyKind, Failure};
use upload::PacedPayload;

use crate::{
    logfmt::Escaped,
    pool::PoolHandle,
    ratelimit::{Decision, Quota},
    registry::{Refusal, RegistryHandle},
    request_id::request_id,
};

/// Longest request target (path and query) accepted; longer gets 414.
pub const MAX_TARGET_LEN: usize = 8 * 1024;

/// Ceiling on a streamed upload to a backend (the response-head deadline starts after it; the
/// upload policy is what bounds a slow client).
const UPLOAD_ALLOWANCE: Duration = Duration::from_secs(24 * 3600);

/// Methods the gateway forwards, for the `Allow` of its own 405 and of `OPTIONS *`.
pub const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE";

/// Proxy settings every worker shares.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Extra attempts on other backends.
    pub retries: u32,
    /// Largest request body accepted.
    pub max_body_size: u64,
    /// Request bodies up to this size are read whole before any backend is contacted.
    pub request_buffer: u64,
    /// How slowly a client may send its body.
    pub upload: UploadPolicy,
    /// Longest wait for the backend's next response-body bytes.
    pub upstream_body_timeout: Duration,
    /// A request header never sent to backends (the API key header while rate limiting is on).
    pub strip_header: Option<HeaderName>,
    /// Deadline for the response head once the request is sent.
    pub upstream_timeout: Duration,
}

/// Per-worker forwarder: the awc client of this worker and the pool handle.
pub struct ProxyHandler {
    client: awc::Client,
    pool: PoolHandle,
    settings: ProxySettings,
    /// `None` when rate limiting is off.
    limiter: Option<RegistryHandle>,
    access_log: bool,
}

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
    /// A forwarder for one worker.
    pub fn new(
        client: awc::Client,
        pool: PoolHandle,
        settings: ProxySettings,
        limiter: Option<RegistryHandle>,
    ) -> ProxyHandler {
        let access_log = log::log_enabled!(target: "tollgate::access", log::Level::Info);
        ProxyHandler {
            client,
            pool,
            settings,
            limiter,
            access_log,
        }
    }

    /// Charges the request's client one token (inline: no actor round trip).
    fn admit(&self, req: &HttpRequest) -> Result<Option<(Decision, Quota)>, ProxyError> {
        let Some(limiter) = &self.limiter else {
            return Ok(None);
        };
        match limiter.check(req.headers(), req.peer_addr().map(|a| a.ip())) {
            Ok(verdict) => Ok(Some(verdict)),
            Err(Refusal::UnknownApiKey) => Err(ProxyError::UnknownApiKey),
            Err(Refusal::ApiKeyRequired) => Err(ProxyError::ApiKeyRequired),
            Err(Refusal::ClientDisabled) => Err(ProxyError::ClientDisabled),
            Err(Refusal::RateLimited(d, q)) => Err(ProxyError::RateLimited(d, q)),
        }
    }

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
        payload: web::Payload,
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

    async fn forward(
        &self,
        req: &HttpRequest,
        payload: web::Payload,
        request_id: &str,
        started: Instant,
    ) -> Result<HttpResponse, ProxyError> {
        let Some(target) = Self::target(req)? else {
            return Ok(HttpResponse::NoContent()
                .insert_header((header::ALLOW, ALLOWED_METHODS))
                .finish());
        };
        let limit_state = self.admit(req)?;
        let body = self.read_body(req, payload, started).await?;
        if self.pool.is_empty() {
            return Err(ProxyError::NoHealthyBackend);
        }
        let idempotent = matches!(
            *req.method(),
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
        );
        let peer = req.peer_addr().map(|a| a.ip());
        let mut tried: Vec<usize> = Vec::with_capacity(1);
        let mut previous: Option<ProxyError> = None;
        loop {
            let Some(lease) = self.pool.pick(&tried) else {
                return Err(previous.unwrap_or(ProxyError::NoHealthyBackend));
            };
            if let Some(err) = previous.take() {
                log::warn!(
                    "[{}] {err}, retrying on {}",
                    Escaped(request_id),
                    lease.backend().base
                );
            }
            tried.push(lease.index());
            // no_decompress: the client's own Accept-Encoding goes through, untouched.
            let mut upstream = self
                .client
                .request(
                    req.method().clone(),
                    lease.backend().url(&target).map_err(bad_target)?,
                )
                .no_decompress();
            // Built per attempt rather than cloned: retries are rare.
            let headers = upstream.headers_mut();
            *headers = upstream_request_headers(req.headers(), peer, request_id);
            if let Some(authority) = req.uri().authority() {
                // Absolute form: the request line's authority is the host (RFC 9112 §3.2.2).
                if let Ok(host) = header::HeaderValue::from_str(authority.as_str()) {
                    headers.insert(header::HOST, host.clone());
                    headers.insert(HeaderName::from_static("x-forwarded-host"), host);
                }
            }
            if let Some(name) = &self.settings.strip_header {
                // The client's credential for the gateway is not the backend's business.
                headers.remove(name);
            }
            let sent = match &body {
                RequestBody::Empty => upstream.send_body(actix_web::body::None::new()).await,
                RequestBody::Buffered(bytes) => upstream.send_body(bytes.clone()).await,
                RequestBody::Streamed(src, size) => {
                    // awc's deadline would cover the upload too: a large body from a slow
                    // client must not time out. The deadline for the response head starts
                    // once the whole body is sent.
                    let send = upstream
                        .timeout(UPLOAD_ALLOWANCE)
                        .send_body(UpstreamRequestBody::new(src.clone(), *size));
                    let head_deadline = {
                        let (src, after) = (src.clone(), self.settings.upstream_timeout);
                        async move {
                            src.finished().await;
                            actix_rt::time::sleep(after).await;
                        }
                    };
                    match select(Box::pin(send), Box::pin(head_deadline)).await {
                        Either::Left((sent, _)) => sent,
                        Either::Right(_) => Err(SendRequestError::Timeout),
                    }
                }
            };
            let e = match sent {
                Ok(resp) => return Ok(self.respond(req, resp, lease, request_id, started, limit_state)),
                Err(e) => e,
            };
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
            lease.count_failure();
            let base = lease.backend().base.clone();
            let failure = retry::classify(&e);
            let cause = e.to_string();
            if let Failure::Connect { .. } = failure {
                self.pool.report_connect_failure(lease.index(), cause.clone());
            }
            let err = if failure.is_timeout() {
                ProxyError::UpstreamTimeout { backend: base, cause }
            } else {
                ProxyError::UpstreamFailed { backend: base, cause }
            };
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

    fn respond<S>(
        &self,
        req: &HttpRequest,
        mut resp: awc::ClientResponse<S>,
        lease: crate::pool::Lease,
        request_id: &str,
        started: Instant,
        limit_state: Option<(Decision, Quota)>,
    ) -> HttpResponse
    where
        S: futures_util::Stream<Item = Result<Bytes, actix_web::error::PayloadError>> + Unpin + 'static,
    {
        let status = resp.status();
        lease.record_response(status.as_u16());
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
        let record = self
            .access_log
            .then(|| AccessRecord::new(req, request_id, status.as_u16(), &lease.backend().base, started));
        let stream = DownstreamBody::new(
            resp.take_payload(),
            lease,
            record,
            self.settings.upstream_body_timeout,
        );
        let head = *req.method() == Method::HEAD;
        let mut response = match (length, no_body) {
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
        if let Ok(v) = header::HeaderValue::from_str(request_id) {
            headers.insert(HeaderName::from_static(crate::error_body::REQUEST_ID), v);
        }
        if let Some((d, q)) = &limit_state {
            for (name, value) in rate_limit_headers(d, q) {
                if let Ok(v) = header::HeaderValue::try_from(value) {
                    headers.insert(name, v);
                }
            }
        }
        response
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

/// The proxy's catch-all route: any method, any path.
pub async fn handle(req: HttpRequest, payload: web::Payload, proxy: web::Data<ProxyHandler>) -> HttpResponse {
    let started = Instant::now();
    let rid = request_id(req.headers());
    match proxy.forward(&req, payload, &rid, started).await {
        Ok(resp) => resp,
        Err(err) => {
            let resp = err.to_response(&rid);
            if resp.status().is_server_error() {
                // A flood of failing requests gets one line per second per cause.
                if let Some(left_out) = crate::logthrottle::admit(err.parts().1) {
                    let more = if left_out > 0 {
                        format!(" ({left_out} more like this since the last line)")
                    } else {
                        String::new()
                    };
                    log::warn!(
                        "[{}] {} {}: {err}{more}",
                        Escaped(&rid),
                        req.method(),
                        Escaped(req.path())
                    );
                }
            }
            if proxy.access_log {
                AccessRecord::new(&req, &rid, resp.status().as_u16(), "-", started).log(0, "");
            }
            resp
        }
    }
}

/// Builds the awc client of one worker.
pub fn build_client(
    connect_timeout: std::time::Duration,
    upstream_timeout: std::time::Duration,
) -> awc::Client {
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
        .timeout(upstream_timeout)
        .finish()
}
