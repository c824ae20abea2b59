//! Where an operator may connect from: its trusted IP mask and its security zone, checked on
//! native sign-in and on every call made with a session.
//!
//! Security zones nest (`public` holds `vpn`, which holds `lan`); an operator tied to a zone may
//! connect from the addresses of that zone and of every zone inside it. Until an instance's
//! configuration defines its own tree, the reference tree of the vendor's default server
//! configuration applies ([`default_tree`]). An operator with no zone is not limited by zones.
//!
//! The trusted IP mask is, in the vendor's product, a list of addresses from which the operator
//! signs in *without its password*. We do not skip the password for anyone: here the mask only
//! narrows where the operator may connect from (the password is still checked), which keeps
//! what an administrator meant by listing addresses without opening a password-less door.

use std::net::IpAddr;

/// One `mask` of a subnetwork or of a trusted IP mask: `*`, an address, or a CIDR block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mask {
    Any,
    Block { net: IpAddr, prefix: u8 },
}

impl Mask {
    /// Reads one mask; `None` when it is not one.
    pub fn parse(text: &str) -> Option<Mask> {
        let text = text.trim();
        if text == "*" {
            return Some(Mask::Any);
        }
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let net = canonical(addr.trim().parse::<IpAddr>().ok()?);
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Mask::Block { net, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match *self {
            Mask::Any => true,
            Mask::Block { net, prefix } => match (net, ip) {
                (IpAddr::V4(n), IpAddr::V4(a)) => same_prefix(&n.octets(), &a.octets(), prefix),
                (IpAddr::V6(n), IpAddr::V6(a)) => same_prefix(&n.octets(), &a.octets(), prefix),
                _ => false,
            },
        }
    }
}

/// An IPv4 address carried in IPv6 (`::ffff:a.b.c.d`) is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

fn same_prefix(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let keep = 0xffu8 << (8 - rest);
    (a[full] & keep) == (b[full] & keep)
}

/// A trusted IP mask as operators carry it: masks separated by commas (or spaces).
pub fn parse_mask_list(text: &str) -> Option<Vec<Mask>> {
    let masks: Option<Vec<Mask>> = text
        .split([',', ' ', ';'])
        .filter(|m| !m.trim().is_empty())
        .map(Mask::parse)
        .collect();
    masks.filter(|m| !m.is_empty())
}

/// A security zone: its name, its subnetworks and the zones inside it.
#[derive(Debug, Clone)]
pub struct Zone {
    pub name: &'static str,
    pub label: &'static str,
    pub subnets: Vec<Mask>,
    pub inner: Vec<Zone>,
}

impl Zone {
    fn find(&self, name: &str) -> Option<&Zone> {
        if self.name == name {
            return Some(self);
        }
        self.inner.iter().find_map(|z| z.find(name))
    }

    /// Whether `ip` is one of this zone's addresses or of a zone inside it.
    fn admits(&self, ip: IpAddr) -> bool {
        self.subnets.iter().any(|m| m.contains(ip)) || self.inner.iter().any(|z| z.admits(ip))
    }

    /// Every zone name of the tree, outermost first.
    pub fn names(&self) -> Vec<&'static str> {
        let mut out = vec![self.name];
        for z in &self.inner {
            out.extend(z.names());
        }
        out
    }
}

/// The reference tree: `public` (every address) holding `vpn` (no address of its own) holding
/// `lan` (private IPv4 ranges, loopback, IPv6 unique-local and link-local addresses).
pub fn default_tree() -> Zone {
    let masks = |list: &[&str]| list.iter().filter_map(|m| Mask::parse(m)).collect();
    Zone {
        name: "public",
        label: "Public network",
        subnets: masks(&["*"]),
        inner: vec![Zone {
            name: "vpn",
            label: "Private network (VPN)",
            subnets: Vec::new(),
            inner: vec![Zone {
                name: "lan",
                label: "Private network (LAN)",
                subnets: masks(&[
                    "192.168.0.0/16",
                    "172.16.0.0/12",
                    "10.0.0.0/8",
                    "127.0.0.0/8",
                    "fc00::/7",
                    "fe80::/10",
                    "::1/128",
                ]),
                inner: Vec::new(),
            }],
        }],
    }
}

