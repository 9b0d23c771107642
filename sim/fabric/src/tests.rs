//! Tests of the fabric state machine, driven by a tiny in-test event loop.

use super::*;
use etherparse::{PacketBuilder, SlicedPacket};
use proptest::prelude::*;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Drives a fabric by next event: a heap of frames in flight and pending detections.
struct Harness {
    fabric: Fabric,
    in_flight: BinaryHeap<Reverse<(SimTime, u64)>>,
    frames: BTreeMap<u64, Transmit>,
    seq: u64,
    now: SimTime,
    delivered: Vec<(SimTime, NodeId, Vec<u8>)>,
    dropped: Vec<(SimTime, DropReason, NodeId)>,
}

impl Harness {
    fn new(config: FabricConfig) -> Harness {
        Harness {
            fabric: Fabric::new(&config).expect("valid config"),
            in_flight: BinaryHeap::new(),
            frames: BTreeMap::new(),
            seq: 0,
            now: SimTime::ZERO,
            delivered: Vec::new(),
            dropped: Vec::new(),
        }
    }

    fn outcome(&mut self, forward: Forward) {
        match forward {
            Forward::Transmit(transmit) => {
                self.in_flight.push(Reverse((transmit.arrive_at, self.seq)));
                self.frames.insert(self.seq, transmit);
                self.seq += 1;
            }
            Forward::Deliver { host, frame } => self.delivered.push((self.now, host, frame)),
            Forward::Drop { reason, node, .. } => self.dropped.push((self.now, reason, node)),
        }
    }

    fn send(&mut self, host: u32, frame: Vec<u8>) {
        let forward = self.fabric.send(self.now, NodeId(host), frame);
        self.outcome(forward);
    }

    /// Runs every frame and detection due up to `until`.
    fn run_until(&mut self, until: SimTime) {
        loop {
            let next_frame = self.in_flight.peek().map(|Reverse((at, _))| *at);
            let next_timer = self.fabric.poll_timeout();
            let next = match (next_frame, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => break,
            };
            if next > until {
                break;
            }
            self.now = next;
            if next_timer == Some(next) {
                self.fabric.handle_timeout(next);
                continue;
            }
            let Reverse((_, seq)) = self.in_flight.pop().expect("peeked");
            let transmit = self.frames.remove(&seq).expect("every heap entry has a frame");
            let forward = self.fabric.arrive(self.now, transmit);
            self.outcome(forward);
        }
        self.now = self.now.max(until);
    }
}

/// A UDP frame between two hosts' underlay addresses with an IP packet of `ip_len` bytes.
fn frame(src: u32, dst: u32, src_port: u16, ip_len: usize) -> Vec<u8> {
    let topology = Topology::build(&FabricConfig::default()).expect("valid");
    let builder = PacketBuilder::ethernet2([0; 6], [0; 6])
        .ipv4(topology.host_ip(NodeId(src)).octets(), topology.host_ip(NodeId(dst)).octets(), 64)
        .udp(src_port, 5001);
    let payload = vec![0xab; ip_len - 28];
    let mut bytes = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut bytes, &payload).expect("writing to a Vec cannot fail");
    bytes
}

#[test]
fn latency_is_serialization_plus_propagation_per_hop() {
    let mut harness = Harness::new(FabricConfig::default());
    harness.send(0, frame(0, 99, 1000, 986)); // 1000-byte frame, 1024 bytes on the wire
    harness.run_until(SimTime(1_000_000));
    assert_eq!(harness.dropped, vec![]);
    let (at, host, _) = &harness.delivered[0];
    assert_eq!(*host, NodeId(99));
    // 8192 bits: 820 ns at 10 Gb/s (rounded up), 205 ns at 40 Gb/s (rounded up); 4 links of 1 us.
    assert_eq!(*at, SimTime(820 + 205 + 205 + 820 + 4 * 1_000));
}

#[test]
fn switches_decrement_ttl_and_keep_checksums_valid() {
    let mut harness = Harness::new(FabricConfig::default());
    harness.send(3, frame(3, 77, 1000, 200));
    harness.run_until(SimTime(1_000_000));
    let (_, _, bytes) = &harness.delivered[0];
    let packet = SlicedPacket::from_ethernet(bytes).expect("delivered frame parses");
    let Some(etherparse::NetSlice::Ipv4(ip)) = packet.net else { panic!("not IPv4") };
    let header = ip.header().to_header();
    // leaf, spine, leaf.
    assert_eq!(header.time_to_live, 61);
    assert_eq!(header.header_checksum, header.calc_header_checksum());
    // The last hop's MACs: from the leaf's port to the host's port.
    let topology = harness.fabric.topology();
    assert_eq!(bytes[0..6], topology.port_mac(NodeId(77), bytes[5].into()));
}

