//! Traffic: flows of real UDP packets between hosts, and the probe payload that identifies them.
//!
//! Every packet netsim originates carries a 24-byte probe payload right after its UDP header:
//! the magic `NSIM`, the flow id, the packet's sequence number within the flow, and its send
//! time. The receiving end reads it back to attribute deliveries and drops to flows and to
//! measure one-way latency — from the bytes, as a real receiver would.

use std::net::Ipv4Addr;

use netsim_core::checksum;
use netsim_core::packet::{ETHERNET_HEADER_LEN, ETHERTYPE_IPV4, IP_PROTO_TCP, IP_PROTO_UDP};
use netsim_core::{SimDuration, SimTime};
use netsim_fabric::NodeId;
use netsim_vrouter::InterfaceId;
use netsim_vrouter::wire::{GRE_LEN, IP_PROTO_GRE, MPLS_LEN, MPLS_UDP_PORT, VXLAN_LEN, VXLAN_UDP_PORT};

use crate::scenario::Pattern;

/// First bytes of every probe payload.
pub const PROBE_MAGIC: [u8; 4] = *b"NSIM";
/// Length of the probe payload.
pub const PROBE_LEN: usize = 24;
const IPV4_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;
const TCP_HEADER_LEN: usize = 20;
const IP_IDENT_OFFSET: usize = ETHERNET_HEADER_LEN + 4;
const IP_CHECKSUM_OFFSET: usize = ETHERNET_HEADER_LEN + 10;
/// The bit of a probe's flow id that marks a reply.
pub const REPLY_BIT: u32 = 1 << 31;

/// What a probe payload says about its packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// The flow it belongs to.
    pub flow: u32,
    /// Its sequence number within the flow, from 0.
    pub seq: u64,
    /// When it was sent.
    pub sent_at: SimTime,
}

impl Probe {
    /// Reads the probe of an Ethernet/IPv4/UDP-or-TCP frame; `None` if it carries none.
    pub fn read(frame: &[u8]) -> Option<Probe> {
        Probe::read_ip(frame, ETHERNET_HEADER_LEN)
    }

    /// Reads the probe of the IPv4 packet at `at`.
    fn read_ip(frame: &[u8], at: usize) -> Option<Probe> {
        let ip = frame.get(at..)?;
        let header_len = usize::from(ip.first()? & 0x0f) * 4;
        let transport = at + header_len;
        let start = match *ip.get(9)? {
            IP_PROTO_UDP => transport + UDP_HEADER_LEN,
            IP_PROTO_TCP => transport + usize::from(frame.get(transport + 12)? >> 4) * 4,
            _ => return None,
        };
        let probe = frame.get(start..start + PROBE_LEN)?;
        if probe[0..4] != PROBE_MAGIC {
            return None;
        }
        let u32_at = |at: usize| u32::from_be_bytes([probe[at], probe[at + 1], probe[at + 2], probe[at + 3]]);
        let u64_at = |at: usize| (u64::from(u32_at(at)) << 32) | u64::from(u32_at(at + 4));
        Some(Probe { flow: u32_at(4), seq: u64_at(8), sent_at: SimTime(u64_at(16)) })
    }

    /// Reads the probe of a frame, looking inside MPLS-over-UDP, VXLAN or MPLS-over-GRE
    /// encapsulation when the outer packet carries no probe: a drop in the fabric is still
    /// attributed to its flow.
    pub fn find(frame: &[u8]) -> Option<Probe> {
        if let Some(probe) = Probe::read(frame) {
            return Some(probe);
        }
        let ip = frame.get(ETHERNET_HEADER_LEN..)?;
        let transport = ETHERNET_HEADER_LEN + usize::from(ip.first()? & 0x0f) * 4;
        let inner = match *ip.get(9)? {
            IP_PROTO_UDP => {
                let port = u16::from_be_bytes([*frame.get(transport + 2)?, *frame.get(transport + 3)?]);
                match port {
                    MPLS_UDP_PORT => transport + UDP_HEADER_LEN + MPLS_LEN,
                    VXLAN_UDP_PORT => transport + UDP_HEADER_LEN + VXLAN_LEN + ETHERNET_HEADER_LEN,
                    _ => return None,
                }
            }
            IP_PROTO_GRE => transport + GRE_LEN + MPLS_LEN,
            _ => return None,
        };
        Probe::read_ip(frame, inner)
    }
}

