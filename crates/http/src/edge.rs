//! The edge of a listener: which peers may connect at all, and whose word on the client's address
//! is taken. Behind a load balancer the connection comes from the balancer; the client's address
//! then travels in a PROXY protocol header at the start of the connection or in `Forwarded` /
//! `X-Forwarded-For` headers, and either is believed only from a proxy named as trusted. Anyone
//! else could write them, and the address is what lock-out counters and audit lines go by.

use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr as _;
use std::time::Duration;
use tokio::net::TcpStream;

/// A v2 header is 16 fixed bytes and the addresses and extensions its length announces; longer
/// than this is not one we accept (the addresses take at most 216 bytes, the rest is extensions
/// we do not read).
const MAX_PROXY_HEADER: usize = 536;

#[derive(Clone, Debug, Default)]
pub struct Edge {
    /// Only peers in these networks may connect (loopback always may); empty: anyone.
    pub allow: Vec<IpNet>,
    /// Proxies whose word on the client's address is taken.
    pub trusted: Vec<IpNet>,
    /// Connections from trusted proxies begin with a PROXY protocol header (v1 or v2).
    pub proxy_protocol: bool,
}

/// Parses a list of networks (`10.0.0.0/8`, `192.0.2.7`, `::1`), separated by commas or spaces;
/// a bare address is a network of one.
pub fn parse_networks(s: &str) -> Result<Vec<IpNet>, String> {
    s.split([',', ' ', '\t', '\n'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            IpNet::from_str(p)
                .or_else(|_| IpAddr::from_str(p).map(IpNet::from))
                .map_err(|_| format!("{p:?} is not an address or a network (such as 10.0.0.0/8)"))
        })
        .collect()
}

fn within(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    nets.iter().any(|n| n.contains(&ip))
}

/// An IPv4 address seen through an IPv6 socket (`::ffff:10.0.0.1`) is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

impl Edge {
    /// Whether a peer may connect.
    pub fn admits(&self, peer: IpAddr) -> bool {
        self.allow.is_empty() || canonical(peer).is_loopback() || within(&self.allow, peer)
    }

    /// Whether a peer's word on the client is taken.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        within(&self.trusted, peer)
    }

    /// Reads the PROXY protocol header a trusted proxy starts its connections with, and answers
    /// the client's address it names (the peer itself for a proxy's own health check, `LOCAL`).
    /// Only the header's bytes are consumed; what follows is the client's. The peer itself when
    /// it sends none (it is not a trusted proxy, or the protocol is off).
    pub async fn proxy_header(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
    ) -> std::io::Result<SocketAddr> {
        if !self.proxy_protocol || !self.trusts(peer.ip()) {
            return Ok(peer);
        }
        match tokio::time::timeout(Duration::from_secs(10), read_proxy_header(stream, peer)).await {
            Ok(r) => r,
            Err(_) => Err(invalid("no PROXY protocol header within 10 s")),
        }
    }

    /// The client of a request that came over a connection from `peer`: the peer itself, unless
    /// it is a trusted proxy that forwarded the request. Then the forwarding headers are read
    /// from the right (the hop nearest to us) and the first address that is not a trusted proxy
    /// is the client; an entry that cannot be read stops the walk at the hop that wrote it.
    pub fn client(&self, peer: SocketAddr, headers: &http::HeaderMap) -> SocketAddr {
        if !self.trusts(peer.ip()) {
            return peer;
        }
        let hops = forwarded_for(headers);
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = hop else {
                break;
            };
            client = SocketAddr::new(*ip, 0);
            if !self.trusts(*ip) {
                break;
            }
        }
        client
    }
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

