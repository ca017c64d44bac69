//! Header rules of the forwarder: hop-by-hop removal (RFC 9110 §7.6.1) and forwarding headers.

use std::net::IpAddr;

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, never forwarded in either direction. `content-length`
/// is not hop-by-hop, but the body type sets it again on each side, so it is dropped here too;
/// `expect` was answered by the gateway itself.
const NOT_FORWARDED: [&str; 11] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "expect",
];

fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect()
}

/// Copies the end-to-end headers of `src` into `dst`: everything but the hop-by-hop headers
/// and those named in `Connection`.
pub fn copy_end_to_end(src: &HeaderMap, dst: &mut HeaderMap) {
    let named = if src.contains_key(header::CONNECTION) {
        connection_named(src)
    } else {
        Vec::new()
    };
    for (name, value) in src.iter() {
        if NOT_FORWARDED.contains(&name.as_str()) || named.contains(name) {
            continue;
        }
        dst.append(name.clone(), value.clone());
    }
}

/// Headers of the request sent to a backend: the client's end-to-end headers plus
/// `X-Forwarded-For` (peer appended), `X-Forwarded-Proto`, `X-Forwarded-Host`, `X-Request-Id`.
pub fn upstream_request_headers(
    src: &HeaderMap,
    peer: Option<IpAddr>,
    request_id: &HeaderValue,
) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(src.len() + 4);
    copy_end_to_end(src, &mut out);
    if let Some(peer) = peer {
        let value = if src.contains_key(X_FORWARDED_FOR) {
            let prior: Vec<&str> = src
                .get_all(X_FORWARDED_FOR)
                .filter_map(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .collect();
            out.remove(X_FORWARDED_FOR);
            let value = if prior.is_empty() {
                peer.to_string()
            } else {
                format!("{}, {peer}", prior.join(", "))
            };
            HeaderValue::try_from(value).ok()
        } else {
            // The common case: the peer alone, formatted on the stack.
            address_value(peer)
        };
        if let Some(v) = value {
            out.insert(HeaderName::from_static(X_FORWARDED_FOR), v);
        }
    }
    out.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );
    if let Some(host) = src.get(header::HOST) {
        out.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
    }
    out.insert(
        HeaderName::from_static(crate::error_body::REQUEST_ID),
        request_id.clone(),
    );
    out
}

const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// `addr` as a header value, formatted without a `String` (the value is the one allocation).
fn address_value(addr: IpAddr) -> Option<HeaderValue> {
    use std::io::Write;
    // The longest IPv6 text (an IPv4-mapped one with a full prefix) is 45 bytes.
    let mut buf = [0u8; 48];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    write!(cursor, "{addr}").ok()?;
    let len = usize::try_from(cursor.position()).ok()?;
    HeaderValue::from_bytes(&buf[..len]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_dropped() {
        let src = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic abc"),
            ("accept", "text/plain"),
            ("x-custom", "a"),
            ("x-custom", "b"),
        ]);
        let mut dst = HeaderMap::new();
        copy_end_to_end(&src, &mut dst);
        let mut names: Vec<&str> = dst.keys().map(|k| k.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names, vec!["accept", "x-custom"]);
        assert_eq!(dst.get_all("x-custom").count(), 2);
    }

    #[test]
    fn a_lone_peer_is_the_forwarded_for() {
        for peer in [
            "10.0.0.9",
            "::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
            "2001:db8::7",
        ] {
            let out = upstream_request_headers(
                &map(&[]),
                Some(peer.parse().unwrap()),
                &HeaderValue::from_static("rid1"),
            );
            let want: IpAddr = peer.parse().unwrap();
            assert_eq!(
                out.get("x-forwarded-for").unwrap(),
                want.to_string().as_str(),
                "{peer}"
            );
        }
    }

    #[test]
    fn forwarded_for_is_appended_and_host_kept() {
        let src = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "5.6.7.8"),
            ("host", "api.example"),
        ]);
        let out = upstream_request_headers(
            &src,
            Some("10.0.0.9".parse().unwrap()),
            &HeaderValue::from_static("rid1"),
        );
        assert_eq!(out.get("x-forwarded-for").unwrap(), "1.2.3.4, 5.6.7.8, 10.0.0.9");
        assert_eq!(out.get("host").unwrap(), "api.example");
        assert_eq!(out.get("x-forwarded-host").unwrap(), "api.example");
        assert_eq!(out.get("x-forwarded-proto").unwrap(), "http");
        assert_eq!(out.get("x-request-id").unwrap(), "rid1");
    }
}
