//! What counts as one peer, for the connection cap's per-peer share and the bcrypt queue.

use std::net::IpAddr;

/// A peer: an IPv4 address, or an IPv6 /64 (one host's usual allocation, so that a host cannot
/// pass for many by changing its interface identifier). IPv4-mapped IPv6 addresses (how a
/// dual-stack listener sees IPv4 clients) are their IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum PeerKey {
    /// An IPv4 address.
    V4(u32),
    /// The upper 64 bits of an IPv6 address.
    V6(u64),
}

impl PeerKey {
    /// The peer `ip` belongs to.
    pub(super) fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => PeerKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => PeerKey::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_is_counted_by_its_64_bit_prefix_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(PeerKey::of(a), PeerKey::of(b));
        assert_ne!(PeerKey::of(a), PeerKey::of(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            PeerKey::of(mapped),
            PeerKey::of("10.0.0.1".parse().unwrap())
        );
        assert_ne!(
            PeerKey::of("10.0.0.1".parse().unwrap()),
            PeerKey::of("10.0.0.2".parse().unwrap())
        );
    }
}