/// Reads exactly the header, never a byte of what follows (the request, or a TLS handshake):
/// five bytes tell the version; a v1 header then ends at its CRLF, a v2 header says its length
/// in its sixteen fixed bytes.
async fn read_proxy_header(stream: &mut TcpStream, peer: SocketAddr) -> std::io::Result<SocketAddr> {
    use tokio::io::AsyncReadExt as _;
    let mut header = vec![0u8; 5];
    stream.read_exact(&mut header).await?;
    if header == b"PROXY" {
        while !header.ends_with(b"\r\n") {
            if header.len() >= V1_MAX {
                return Err(invalid("PROXY protocol v1 header longer than 107 bytes"));
            }
            header.push(stream.read_u8().await?);
        }
    } else if header == V2_SIGNATURE[..5] {
        header.resize(16, 0);
        stream.read_exact(&mut header[5..]).await?;
        let len = usize::from(u16::from_be_bytes([header[14], header[15]]));
        if 16 + len > MAX_PROXY_HEADER {
            return Err(invalid("PROXY protocol v2 header too long"));
        }
        header.resize(16 + len, 0);
        stream.read_exact(&mut header[16..]).await?;
    } else {
        return Err(invalid("not a PROXY protocol header"));
    }
    match parse_proxy(&header) {
        Parsed::Header { len, source } if len == header.len() => Ok(source.unwrap_or(peer)),
        _ => Err(invalid("not a valid PROXY protocol header")),
    }
}

/// The longest v1 header the protocol allows, CRLF included.
const V1_MAX: usize = 107;

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

enum Parsed {
    Incomplete,
    Invalid,
    /// The header's length and the client it names (none for `LOCAL` or an unknown family).
    Header {
        len: usize,
        source: Option<SocketAddr>,
    },
}

fn parse_proxy(bytes: &[u8]) -> Parsed {
    use ppp::{HeaderResult, PartialResult as _};
    match HeaderResult::parse(bytes) {
        HeaderResult::V1(Ok(h)) => {
            let source = match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
                ppp::v1::Addresses::Tcp6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
                ppp::v1::Addresses::Unknown => None,
            };
            Parsed::Header {
                len: h.header.len(),
                source,
            }
        }
        HeaderResult::V2(Ok(h)) => {
            let source = match (h.command, h.addresses) {
                (ppp::v2::Command::Local, _) => None,
                (_, ppp::v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::new(a.source_address.into(), a.source_port))
                }
                (_, ppp::v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::new(a.source_address.into(), a.source_port))
                }
                _ => None,
            };
            Parsed::Header { len: h.len(), source }
        }
        r if r.is_incomplete() => Parsed::Incomplete,
        _ => Parsed::Invalid,
    }
}

/// The `for` addresses of `Forwarded` (RFC 7239), else of `X-Forwarded-For`, in the order the
/// hops added them; `None` for an entry that is not an address (`unknown`, an obfuscated name).
fn forwarded_for(headers: &http::HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<&str> = headers
        .get_all(http::header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .filter_map(|element| {
                // Elements without a `for` pair say nothing about the client.
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| node_address(v.trim()))
                })
            })
            .collect();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("unknown").split(','))
        .map(|a| node_address(a.trim()))
        .collect()
}

