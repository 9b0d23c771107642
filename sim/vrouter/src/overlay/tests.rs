//! The overlay vrouter, programmed by hand as the network manager would program it for the
//! seeds' example: a load generator `bps` on host A reaching service `frontend` (ClusterIP
//! 10.96.0.2:3000 → pods' port 8080), with one replica on host B and one on host A.

use super::*;
use crate::test_support::hex;
use crate::testbed::*;
use netsim_core::checksum;

use etherparse::{SlicedPacket, TransportSlice};
use proptest::prelude::*;

/// (src, sport, dst, dport, ttl) of a frame's IP packet at `at`, checking every checksum.
fn read(frame: &[u8], at: usize) -> (Ipv4Addr, u16, Ipv4Addr, u16, u8) {
    let packet = SlicedPacket::from_ip(&frame[at..]).expect("inner IP parses");
    let Some(etherparse::NetSlice::Ipv4(ip)) = &packet.net else { panic!("IPv4") };
    let header = ip.header().to_header();
    assert_eq!(header.header_checksum, header.calc_header_checksum(), "IP checksum");
    let (sport, dport) = match &packet.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            assert_eq!(
                tcp.checksum(),
                tcp.to_header().calc_checksum_ipv4(&header, tcp.payload()).unwrap(),
                "TCP checksum"
            );
            (tcp.source_port(), tcp.destination_port())
        }
        Some(TransportSlice::Udp(udp)) => {
            if udp.checksum() != 0 {
                assert_eq!(
                    udp.checksum(),
                    udp.to_header().calc_checksum_ipv4(&header, udp.payload()).unwrap(),
                    "UDP checksum"
                );
            }
            (udp.source_port(), udp.destination_port())
        }
        _ => panic!("no transport"),
    };
    (header.source.into(), sport, header.destination.into(), dport, header.time_to_live)
}

/// A source port whose flow to the VIP takes the remote (`true`) or the local replica.
fn port_towards(remote: bool) -> u16 {
    (40000..41000)
        .find(|&port| {
            let (mut a, _) = pair(Encapsulation::MplsOverUdp);
            let frame = pod_frame(MAC_BPS, BPS, VIP, port, 3000, true, 10);
            matches!(a.handle_packet(SimTime::ZERO, Port::Interface(BPS_IF), frame), Forward::Fabric(_))
                == remote
        })
        .expect("some port takes each replica")
}

#[test]
fn a_service_request_and_its_reply_across_hosts() {
    for encapsulation in [Encapsulation::MplsOverUdp, Encapsulation::MplsOverGre, Encapsulation::Vxlan] {
        let (mut a, mut b) = pair(encapsulation);
        let port = port_towards(true);
        let request = pod_frame(MAC_BPS, BPS, VIP, port, 3000, true, 100);
        let Forward::Fabric(outer) = a.handle_packet(SimTime(1), Port::Interface(BPS_IF), request) else {
            panic!("{encapsulation:?}: encapsulated towards host B");
        };
        assert_eq!(outer.len(), 20 + 20 + 100 + encapsulation.header_len());
        // The inner destination is still the VIP: NAT happens at the destination.
        let inner_at = encapsulation.header_len();
        assert_eq!(read(&outer, inner_at), (BPS, port, VIP, 3000, 63));
        assert_eq!(outer[30..34], HOST_B.octets());

        let Forward::Interface(target, delivered) = b.handle_packet(SimTime(2), Port::Fabric, outer) else {
            panic!("{encapsulation:?}: delivered on host B");
        };
        assert_eq!(target, FE0_IF);
        assert_eq!(&delivered[0..6], &MAC_FE0);
        assert_eq!(read(&delivered, 14), (BPS, port, FE0, 8080, 63));

        let reply = pod_frame(MAC_FE0, FE0, BPS, 8080, port, true, 50);
        let Forward::Fabric(outer) = b.handle_packet(SimTime(3), Port::Interface(FE0_IF), reply) else {
            panic!("{encapsulation:?}: reply encapsulated");
        };
        assert_eq!(outer[30..34], HOST_A.octets());
        let Forward::Interface(target, delivered) = a.handle_packet(SimTime(4), Port::Fabric, outer) else {
            panic!("{encapsulation:?}: reply delivered");
        };
        assert_eq!(target, BPS_IF);
        // The client sees the reply from exactly the address and port it targeted.
        assert_eq!(read(&delivered, 14), (VIP, 3000, BPS, port, 63));
        assert_eq!(b.flows().len(), 2, "one flow pair on host B");
    }
}

