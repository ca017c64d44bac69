//! `GET /`: the status page, one self-contained HTML document (its style and script inline,
//! no external resource, so it works on a host with no Internet). It holds no data and is
//! served without the token; its script reads `GET /status` and `GET /cluster` with it.
//!
//! The Content-Security-Policy allows the page's own style and script by their SHA-256
//! hashes and nothing else: no other script, style, frame or host.

use std::sync::OnceLock;

use actix_web::{http::header, web, HttpResponse};
use base64::Engine;
use sha2::{Digest, Sha256};

const TEMPLATE: &str = include_str!("status_page.html");
const STYLE: &str = include_str!("status_page.css");
const SCRIPT: &str = include_str!("status_page.js");

/// The page and its policy, built once.
struct Page {
    html: String,
    csp: String,
}

/// Registers the route (outside the authenticated scope).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/").route(web::get().to(page)));
}

/// The CSP source of `text`'s SHA-256 hash (an inline block's exact content).
fn hash_source(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

fn build() -> Page {
    let html = TEMPLATE
        .replacen("{{style}}", STYLE, 1)
        .replacen("{{script}}", SCRIPT, 1);
    let csp = format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self' data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hash_source(SCRIPT),
        hash_source(STYLE),
    );
    Page { html, csp }
}

fn the_page() -> &'static Page {
    static PAGE: OnceLock<Page> = OnceLock::new();
    PAGE.get_or_init(build)
}

/// The status page.
#[utoipa::path(
    get,
    path = "/",
    operation_id = "status_page",
    tag = "status",
    security(()),
    responses((status = 200, description = "The status page: one HTML document that holds no data", content_type = "text/html", body = String))
)]
pub(super) async fn page() -> HttpResponse {
    let page = the_page();
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::CONTENT_SECURITY_POLICY, page.csp.as_str()))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(page.html.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_carries_its_style_and_script_whole() {
        let page = build();
        assert!(page.html.contains(&format!("<style>{STYLE}</style>")));
        assert!(page.html.contains(&format!("<script>{SCRIPT}</script>")));
        assert!(!page.html.contains("{{"), "every placeholder filled");
        // Nothing is loaded from elsewhere.
        for outside in ["src=", "https:", "@import", "url(", "href=\"http"] {
            assert!(!page.html.contains(outside), "{outside}");
        }
        assert!(page.csp.contains(&hash_source(SCRIPT)));
        assert!(page.csp.contains(&hash_source(STYLE)));
    }

    #[test]
    fn hashes_are_csp_sources() {
        // echo -n 'alert(1)' | openssl dgst -sha256 -binary | base64
        assert_eq!(
            hash_source("alert(1)"),
            "'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='"
        );
    }
}
