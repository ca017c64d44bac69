//! `Expect: 100-continue`: the interim answer is sent only to a request whose body may be
//! sent. One that declares a `Content-Length` over the body limit gets its final `413` at once,
//! before the client sends a byte of the body (RFC 9110 §10.1.1).

use actix_web::{
    http::header::{self, HeaderMap},
    HttpResponse,
};

use super::ProxyError;
use crate::request_id::RequestId;

/// The final answer to a request with `Expect: 100-continue` and these `headers`, or `None`
/// when it may go on (`100 Continue`, then the proxy). `limit` is the largest body accepted.
pub fn refusal(headers: &HeaderMap, limit: u64) -> Option<HttpResponse> {
    let declared: u64 = headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (declared > limit).then(|| {
        let id = RequestId::of(headers);
        ProxyError::BodyTooLarge { limit }.to_response(id.as_str())
    })
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    #[test]
    fn only_a_declared_length_over_the_limit_is_refused() {
        let cases: &[(Option<&str>, bool)] = &[
            (None, false),
            (Some("1024"), false),
            (Some(" 1024 "), false),
            (Some("1025"), true),
            (Some("99999999999999999999"), false),
            (Some("nope"), false),
        ];
        for (length, refused) in cases {
            let mut headers = HeaderMap::new();
            if let Some(length) = length {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static(length));
            }
            headers.insert(
                HeaderName::from_static("x-request-id"),
                HeaderValue::from_static("rid-1"),
            );
            let answer = refusal(&headers, 1024);
            assert_eq!(answer.is_some(), *refused, "{length:?}");
            if let Some(answer) = answer {
                assert_eq!(answer.status(), 413);
                assert_eq!(answer.headers().get("x-request-id").unwrap(), "rid-1");
            }
        }
    }
}