/// A node as the forwarding headers write it: `192.0.2.1`, `"192.0.2.1:80"`, `"[2001:db8::1]"`,
/// `"[2001:db8::1]:443"`.
fn node_address(v: &str) -> Option<IpAddr> {
    let v = v.trim_matches('"');
    if let Ok(ip) = IpAddr::from_str(v) {
        return Some(canonical(ip));
    }
    if let Ok(sock) = SocketAddr::from_str(v) {
        return Some(canonical(sock.ip()));
    }
    let inner = v.strip_prefix('[')?.split(']').next()?;
    IpAddr::from_str(inner).ok().map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(trusted: &str) -> Edge {
        Edge {
            trusted: parse_networks(trusted).unwrap(),
            ..Edge::default()
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_headers_count_only_from_a_trusted_proxy() {
        let e = edge("10.0.0.0/8");
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        let direct: SocketAddr = "198.51.100.4:5000".parse().unwrap();
        assert_eq!(
            e.client(direct, &h),
            direct,
            "an untrusted peer's header is ignored"
        );
        let proxied: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        assert_eq!(e.client(proxied, &h).ip(), ip("203.0.113.9"));
        assert_eq!(e.client(proxied, &http::HeaderMap::new()), proxied);
    }

    #[test]
    fn the_client_is_the_nearest_address_no_trusted_proxy_holds() {
        let e = edge("10.0.0.0/8, 192.168.0.1");
        let peer: SocketAddr = "10.0.0.2:1".parse().unwrap();
        // A client that writes its own header cannot pick its address: the hops we trust
        // appended theirs after it.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9, 192.168.0.1")]);
        assert_eq!(e.client(peer, &h).ip(), ip("203.0.113.9"));
        // Several header lines are one list.
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(e.client(peer, &h).ip(), ip("203.0.113.7"));
        // Every hop trusted: the farthest one.
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 10.0.0.5")]);
        assert_eq!(e.client(peer, &h).ip(), ip("10.9.9.9"));
        // An entry that is no address ends the walk at the hop that wrote it.
        let h = headers(&[("x-forwarded-for", "203.0.113.1, garbage, 10.0.0.5")]);
        assert_eq!(e.client(peer, &h).ip(), ip("10.0.0.5"));
    }

    #[test]
    fn forwarded_is_read_before_x_forwarded_for() {
        let e = edge("10.0.0.0/8");
        let peer: SocketAddr = "10.0.0.2:1".parse().unwrap();
        let h = headers(&[
            (
                "forwarded",
                r#"for="[2001:db8::7]:4711";proto=https, for=10.0.0.9;by=10.0.0.2"#,
            ),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        assert_eq!(e.client(peer, &h).ip(), ip("2001:db8::7"));
        let h = headers(&[("forwarded", "for=unknown, for=10.0.0.9")]);
        assert_eq!(e.client(peer, &h).ip(), ip("10.0.0.9"));
        let h = headers(&[("forwarded", "proto=https;for=198.51.100.17")]);
        assert_eq!(e.client(peer, &h).ip(), ip("198.51.100.17"));
    }

    #[test]
    fn mapped_addresses_are_their_ipv4_selves() {
        let e = Edge {
            allow: parse_networks("10.0.0.0/8").unwrap(),
            trusted: parse_networks("10.0.0.0/8").unwrap(),
            proxy_protocol: false,
        };
        assert!(e.trusts(ip("::ffff:10.1.1.1")));
        assert!(e.admits(ip("::ffff:10.1.1.1")));
        assert!(e.admits(ip("127.0.0.1")) && e.admits(ip("::1")));
        assert!(!e.admits(ip("192.0.2.1")));
        assert!(Edge::default().admits(ip("192.0.2.1")));
    }

    #[test]
    fn networks_parse_or_say_what_is_wrong() {
        assert_eq!(parse_networks("10.0.0.0/8 ::1,192.0.2.7").unwrap().len(), 3);
        assert!(parse_networks("").unwrap().is_empty());
        let err = parse_networks("10.0.0.0/33").unwrap_err();
        assert!(err.contains("10.0.0.0/33"), "{err}");
        assert!(parse_networks("example.com").is_err());
    }

    #[test]
    fn proxy_headers_of_both_versions_are_read_to_their_end() {
        let v1 = b"PROXY TCP4 203.0.113.9 10.0.0.1 51000 443\r\nGET / HTTP/1.1\r\n";
        match parse_proxy(v1) {
            Parsed::Header { len, source } => {
                assert_eq!(&v1[len..], b"GET / HTTP/1.1\r\n");
                assert_eq!(source, Some("203.0.113.9:51000".parse().unwrap()));
            }
            _ => panic!("v1 header not read"),
        }
        assert!(matches!(
            parse_proxy(b"PROXY TCP4 203.0.113.9 10.0"),
            Parsed::Incomplete
        ));
        assert!(matches!(parse_proxy(b"GET / HTTP/1.1\r\n\r\n"), Parsed::Invalid));
        let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        v2.extend([
            0x21, 0x11, 0, 12, 198, 51, 100, 4, 10, 0, 0, 1, 0x1f, 0x90, 0x01, 0xbb,
        ]);
        v2.extend(b"rest");
        match parse_proxy(&v2) {
            Parsed::Header { len, source } => {
                assert_eq!(&v2[len..], b"rest");
                assert_eq!(source, Some("198.51.100.4:8080".parse().unwrap()));
            }
            _ => panic!("v2 header not read"),
        }
        // LOCAL: the proxy speaking for itself (its health checks).
        let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        local.extend([0x20, 0x00, 0, 0]);
        assert!(matches!(
            parse_proxy(&local),
            Parsed::Header {
                len: 16,
                source: None
            }
        ));
    }
}