#[test]
fn a_local_replica_is_translated_on_the_same_host() {
    let (mut a, _) = pair(Encapsulation::MplsOverUdp);
    let port = port_towards(false);
    let request = pod_frame(MAC_BPS, BPS, VIP, port, 3000, true, 10);
    let Forward::Interface(target, delivered) = a.handle_packet(SimTime(1), Port::Interface(BPS_IF), request)
    else {
        panic!("delivered locally");
    };
    assert_eq!(target, FE1_IF);
    assert_eq!(read(&delivered, 14), (BPS, port, FE1, 8080, 63));
    let reply = pod_frame(MAC_FE1, FE1, BPS, 8080, port, true, 10);
    let Forward::Interface(target, delivered) = a.handle_packet(SimTime(2), Port::Interface(FE1_IF), reply)
    else {
        panic!("reply delivered locally");
    };
    assert_eq!(target, BPS_IF);
    assert_eq!(read(&delivered, 14), (VIP, 3000, BPS, port, 63));
}

#[test]
fn ecmp_spreads_flows_and_keeps_each_on_its_member() {
    let (mut a, _) = pair(Encapsulation::MplsOverUdp);
    let mut remote = 0;
    for port in 1000..3000u16 {
        for _ in 0..2 {
            let frame = pod_frame(MAC_BPS, BPS, VIP, port, 3000, false, 10);
            let first =
                matches!(a.handle_packet(SimTime(1), Port::Interface(BPS_IF), frame), Forward::Fabric(_));
            remote += u32::from(first);
        }
    }
    // UDP 3000 is not allowed by the policy: every flow was dropped, none forwarded.
    assert_eq!(remote, 0);
    for port in 1000..3000u16 {
        let mut fates = Vec::new();
        for _ in 0..2 {
            let frame = pod_frame(MAC_BPS, BPS, VIP, port, 3000, true, 10);
            fates.push(matches!(
                a.handle_packet(SimTime(1), Port::Interface(BPS_IF), frame),
                Forward::Fabric(_)
            ));
        }
        assert_eq!(fates[0], fates[1], "same flow, same member");
        remote += u32::from(fates[0]);
    }
    assert!((850..1150).contains(&remote), "{remote} of 2000 flows to the remote replica");
}

#[test]
fn policy_and_isolation_drops_are_named() {
    let (mut a, mut b) = pair(Encapsulation::MplsOverUdp);
    let fate = |vrouter: &mut Vrouter, port: Port, frame: Vec<u8>| match vrouter.handle_packet(
        SimTime(1),
        port,
        frame,
    ) {
        Forward::Drop { reason, .. } => Some(reason),
        _ => None,
    };
    // Another port of the service: the network policy denies it.
    assert_eq!(
        fate(&mut a, Port::Interface(BPS_IF), pod_frame(MAC_BPS, BPS, VIP, 5, 3001, true, 1)),
        Some(DropReason::Policy)
    );
    // A frontend pod directly: not in bps's VRF.
    assert_eq!(
        fate(&mut a, Port::Interface(BPS_IF), pod_frame(MAC_BPS, BPS, FE0, 5, 8080, true, 1)),
        Some(DropReason::NoRoute)
    );
    // The frontend cannot open connections to bps.
    assert_eq!(
        fate(&mut b, Port::Interface(FE0_IF), pod_frame(MAC_FE0, FE0, BPS, 5, 80, true, 1)),
        Some(DropReason::NoRoute)
    );
    // A spoofed source.
    assert_eq!(
        fate(&mut a, Port::Interface(BPS_IF), pod_frame(MAC_BPS, FE1, VIP, 5, 3000, true, 1)),
        Some(DropReason::SourceMismatch)
    );
    // The denied flow is remembered: the second packet hits a drop entry.
    assert_eq!(
        fate(&mut a, Port::Interface(BPS_IF), pod_frame(MAC_BPS, BPS, VIP, 5, 3001, true, 1)),
        Some(DropReason::Policy)
    );
    assert_eq!(a.counters().flow_hits, 1);
    assert_eq!(a.counters().drops[&DropReason::Policy], 2);
    assert_eq!(a.interface_counters(BPS_IF).unwrap().drops, 4);
}

