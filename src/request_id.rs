//! Request ids: the client's `X-Request-Id` when it is sane, else a new one. Both listeners
//! use it, so that every error body and log line of a request carries the same id.

use actix_web::http::header::HeaderMap;

/// The client's request id if it is sane (1-128 visible ASCII characters), else a new UUID.
pub fn request_id(headers: &HeaderMap) -> String {
    if let Some(v) = headers.get(crate::error_body::REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic()) {
            // All visible ASCII, so this cannot fail.
            if let Ok(s) = v.to_str() {
                return s.to_string();
            }
        }
    }
    // Encoded into a buffer, not through `Display`: one per request.
    let mut buf = uuid::Uuid::encode_buffer();
    uuid::Uuid::new_v4().simple().encode_lower(&mut buf).to_owned()
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
}