/// Why an operator may not connect from where it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The caller's address is not known (nothing to check it against).
    UnknownAddress,
    OutsideMask,
    OutsideZone(String),
    /// A mask or zone that does not read: nobody gets in until an administrator fixes it.
    Misconfigured(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::UnknownAddress => f.write_str("the caller's address is unknown"),
            Refusal::OutsideMask => f.write_str("the address is outside the operator's trusted IP mask"),
            Refusal::OutsideZone(z) => write!(f, "the address is outside the security zone {z:?}"),
            Refusal::Misconfigured(why) => f.write_str(why),
        }
    }
}

/// Whether an operator with this mask and zone may connect from `source` (an address as the
/// server saw it). Operators with neither are not limited.
pub fn check(
    tree: &Zone,
    trusted_ip_mask: Option<&str>,
    security_zone: Option<&str>,
    source: Option<&str>,
) -> Result<(), Refusal> {
    if trusted_ip_mask.is_none() && security_zone.is_none() {
        return Ok(());
    }
    let ip = source
        .and_then(|s| s.trim().parse::<IpAddr>().ok())
        .ok_or(Refusal::UnknownAddress)?;
    if let Some(mask) = trusted_ip_mask {
        let masks = parse_mask_list(mask)
            .ok_or_else(|| Refusal::Misconfigured(format!("the trusted IP mask {mask:?} does not read")))?;
        if !masks.iter().any(|m| m.contains(ip)) {
            return Err(Refusal::OutsideMask);
        }
    }
    if let Some(name) = security_zone {
        let zone = tree
            .find(name)
            .ok_or_else(|| Refusal::Misconfigured(format!("no security zone {name:?}")))?;
        if !zone.admits(ip) {
            return Err(Refusal::OutsideZone(name.to_owned()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_read_and_match() {
        let m = |t: &str| Mask::parse(t).unwrap();
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        assert!(m("10.99.0.0/16").contains(ip("10.99.200.1")));
        assert!(!m("10.99.0.0/16").contains(ip("10.98.0.1")));
        assert!(!m("10.99.0.0/16").contains(ip("127.0.0.1")));
        assert!(m("10.99.0.0/12").contains(ip("10.96.0.1")));
        assert!(m("127.0.0.1").contains(ip("::ffff:127.0.0.1")), "mapped IPv4");
        assert!(!m("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(m("*").contains(ip("2001:db8::1")));
        assert!(m("fe80::/10").contains(ip("fe80::1")));
        assert!(m("0.0.0.0/0").contains(ip("8.8.8.8")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "host.example",
            "10.0.0.0/x",
        ] {
            assert!(Mask::parse(bad).is_none(), "{bad:?}");
        }
        assert_eq!(parse_mask_list("127.0.0.1, 10.0.0.0/8").map(|l| l.len()), Some(2));
        assert!(parse_mask_list(" , ").is_none());
        assert!(parse_mask_list("10.0.0.1, nonsense").is_none());
    }

    #[test]
    fn operators_connect_only_from_their_mask_and_zone() {
        let tree = default_tree();
        assert_eq!(tree.names(), ["public", "vpn", "lan"]);
        assert_eq!(
            check(&tree, None, None, None),
            Ok(()),
            "no limit, no address needed"
        );
        let mask = Some("10.99.0.0/16");
        assert_eq!(check(&tree, mask, None, Some("10.99.1.2")), Ok(()));
        assert_eq!(
            check(&tree, mask, None, Some("127.0.0.1")),
            Err(Refusal::OutsideMask)
        );
        assert_eq!(check(&tree, mask, None, None), Err(Refusal::UnknownAddress));
        assert!(matches!(
            check(&tree, Some("junk"), None, Some("10.99.1.2")),
            Err(Refusal::Misconfigured(_))
        ));
        // lan: private addresses only; vpn and public hold lan, so they admit them too.
        assert_eq!(check(&tree, None, Some("lan"), Some("192.168.1.9")), Ok(()));
        assert_eq!(
            check(&tree, None, Some("lan"), Some("203.0.113.7")),
            Err(Refusal::OutsideZone("lan".into()))
        );
        assert_eq!(check(&tree, None, Some("vpn"), Some("127.0.0.1")), Ok(()));
        assert!(check(&tree, None, Some("vpn"), Some("203.0.113.7")).is_err());
        assert_eq!(check(&tree, None, Some("public"), Some("203.0.113.7")), Ok(()));
        assert!(matches!(
            check(&tree, None, Some("moon"), Some("127.0.0.1")),
            Err(Refusal::Misconfigured(_))
        ));
        // Both apply.
        assert!(check(&tree, Some("203.0.113.0/24"), Some("lan"), Some("203.0.113.7")).is_err());
    }
}