#[test]
fn destination_policy_is_enforced_too() {
    // Host B's service policy is stricter than host A's: only port 3000 from VN_BPS, and here
    // it denies everything. A request allowed at A is dropped at B.
    let (mut a, mut b) = pair(Encapsulation::MplsOverUdp);
    b.handle_command(
        SimTime::ZERO,
        Command::SetVrfAcl { vrf: VRF_SVC, acl: Acl { rules: vec![], default: Verdict::Deny } },
    )
    .unwrap();
    let request = pod_frame(MAC_BPS, BPS, VIP, port_towards(true), 3000, true, 10);
    let Forward::Fabric(outer) = a.handle_packet(SimTime(1), Port::Interface(BPS_IF), request) else {
        panic!("sent")
    };
    assert!(matches!(
        b.handle_packet(SimTime(2), Port::Fabric, outer),
        Forward::Drop { reason: DropReason::Policy, .. }
    ));
}

#[test]
fn receive_and_discard_next_hops() {
    let (mut a, _) = pair(Encapsulation::MplsOverUdp);
    let gateway: Ipv4Addr = "10.0.0.1".parse().unwrap();
    let blackhole: Ipv4Addr = "10.0.0.99".parse().unwrap();
    for (ip, next_hop) in [(gateway, NextHop::Receive), (blackhole, NextHop::Discard)] {
        let command =
            Command::SetRoute { vrf: VRF_BPS, prefix: Ipv4Net::from(ip), route: route(next_hop, VN_BPS) };
        a.handle_command(SimTime::ZERO, command).unwrap();
    }
    let to_host = a.handle_packet(
        SimTime(1),
        Port::Interface(BPS_IF),
        pod_frame(MAC_BPS, BPS, gateway, 1, 53, false, 8),
    );
    let Forward::Host(frame) = to_host else { panic!("{to_host:?}") };
    assert_eq!(read(&frame, 14), (BPS, 1, gateway, 53, 63));
    let dropped = a.handle_packet(
        SimTime(1),
        Port::Interface(BPS_IF),
        pod_frame(MAC_BPS, BPS, blackhole, 1, 53, false, 8),
    );
    assert!(matches!(dropped, Forward::Drop { reason: DropReason::Discard, .. }));
}

#[test]
fn ttl_mtu_and_unknown_labels() {
    let (mut a, mut b) = pair(Encapsulation::MplsOverUdp);
    let port = port_towards(true);
    let mut expiring = pod_frame(MAC_BPS, BPS, VIP, port, 3000, true, 10);
    expiring[22] = 1;
    let sum = checksum::finish(checksum::ones_complement_sum(&{
        let mut h = expiring[14..34].to_vec();
        h[10] = 0;
        h[11] = 0;
        h
    }));
    expiring[24..26].copy_from_slice(&sum.to_be_bytes());
    assert!(matches!(
        a.handle_packet(SimTime(1), Port::Interface(BPS_IF), expiring),
        Forward::Drop { reason: DropReason::TtlExpired, .. }
    ));
    // 1480 bytes of IP fit a 1500 MTU, but not with 32 more bytes of outer headers.
    let big = pod_frame(MAC_BPS, BPS, VIP, port, 3000, true, 1440);
    assert!(matches!(
        a.handle_packet(SimTime(1), Port::Interface(BPS_IF), big),
        Forward::Drop { reason: DropReason::MtuExceeded, .. }
    ));
    // A label host B never handed out.
    let request = pod_frame(MAC_BPS, BPS, VIP, port, 3000, true, 10);
    let Forward::Fabric(mut outer) = a.handle_packet(SimTime(1), Port::Interface(BPS_IF), request) else {
        panic!("sent")
    };
    outer[42..46].copy_from_slice(&MplsLabel { label: 999, tc: 0, bottom: true, ttl: 64 }.to_bytes());
    assert!(matches!(
        b.handle_packet(SimTime(1), Port::Fabric, outer.clone()),
        Forward::Drop { reason: DropReason::UnknownLabel, .. }
    ));
    // Addressed to host A, arriving at host B.
    assert!(matches!(
        a.handle_packet(SimTime(1), Port::Fabric, outer.clone()),
        Forward::Drop { reason: DropReason::NotForHost, .. }
    ));
    // A corrupted outer header.
    outer[20] ^= 0xff;
    assert!(matches!(
        b.handle_packet(SimTime(1), Port::Fabric, outer),
        Forward::Drop { reason: DropReason::BadChecksum, .. }
    ));
}

