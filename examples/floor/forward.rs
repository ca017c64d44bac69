//! The forwarder of the reference "floor": what actix-web and awc cost per proxied request when
//! nothing but forwarding is done. `examples/floor/main.rs` runs it; `tests/allocs` builds
//! it in-process (this file is included there as a module) to count its allocations.
//!
//! What it does, and so what every tollgate request pays too:
//! - one awc `Client` per worker, built in the `HttpServer` factory: redirects off, no default
//!   headers, no cap on connections (`limit(0)`), awc's default timeouts (a 5 s request timeout,
//!   armed per request, and a 5 s connect timeout);
//! - actix-web's `HttpServer` defaults for the listener (its keep-alive timer included), but
//!   `TCP_NODELAY` on accepted connections, as tollgate sets it;
//! - backends taken round-robin per worker;
//! - the method, the path and query, and every request header but the hop-by-hop ones
//!   (RFC 9110 §7.6.1: `Connection`, `Keep-Alive`, `Proxy-Connection`, `Proxy-Authenticate`,
//!   `Proxy-Authorization`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`) and
//!   `Content-Length`/`Expect` (the body sets the first, actix-web answered the second) go to
//!   the backend; the client's `Host` goes through as it came;
//! - the request body is streamed to awc (sized if the client sized it, chunked if chunked,
//!   none otherwise) and the response body streamed back (`HttpResponseBuilder::streaming`);
//! - the response status and headers but the hop-by-hop ones come back (`Content-Length`
//!   included, so a sized answer stays sized).
//!
//! What it leaves out, compared to tollgate: rate limiting and client identification (API
//! keys, the registry, leases), the request id, `X-Forwarded-For`/`-Proto`/`-Host`, headers
//! named in `Connection`, absolute-form targets, dot-segment resolution and the limits on
//! targets and bodies, retries and the buffered body they need, health checks, passive
//! ejection and the backend pool, the upstream timeout, the response-head deadline, body idle
//! timeouts and the upload minimum rate, the special cases of `HEAD`, 1xx, 204 and 304,
//! `OPTIONS *` and `CONNECT`, JSON error bodies (a failed send is a bare 502), the access log,
//! metrics, graceful drain and shutdown, the admin listener and the database.

use std::{cell::Cell, io, net::TcpListener, sync::Arc};

use actix_web::{
    body::{self, SizedStream},
    dev::Server,
    http::{
        header::{self, HeaderName},
        uri::{Authority, Parts, PathAndQuery, Scheme, Uri},
    },
    web, App, HttpRequest, HttpResponse, HttpServer,
};

/// A backend, as the scheme and authority of its base URL.
#[derive(Debug, Clone)]
pub struct Backend {
    scheme: Scheme,
    authority: Authority,
}

impl Backend {
    /// Parses `http://host:port` (a trailing `/` is allowed, any other path is not: requests go
    /// to the backend under their own path).
    pub fn parse(url: &str) -> Result<Backend, String> {
        let uri: Uri = url.parse().map_err(|e| format!("backend '{url}': {e}"))?;
        let parts = uri.into_parts();
        match (parts.scheme, parts.authority, parts.path_and_query) {
            (Some(scheme), Some(authority), pq) if pq.as_ref().is_none_or(|p| p.as_str() == "/") => {
                Ok(Backend { scheme, authority })
            }
            _ => Err(format!(
                "backend '{url}': expected scheme://host:port with no path"
            )),
        }
    }
}

/// What one worker holds: its client, the backends and its round-robin cursor.
struct Worker {
    client: awc::Client,
    backends: Arc<[Backend]>,
    next: Cell<usize>,
}

/// The forwarder on `listener` with `workers` worker threads, forwarding to `backends`
/// round-robin. The server is returned unstarted: await it (or spawn it) in an actix `System`.
pub fn serve(listener: TcpListener, backends: Vec<Backend>, workers: usize) -> io::Result<Server> {
    if backends.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no backend"));
    }
    let backends: Arc<[Backend]> = backends.into();
    let server = HttpServer::new(move || {
        let worker = Worker {
            client: client(),
            backends: backends.clone(),
            next: Cell::new(0),
        };
        App::new()
            .app_data(web::Data::new(worker))
            .default_service(web::to(forward))
    })
    .workers(workers)
    .tcp_nodelay(true)
    .listen(listener)?
    .run();
    Ok(server)
}

/// The awc client of one worker, configured like tollgate's (`src/http/proxy/route.rs`) less
/// its guarded connector and its own timeouts.
fn client() -> awc::Client {
    awc::Client::builder()
        .disable_redirects()
        .no_default_headers()
        .connector(awc::Connector::new().limit(0))
        .finish()
}

async fn forward(req: HttpRequest, payload: web::Payload, worker: web::Data<Worker>) -> HttpResponse {
    let turn = worker.next.get();
    worker.next.set(turn.wrapping_add(1));
    let backend = &worker.backends[turn % worker.backends.len()];

    let mut parts = Parts::default();
    parts.scheme = Some(backend.scheme.clone());
    parts.authority = Some(backend.authority.clone());
    parts.path_and_query = Some(
        req.uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    );
    let Ok(uri) = Uri::from_parts(parts) else {
        return HttpResponse::BadGateway().finish();
    };

    let mut upstream = worker.client.request(req.method().clone(), uri).no_decompress();
    let headers = upstream.headers_mut();
    for (name, value) in req.headers() {
        if !hop_by_hop(name) && *name != header::CONTENT_LENGTH && *name != header::EXPECT {
            headers.append(name.clone(), value.clone());
        }
    }

    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let sent = match length {
        Some(n) => upstream.send_body(SizedStream::new(n, payload)).await,
        None if req.headers().contains_key(header::TRANSFER_ENCODING) => upstream.send_stream(payload).await,
        None => upstream.send_body(body::None::new()).await,
    };
    let Ok(resp) = sent else {
        return HttpResponse::BadGateway().finish();
    };

    let mut out = HttpResponse::build(resp.status());
    for (name, value) in resp.headers() {
        if !hop_by_hop(name) {
            out.append_header((name.clone(), value.clone()));
        }
    }
    out.streaming(resp)
}

/// RFC 9110 §7.6.1's connection-specific headers. Standard names compare as enum tags.
fn hop_by_hop(name: &HeaderName) -> bool {
    *name == header::CONNECTION
        || *name == header::TE
        || *name == header::TRAILER
        || *name == header::TRANSFER_ENCODING
        || *name == header::UPGRADE
        || *name == header::PROXY_AUTHENTICATE
        || *name == header::PROXY_AUTHORIZATION
        || matches!(name.as_str(), "keep-alive" | "proxy-connection")
}