#[test]
fn same_leaf_pair_traffic_stays_below_the_spines() {
    let mut harness = Harness::new(FabricConfig::default());
    harness.send(0, frame(0, 1, 1000, 986));
    harness.run_until(SimTime(1_000_000));
    assert_eq!(harness.delivered[0].0, SimTime(820 * 2 + 2 * 1_000));
}

#[test]
fn full_queue_tail_drops() {
    let mut harness = Harness::new(FabricConfig::default());
    let bursts = 1000;
    for _ in 0..bursts {
        // One 5-tuple: every frame takes the same uplink.
        harness.send(0, frame(0, 99, 1000, 986));
    }
    harness.run_until(SimTime(100_000_000));
    let queue_drops = harness.dropped.iter().filter(|d| d.1 == DropReason::QueueFull).count();
    // 512 KiB of queue holds about 512 frames of 1024 wire bytes.
    assert!((500..=512).contains(&(bursts - queue_drops)), "accepted {}", bursts - queue_drops);
    assert_eq!(harness.delivered.len() + queue_drops, bursts);
    // Delivered in order, spaced by the bottleneck's serialization time.
    let gaps: Vec<u64> = harness.delivered.windows(2).map(|w| (w[1].0 - w[0].0).as_nanos()).collect();
    assert!(gaps.iter().all(|&gap| gap == 820), "{gaps:?}");
}

#[test]
fn oversize_packets_are_dropped_for_mtu() {
    let mut harness = Harness::new(FabricConfig::default());
    harness.send(0, frame(0, 99, 1000, 1501));
    harness.send(0, frame(0, 99, 1000, 1500));
    harness.run_until(SimTime(1_000_000));
    assert_eq!(harness.dropped, vec![(SimTime::ZERO, DropReason::MtuExceeded, NodeId(0))]);
    assert_eq!(harness.delivered.len(), 1);
}

#[test]
fn link_failure_loses_frames_until_detection_then_reroutes() {
    let mut harness = Harness::new(FabricConfig::default());
    // Find a source port whose flow takes uplink 0 of host 0.
    let uplink0 = harness.fabric.topology().ports(NodeId(0))[0].link;
    let src_port = (1000..2000)
        .find(|&port| match harness.fabric.send(SimTime::ZERO, NodeId(0), frame(0, 99, port, 100)) {
            Forward::Transmit(t) => t.link == uplink0,
            _ => false,
        })
        .expect("some flow hashes to uplink 0");
    harness.fabric = Fabric::new(&FabricConfig::default()).expect("valid");
    harness.fabric.fail(SimTime::ZERO, Element::Link(uplink0));
    harness.send(0, frame(0, 99, src_port, 100));
    harness.now = SimTime(49_999_999);
    harness.send(0, frame(0, 99, src_port, 100));
    harness.run_until(SimTime(50_000_000));
    harness.send(0, frame(0, 99, src_port, 100));
    harness.run_until(SimTime(60_000_000));
    let reasons: Vec<DropReason> = harness.dropped.iter().map(|d| d.1).collect();
    assert_eq!(reasons, vec![DropReason::LinkDown, DropReason::LinkDown]);
    assert_eq!(harness.delivered.len(), 1);
    assert_eq!(
        harness.fabric.poll_event(),
        Some(FabricEvent::RoutingUpdated { element: Element::Link(uplink0), up: false })
    );
}

#[test]
fn frames_in_flight_die_with_their_switch() {
    let config = FabricConfig { spines: 1, ..FabricConfig::default() };
    let mut harness = Harness::new(config);
    harness.send(0, frame(0, 99, 1000, 1000));
    // After the first hop (~1.8 us) the frame is headed for the only spine.
    harness.run_until(SimTime(2_000));
    let spine = harness.fabric.topology().spine(0);
    harness.fabric.fail(harness.now, Element::Node(spine));
    harness.run_until(SimTime(1_000_000));
    assert_eq!(harness.delivered.len(), 0);
    assert_eq!(harness.dropped.len(), 1);
    assert!(matches!(harness.dropped[0].1, DropReason::LinkDown | DropReason::NodeDown));
    // With the only spine gone and detected, other pairs are unreachable.
    harness.run_until(SimTime(100_000_000));
    harness.send(0, frame(0, 99, 1000, 1000));
    harness.run_until(SimTime(200_000_000));
    assert_eq!(harness.dropped.last().map(|d| d.1), Some(DropReason::NoRoute));
}