#[test]
fn the_flow_table_bound_refuses_new_flows_only() {
    let (a, _) = pair(Encapsulation::MplsOverUdp);
    let mut a = Vrouter { flows: FlowTable::new(4), ..a };
    let send = |a: &mut Vrouter, port: u16| {
        a.handle_packet(
            SimTime(1),
            Port::Interface(BPS_IF),
            pod_frame(MAC_BPS, BPS, VIP, port, 3000, true, 10),
        )
    };
    assert!(!matches!(send(&mut a, 1), Forward::Drop { .. }));
    assert!(!matches!(send(&mut a, 2), Forward::Drop { .. }));
    assert!(matches!(send(&mut a, 3), Forward::Drop { reason: DropReason::FlowTableFull, .. }));
    assert!(!matches!(send(&mut a, 1), Forward::Drop { .. }), "established flows keep working");
    assert_eq!(a.flows().len(), 4);
}

#[test]
fn idle_flows_age_out() {
    let (mut a, _) = pair(Encapsulation::MplsOverUdp);
    let frame = pod_frame(MAC_BPS, BPS, VIP, 7, 3000, true, 10);
    a.handle_packet(SimTime(0), Port::Interface(BPS_IF), frame);
    assert_eq!(a.flows().len(), 2);
    let due = a.poll_timeout().expect("aging scheduled");
    assert_eq!(due, SimTime(0) + a.config().flow_idle_timeout);
    a.handle_timeout(due);
    assert_eq!(a.flows().len(), 2, "idle for exactly the timeout: kept");
    let next = a.poll_timeout().expect("still scheduled");
    a.handle_timeout(next);
    assert_eq!(a.flows().len(), 0);
    assert_eq!(a.counters().flows_aged, 2);
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn route_changes_move_only_affected_flows() {
    let (mut a, _) = pair(Encapsulation::MplsOverUdp);
    let send = |a: &mut Vrouter, port: u16| {
        let frame = pod_frame(MAC_BPS, BPS, VIP, port, 3000, true, 10);
        matches!(a.handle_packet(SimTime(1), Port::Interface(BPS_IF), frame), Forward::Fabric(_))
    };
    let remote_before: Vec<bool> = (0..40).map(|port| send(&mut a, port)).collect();
    let unrelated = pod_frame(MAC_FE1, FE1, FE0, 1, 2, false, 10);
    a.handle_packet(SimTime(1), Port::Interface(FE1_IF), unrelated);
    let remote = remote_before.iter().filter(|&&r| r).count();
    assert!(remote > 0 && remote < 40);
    assert_eq!(a.flows().len(), 2 * 40 + 2);
    // The local replica goes away: the VIP's route keeps only host B's. Flows to host B are
    // established connections and stay; flows to the local replica are judged again.
    let only_b = Command::SetRoute {
        vrf: VRF_BPS,
        prefix: "10.96.0.2/32".parse().unwrap(),
        route: route(tunnel(HOST_B, 19, 3), VN_SVC),
    };
    a.handle_command(SimTime(2), only_b).unwrap();
    assert_eq!(a.flows().len(), 2 * remote + 2, "the remote flows and the frontend pair remain");
    let hits = a.counters().flow_hits;
    assert!((0..40).all(|port| send(&mut a, port)), "every flow now goes to host B");
    assert_eq!(a.counters().flow_hits - hits, remote as u64, "the remote flows kept their entries");
    // A backend is added: established flows keep their member.
    let both = Command::SetRoute {
        vrf: VRF_BPS,
        prefix: "10.96.0.2/32".parse().unwrap(),
        route: route(NextHop::Composite(vec![tunnel(HOST_B, 19, 3), tunnel(HOST_A, 20, 3)]), VN_SVC),
    };
    a.handle_command(SimTime(3), both).unwrap();
    assert!((0..40).all(|port| send(&mut a, port)), "no established flow moved to the new backend");
}

/// Golden bytes of one encapsulated packet per encapsulation, reviewed by hand: outer Ethernet
/// to the underlay gateway, IPv4 172.16.0.1 > 172.16.0.2 (DF, TTL 64, proto 17 or 47), then
/// UDP to 6635 with the MPLS label 19 [S] TTL 64, or UDP to 4789 with VNI 3 and the inner
/// Ethernet header, or GRE 0x8847 with the label; then the inner IPv4/UDP packet with TTL 63.
#[test]
fn golden_encapsulated_bytes() {
    let mut snapshot = String::new();
    for encapsulation in [Encapsulation::MplsOverUdp, Encapsulation::Vxlan, Encapsulation::MplsOverGre] {
        let (mut a, _) = pair(encapsulation);
        // Pod to pod across hosts in the frontend network: no NAT, no ECMP.
        let frame = pod_frame(MAC_FE1, FE1, FE0, 5353, 53, false, 4);
        let Forward::Fabric(outer) = a.handle_packet(SimTime(1), Port::Interface(FE1_IF), frame) else {
            panic!("sent")
        };
        snapshot += &format!("{encapsulation:?} ({} bytes)\n", outer.len());
        for line in outer.chunks(16) {
            let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
            snapshot += &format!("  {}\n", hex.join(" "));
        }
    }
    insta::assert_snapshot!(snapshot);
}

proptest! {
    /// No bytes make the vrouter panic, from a pod or from the fabric; every frame gets one fate.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), from_pod: bool) {
        let (mut a, _) = pair(Encapsulation::MplsOverUdp);
        let port = if from_pod { Port::Interface(BPS_IF) } else { Port::Fabric };
        let _ = a.handle_packet(SimTime(1), port, bytes);
    }

    /// Mutations of a valid encapsulated frame never panic the receiver.
    #[test]
    fn mutated_tunnel_frames_never_panic(flips in prop::collection::vec((0usize..200, any::<u8>()), 1..6), cut in 0usize..200) {
        let (mut a, mut b) = pair(Encapsulation::MplsOverUdp);
        let frame = pod_frame(MAC_FE1, FE1, FE0, 1, 2, false, 40);
        let Forward::Fabric(mut outer) = a.handle_packet(SimTime(1), Port::Interface(FE1_IF), frame) else { panic!("sent") };
        for (at, value) in flips {
            if let Some(byte) = outer.get_mut(at) {
                *byte ^= value;
            }
        }
        outer.truncate(cut.max(1));
        let _ = b.handle_packet(SimTime(2), Port::Fabric, outer);
    }

    /// Encapsulation then decapsulation delivers the inner packet unchanged but for the TTL
    /// (and its checksum), for every encapsulation, protocol and size.
    #[test]
    fn encap_then_decap_is_the_identity_on_the_inner_packet(
        encapsulation in prop::sample::select(vec![Encapsulation::MplsOverUdp, Encapsulation::MplsOverGre, Encapsulation::Vxlan]),
        sport: u16, dport: u16, tcp: bool, payload in 0usize..1000,
    ) {
        let (mut a, mut b) = pair(encapsulation);
        let frame = pod_frame(MAC_FE1, FE1, FE0, sport, dport, tcp, payload);
        let original = frame.clone();
        let Forward::Fabric(outer) = a.handle_packet(SimTime(1), Port::Interface(FE1_IF), frame) else { panic!("sent") };
        let Forward::Interface(target, delivered) = b.handle_packet(SimTime(2), Port::Fabric, outer) else { panic!("delivered") };
        prop_assert_eq!(target, FE0_IF);
        prop_assert_eq!(delivered.len(), original.len());
        prop_assert_eq!(delivered[14 + 8], original[14 + 8] - 1);
        // Everything after the IP checksum is unchanged.
        prop_assert_eq!(&delivered[14 + 12..], &original[14 + 12..]);
        prop_assert_eq!(read(&delivered, 14).4, 63);
    }
}

