//! X-Forwarded-For as an attacker writes it: the caller found is always the
//! peer or an address from the header, and a peer outside the trusted
//! ranges is never overridden.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let trusted = broker::http::parse_trusted_proxies("10.0.0.0/8,192.0.2.10,::1").unwrap();
    let peer: IpAddr = if selector & 1 == 0 {
        "10.1.1.1".parse().unwrap()
    } else {
        "203.0.113.9".parse().unwrap()
    };
    let lines: Vec<&[u8]> = rest.split(|b| *b == b'\n').collect();
    let client = broker::http::client_address(peer, lines.iter().copied(), &trusted);
    if selector & 1 == 1 {
        assert_eq!(client, peer);
    }
    let _ = broker::http::ipv6_prefix(client);
});
