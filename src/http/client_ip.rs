//! The caller's address, for per-address rate limits and session records.
//!
//! Behind `TRUSTED_PROXY_HOPS` = N proxies, each of which appends the address
//! it received the request from to `X-Forwarded-For`, the last N entries were
//! written by those proxies and everything to their left by whoever sent the
//! request. The client is therefore the N-th entry from the right: the
//! rightmost entry no trusted proxy added. The leftmost entry is the one a
//! client writes itself, so trusting it (as `TRUST_FORWARDED_FOR` did) let
//! anyone pick a fresh address for every request.
//!
//! When the chosen entry is missing (fewer entries than hops: the request
//! skipped a proxy, so none of its entries can be vouched for) or is not an
//! address, the socket peer is used: such requests share the proxy's limits
//! instead of choosing their own.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{HeaderMap, request::Parts},
};

/// The caller's IP (see the module documentation); `None` only when the
/// server knows no peer (requests built in process).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

/// How many proxies in front of Dispatch append to `X-Forwarded-For`
/// (`TRUSTED_PROXY_HOPS`); a request extension set by the router.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrustedProxyHops(pub usize);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let hops = parts
            .extensions
            .get::<TrustedProxyHops>()
            .copied()
            .unwrap_or_default();
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(Self(client_address(peer, &parts.headers, hops.0)))
    }
}

/// The client's address given the socket `peer`, the request's headers and
/// the number of trusted proxy hops.
pub fn client_address(peer: Option<IpAddr>, headers: &HeaderMap, hops: usize) -> Option<IpAddr> {
    if hops == 0 {
        return peer;
    }
    forwarded_entry(headers, hops)
        .and_then(parse_entry)
        .or(peer)
}

/// The `hops`-th `X-Forwarded-For` entry from the right, over every header
/// line in order (a proxy may add a line rather than extend the last one).
fn forwarded_entry(headers: &HeaderMap, hops: usize) -> Option<&str> {
    let mut entries: Vec<&str> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        // A line that is not text cannot be located reliably among the
        // others: give up on the header rather than miscount.
        let text = value.to_str().ok()?;
        entries.extend(text.split(',').map(str::trim));
    }
    entries
        .len()
        .checked_sub(hops)
        .and_then(|index| entries.get(index).copied())
}

/// An address as proxies write it: `203.0.113.7`, `2001:db8::1`, or with a
/// port (`203.0.113.7:4711`, `[2001:db8::1]:4711`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    const PEER: &str = "10.0.0.9";

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append("x-forwarded-for", HeaderValue::from_str(line).unwrap());
        }
        headers
    }

    fn resolve(lines: &[&str], hops: usize) -> String {
        client_address(Some(PEER.parse().unwrap()), &headers(lines), hops)
            .unwrap()
            .to_string()
    }

    #[test]
    fn with_no_trusted_hop_the_socket_peer_is_the_client_whatever_the_header_says() {
        assert_eq!(resolve(&["203.0.113.7"], 0), PEER);
        assert_eq!(resolve(&[], 0), PEER);
    }

    #[test]
    fn with_one_hop_the_rightmost_entry_is_the_client() {
        assert_eq!(resolve(&["203.0.113.7"], 1), "203.0.113.7");
        assert_eq!(resolve(&["198.51.100.1, 203.0.113.7"], 1), "203.0.113.7");
    }

    #[test]
    fn with_two_hops_the_second_entry_from_the_right_is_the_client() {
        assert_eq!(resolve(&["203.0.113.7, 10.1.1.1"], 2), "203.0.113.7");
        assert_eq!(
            resolve(&["192.0.2.1, 203.0.113.7, 10.1.1.1"], 2),
            "203.0.113.7"
        );
    }

    #[test]
    fn a_forged_leftmost_entry_is_never_the_client() {
        // The client sent `X-Forwarded-For: 192.0.2.66`; the proxy appended
        // the address it saw.
        assert_eq!(resolve(&["192.0.2.66, 203.0.113.7"], 1), "203.0.113.7");
        // Many forged entries do not shift the answer either.
        assert_eq!(
            resolve(&["192.0.2.1, 192.0.2.2, 192.0.2.3, 203.0.113.7"], 1),
            "203.0.113.7"
        );
    }

    #[test]
    fn entries_on_several_header_lines_count_in_order() {
        assert_eq!(resolve(&["192.0.2.66", "203.0.113.7"], 1), "203.0.113.7");
        assert_eq!(
            resolve(&["192.0.2.66, 203.0.113.7", "10.1.1.1"], 2),
            "203.0.113.7"
        );
    }

    #[test]
    fn too_few_entries_fall_back_to_the_socket_peer() {
        assert_eq!(resolve(&[], 1), PEER);
        assert_eq!(resolve(&["203.0.113.7"], 2), PEER);
    }

    #[test]
    fn a_garbage_entry_falls_back_to_the_socket_peer() {
        assert_eq!(resolve(&["not-an-address"], 1), PEER);
        assert_eq!(resolve(&["203.0.113.7, unknown"], 1), PEER);
        assert_eq!(resolve(&[""], 1), PEER);
        // Garbage left of the client's entry is the client's own and ignored.
        assert_eq!(resolve(&["<script>, 203.0.113.7"], 1), "203.0.113.7");
    }

    #[test]
    fn entries_with_ports_and_ipv6_are_understood() {
        assert_eq!(resolve(&["203.0.113.7:4711"], 1), "203.0.113.7");
        assert_eq!(resolve(&["2001:db8::1"], 1), "2001:db8::1");
        assert_eq!(resolve(&["[2001:db8::1]:4711"], 1), "2001:db8::1");
    }

    #[test]
    fn a_header_line_that_is_not_text_falls_back_to_the_socket_peer() {
        let mut map = headers(&["203.0.113.7"]);
        map.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff203.0.113.8").unwrap(),
        );
        assert_eq!(
            client_address(Some(PEER.parse().unwrap()), &map, 1)
                .unwrap()
                .to_string(),
            PEER
        );
    }
}