/// One line per header, like tcpdump, for the packet walk.
fn describe(frame: &[u8]) -> String {
    let mac = |m: &[u8]| m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    let mut out = format!("eth {} > {}", mac(&frame[6..12]), mac(&frame[0..6]));
    let mut at = 14;
    loop {
        let ip = &frame[at..];
        let (src, dst) =
            (Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]), Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
        let l4 = at + usize::from(ip[0] & 0xf) * 4;
        let ports = (
            u16::from_be_bytes([frame[l4], frame[l4 + 1]]),
            u16::from_be_bytes([frame[l4 + 2], frame[l4 + 3]]),
        );
        match (ip[9], ports.1) {
            (17, MPLS_UDP_PORT) => {
                let label = MplsLabel::parse(&frame[l4 + 8..]).unwrap();
                out += &format!(
                    "\n  | IPv4 {src} > {dst} ttl {} | UDP {} > {} | MPLS label {} [S] ttl {}",
                    ip[8], ports.0, ports.1, label.label, label.ttl
                );
                at = l4 + 12;
            }
            (6, _) => {
                let flags = frame[l4 + 13];
                let names: Vec<&str> =
                    [(0x02, "SYN"), (0x08, "PSH"), (0x10, "ACK"), (0x01, "FIN"), (0x04, "RST")]
                        .into_iter()
                        .filter(|(bit, _)| flags & bit != 0)
                        .map(|(_, name)| name)
                        .collect();
                let payload = frame.len() - l4 - 20;
                out += &format!(
                    "\n  | IPv4 {src} > {dst} ttl {} | TCP {} > {} [{}] {payload} bytes",
                    ip[8],
                    ports.0,
                    ports.1,
                    names.join(" ")
                );
                return out;
            }
            _ => return out + "\n  | ?",
        }
    }
}

