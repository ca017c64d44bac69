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

/// Number of headers [`to_upstream`] may add: `X-Forwarded-For`, `-Proto`, `-Host` and
/// `X-Request-Id`.
pub const ADDED: usize = 4;

/// Turns the client's request headers, in place, into those of the request sent to a backend:
/// the hop-by-hop headers and those named in `Connection` are removed, `X-Forwarded-For` gets
/// the peer appended, `X-Forwarded-Proto`, `X-Forwarded-Host` (from `Host`) and `X-Request-Id`
/// are set. The values kept are neither copied nor hashed again.
pub fn to_upstream(headers: &mut HeaderMap, peer: Option<IpAddr>, request_id: &HeaderValue) {
    // Read before anything is removed: a `Connection` naming them does not change these.
    let forwarded_for = peer.map(|peer| forwarded_for(headers, peer));
    let host = headers.get(header::HOST).cloned();
    // Each `Connection` line names headers of this connection only (RFC 9110 §7.6.1).
    for line in headers.remove(header::CONNECTION) {
        if let Ok(line) = line.to_str() {
            headers.retain(|name, _| {
                !line
                    .split(',')
                    .any(|token| token.trim().eq_ignore_ascii_case(name.as_str()))
            });
        }
    }
    headers.retain(|name, _| !NOT_FORWARDED.contains(&name.as_str()));
    if let Some(value) = forwarded_for {
        let name = HeaderName::from_static(X_FORWARDED_FOR);
        match value {
            Some(v) => {
                headers.insert(name, v);
            }
            None => {
                headers.remove(&name);
            }
        }
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );
    if let Some(host) = host {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host);
    }
    headers.insert(
        HeaderName::from_static(crate::error_body::REQUEST_ID),
        request_id.clone(),
    );
}

/// Removes the forwarding headers a client wrote itself (`Forwarded`, `X-Real-IP` and every
/// `X-Forwarded-*`), named in `Connection` or not: from a peer that is not a trusted proxy
/// they are hearsay, and a backend must see only the gateway's own. Call before
/// [`to_upstream`], which then sets the gateway's.
pub fn drop_client_forwarding(headers: &mut HeaderMap) {
    headers.retain(|name, _| {
        let name = name.as_str();
        !(name == "forwarded" || name == "x-real-ip" || name.starts_with("x-forwarded-"))
    });
}

