//! Streaming bodies in both directions, with the accounting that must last as long as they do.

use std::{
    cell::{Cell, RefCell},
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use actix_web::{
    body::{BodySize, MessageBody},
    dev::Payload,
    error::PayloadError,
    web::Bytes,
    HttpRequest,
};
use futures_util::{ready, Stream};

use super::{
    deadline::LazyDeadline,
    upload::{PacedPayload, SlowUpload, UploadError},
};
use crate::{
    logfmt::Escaped,
    metrics::{FailureKind, Traffic},
    pool::Lease,
};

/// Why the client's body could not be read to its end.
#[derive(Debug, Clone)]
pub enum ClientBodyFailure {
    /// The client's connection or framing failed.
    Broken(String),
    /// The client sent too slowly.
    Slow(SlowUpload),
}

impl From<UploadError> for ClientBodyFailure {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::Slow(slow) => ClientBodyFailure::Slow(slow),
            UploadError::Client(e) => ClientBodyFailure::Broken(e.to_string()),
        }
    }
}

/// The client's request body as the forwarder reads it: paced by the upload policy.
pub type ClientPayload = PacedPayload<Payload>;

/// The client's request body, shared between attempts.
///
/// awc drops a request body without polling it when the connection cannot be opened, so a
/// body that was never touched can still be sent to the next backend.
pub struct BodySource {
    payload: RefCell<Option<ClientPayload>>,
    /// What was read before the first attempt (the request buffer), sent first.
    prefix: RefCell<Option<Bytes>>,
    touched: Cell<bool>,
    received: Cell<u64>,
    limit: u64,
    too_large: Cell<bool>,
    client_error: RefCell<Option<ClientBodyFailure>>,
    /// Set when the whole body has been read; wakes the response-head deadline.
    finished: Cell<bool>,
    finish_waker: RefCell<Option<std::task::Waker>>,
    /// When awc last asked for body bytes: a backend that stops reading stops these asks.
    last_asked: Cell<Option<Instant>>,
    /// The last ask is waiting on the client, not on the backend.
    waiting_on_client: Cell<bool>,
}

impl BodySource {
    /// Wraps the rest of the client's payload after `prefix`, refusing more than `limit` bytes.
    pub fn new(prefix: Bytes, payload: ClientPayload, limit: u64) -> Rc<BodySource> {
        let received = prefix.len() as u64;
        Rc::new(BodySource {
            payload: RefCell::new(Some(payload)),
            prefix: RefCell::new((!prefix.is_empty()).then_some(prefix)),
            touched: Cell::new(false),
            received: Cell::new(received),
            limit,
            too_large: Cell::new(false),
            client_error: RefCell::new(None),
            finished: Cell::new(false),
            finish_waker: RefCell::new(None),
            last_asked: Cell::new(None),
            waiting_on_client: Cell::new(false),
        })
    }

    /// Whether the whole body has been read from the client.
    pub fn is_finished(&self) -> bool {
        self.finished.get()
    }

    /// When an attempt last asked for body bytes (`None`: not yet).
    pub fn last_asked(&self) -> Option<Instant> {
        self.last_asked.get()
    }

    /// Whether the last ask is waiting for the client's bytes (then a quiet spell is the
    /// client's, which the upload policy judges, not the backend's).
    pub fn waiting_on_client(&self) -> bool {
        self.waiting_on_client.get()
    }