/// The book's packet walk ("The overlay data path"): a request from bps to the frontend's
/// ClusterIP, across the tunnel to the replica on host B, and the reply back, with the bytes at
/// every step. Reviewed by hand: the VIP stays in the inner header until host B translates it;
/// the reply leaves host B already translated back to the VIP and port 3000.
#[test]
fn packet_walk_for_the_book() {
    let (mut a, mut b) = pair(Encapsulation::MplsOverUdp);
    let port = port_towards(true);
    let mut walk = String::new();
    let mut step =
        |title: &str, frame: &[u8]| walk += &format!("{title}\n  {}\n{}\n", describe(frame), hex(frame));

    let request = pod_frame(MAC_BPS, BPS, VIP, port, 3000, true, 4);
    step("1. bps-0 sends to the frontend ClusterIP (host A, interface of bps-0)", &request);
    let Forward::Fabric(outer) = a.handle_packet(SimTime(1), Port::Interface(BPS_IF), request) else {
        panic!("sent")
    };
    step(
        "2. host A's vrouter: route in VRF bps, ECMP picks frontend-0's floating-IP label 19 on host B; MPLS over UDP",
        &outer,
    );
    let Forward::Interface(_, delivered) = b.handle_packet(SimTime(2), Port::Fabric, outer) else {
        panic!("delivered")
    };
    step(
        "3. host B's vrouter: label 19 is frontend-0 in the service VRF; destination NAT to 10.0.0.20:8080",
        &delivered,
    );
    let reply = pod_frame(MAC_FE0, FE0, BPS, 8080, port, true, 4);
    step("4. frontend-0 answers", &reply);
    let Forward::Fabric(outer) = b.handle_packet(SimTime(3), Port::Interface(FE0_IF), reply) else {
        panic!("sent")
    };
    step(
        "5. host B's vrouter: the reverse flow translates the source back to the VIP and port 3000; tunnel to bps-0's label 16 on host A",
        &outer,
    );
    let Forward::Interface(_, delivered) = a.handle_packet(SimTime(4), Port::Fabric, outer) else {
        panic!("delivered")
    };
    step(
        "6. host A's vrouter: label 16 is bps-0; the flow created by the request lets the reply in",
        &delivered,
    );
    insta::assert_snapshot!(walk);
}