#[test]
fn recovery_is_used_after_detection() {
    let config = FabricConfig { spines: 1, ..FabricConfig::default() };
    let mut harness = Harness::new(config);
    let spine = harness.fabric.topology().spine(0);
    harness.fabric.fail(SimTime::ZERO, Element::Node(spine));
    harness.run_until(SimTime(60_000_000));
    harness.fabric.recover(harness.now, Element::Node(spine));
    harness.send(0, frame(0, 99, 1000, 100));
    harness.run_until(SimTime(120_000_000));
    harness.send(0, frame(0, 99, 1000, 100));
    harness.run_until(SimTime(130_000_000));
    let reasons: Vec<DropReason> = harness.dropped.iter().map(|d| d.1).collect();
    assert_eq!(reasons, vec![DropReason::NoRoute]);
    assert_eq!(harness.delivered.len(), 1);
}

#[test]
fn ecmp_spreads_flows_over_spines_and_keeps_each_flow_on_one_path() {
    let mut fabric = Fabric::new(&FabricConfig::default()).expect("valid");
    // The leaf-to-spine link a flow takes, sending at `at` (spaced out so queues stay empty).
    let mut second_hop = |port: u16, at: SimTime| {
        let Forward::Transmit(first) = fabric.send(at, NodeId(0), frame(0, 99, port, 100)) else {
            panic!("sent");
        };
        let Forward::Transmit(second) = fabric.arrive(first.arrive_at, first) else {
            panic!("forwarded");
        };
        second.link
    };
    let mut per_link = BTreeMap::new();
    for port in 0..4000u16 {
        let at = SimTime(u64::from(port) * 10_000);
        let link = second_hop(port, at);
        *per_link.entry(link).or_insert(0u32) += 1;
        // Same flow again: same path.
        assert_eq!(second_hop(port, at + SimDuration::from_nanos(5_000)), link);
    }
    // Two leaves x four spines: eight leaf-to-spine links, each about 500 flows.
    assert_eq!(per_link.len(), 8);
    assert!(per_link.values().all(|&n| (400..600).contains(&n)), "{per_link:?}");
}

#[test]
fn uniform_seeding_polarizes_the_second_tier() {
    // With every switch on the same seed, the leaf's spine choice is a function of the host's
    // uplink choice: flows that took uplink 0 reach only some spines.
    let config = FabricConfig { ecmp_seeding: EcmpSeeding::Uniform, ..FabricConfig::default() };
    let mut fabric = Fabric::new(&config).expect("valid");
    let mut pairs = std::collections::BTreeSet::new();
    for port in 0..2000u16 {
        let at = SimTime(u64::from(port) * 10_000);
        let Forward::Transmit(first) = fabric.send(at, NodeId(0), frame(0, 99, port, 100)) else {
            panic!("sent");
        };
        let uplink = first.link;
        let Forward::Transmit(second) = fabric.arrive(first.arrive_at, first) else { panic!("forwarded") };
        pairs.insert((uplink, second.to));
    }
    // Hash mod 2 picks the uplink, the same hash mod 4 the spine: only 2 spines per uplink.
    assert_eq!(pairs.len(), 4, "{pairs:?}");
}

proptest! {
    /// No bytes make the fabric panic; each input gets exactly one outcome.
    #[test]
    fn arbitrary_bytes_get_one_fate(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
        let mut fabric = Fabric::new(&FabricConfig::default()).expect("valid");
        match fabric.send(SimTime::ZERO, NodeId(5), bytes) {
            Forward::Transmit(t) => { let _ = fabric.arrive(t.arrive_at, t); }
            Forward::Deliver { .. } | Forward::Drop { .. } => {}
        }
    }
}

#[test]
fn truncated_and_non_ip_frames_are_malformed() {
    let mut fabric = Fabric::new(&FabricConfig::default()).expect("valid");
    let whole = frame(0, 9, 1000, 200);
    let mut arp = whole.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    for bytes in [whole[..whole.len() - 1].to_vec(), whole[..20].to_vec(), arp, Vec::new()] {
        let forward = fabric.send(SimTime::ZERO, NodeId(0), bytes);
        assert!(matches!(forward, Forward::Drop { reason: DropReason::Malformed, .. }), "{forward:?}");
    }
}