/// The addresses of a flow's packets, as its sender writes them.
#[derive(Clone, Copy, Debug)]
pub struct FlowAddresses {
    /// Source MAC (a pod's, or zero for underlay hosts: the fabric fills MACs in).
    pub src_mac: [u8; 6],
    /// Destination MAC (the pod's gateway, or zero).
    pub dst_mac: [u8; 6],
    /// Source address.
    pub src_ip: Ipv4Addr,
    /// Destination address.
    pub dst_ip: Ipv4Addr,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// IP protocol: UDP or TCP.
    pub protocol: u8,
}

/// One flow: a fixed 5-tuple sending packets at a rate.
#[derive(Clone, Debug)]
pub struct Flow {
    /// Index of the traffic entry it belongs to.
    pub traffic: u32,
    /// The host it is sent from.
    pub src: NodeId,
    /// The host it is addressed to (underlay traffic), for reports.
    pub dst: Option<NodeId>,
    /// The pod interface it is sent from (pod traffic).
    pub interface: Option<InterfaceId>,
    /// Its addresses.
    pub addresses: FlowAddresses,
    /// Spacing of packets.
    pub pattern: Pattern,
    /// Mean gap between packets, in nanoseconds.
    pub interval_ns: u64,
    /// No packet is sent at or after this time.
    pub stop: SimTime,
    /// Packets sent so far (the next sequence number).
    pub sent: u64,
    /// The frame with the probe fields zero; checksums computed for that.
    template: Vec<u8>,
    /// Offset of the probe payload in the frame.
    probe_at: usize,
    /// Offset of the transport checksum.
    checksum_at: usize,
}

impl Flow {
    /// A flow of `size_bytes` IP packets with `addresses`, sent from `src` (and, for pods,
    /// `interface`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        traffic: u32,
        src: NodeId,
        dst: Option<NodeId>,
        interface: Option<InterfaceId>,
        addresses: FlowAddresses,
        size_bytes: u32,
        pattern: Pattern,
        interval_ns: u64,
        stop: SimTime,
    ) -> Flow {
        let zero = Probe { flow: 0, seq: 0, sent_at: SimTime::ZERO };
        // A single probe over TCP opens a connection: a SYN.
        let flags = if pattern == Pattern::Once { TcpFlags::Syn } else { TcpFlags::AckPsh };
        let template = build_frame(&addresses, size_bytes as usize, &zero, true, flags);
        let l4 = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN;
        let (probe_at, checksum_at) = if addresses.protocol == IP_PROTO_TCP {
            (l4 + TCP_HEADER_LEN, l4 + 16)
        } else {
            (l4 + UDP_HEADER_LEN, l4 + 6)
        };
        Flow {
            traffic,
            src,
            dst,
            interface,
            addresses,
            pattern,
            interval_ns,
            stop,
            sent: 0,
            template,
            probe_at,
            checksum_at,
        }
    }

    /// Writes the next packet of the flow into `buffer` (reusing its allocation), stamped with
    /// `now`, and advances the sequence number.
    pub fn next_packet(&mut self, id: u32, now: SimTime, buffer: &mut Vec<u8>) {
        let seq = self.sent;
        self.sent += 1;
        buffer.clear();
        buffer.extend_from_slice(&self.template);
        let mut fields = [0u8; PROBE_LEN - 4];
        fields[0..4].copy_from_slice(&id.to_be_bytes());
        fields[4..12].copy_from_slice(&seq.to_be_bytes());
        fields[12..20].copy_from_slice(&now.as_nanos().to_be_bytes());
        buffer[self.probe_at + 4..self.probe_at + PROBE_LEN].copy_from_slice(&fields);
        // The template's probe fields were zero: add the new words to its checksum.
        let at = self.checksum_at;
        let template_checksum = u16::from_be_bytes([self.template[at], self.template[at + 1]]);
        let sum = checksum::fold(checksum::sum_words(&fields, u64::from(!template_checksum)));
        let transport = match !sum {
            0 if self.addresses.protocol == IP_PROTO_UDP => 0xffff, // RFC 768: zero is sent as ones.
            value => value,
        };
        buffer[at..at + 2].copy_from_slice(&transport.to_be_bytes());
        if self.addresses.protocol == IP_PROTO_TCP {
            // TCP: the sequence number advances by the payload of every segment, as a real
            // sender's does (so captures read as one stream, not retransmissions).
            let seq_at = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + 4;
            let payload = (self.template.len() - self.probe_at) as u64;
            let number = (1 + seq * payload) as u32;
            let mut checksum = u16::from_be_bytes([buffer[at], buffer[at + 1]]);
            let old = [
                u16::from_be_bytes([buffer[seq_at], buffer[seq_at + 1]]),
                u16::from_be_bytes([buffer[seq_at + 2], buffer[seq_at + 3]]),
            ];
            let new = [(number >> 16) as u16, number as u16];
            for (old, new) in old.into_iter().zip(new) {
                checksum = checksum::update(checksum, old, new);
            }
            buffer[seq_at..seq_at + 4].copy_from_slice(&number.to_be_bytes());
            buffer[at..at + 2].copy_from_slice(&checksum.to_be_bytes());
        }
        // IP identification: the low 16 bits of the sequence number.
        let ident = seq as u16;
        buffer[IP_IDENT_OFFSET..IP_IDENT_OFFSET + 2].copy_from_slice(&ident.to_be_bytes());
        let ip_checksum =
            u16::from_be_bytes([self.template[IP_CHECKSUM_OFFSET], self.template[IP_CHECKSUM_OFFSET + 1]]);
        let ip_checksum = checksum::update(ip_checksum, 0, ident);
        buffer[IP_CHECKSUM_OFFSET..IP_CHECKSUM_OFFSET + 2].copy_from_slice(&ip_checksum.to_be_bytes());
    }

    /// The gap to the next packet: fixed, or drawn from an exponential distribution with the
    /// flow's mean (`uniform` is a draw in (0, 1]).
    pub fn gap(&self, uniform: f64) -> SimDuration {
        match self.pattern {
            Pattern::Constant | Pattern::Once => SimDuration::from_nanos(self.interval_ns),
            Pattern::Poisson => {
                // libm's pure-Rust log is the same on every platform; std's may not be.
                let gap = -libm::log(uniform) * self.interval_ns as f64;
                SimDuration::from_nanos(libm::round(gap) as u64)
            }
        }
    }
}

