//! Who is asking: the client address behind trusted proxies, and the anonymous bucket key.

use std::net::IpAddr;

use actix_web::http::header::HeaderMap;
use ipnet::IpNet;

/// Which header the trusted proxies write. Only that one is read: proxies append to their own
/// header and pass the other through from the client untouched, so reading both would let a
/// client choose its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

/// Parses a comma-separated list of addresses or CIDR blocks (an address is its own /32 or
/// /128); empty gives an empty list. A block with host bits set (`1.2.3.4/8`) is refused
/// with the network it names, never silently narrowed or widened into it.
pub fn parse_nets(raw: &str) -> Result<Vec<IpNet>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.parse::<IpNet>() {
            Ok(net) if net.trunc() == net => Ok(net),
            Ok(net) => Err(format!(
                "{s} is not a network address; did you mean {}?",
                net.trunc()
            )),
            Err(_) => s
                .parse::<std::net::IpAddr>()
                .map(IpNet::from)
                .map_err(|_| format!("{s} is not an IP address or CIDR block like 10.0.0.0/8")),
        })
        .collect()
}

/// Whether `peer` is one of the trusted proxies.
pub fn is_trusted_peer(peer: IpAddr, trusted: &[IpNet]) -> bool {
    !trusted.is_empty() && is_trusted(peer.to_canonical(), trusted)
}

/// The address of the client: the direct peer, unless the peer is a trusted proxy, in which
/// case the proxies' header is walked right to left, skipping trusted hops. A header from an
/// untrusted peer is ignored, so spoofing it buys nothing.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted: &[IpNet], which: ForwardedHeader) -> IpAddr {
    let peer = peer.to_canonical();
    if trusted.is_empty() || !is_trusted(peer, trusted) {
        return peer;
    }
    let hops = forwarded_hops(headers, which);
    let mut current = peer;
    for hop in hops.iter().rev() {
        if !is_trusted(current, trusted) {
            break;
        }
        match parse_hop(hop) {
            Some(ip) => current = ip.to_canonical(),
            None => break,
        }
    }
    current
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// Hop addresses, leftmost (original client) first.
fn forwarded_hops(headers: &HeaderMap, which: ForwardedHeader) -> Vec<String> {
    if which == ForwardedHeader::Forwarded {
        return headers
            .get_all("forwarded")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.trim().split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| v.trim().trim_matches('"').to_string())
                })
            })
            .collect();
    }
    headers
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]:443` or `2001:db8::1`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    hop.rsplit_once(':')?.0.parse().ok()
}

/// Key of an anonymous client's bucket: the IPv4 address, or the /64 of an IPv6 address
/// (one subscriber usually holds a whole /64).
pub fn anonymous_key(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => (0xffff_u128 << 32) | u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6) & !((1u128 << 64) - 1),
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    const XFF: ForwardedHeader = ForwardedHeader::XForwardedFor;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn untrusted_peers_cannot_spoof() {
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        let headers = h(&[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(client_ip(&headers, peer, &[], XFF), peer);
        assert_eq!(client_ip(&headers, peer, &nets(&["10.0.0.0/8"]), XFF), peer);
    }

    #[test]
    fn trusted_hops_are_skipped_right_to_left() {
        let trusted = nets(&["10.0.0.0/8"]);
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // The client forged 6.6.6.6 at the left; the first untrusted hop from the right wins.
        let headers = h(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.1")]);
        assert_eq!(client_ip(&headers, peer, &trusted, XFF), ip("198.51.100.7"));
        let headers = h(&[("forwarded", "for=\"[2001:db8::5]:4711\", for=10.0.0.1")]);
        assert_eq!(
            client_ip(&headers, peer, &trusted, ForwardedHeader::Forwarded),
            ip("2001:db8::5")
        );
        let headers = h(&[("x-forwarded-for", "garbage")]);
        assert_eq!(client_ip(&headers, peer, &trusted, XFF), peer);
    }

    #[test]
    fn only_the_configured_header_is_read() {
        // The trusted proxy appends to X-Forwarded-For; the client forged Forwarded.
        let trusted = nets(&["10.0.0.0/8"]);
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let headers = h(&[
            ("forwarded", "for=192.0.2.10"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(client_ip(&headers, peer, &trusted, XFF), ip("198.51.100.7"));
        let headers = h(&[
            ("x-forwarded-for", "192.0.2.10"),
            ("forwarded", "for=198.51.100.7"),
        ]);
        assert_eq!(
            client_ip(&headers, peer, &trusted, ForwardedHeader::Forwarded),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn a_block_with_host_bits_names_the_network_it_meant() {
        let cases: &[(&str, Result<&[&str], &str>)] = &[
            ("", Ok(&[])),
            (" 10.0.0.0/8 , 10.1.2.3", Ok(&["10.0.0.0/8", "10.1.2.3/32"])),
            ("2001:db8::/32", Ok(&["2001:db8::/32"])),
            ("1.2.3.4/32", Ok(&["1.2.3.4/32"])),
            (
                "10.0.0.0/8, 1.2.3.4/8",
                Err("1.2.3.4/8 is not a network address; did you mean 1.0.0.0/8?"),
            ),
            (
                "2001:db8::1/32",
                Err("2001:db8::1/32 is not a network address; did you mean 2001:db8::/32?"),
            ),
            (
                "nope",
                Err("nope is not an IP address or CIDR block like 10.0.0.0/8"),
            ),
            (
                "1.2.3.4/33",
                Err("1.2.3.4/33 is not an IP address or CIDR block like 10.0.0.0/8"),
            ),
        ];
        for (raw, want) in cases {
            let got = parse_nets(raw).map(|nets| nets.iter().map(ToString::to_string).collect::<Vec<_>>());
            let want = want
                .map(|nets| nets.iter().map(ToString::to_string).collect::<Vec<_>>())
                .map_err(ToString::to_string);
            assert_eq!(got, want, "{raw:?}");
        }
    }

    #[test]
    fn only_a_listed_peer_is_trusted() {
        let trusted = nets(&["10.0.0.0/8", "::1/128"]);
        let cases = [
            ("10.9.9.9", true),
            ("11.0.0.1", false),
            ("::1", true),
            ("::ffff:10.0.0.1", true),
        ];
        for (peer, want) in cases {
            assert_eq!(is_trusted_peer(peer.parse().unwrap(), &trusted), want, "{peer}");
        }
        assert!(!is_trusted_peer("10.0.0.1".parse().unwrap(), &[]));
    }

    #[test]
    fn ipv6_is_grouped_by_64() {
        let a = anonymous_key("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = anonymous_key("2001:db8:1:2:bbbb::9".parse().unwrap());
        let c = anonymous_key("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            anonymous_key("::ffff:1.2.3.4".parse().unwrap()),
            anonymous_key("1.2.3.4".parse().unwrap())
        );
    }
}