/// `explain` says what `handle_packet` then does — the ECMP member and its label, the floating
/// IP's translation, the ACL and rule that decide — and changes nothing.
#[test]
fn explanations_name_the_ecmp_member_the_nat_target_and_the_deciding_rule() {
    let (mut a, mut b) = pair(Encapsulation::MplsOverUdp);
    for remote in [true, false] {
        let port = port_towards(remote);
        let request = pod_frame(MAC_BPS, BPS, VIP, port, 3000, true, 100);
        let (counters, flows) = (a.counters().clone(), a.flows().len());
        let steps = a.explain(SimTime(1), Port::Interface(BPS_IF), &request);
        assert_eq!((a.counters(), a.flows().len()), (&counters, flows), "explaining changes nothing");
        let text = steps.join("\n");
        assert!(text.contains("flow table: no entry"), "{text}");
        assert!(text.contains("composite of 2 members"), "{text}");
        assert!(text.contains("VN ACL of VRF 1: Allow by rule #1"), "{text}");
        assert!(text.contains("ECMP: member "), "{text}");
        match a.handle_packet(SimTime(1), Port::Interface(BPS_IF), request) {
            Forward::Fabric(outer) => {
                assert!(remote);
                assert!(text.contains(&format!("tunnel to host {HOST_B} label")), "{text}");
                assert!(text.contains("encapsulate MPLS-over-UDP label"), "{text}");
                assert_eq!(steps.last().unwrap(), "to the fabric");
                let far = b.explain(SimTime(2), Port::Fabric, &outer).join("\n");
                assert!(far.contains("decapsulate MPLS-over-UDP from 172.16.0.1: label"), "{far}");
                assert!(far.contains(&format!("destination NAT to {FE0}:8080")), "{far}");
                assert!(far.ends_with(&format!("deliver to interface frontend-0 ({FE0})")), "{far}");
                let Forward::Interface(target, _) = b.handle_packet(SimTime(2), Port::Fabric, outer) else {
                    panic!("delivered");
                };
                assert_eq!(target, FE0_IF);
            }
            Forward::Interface(target, _) => {
                assert!(!remote);
                assert_eq!(target, FE1_IF);
                assert!(text.contains(&format!("destination NAT to {FE1}:8080")), "{text}");
                assert!(text.ends_with(&format!("deliver to interface frontend-1 ({FE1})")), "{text}");
            }
            other => panic!("unexpected {other:?}"),
        }
        // The flow pair exists now: the explanation names the entry.
        let again = a.explain(
            SimTime(3),
            Port::Interface(BPS_IF),
            &pod_frame(MAC_BPS, BPS, VIP, port, 3000, true, 100),
        );
        assert!(again.join("\n").contains("flow table hit"), "{again:?}");
    }
    // Port 3001 of the service: no rule of bps's network allows it.
    let denied =
        a.explain(SimTime(4), Port::Interface(BPS_IF), &pod_frame(MAC_BPS, BPS, VIP, 45000, 3001, true, 100));
    assert!(denied.join("\n").contains("VN ACL of VRF 1: Deny by default"), "{denied:?}");
    assert_eq!(denied.last().unwrap(), "drop: policy");
    assert!(matches!(
        a.handle_packet(
            SimTime(4),
            Port::Interface(BPS_IF),
            pod_frame(MAC_BPS, BPS, VIP, 45000, 3001, true, 100)
        ),
        Forward::Drop { reason: DropReason::Policy, .. }
    ));
}