/// The `X-Forwarded-For` value sent on: the client's own values, then `peer`. `None` when the
/// result is not a valid value (the header is then left out).
fn forwarded_for(headers: &HeaderMap, peer: IpAddr) -> Option<HeaderValue> {
    // A name, not a `&str`: looking a custom name up by `&str` parses it, which allocates.
    let name = HeaderName::from_static(X_FORWARDED_FOR);
    if !headers.contains_key(&name) {
        // The common case: the peer alone, formatted on the stack.
        return address_value(peer);
    }
    let prior: Vec<&str> = headers
        .get_all(&name)
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let value = if prior.is_empty() {
        peer.to_string()
    } else {
        format!("{}, {peer}", prior.join(", "))
    };
    HeaderValue::try_from(value).ok()
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

    /// `src` turned into a backend's request headers in place.
    fn upstream(src: &HeaderMap, peer: Option<IpAddr>, request_id: &HeaderValue) -> HeaderMap {
        let mut out = src.clone();
        to_upstream(&mut out, peer, request_id);
        out
    }

    /// The headers as they were built before they were moved: a new map with the end-to-end
    /// headers copied into it, then the forwarding headers. The in-place version must give
    /// the same.
    fn rebuilt(src: &HeaderMap, peer: Option<IpAddr>, request_id: &HeaderValue) -> HeaderMap {
        let mut out = HeaderMap::with_capacity(src.len() + ADDED);
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

    /// Every name with its values in order, sorted by name.
    fn pairs(m: &HeaderMap) -> Vec<(String, Vec<String>)> {
        let mut names: Vec<&HeaderName> = m.keys().collect();
        names.sort_by_key(|n| n.as_str());
        names
            .into_iter()
            .map(|n| {
                let values = m
                    .get_all(n)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect();
                (n.as_str().to_string(), values)
            })
            .collect()
    }

    fn names(m: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<&str> = m.keys().map(|k| k.as_str()).collect();
        names.sort();
        names
    }

    const HOSTILE: &[(&str, &str)] = &[
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
    ];

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_dropped() {
        let src = map(HOSTILE);
        let mut dst = HeaderMap::new();
        copy_end_to_end(&src, &mut dst);
        assert_eq!(names(&dst), vec!["accept", "x-custom"]);
        assert_eq!(dst.get_all("x-custom").count(), 2);

        // In place, the same end-to-end headers are left, next to the forwarding ones.
        let out = upstream(&src, None, &HeaderValue::from_static("rid1"));
        assert_eq!(
            names(&out),
            vec!["accept", "x-custom", "x-forwarded-proto", "x-request-id"]
        );
        let values: Vec<&str> = out.get_all("x-custom").map(|v| v.to_str().unwrap()).collect();
        assert_eq!(values, vec!["a", "b"]);
    }

    #[test]
    fn a_lone_peer_is_the_forwarded_for() {
        for peer in [
            "10.0.0.9",
            "::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
            "2001:db8::7",
        ] {
            let out = upstream(
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
        let out = upstream(
            &src,
            Some("10.0.0.9".parse().unwrap()),
            &HeaderValue::from_static("rid1"),
        );
        assert_eq!(out.get_all("x-forwarded-for").count(), 1);
        assert_eq!(out.get("x-forwarded-for").unwrap(), "1.2.3.4, 5.6.7.8, 10.0.0.9");
        assert_eq!(out.get("host").unwrap(), "api.example");
        assert_eq!(out.get("x-forwarded-host").unwrap(), "api.example");
        assert_eq!(out.get("x-forwarded-proto").unwrap(), "http");
        assert_eq!(out.get("x-request-id").unwrap(), "rid1");
    }

    #[test]
    fn an_untrusted_clients_forwarding_headers_are_replaced_by_the_gateways() {
        let mut src = map(&[
            ("connection", "close, X-Forwarded-For"),
            ("x-forwarded-for", "203.0.113.7"),
            ("X-Forwarded-Port", "1"),
            ("x-forwarded-host", "spoofed"),
            ("forwarded", "for=203.0.113.8"),
            ("x-real-ip", "203.0.113.9"),
            ("host", "h"),
        ]);
        drop_client_forwarding(&mut src);
        let out = upstream(
            &src,
            Some("10.0.0.9".parse().unwrap()),
            &HeaderValue::from_static("rid1"),
        );
        assert_eq!(
            pairs(&out),
            vec![
                ("host".to_string(), vec!["h".to_string()]),
                ("x-forwarded-for".to_string(), vec!["10.0.0.9".to_string()]),
                ("x-forwarded-host".to_string(), vec!["h".to_string()]),
                ("x-forwarded-proto".to_string(), vec!["http".to_string()]),
                ("x-request-id".to_string(), vec!["rid1".to_string()]),
            ]
        );
    }

    /// The in-place headers against the rebuilt ones, for requests that name, repeat or
    /// spoof the headers the gateway sets.
    #[test]
    fn in_place_gives_what_the_rebuild_gave() {
        let cases: &[&[(&str, &str)]] = &[
            &[],
            HOSTILE,
            &[("host", "a.example"), ("user-agent", "t")],
            &[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-for", "5.6.7.8")],
            &[("x-forwarded-for", " "), ("host", "h")],
            &[("x-forwarded-for", "1.2.3.4"), ("connection", "x-forwarded-for")],
            &[("host", "h"), ("connection", "Host, close")],
            &[("host", "h"), ("connection", "x-request-id, x-forwarded-proto")],
            &[("x-forwarded-host", "spoofed"), ("x-forwarded-proto", "https")],
            &[
                ("x-forwarded-host", "spoofed"),
                ("host", "real"),
                ("x-request-id", "theirs"),
            ],
            &[
                ("connection", "te"),
                ("connection", "x-a ,, x-b"),
                ("x-a", "1"),
                ("x-b", "2"),
                ("x-c", "3"),
            ],
            &[
                ("content-length", "5"),
                ("expect", "100-continue"),
                ("trailer", "x"),
                ("proxy-connection", "x"),
            ],
            &[
                ("x-forwarded-for", "1.2.3.4"),
                ("x-forwarded-for", "\u{e9}"),
                ("connection", "\u{e9}, x-a"),
                ("x-a", "1"),
            ],
            &[
                ("proxy-authenticate", "x"),
                ("accept", "a"),
                ("accept", "b"),
                ("accept", "c"),
                ("accept", "d"),
                ("accept", "e"),
            ],
        ];
        let rid = HeaderValue::from_static("rid1");
        for case in cases {
            let src = map(case);
            for peer in [
                None,
                Some("10.0.0.9".parse().unwrap()),
                Some("2001:db8::7".parse().unwrap()),
            ] {
                assert_eq!(
                    pairs(&upstream(&src, peer, &rid)),
                    pairs(&rebuilt(&src, peer, &rid)),
                    "{case:?} from {peer:?}"
                );
            }
        }
    }
}
