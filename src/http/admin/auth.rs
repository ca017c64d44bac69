//! Bearer-token authentication of the admin API.

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::{header, header::HeaderMap, StatusCode},
    middleware::Next,
    web, HttpResponse,
};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use super::AdminState;
use crate::{error_body, request_id::request_id};

/// The admin API's bearer token. `Debug` prints `[REDACTED]`, and the only use of the
/// secret is a constant-time comparison.
#[derive(Debug, Clone)]
pub struct AdminToken(SecretString);

impl AdminToken {
    /// Wraps a token (validated by the configuration).
    pub fn new(token: String) -> AdminToken {
        AdminToken(token.into())
    }

    /// Whether `presented` is the token, compared in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        bool::from(presented.as_bytes().ct_eq(self.0.expose_secret().as_bytes()))
    }
}

/// The credentials of an `Authorization: Bearer <token>` value. The scheme is matched
/// case-insensitively and followed by one or more spaces (RFC 9110 §11.1, §11.4).
fn bearer_credentials(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim_start_matches(' '))
}

/// The `401` for a request without the configured bearer token (`None`: let it through).
pub(super) fn refusal(headers: &HeaderMap, token: Option<&AdminToken>) -> Option<HttpResponse> {
    let expected = token?;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_credentials)
        .unwrap_or("");
    if expected.matches(presented) {
        return None;
    }
    let request_id = request_id(headers);
    Some(
        error_body::builder(StatusCode::UNAUTHORIZED, &request_id)
            .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"tollgate-admin\""))
            .json(error_body::ErrorBody {
                code: 401,
                message: "Missing or wrong bearer token",
                error: "unauthorized",
                request_id: &request_id,
            }),
    )
}

/// Refuses requests without the configured bearer token.
pub(super) async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let token = req
        .app_data::<web::Data<AdminState>>()
        .and_then(|s| s.token.clone());
    if let Some(resp) = refusal(req.headers(), token.as_ref()) {
        return Ok(req.into_response(resp));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for (value, want) in [
            ("Bearer abc", Some("abc")),
            ("bearer abc", Some("abc")),
            ("BEARER abc", Some("abc")),
            ("Bearer   abc", Some("abc")),
            ("Bearer ABC", Some("ABC")),
            ("Bearerabc", None),
            ("Bearerx abc", None),
            ("Basic abc", None),
            ("", None),
        ] {
            assert_eq!(bearer_credentials(value), want, "{value:?}");
        }
    }

    #[test]
    fn the_token_matches_only_itself_and_never_shows() {
        let token = AdminToken::new("0123456789abcdef-secret".into());
        assert!(token.matches("0123456789abcdef-secret"));
        for wrong in [
            "",
            "0123456789abcdef-secreT",
            "0123456789abcdef-secret ",
            "0123456789abcdef",
        ] {
            assert!(!token.matches(wrong), "{wrong:?}");
        }
        assert!(!format!("{token:?}").contains("secret"), "{token:?}");
    }
}