/// One host, one network, a client pod whose ingress ACL admits nothing and a server it calls:
/// replies come back through the flow pair, a connection the server opens is refused. With the
/// planted `reverse_flow_skips_policy`, the server's connection is taken for the reverse flow
/// of the client's (same addresses, other ports) and delivered unjudged.
#[test]
fn only_the_reply_of_a_connection_skips_policy_unless_the_reverse_flow_bug_is_planted() {
    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 30);
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 31);
    const MAC_CLIENT: [u8; 6] = [2, 0, 0, 0, 0, 30];
    const MAC_SERVER: [u8; 6] = [2, 0, 0, 0, 0, 31];
    let (client, server) = (InterfaceId(30), InterfaceId(31));
    let host = |planted: PlantedBugs| {
        let mut vrouter = Vrouter::new(VrouterConfig { planted, ..VrouterConfig::new(HOST_A) });
        let commands = [
            Command::AddVrf { vrf: VRF_FE, vn: VN_FE, vni: 2, acl: Acl::allow_all() },
            Command::AddInterface {
                id: client,
                name: "client".into(),
                ip: CLIENT,
                mac: MAC_CLIENT,
                vrf: VRF_FE,
                label: 30,
            },
            Command::AddInterface {
                id: server,
                name: "server".into(),
                ip: SERVER,
                mac: MAC_SERVER,
                vrf: VRF_FE,
                label: 31,
            },
            Command::SetRoute {
                vrf: VRF_FE,
                prefix: "10.0.0.30/32".parse().unwrap(),
                route: route(NextHop::Interface(client), VN_FE),
            },
            Command::SetRoute {
                vrf: VRF_FE,
                prefix: "10.0.0.31/32".parse().unwrap(),
                route: route(NextHop::Interface(server), VN_FE),
            },
            Command::SetInterfaceAcls {
                id: client,
                ingress: Some(Acl { rules: vec![], default: Verdict::Deny }),
                egress: None,
            },
        ];
        for command in commands {
            vrouter.handle_command(SimTime::ZERO, command).expect("valid programming");
        }
        vrouter
    };
    let fate = |vrouter: &mut Vrouter, from: InterfaceId, frame: Vec<u8>| match vrouter.handle_packet(
        SimTime(1),
        Port::Interface(from),
        frame,
    ) {
        Forward::Interface(to, _) => Ok(to),
        Forward::Drop { reason, .. } => Err(reason),
        other => panic!("unexpected {other:?}"),
    };
    let call = || pod_frame(MAC_CLIENT, CLIENT, SERVER, 40000, 8080, true, 10);
    let reply = || pod_frame(MAC_SERVER, SERVER, CLIENT, 8080, 40000, true, 10);
    let callback = || pod_frame(MAC_SERVER, SERVER, CLIENT, 50000, 9000, true, 10);
    for (planted, callback_fate) in [(false, Err(DropReason::Policy)), (true, Ok(client))] {
        let mut vrouter = host(PlantedBugs { reverse_flow_skips_policy: planted, ..PlantedBugs::default() });
        assert_eq!(fate(&mut vrouter, client, call()), Ok(server));
        assert_eq!(fate(&mut vrouter, server, reply()), Ok(client), "replies ride the flow pair");
        let explained = vrouter.explain(SimTime(1), Port::Interface(server), &callback()).join("\n");
        assert_eq!(
            explained.contains(
                "taken for the reverse flow of 10.0.0.30:40000 > 10.0.0.31:8080 tcp: policy skipped"
            ),
            planted,
            "{explained}"
        );
        assert_eq!(explained.contains("ingress ACL of client: Deny by default"), !planted, "{explained}");
        assert_eq!(fate(&mut vrouter, server, callback()), callback_fate, "planted: {planted}");
    }
}