/// The flags of a TCP segment netsim sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpFlags {
    /// A connection's first segment.
    Syn,
    /// Data of an established connection.
    AckPsh,
}

/// Builds a complete Ethernet/IPv4/UDP-or-TCP frame of `size` IP bytes carrying `probe`
/// (with the probe's magic; `zero_fields` leaves the probe's numbers zero, for templates).
pub fn build_frame(
    addresses: &FlowAddresses,
    size: usize,
    probe: &Probe,
    zero_fields: bool,
    flags: TcpFlags,
) -> Vec<u8> {
    let mut frame = Vec::with_capacity(ETHERNET_HEADER_LEN + size);
    build_frame_into(&mut frame, addresses, size, probe, zero_fields, flags);
    frame
}

/// [`build_frame`] into `frame`, reusing its allocation (its contents are replaced).
pub fn build_frame_into(
    frame: &mut Vec<u8>,
    addresses: &FlowAddresses,
    size: usize,
    probe: &Probe,
    zero_fields: bool,
    flags: TcpFlags,
) {
    let transport_len = if addresses.protocol == IP_PROTO_TCP { TCP_HEADER_LEN } else { UDP_HEADER_LEN };
    let headers = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + transport_len;
    let mut payload = [0u8; PROBE_LEN];
    payload[0..4].copy_from_slice(&PROBE_MAGIC);
    if !zero_fields {
        payload[4..8].copy_from_slice(&probe.flow.to_be_bytes());
        payload[8..16].copy_from_slice(&probe.seq.to_be_bytes());
        payload[16..24].copy_from_slice(&probe.sent_at.as_nanos().to_be_bytes());
    }
    // Written by hand, not with etherparse's builder: replies are built per packet, and the
    // builder's by-value steps cost a third of a run (byte-identical output, see the tests).
    let payload_len = size - IPV4_HEADER_LEN - transport_len;
    frame.clear();
    frame.resize(headers + payload_len, 0);
    frame[0..6].copy_from_slice(&addresses.dst_mac);
    frame[6..12].copy_from_slice(&addresses.src_mac);
    frame[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let ip = ETHERNET_HEADER_LEN;
    frame[ip] = 0x45;
    frame[ip + 2..ip + 4].copy_from_slice(&(size as u16).to_be_bytes());
    frame[ip + 6] = 0x40; // don't fragment
    frame[ip + 8] = 64;
    frame[ip + 9] = addresses.protocol;
    frame[ip + 12..ip + 16].copy_from_slice(&addresses.src_ip.octets());
    frame[ip + 16..ip + 20].copy_from_slice(&addresses.dst_ip.octets());
    let ip_checksum = checksum::finish(checksum::ones_complement_sum(&frame[ip..ip + IPV4_HEADER_LEN]));
    frame[ip + 10..ip + 12].copy_from_slice(&ip_checksum.to_be_bytes());
    let l4 = ip + IPV4_HEADER_LEN;
    frame[l4..l4 + 2].copy_from_slice(&addresses.src_port.to_be_bytes());
    frame[l4 + 2..l4 + 4].copy_from_slice(&addresses.dst_port.to_be_bytes());
    let checksum_at = if addresses.protocol == IP_PROTO_TCP {
        frame[l4 + 4..l4 + 8].copy_from_slice(&1u32.to_be_bytes());
        let (ack, flags) = match flags {
            TcpFlags::Syn => (0u32, 0x02),
            TcpFlags::AckPsh => (1, 0x18),
        };
        frame[l4 + 8..l4 + 12].copy_from_slice(&ack.to_be_bytes());
        frame[l4 + 12] = 5 << 4;
        frame[l4 + 13] = flags;
        frame[l4 + 14..l4 + 16].copy_from_slice(&u16::MAX.to_be_bytes());
        l4 + 16
    } else {
        frame[l4 + 4..l4 + 6].copy_from_slice(&((size - IPV4_HEADER_LEN) as u16).to_be_bytes());
        l4 + 6
    };
    frame[headers..headers + PROBE_LEN].copy_from_slice(&payload);
    // The transport checksum over the pseudo-header, the header and the payload.
    let transport_bytes = (size - IPV4_HEADER_LEN) as u64;
    let pseudo =
        checksum::sum_words(&frame[ip + 12..ip + 20], u64::from(addresses.protocol) + transport_bytes);
    // The payload past the probe is zeros, which add nothing to a ones'-complement sum.
    let mut sum =
        checksum::finish(checksum::fold(checksum::sum_words(&frame[l4..headers + PROBE_LEN], pseudo)));
    if addresses.protocol != IP_PROTO_TCP && sum == 0 {
        // UDP sends a computed zero as all ones (zero means no checksum).
        sum = 0xffff;
    }
    frame[checksum_at..checksum_at + 2].copy_from_slice(&sum.to_be_bytes());
}

/// Turns a 64-bit random draw into a uniform value in (0, 1].
pub fn unit_interval(draw: u64) -> f64 {
    ((draw >> 11) + 1) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{SlicedPacket, TransportSlice};

    fn flow(protocol: u8) -> Flow {
        let addresses = FlowAddresses {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: Ipv4Addr::new(172, 16, 0, 4),
            dst_ip: Ipv4Addr::new(172, 16, 0, 43),
            src_port: 10_007,
            dst_port: 5001,
            protocol,
        };
        Flow::new(
            0,
            NodeId(3),
            Some(NodeId(42)),
            None,
            addresses,
            200,
            Pattern::Constant,
            1000,
            SimTime(1_000_000),
        )
    }

    #[test]
    fn packets_carry_their_probe_and_valid_checksums() {
        for protocol in [IP_PROTO_UDP, IP_PROTO_TCP] {
            let mut flow = flow(protocol);
            let mut buffer = Vec::new();
            for seq in 0..3u64 {
                flow.next_packet(77, SimTime(123_456 + seq), &mut buffer);
                assert_eq!(buffer.len(), 14 + 200);
                let probe = Probe::read(&buffer).expect("has a probe");
                assert_eq!(probe, Probe { flow: 77, seq, sent_at: SimTime(123_456 + seq) });
                let packet = SlicedPacket::from_ethernet(&buffer).expect("parses");
                let Some(etherparse::NetSlice::Ipv4(ip)) = &packet.net else { panic!("IPv4") };
                let header = ip.header().to_header();
                assert_eq!(header.header_checksum, header.calc_header_checksum());
                assert_eq!(header.identification, seq as u16);
                match &packet.transport {
                    Some(TransportSlice::Udp(udp)) => {
                        let expected =
                            udp.to_header().calc_checksum_ipv4(&header, udp.payload()).expect("fits");
                        assert_eq!(udp.checksum(), expected);
                    }
                    Some(TransportSlice::Tcp(tcp)) => {
                        let expected =
                            tcp.to_header().calc_checksum_ipv4(&header, tcp.payload()).expect("fits");
                        assert_eq!(tcp.checksum(), expected);
                        assert!(tcp.ack() && tcp.psh());
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    /// The hand-written frames are byte for byte what etherparse's builder writes.
    #[test]
    fn frames_match_etherparse_byte_for_byte() {
        for (protocol, flags) in [
            (IP_PROTO_UDP, TcpFlags::AckPsh),
            (IP_PROTO_TCP, TcpFlags::AckPsh),
            (IP_PROTO_TCP, TcpFlags::Syn),
        ] {
            for size in [64, 65, 200, 1400] {
                let mut addresses = flow(protocol).addresses;
                addresses.src_port = 40_000 + size as u16;
                let probe = Probe { flow: 7, seq: 99, sent_at: SimTime(123) };
                let frame = build_frame(&addresses, size, &probe, false, flags);
                let ip = etherparse::PacketBuilder::ethernet2(addresses.src_mac, addresses.dst_mac).ipv4(
                    addresses.src_ip.octets(),
                    addresses.dst_ip.octets(),
                    64,
                );
                let transport = if protocol == IP_PROTO_TCP { TCP_HEADER_LEN } else { UDP_HEADER_LEN };
                let mut body = vec![0u8; size - IPV4_HEADER_LEN - transport];
                body[..PROBE_LEN].copy_from_slice(&frame[14 + IPV4_HEADER_LEN + transport..][..PROBE_LEN]);
                let mut expected = Vec::new();
                if protocol == IP_PROTO_TCP {
                    let builder = ip.tcp(addresses.src_port, addresses.dst_port, 1, 65535);
                    let builder = if flags == TcpFlags::Syn { builder.syn() } else { builder.ack(1).psh() };
                    builder.write(&mut expected, &body).unwrap();
                } else {
                    ip.udp(addresses.src_port, addresses.dst_port).write(&mut expected, &body).unwrap();
                }
                assert_eq!(frame, expected, "protocol {protocol}, size {size}, {flags:?}");
            }
        }
    }

    #[test]
    fn probes_are_found_inside_encapsulation() {
        let mut flow = flow(IP_PROTO_UDP);
        let mut inner = Vec::new();
        flow.next_packet(5, SimTime(9), &mut inner);
        // MPLS over UDP: outer Ethernet, IPv4, UDP to 6635, one label, then the inner packet.
        let mut outer = inner[..14].to_vec();
        outer.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 172, 16, 0, 1, 172, 16, 0, 2]);
        outer.extend_from_slice(&[0xc0, 0x00, 0x19, 0xeb, 0, 0, 0, 0]);
        outer.extend_from_slice(&[0, 1, 1, 64]);
        outer.extend_from_slice(&inner[14..]);
        assert_eq!(Probe::read(&outer), None);
        assert_eq!(Probe::find(&outer), Some(Probe { flow: 5, seq: 0, sent_at: SimTime(9) }));
    }

    #[test]
    fn frames_without_probes_are_not_misread() {
        let mut flow = flow(IP_PROTO_UDP);
        let mut buffer = Vec::new();
        flow.next_packet(1, SimTime::ZERO, &mut buffer);
        buffer[42] = b'X';
        assert_eq!(Probe::read(&buffer), None);
        assert_eq!(Probe::read(&buffer[..50]), None);
        assert_eq!(Probe::read(&[]), None);
    }

    #[test]
    fn poisson_gaps_have_the_configured_mean() {
        let mut flow = flow(IP_PROTO_UDP);
        flow.pattern = Pattern::Poisson;
        let samples = 100_000u64;
        let total: u64 =
            (0..samples).map(|i| flow.gap(unit_interval(netsim_core::mix64(i))).as_nanos()).sum();
        let mean = total as f64 / samples as f64;
        assert!((mean - 1000.0).abs() < 15.0, "mean gap {mean}");
    }
}
