//! Request ids: the client's `X-Request-Id` when it is sane, else a new one. Both listeners
//! use it, so that every error body and log line of a request carries the same id.

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};

/// The client's request id if it is sane (1-128 visible ASCII characters), else a new UUID.
pub fn request_id(headers: &HeaderMap) -> String {
    RequestId::of(headers).as_str().to_string()
}

/// A request's id kept as the header value it is sent as, both ways: the client's own value
/// is shared, not copied, and a new one is encoded once.
#[derive(Debug, Clone)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The client's id if it is sane (1-128 visible ASCII characters), else a new UUID.
    pub fn of(headers: &HeaderMap) -> RequestId {
        // By `HeaderName`: a custom name looked up as text is parsed into an allocated copy.
        if let Some(v) = headers.get(HeaderName::from_static(crate::error_body::REQUEST_ID)) {
            let b = v.as_bytes();
            if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic()) {
                return RequestId(v.clone());
            }
        }
        // Encoded into an array that becomes the value's own storage: one allocation, and the
        // clones for the backend's request and the answer only count references (a value
        // copied from a slice would allocate again on its first clone).
        let mut buf = [0u8; 32];
        uuid::Uuid::new_v4().simple().encode_lower(&mut buf);
        // 32 hex digits: always a valid value.
        RequestId(
            HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(buf))
                .unwrap_or_else(|_| HeaderValue::from_static("-")),
        )
    }

    /// The id as text (visible ASCII only, checked in [`RequestId::of`]).
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or("-")
    }

    /// The id as a header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    fn with_id(id: &[u8]) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(
            crate::error_body::REQUEST_ID.parse().unwrap(),
            HeaderValue::from_bytes(id).unwrap(),
        );
        m
    }

    #[test]
    fn request_ids_are_passed_when_sane_and_made_otherwise() {
        assert_eq!(request_id(&with_id(b"abc-123")), "abc-123");
        for bad in [
            "a".repeat(129).as_bytes(),
            b"has space",
            b"tab\there",
            b"caf\xc3\xa9",
        ] {
            let made = request_id(&with_id(bad));
            assert_eq!(made.len(), 32, "{bad:?} -> {made}");
            assert!(made.bytes().all(|c| c.is_ascii_hexdigit()), "{made}");
        }
        assert_eq!(request_id(&with_id(&[b'a'; 128])).len(), 128);
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }

    #[test]
    fn a_request_id_is_its_header_value() {
        let given = RequestId::of(&with_id(b"abc-123"));
        assert_eq!(given.as_str(), "abc-123");
        assert_eq!(given.header_value(), "abc-123");
        let made = RequestId::of(&HeaderMap::new());
        assert_eq!(made.header_value().to_str().unwrap(), made.as_str());
        assert_eq!(made.as_str().len(), 32);
    }
}
