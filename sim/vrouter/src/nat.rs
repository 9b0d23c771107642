//! Address and port rewriting on real bytes, with incremental checksum updates (RFC 1624) of
//! the IPv4 header and the TCP or UDP checksum (whose pseudo-header covers the addresses).
//! A UDP checksum of zero means "none" (IPv4) and stays zero.

use std::net::Ipv4Addr;

use netsim_core::checksum;
use netsim_core::packet::{IP_PROTO_TCP, IP_PROTO_UDP};

/// Which end of the packet to rewrite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Source address and port.
    Source,
    /// Destination address and port.
    Destination,
}

/// Rewrites one end of the IPv4 packet at `packet` (its IP header first) to `address:port`.
/// The caller has checked the header and, for TCP and UDP, that the ports are present.
pub fn rewrite(packet: &mut [u8], end: End, address: Ipv4Addr, port: u16) {
    let header_len = usize::from(packet[0] & 0x0f) * 4;
    let protocol = packet[9];
    let address_at = if end == End::Source { 12 } else { 16 };
    let old_address =
        [packet[address_at], packet[address_at + 1], packet[address_at + 2], packet[address_at + 3]];
    let new_address = address.octets();
    let mut ip_checksum = u16::from_be_bytes([packet[10], packet[11]]);
    for word in 0..2 {
        let old = u16::from_be_bytes([old_address[2 * word], old_address[2 * word + 1]]);
        let new = u16::from_be_bytes([new_address[2 * word], new_address[2 * word + 1]]);
        ip_checksum = checksum::update(ip_checksum, old, new);
    }
    packet[10..12].copy_from_slice(&ip_checksum.to_be_bytes());
    packet[address_at..address_at + 4].copy_from_slice(&new_address);

    let checksum_at = match protocol {
        IP_PROTO_TCP => header_len + 16,
        IP_PROTO_UDP => header_len + 6,
        _ => return,
    };
    let port_at = header_len + if end == End::Source { 0 } else { 2 };
    let old_port = u16::from_be_bytes([packet[port_at], packet[port_at + 1]]);
    packet[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
    let Some(field) = packet.get(checksum_at..checksum_at + 2) else { return };
    let mut l4 = u16::from_be_bytes([field[0], field[1]]);
    if protocol == IP_PROTO_UDP && l4 == 0 {
        return;
    }
    for word in 0..2 {
        let old = u16::from_be_bytes([old_address[2 * word], old_address[2 * word + 1]]);
        let new = u16::from_be_bytes([new_address[2 * word], new_address[2 * word + 1]]);
        l4 = checksum::update(l4, old, new);
    }
    l4 = checksum::update(l4, old_port, port);
    if protocol == IP_PROTO_UDP && l4 == 0 {
        l4 = 0xffff;
    }
    packet[checksum_at..checksum_at + 2].copy_from_slice(&l4.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
    use proptest::prelude::*;

    fn packet(tcp: bool, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let ip = PacketBuilder::ipv4(src, dst, 64);
        let mut bytes = Vec::new();
        if tcp {
            let builder = ip.tcp(sport, dport, 1, 1000).syn();
            builder.write(&mut bytes, payload).unwrap();
        } else {
            let builder = ip.udp(sport, dport);
            builder.write(&mut bytes, payload).unwrap();
        }
        bytes
    }

    /// Checks every checksum of `bytes` by recomputing it with etherparse.
    fn checksums_valid(bytes: &[u8]) -> bool {
        let parsed = SlicedPacket::from_ip(bytes).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &parsed.net else { return false };
        let header = ip.header().to_header();
        let ip_ok = header.header_checksum == header.calc_header_checksum();
        let l4_ok = match &parsed.transport {
            Some(TransportSlice::Tcp(tcp)) => {
                tcp.checksum() == tcp.to_header().calc_checksum_ipv4(&header, tcp.payload()).unwrap()
            }
            Some(TransportSlice::Udp(udp)) => {
                udp.checksum() == udp.to_header().calc_checksum_ipv4(&header, udp.payload()).unwrap()
            }
            _ => false,
        };
        ip_ok && l4_ok
    }

    proptest! {
        /// Forward then reverse translation restores the packet exactly, and every checksum is
        /// valid at each step.
        #[test]
        fn forward_then_reverse_is_the_identity(tcp: bool, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16,
                                                vip: [u8; 4], vport: u16, payload in prop::collection::vec(any::<u8>(), 0..64)) {
            // The client sends to the VIP; the destination vrouter translates to the pod.
            let original = packet(tcp, src, vip, sport, vport, &payload);
            let mut translated = original.clone();
            rewrite(&mut translated, End::Destination, Ipv4Addr::from(dst), dport);
            prop_assert!(checksums_valid(&translated));
            let mut restored = translated.clone();
            rewrite(&mut restored, End::Destination, Ipv4Addr::from(vip), vport);
            prop_assert!(checksums_valid(&restored));
            // Checksum fields may hold either encoding of zero; compare the data around them.
            prop_assert_eq!(&restored[12..], &original[12..]);
            // The reply from the pod, reverse-translated, comes from the VIP.
            let mut reply = packet(tcp, dst, src, dport, sport, &payload);
            rewrite(&mut reply, End::Source, Ipv4Addr::from(vip), vport);
            prop_assert!(checksums_valid(&reply));
            prop_assert_eq!(&reply[12..16], &vip[..]);
        }
    }
}