    /// Resolves once the whole body has been read from the client (and handed to awc).
    pub fn finished(self: &Rc<Self>) -> impl std::future::Future<Output = ()> {
        let src = self.clone();
        std::future::poll_fn(move |cx| {
            if src.finished.get() {
                Poll::Ready(())
            } else {
                *src.finish_waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    }

    /// Whether any of the body has been read (then it cannot be sent again).
    pub fn touched(&self) -> bool {
        self.touched.get()
    }

    /// Whether the body went over the limit.
    pub fn too_large(&self) -> bool {
        self.too_large.get()
    }

    /// The client's own failure, if reading its body failed.
    pub fn client_error(&self) -> Option<ClientBodyFailure> {
        self.client_error.borrow().clone()
    }
}

/// One attempt's view of a [`BodySource`], sent with awc.
pub struct UpstreamRequestBody {
    src: Rc<BodySource>,
    size: BodySize,
}

impl UpstreamRequestBody {
    /// A body of `size` (`Sized` when the client declared a length, else `Stream`).
    pub fn new(src: Rc<BodySource>, size: BodySize) -> UpstreamRequestBody {
        UpstreamRequestBody { src, size }
    }
}

impl MessageBody for UpstreamRequestBody {
    type Error = PayloadError;

    fn size(&self) -> BodySize {
        self.size
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, PayloadError>>> {
        let src = &self.src;
        src.touched.set(true);
        src.last_asked.set(Some(Instant::now()));
        if let Some(prefix) = src.prefix.borrow_mut().take() {
            return Poll::Ready(Some(Ok(prefix)));
        }
        let mut slot = src.payload.borrow_mut();
        let Some(payload) = slot.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(payload).poll_next(cx);
        src.waiting_on_client.set(polled.is_pending());
        match ready!(polled) {
            Some(Ok(chunk)) => {
                let total = src.received.get() + chunk.len() as u64;
                src.received.set(total);
                if total > src.limit {
                    src.too_large.set(true);
                    *slot = None;
                    return Poll::Ready(Some(Err(PayloadError::Overflow)));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Some(Err(e)) => {
                *src.client_error.borrow_mut() = Some(e.into());
                *slot = None;
                Poll::Ready(Some(Err(PayloadError::Incomplete(None))))
            }
            None => {
                src.finished.set(true);
                if let Some(w) = src.finish_waker.borrow_mut().take() {
                    w.wake();
                }
                Poll::Ready(None)
            }
        }
    }
}

/// What the access log line of a request says.
pub struct AccessRecord {
    /// Request id.
    pub request_id: String,
    /// Client address.
    pub client: String,
    /// Method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Response status.
    pub status: u16,
    /// Backend that answered, or `-`.
    pub backend: String,
    /// When the request arrived.
    pub started: Instant,
}

impl AccessRecord {
    /// The record of `req`, answered with `status` by `backend` (`-` for the gateway itself).
    pub fn new(req: &HttpRequest, request_id: &str, status: u16, backend: &str, started: Instant) -> Self {
        AccessRecord {
            request_id: request_id.to_string(),
            client: req
                .peer_addr()
                .map_or_else(|| "-".to_string(), |a| a.ip().to_string()),
            method: req.method().to_string(),
            path: req.path().to_string(),
            status,
            backend: backend.to_string(),
            started,
        }
    }

    /// Writes the access-log line (target `tollgate::access`).
    pub fn log(&self, bytes: u64, outcome: &str) {
        let duration_us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        // The fields again as key-values: the JSON log format writes them as keys of their own.
        log::info!(
            target: "tollgate::access",
            request_id = self.request_id.as_str(),
            client = self.client.as_str(),
            method = self.method.as_str(),
            path = self.path.as_str(),
            status = self.status,
            backend = self.backend.as_str(),
            duration_us = duration_us,
            bytes = bytes,
            outcome = outcome.trim();
            "{} {} \"{} {}\" {} backend={} {}us {}B{}",
            Escaped(&self.request_id),
            self.client,
            self.method,
            Escaped(&self.path),
            self.status,
            self.backend,
            duration_us,
            bytes,
            outcome
        );
    }
}

/// The backend's response body on its way to the client. Holds the backend lease (in-flight
/// count) until the body is done, and writes the access-log line when it is dropped.
pub struct DownstreamBody<S> {
    inner: S,
    lease: Option<Lease>,
    log: Option<AccessRecord>,
    bytes: u64,
    finished: bool,
    failed: bool,
    /// Longest wait for the backend's next body bytes.
    idle: Duration,
    /// Start of the current wait; `None` while the body flows (no clock read per chunk).
    waiting_since: Option<Instant>,
    deadline: LazyDeadline,
    /// This worker's counters and the request's arrival (`None` with metrics off).
    timing: Option<(&'static Traffic, Instant)>,
}

impl<S> DownstreamBody<S> {
    /// Wraps the backend's response stream.
    pub fn new(
        inner: S,
        lease: Lease,
        log: Option<AccessRecord>,
        idle: Duration,
        timing: Option<(&'static Traffic, Instant)>,
    ) -> Self {
        DownstreamBody {
            inner,
            lease: Some(lease),
            log,
            bytes: 0,
            finished: false,
            failed: false,
            idle,
            waiting_since: None,
            deadline: LazyDeadline::default(),
            timing,
        }
    }

    fn fail(&mut self, cause: &dyn std::fmt::Display) {
        self.failed = true;
        if let Some(lease) = &self.lease {
            lease.count_failure(FailureKind::Body);
            if let Some(left_out) = crate::logthrottle::admit("upstream_aborted") {
                log::warn!(
                    "backend {} failed mid-response: {cause}; aborting the client connection{}",
                    lease.backend().base,
                    crate::logthrottle::left_out_note(left_out)
                );
            }
        }
    }
}

impl<S> DownstreamBody<S> {
    /// Ends a response that has no body (1xx, 204, 304, HEAD): complete, not aborted.
    pub fn end_without_body(mut self) {
        self.finished = true;
    }
}

impl<S> Stream for DownstreamBody<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let item = match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(item) => item,
            Poll::Pending => {
                let since = *this.waiting_since.get_or_insert_with(Instant::now);
                ready!(this.deadline.poll_until(cx, since + this.idle));
                let cause = format!("no body bytes for {:?}", this.idle);
                this.fail(&cause);
                return Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    cause,
                )))));
            }
        };
        this.waiting_since = None;
        match &item {
            Some(Ok(chunk)) => this.bytes += chunk.len() as u64,
            Some(Err(e)) => this.fail(e),
            None => this.finished = true,
        }
        Poll::Ready(item)
    }
}

impl<S> Drop for DownstreamBody<S> {
    fn drop(&mut self) {
        if let Some(record) = &self.log {
            let outcome = if self.failed {
                " upstream-aborted"
            } else if self.finished {
                ""
            } else {
                " client-aborted"
            };
            record.log(self.bytes, outcome);
        }
        if let Some((traffic, started)) = &self.timing {
            traffic.request_duration.observe(started.elapsed());
        }
        self.lease.take();
    }
}
