//! IPv4 helpers the data planes share: header checks, TTL, Ethernet framing, outer headers.

use netsim_core::FiveTuple;
use netsim_core::checksum;
use netsim_core::packet::{ETHERNET_HEADER_LEN, ETHERTYPE_IPV4, IP_PROTO_TCP, IP_PROTO_UDP, ethertype};

use crate::DropReason;

/// Where the inner IP packet sits in a frame, once checked.
pub(crate) struct Inner {
    /// Offset of the IP header.
    pub(crate) at: usize,
    pub(crate) tuple: FiveTuple,
}

/// The tuple of the other direction.
pub(crate) fn reversed(tuple: &FiveTuple) -> FiveTuple {
    FiveTuple {
        src: tuple.dst,
        dst: tuple.src,
        protocol: tuple.protocol,
        src_port: tuple.dst_port,
        dst_port: tuple.src_port,
    }
}

/// Checks an IPv4 header at `at`: version, length, total length within the frame, checksum.
/// Returns the header length.
pub(crate) fn check_ip_header(frame: &[u8], at: usize) -> Result<usize, DropReason> {
    let ip = frame.get(at..).ok_or(DropReason::Malformed)?;
    let first = *ip.first().ok_or(DropReason::Malformed)?;
    let header_len = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || header_len < 20 || ip.len() < header_len {
        return Err(DropReason::Malformed);
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if total < header_len || total > ip.len() {
        return Err(DropReason::Malformed);
    }
    let sum = match ip.first_chunk::<20>() {
        Some(header) if header_len == 20 => checksum::header_sum(header),
        _ => checksum::ones_complement_sum(&ip[..header_len]),
    };
    if sum != 0xffff {
        return Err(DropReason::BadChecksum);
    }
    Ok(header_len)
}

/// Checks the inner IPv4 packet at `at` and reads its 5-tuple; TCP and UDP need their ports.
pub(crate) fn check_ipv4(frame: &[u8], at: usize) -> Result<Inner, DropReason> {
    if at == ETHERNET_HEADER_LEN && ethertype(frame) != Some(ETHERTYPE_IPV4) {
        return Err(DropReason::Malformed);
    }
    let header_len = check_ip_header(frame, at)?;
    // The header is whole and its total length within the frame: read the tuple in place.
    let ip = &frame[at..];
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let fragment_offset = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
    if matches!(ip[9], IP_PROTO_TCP | IP_PROTO_UDP) && fragment_offset == 0 && total < header_len + 4 {
        return Err(DropReason::Malformed);
    }
    let tuple = FiveTuple::from_checked_ipv4(&ip[..total], header_len);
    Ok(Inner { at, tuple })
}

/// Decrements the TTL of the IPv4 packet at the start of `packet`; `false` if exhausted.
pub(crate) fn decrement_ttl(packet: &mut [u8]) -> bool {
    let ttl = packet[8];
    if ttl <= 1 {
        return false;
    }
    let old = u16::from_be_bytes([ttl, packet[9]]);
    let new = u16::from_be_bytes([ttl - 1, packet[9]]);
    let sum = checksum::update(u16::from_be_bytes([packet[10], packet[11]]), old, new);
    packet[8] = ttl - 1;
    packet[10..12].copy_from_slice(&sum.to_be_bytes());
    true
}

/// Writes the Ethernet header in front of the IP packet at `at` (which is 14).
pub(crate) fn set_ethernet(frame: &mut [u8], at: usize, destination: [u8; 6], source: [u8; 6]) {
    debug_assert_eq!(at, ETHERNET_HEADER_LEN);
    frame[0..6].copy_from_slice(&destination);
    frame[6..12].copy_from_slice(&source);
    frame[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
}

/// A 20-byte outer IPv4 header (don't fragment, TTL 64) with its checksum: the tunnel header
/// of every encapsulation.
pub(crate) fn outer_header(
    source: std::net::Ipv4Addr,
    destination: std::net::Ipv4Addr,
    protocol: u8,
    ident: u16,
    total_len: usize,
) -> [u8; 20] {
    let mut header = [0u8; 20];
    header[0] = 0x45;
    header[2..4].copy_from_slice(&(total_len as u16).to_be_bytes());
    header[4..6].copy_from_slice(&ident.to_be_bytes());
    header[6] = 0x40; // don't fragment
    header[8] = 64;
    header[9] = protocol;
    header[12..16].copy_from_slice(&source.octets());
    header[16..20].copy_from_slice(&destination.octets());
    let sum = checksum::finish(checksum::header_sum(&header));
    header[10..12].copy_from_slice(&sum.to_be_bytes());
    header
}
