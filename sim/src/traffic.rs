//! Traffic: flows of real UDP packets between hosts, and the probe payload that identifies them.
//!
//! Every packet netsim originates carries a 24-byte probe payload right after its UDP header:
//! the magic `NSIM`, the flow id, the packet's sequence number within the flow, and its send
//! time. The receiving end reads it back to attribute deliveries and drops to flows and to
//! measure one-way latency — from the bytes, as a real receiver would.

use netsim_core::checksum;
use netsim_core::packet::ETHERNET_HEADER_LEN;
use netsim_core::{SimDuration, SimTime};
use netsim_fabric::{NodeId, Topology};

use crate::scenario::Pattern;

/// First bytes of every probe payload.
pub const PROBE_MAGIC: [u8; 4] = *b"NSIM";
/// Length of the probe payload.
pub const PROBE_LEN: usize = 24;
const IPV4_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;
const PROBE_OFFSET: usize = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN;
const IP_IDENT_OFFSET: usize = ETHERNET_HEADER_LEN + 4;
const IP_CHECKSUM_OFFSET: usize = ETHERNET_HEADER_LEN + 10;
const UDP_CHECKSUM_OFFSET: usize = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + 6;

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
    /// Reads the probe of an Ethernet/IPv4/UDP frame; `None` if the frame carries none.
    pub fn read(frame: &[u8]) -> Option<Probe> {
        let ip = frame.get(ETHERNET_HEADER_LEN..)?;
        let header_len = usize::from(ip.first()? & 0x0f) * 4;
        let start = ETHERNET_HEADER_LEN + header_len + UDP_HEADER_LEN;
        let probe = frame.get(start..start + PROBE_LEN)?;
        if probe[0..4] != PROBE_MAGIC {
            return None;
        }
        let u32_at = |at: usize| u32::from_be_bytes([probe[at], probe[at + 1], probe[at + 2], probe[at + 3]]);
        let u64_at = |at: usize| (u64::from(u32_at(at)) << 32) | u64::from(u32_at(at + 4));
        Some(Probe { flow: u32_at(4), seq: u64_at(8), sent_at: SimTime(u64_at(16)) })
    }
}

/// One UDP flow: a fixed 5-tuple sending packets at a rate between two hosts.
#[derive(Clone, Debug)]
pub struct Flow {
    /// Index of the traffic entry it belongs to.
    pub traffic: u32,
    /// Sending host.
    pub src: NodeId,
    /// Receiving host.
    pub dst: NodeId,
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
}

impl Flow {
    /// A flow of `size_bytes` IP packets from `src` to `dst`, ports `src_port` → `dst_port`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        topology: &Topology,
        traffic: u32,
        src: NodeId,
        dst: NodeId,
        src_port: u16,
        dst_port: u16,
        size_bytes: u32,
        pattern: Pattern,
        interval_ns: u64,
        stop: SimTime,
    ) -> Flow {
        let payload = vec![0u8; size_bytes as usize - IPV4_HEADER_LEN - UDP_HEADER_LEN];
        let builder = etherparse::PacketBuilder::ethernet2([0; 6], [0; 6])
            .ipv4(topology.host_ip(src).octets(), topology.host_ip(dst).octets(), 64)
            .udp(src_port, dst_port);
        let mut template = Vec::with_capacity(builder.size(payload.len()));
        // Writing into a Vec cannot fail, and validation bounds the size to a valid IP length.
        builder.write(&mut template, &payload).expect("a validated packet size builds");
        template[PROBE_OFFSET..PROBE_OFFSET + 4].copy_from_slice(&PROBE_MAGIC);
        // The magic changed the payload: recompute the UDP checksum once for the template.
        template[UDP_CHECKSUM_OFFSET..UDP_CHECKSUM_OFFSET + 2].fill(0);
        let udp_checksum = udp_checksum(&template);
        template[UDP_CHECKSUM_OFFSET..UDP_CHECKSUM_OFFSET + 2].copy_from_slice(&udp_checksum.to_be_bytes());
        Flow { traffic, src, dst, pattern, interval_ns, stop, sent: 0, template }
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
        buffer[PROBE_OFFSET + 4..PROBE_OFFSET + PROBE_LEN].copy_from_slice(&fields);
        // The template's probe fields were zero: add the new words to its checksum.
        let template_checksum =
            u16::from_be_bytes([self.template[UDP_CHECKSUM_OFFSET], self.template[UDP_CHECKSUM_OFFSET + 1]]);
        let sum = checksum::fold(checksum::sum_words(&fields, u64::from(!template_checksum)));
        let udp = match !sum {
            0 => 0xffff, // RFC 768: a computed zero is sent as all ones.
            value => value,
        };
        buffer[UDP_CHECKSUM_OFFSET..UDP_CHECKSUM_OFFSET + 2].copy_from_slice(&udp.to_be_bytes());
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
            Pattern::Constant => SimDuration::from_nanos(self.interval_ns),
            Pattern::Poisson => {
                // libm's pure-Rust log is the same on every platform; std's may not be.
                let gap = -libm::log(uniform) * self.interval_ns as f64;
                SimDuration::from_nanos(libm::round(gap) as u64)
            }
        }
    }
}

/// The UDP checksum of an Ethernet/IPv4 (no options)/UDP frame, with the checksum field zero.
fn udp_checksum(frame: &[u8]) -> u16 {
    let ip = &frame[ETHERNET_HEADER_LEN..];
    let udp = &ip[IPV4_HEADER_LEN..];
    let mut acc = checksum::sum_words(&ip[12..20], 0); // addresses
    acc += u64::from(ip[9]); // protocol
    acc += udp.len() as u64;
    let sum = checksum::fold(checksum::sum_words(udp, acc));
    match checksum::finish(sum) {
        0 => 0xffff,
        value => value,
    }
}

/// Turns a 64-bit random draw into a uniform value in (0, 1].
pub fn unit_interval(draw: u64) -> f64 {
    ((draw >> 11) + 1) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{SlicedPacket, TransportSlice};
    use netsim_fabric::FabricConfig;

    fn flow() -> Flow {
        let topology = Topology::build(&FabricConfig::default()).expect("valid");
        Flow::new(
            &topology,
            0,
            NodeId(3),
            NodeId(42),
            10_007,
            5001,
            200,
            Pattern::Constant,
            1000,
            SimTime(1_000_000),
        )
    }

    #[test]
    fn packets_carry_their_probe_and_valid_checksums() {
        let mut flow = flow();
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
            let Some(TransportSlice::Udp(udp)) = &packet.transport else { panic!("UDP") };
            let expected = udp.to_header().calc_checksum_ipv4(&header, udp.payload()).expect("payload fits");
            assert_eq!(udp.checksum(), expected);
        }
    }

    #[test]
    fn frames_without_probes_are_not_misread() {
        let mut flow = flow();
        let mut buffer = Vec::new();
        flow.next_packet(1, SimTime::ZERO, &mut buffer);
        buffer[42] = b'X';
        assert_eq!(Probe::read(&buffer), None);
        assert_eq!(Probe::read(&buffer[..50]), None);
        assert_eq!(Probe::read(&[]), None);
    }

    #[test]
    fn poisson_gaps_have_the_configured_mean() {
        let mut flow = flow();
        flow.pattern = Pattern::Poisson;
        let samples = 100_000u64;
        let total: u64 =
            (0..samples).map(|i| flow.gap(unit_interval(netsim_core::mix64(i))).as_nanos()).sum();
        let mean = total as f64 / samples as f64;
        assert!((mean - 1000.0).abs() < 15.0, "mean gap {mean}");
    }
}
