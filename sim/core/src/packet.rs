//! Zero-copy reads of the fields forwarding decisions need, straight from frame bytes.
//!
//! Every function takes untrusted bytes and returns `None` (or an error) rather than panicking;
//! offsets are checked once, then read. The layouts are the standard ones: Ethernet II without
//! VLAN tags, IPv4 with options allowed, UDP or TCP.

use std::fmt;
use std::net::Ipv4Addr;

/// Length of an Ethernet II header without VLAN tags.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// IP protocol number of UDP.
pub const IP_PROTO_UDP: u8 = 17;
/// IP protocol number of TCP.
pub const IP_PROTO_TCP: u8 = 6;

/// The 5-tuple that identifies a flow: what ECMP hashes and flow tables key on.
///
/// For protocols without ports both ports are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FiveTuple {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// IP protocol number.
    pub protocol: u8,
    /// Source port (UDP, TCP), else zero.
    pub src_port: u16,
    /// Destination port (UDP, TCP), else zero.
    pub dst_port: u16,
}

impl FiveTuple {
    /// Reads the tuple of an IPv4 packet (starting at its IP header).
    ///
    /// `None` when the bytes are not a well-formed enough IPv4 header to read it. Fragments
    /// after the first carry no ports; they get zero ports, as routers hash them.
    pub fn from_ipv4(packet: &[u8]) -> Option<FiveTuple> {
        let first = *packet.first()?;
        if first >> 4 != 4 {
            return None;
        }
        let header_len = usize::from(first & 0x0f) * 4;
        if header_len < 20 || packet.len() < header_len {
            return None;
        }
        Some(FiveTuple::from_checked_ipv4(packet, header_len))
    }

    /// Reads the tuple of an IPv4 packet whose header (`header_len` bytes, at least 20) the
    /// caller has checked: what [`FiveTuple::from_ipv4`] reads, without checking again.
    ///
    /// # Panics
    ///
    /// If `packet` is shorter than `header_len` or 20 bytes.
    pub fn from_checked_ipv4(packet: &[u8], header_len: usize) -> FiveTuple {
        let protocol = packet[9];
        let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
        let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
        let fragment_offset = u16::from_be_bytes([packet[6], packet[7]]) & 0x1fff;
        let has_ports = matches!(protocol, IP_PROTO_UDP | IP_PROTO_TCP) && fragment_offset == 0;
        let (src_port, dst_port) = match packet.get(header_len..header_len + 4) {
            Some(ports) if has_ports => {
                (u16::from_be_bytes([ports[0], ports[1]]), u16::from_be_bytes([ports[2], ports[3]]))
            }
            _ => (0, 0),
        };
        FiveTuple { src, dst, protocol, src_port, dst_port }
    }

    /// Reads the tuple of the IPv4 packet inside an Ethernet II frame.
    pub fn from_ethernet(frame: &[u8]) -> Option<FiveTuple> {
        if ethertype(frame)? != ETHERTYPE_IPV4 {
            return None;
        }
        FiveTuple::from_ipv4(&frame[ETHERNET_HEADER_LEN..])
    }

    /// A seeded hash of the tuple, with a fixed definition: the ECMP selector.
    ///
    /// Different seeds give independent choices, which is how switches avoid hash polarization.
    pub fn hash(&self, seed: u64) -> u64 {
        let addresses = (u64::from(u32::from(self.src)) << 32) | u64::from(u32::from(self.dst));
        let rest =
            (u64::from(self.protocol) << 32) | (u64::from(self.src_port) << 16) | u64::from(self.dst_port);
        crate::mix64(crate::mix64(addresses ^ seed) ^ rest)
    }
}

impl fmt::Display for FiveTuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let protocol = match self.protocol {
            IP_PROTO_UDP => "udp".to_string(),
            IP_PROTO_TCP => "tcp".to_string(),
            other => format!("proto-{other}"),
        };
        write!(f, "{}:{} > {}:{} {protocol}", self.src, self.src_port, self.dst, self.dst_port)
    }
}

/// The EtherType of an Ethernet II frame, or `None` if the frame is shorter than its header.
pub fn ethertype(frame: &[u8]) -> Option<u16> {
    let bytes = frame.get(12..14)?;
    Some(u16::from_be_bytes([bytes[0], bytes[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;
    use proptest::prelude::*;

    fn udp_frame(src_port: u16, dst_port: u16) -> Vec<u8> {
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 1, 0, 7], [10, 1, 0, 9], 64)
            .udp(src_port, dst_port);
        let payload = [0u8; 10];
        let mut frame = Vec::with_capacity(builder.size(payload.len()));
        builder.write(&mut frame, &payload).expect("writing to a Vec cannot fail");
        frame
    }

    #[test]
    fn reads_the_tuple_of_a_udp_frame() {
        let tuple = FiveTuple::from_ethernet(&udp_frame(40000, 6635)).expect("well-formed frame");
        assert_eq!(tuple.to_string(), "10.1.0.7:40000 > 10.1.0.9:6635 udp");
    }

    #[test]
    fn seeds_change_the_hash() {
        let tuple = FiveTuple::from_ethernet(&udp_frame(1, 2)).expect("well-formed frame");
        assert_ne!(tuple.hash(1), tuple.hash(2));
    }

    proptest! {
        /// No bytes make the reader panic; truncating a frame never yields a different tuple
        /// with ports.
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = FiveTuple::from_ethernet(&bytes);
            let _ = FiveTuple::from_ipv4(&bytes);
        }

        #[test]
        fn truncations_never_panic(cut in 0usize..52) {
            let frame = udp_frame(1234, 80);
            let _ = FiveTuple::from_ethernet(&frame[..cut.min(frame.len())]);
        }
    }
}
