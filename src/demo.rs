//! Demo backends: each answers every request with its name and what it received, as JSON.
//!
//! `--demo` starts three of them on loopback inside the gateway process; the `demo-backend`
//! subcommand runs one on its own (the compose stack uses it).

use std::net::TcpListener;

use actix_web::{dev::Server, web, App, HttpRequest, HttpResponse, HttpServer};
use futures_util::StreamExt;
use serde_json::json;

/// Starts one demo backend named `name` on `listener` with one worker. `own_signals` lets it
/// stop itself on SIGTERM/SIGINT (standalone); inside the gateway, the gateway stops it.
pub fn serve(listener: TcpListener, name: String, own_signals: bool) -> std::io::Result<Server> {
    let name = web::Data::new(name);
    let server = HttpServer::new(move || App::new().app_data(name.clone()).default_service(web::to(echo)))
        .workers(1)
        .shutdown_timeout(1);
    let server = if own_signals {
        server
    } else {
        server.disable_signals()
    };
    Ok(server.listen(listener)?.run())
}

async fn echo(req: HttpRequest, mut body: web::Payload, name: web::Data<String>) -> HttpResponse {
    // Count the body rather than echo it, so that large uploads stay cheap.
    let mut body_bytes: u64 = 0;
    while let Some(Ok(chunk)) = body.next().await {
        body_bytes += chunk.len() as u64;
    }
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                json!(String::from_utf8_lossy(v.as_bytes())),
            )
        })
        .collect();
    HttpResponse::Ok().json(json!({
        "backend": name.get_ref(),
        "method": req.method().as_str(),
        "path": req.path(),
        "query": req.query_string(),
        "headers": headers,
        "body_bytes": body_bytes,
    }))
}
