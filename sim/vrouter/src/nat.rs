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
    // Both checksums are updated once for all changed words (RFC 1624 eqn. 3).
    let [o0, o1, o2, o3] = old_address;
    let [n0, n1, n2, n3] = new_address;
    let address_delta = word_delta([o0, o1], [n0, n1]) + word_delta([o2, o3], [n2, n3]);
    let ip_checksum = checksum::update_by(u16::from_be_bytes([packet[10], packet[11]]), address_delta);
    packet[10..12].copy_from_slice(&ip_checksum.to_be_bytes());
    packet[address_at..address_at + 4].copy_from_slice(&new_address);

    let checksum_at = match protocol {
        IP_PROTO_TCP => header_len + 16,
        IP_PROTO_UDP => header_len + 6,
        _ => return,
    };
    let port_at = header_len + if end == End::Source { 0 } else { 2 };
    let old_port = [packet[port_at], packet[port_at + 1]];
    packet[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
    let Some(field) = packet.get(checksum_at..checksum_at + 2) else { return };
    let l4 = u16::from_be_bytes([field[0], field[1]]);
    if protocol == IP_PROTO_UDP && l4 == 0 {
        return;
    }
    let delta = address_delta + word_delta(old_port, port.to_be_bytes());
    let mut l4 = checksum::update_by(l4, delta);
    if protocol == IP_PROTO_UDP && l4 == 0 {
        l4 = 0xffff;
    }
    packet[checksum_at..checksum_at + 2].copy_from_slice(&l4.to_be_bytes());
}

/// [`checksum::delta`] of a word given as its two bytes.
fn word_delta(old: [u8; 2], new: [u8; 2]) -> u64 {
    checksum::delta(u16::from_be_bytes(old), u16::from_be_bytes(new))
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

    /// The rewrite as RFC 1624 applies it: one checksum update per changed word, in turn.
    fn rewrite_word_by_word(packet: &mut [u8], end: End, address: Ipv4Addr, port: u16) {
        let header_len = usize::from(packet[0] & 0x0f) * 4;
        let (address_at, port_at) = if end == End::Source { (12, header_len) } else { (16, header_len + 2) };
        let checksum_at = header_len + if packet[9] == IP_PROTO_TCP { 16 } else { 6 };
        let mut changes = Vec::new();
        for (at, new) in
            [(address_at, address.octets()[..2].to_vec()), (address_at + 2, address.octets()[2..].to_vec())]
        {
            changes.push((
                at,
                u16::from_be_bytes([packet[at], packet[at + 1]]),
                u16::from_be_bytes([new[0], new[1]]),
            ));
        }
        changes.push((port_at, u16::from_be_bytes([packet[port_at], packet[port_at + 1]]), port));
        let field = |packet: &[u8], at: usize| u16::from_be_bytes([packet[at], packet[at + 1]]);
        let (mut ip, mut l4) = (field(packet, 10), field(packet, checksum_at));
        let udp_without_checksum = packet[9] == IP_PROTO_UDP && l4 == 0;
        for (index, &(at, old, new)) in changes.iter().enumerate() {
            if index < 2 {
                ip = checksum::update(ip, old, new);
            }
            l4 = checksum::update(l4, old, new);
            packet[at..at + 2].copy_from_slice(&new.to_be_bytes());
        }
        if udp_without_checksum {
            l4 = 0;
        } else if packet[9] == IP_PROTO_UDP && l4 == 0 {
            l4 = 0xffff;
        }
        packet[10..12].copy_from_slice(&ip.to_be_bytes());
        packet[checksum_at..checksum_at + 2].copy_from_slice(&l4.to_be_bytes());
    }

    proptest! {
        /// Updating the checksums once for all changed words writes the very bytes that
        /// updating them word by word writes, zero's encodings included.
        #[test]
        fn one_update_for_all_words_is_word_by_word(tcp: bool, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16,
                                                    to: [u8; 4], port: u16, source: bool, no_udp_checksum: bool,
                                                    payload in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut original = packet(tcp, src, dst, sport, dport, &payload);
            if !tcp && no_udp_checksum {
                original[26..28].fill(0);
            }
            let end = if source { End::Source } else { End::Destination };
            let (mut once, mut word_by_word) = (original.clone(), original);
            rewrite(&mut once, end, Ipv4Addr::from(to), port);
            rewrite_word_by_word(&mut word_by_word, end, Ipv4Addr::from(to), port);
            prop_assert_eq!(once, word_by_word);
        }

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