#[test]
fn announced_blocks_route_to_their_host_and_go_when_withdrawn() {
    let mut harness = Harness::new(FabricConfig::default());
    let block = Ipv4Addr::new(10, 0, 1, 64);
    harness.fabric.announce(NodeId(42), block, 26).unwrap();
    // Announcing it again is idempotent; another host cannot take it.
    harness.fabric.announce(NodeId(42), block, 26).unwrap();
    assert!(harness.fabric.announce(NodeId(7), block, 26).is_err());
    harness.fabric.announce(NodeId(7), Ipv4Addr::new(10, 0, 1, 128), 26).unwrap();
    // A more specific route (a borrowed address) wins.
    harness.fabric.announce(NodeId(9), Ipv4Addr::new(10, 0, 1, 70), 32).unwrap();
    assert_eq!(harness.fabric.host_for(Ipv4Addr::new(10, 0, 1, 70)), Some(NodeId(9)));
    let mut to_pod = frame(0, 99, 1000, 100);
    to_pod[30..34].copy_from_slice(&[10, 0, 1, 77]);
    harness.send(0, to_pod.clone());
    harness.run_until(SimTime(1_000_000));
    assert_eq!(harness.delivered.iter().map(|(_, host, _)| *host).collect::<Vec<_>>(), vec![NodeId(42)]);
    harness.fabric.withdraw(block, 26);
    harness.send(0, to_pod);
    assert_eq!(harness.dropped.last().map(|d| d.1), Some(DropReason::NoRoute));
    assert_eq!(harness.fabric.host_for(Ipv4Addr::new(10, 0, 1, 130)), Some(NodeId(7)));
    // The /32 outlives its /26; once the last /32 goes, only /26s are tried.
    assert_eq!(harness.fabric.host_for(Ipv4Addr::new(10, 0, 1, 70)), Some(NodeId(9)));
    harness.fabric.withdraw(Ipv4Addr::new(10, 0, 1, 70), 32);
    assert_eq!(harness.fabric.host_for(Ipv4Addr::new(10, 0, 1, 70)), None);
    harness.fabric.announce(NodeId(9), Ipv4Addr::new(10, 0, 1, 70), 32).unwrap();
    assert_eq!(harness.fabric.host_for(Ipv4Addr::new(10, 0, 1, 70)), Some(NodeId(9)));
}

#[test]
fn a_block_withdrawn_while_a_frame_is_in_flight_stops_it_at_the_next_hop() {
    let mut fabric = Fabric::new(&FabricConfig::default()).unwrap();
    let block = Ipv4Addr::new(10, 0, 1, 64);
    let mut to_pod = frame(0, 99, 1000, 100);
    to_pod[30..34].copy_from_slice(&[10, 0, 1, 77]);
    fabric.announce(NodeId(42), block, 26).unwrap();
    let hop = |fabric: &mut Fabric, forward: Forward| match forward {
        Forward::Transmit(transmit) => fabric.arrive(transmit.arrive_at, transmit),
        other => panic!("not in flight: {other:?}"),
    };
    // Undisturbed, the frame crosses the leaf; withdrawn while on the first link, it stops
    // there; announced again at another host, it turns toward that host.
    let sent = fabric.send(SimTime::ZERO, NodeId(0), to_pod.clone());
    assert!(matches!(hop(&mut fabric, sent), Forward::Transmit(_)));
    let sent = fabric.send(SimTime(1_000_000), NodeId(0), to_pod.clone());
    fabric.withdraw(block, 26);
    let stopped = hop(&mut fabric, sent);
    assert!(matches!(stopped, Forward::Drop { reason: DropReason::NoRoute, .. }), "{stopped:?}");
    fabric.announce(NodeId(42), block, 26).unwrap();
    let mut forward = fabric.send(SimTime(2_000_000), NodeId(0), to_pod);
    fabric.withdraw(block, 26);
    fabric.announce(NodeId(0), block, 26).unwrap();
    while let Forward::Transmit(transmit) = forward {
        forward = fabric.arrive(transmit.arrive_at, transmit);
    }
    assert!(matches!(forward, Forward::Deliver { host: NodeId(0), .. }), "{forward:?}");
}

proptest! {
    /// The 64-bit fast path of the timing arithmetic gives the exact 128-bit result, rounded
    /// down or up, including products that overflow 64 bits.
    #[test]
    fn timing_arithmetic_is_exact(
        a in any::<u32>().prop_map(u64::from),
        wide in any::<u64>(),
        b in 1u64..400_000_000_000,
        divisor_bits in 0u32..64,
        divisor_low in any::<u64>(),
    ) {
        let divisor = (divisor_low >> divisor_bits).max(1);
        for a in [a, wide] {
            let product = u128::from(a) * u128::from(b);
            // The fabric's quotients (bytes, nanoseconds) always fit 64 bits.
            prop_assume!(product / u128::from(divisor) < u128::from(u64::MAX));
            prop_assert_eq!(u128::from(mul_div(a, b, divisor)), product / u128::from(divisor));
            prop_assert_eq!(u128::from(mul_div_ceil(a, b, divisor)), product.div_ceil(u128::from(divisor)));
        }
    }
}
