use super::*;
use crate::test_support::hex;
use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use netsim_core::acl::Verdict;
use netsim_core::chains::{AddrMatch, Rule};
use proptest::prelude::*;

const HOST_A: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);
const HOST_B: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 2);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
const LOCAL_SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 70);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 2);
const CLIENT_IF: InterfaceId = InterfaceId(1);
const SERVER_IF: InterfaceId = InterfaceId(2);
const LOCAL_SERVER_IF: InterfaceId = InterfaceId(3);
const T0: SimTime = SimTime::ZERO;

fn mac(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x0a, 0x58, o[0], o[1], o[2], o[3]]
}

/// Hosts A (client and a local server, block .0/26) and B (server, block .64/26), routes to
/// each other's block, and a service VIP:3000 backed by both servers on 8080.
fn pair(encapsulation: CalicoEncapsulation) -> (CalicoHost, CalicoHost) {
    let host =
        |ip, seed| CalicoHost::new(CalicoConfig { encapsulation, nat_seed: seed, ..CalicoConfig::new(ip) });
    let (mut a, mut b) = (host(HOST_A, 1), host(HOST_B, 2));
    let block_a: Ipv4Net = "10.0.0.0/26".parse().unwrap();
    let block_b: Ipv4Net = "10.0.0.64/26".parse().unwrap();
    let service = CalicoCommand::SetService {
        key: (VIP, 3000, 6),
        backends: vec![(SERVER, 8080), (LOCAL_SERVER, 8080)],
    };
    for command in [
        CalicoCommand::AddLocalBlock(block_a),
        CalicoCommand::SetRoute { prefix: block_b, next_hops: vec![HOST_B] },
        CalicoCommand::AddEndpoint { id: CLIENT_IF, name: "client".into(), ip: CLIENT, mac: mac(CLIENT) },
        CalicoCommand::AddEndpoint {
            id: LOCAL_SERVER_IF,
            name: "local-server".into(),
            ip: LOCAL_SERVER,
            mac: mac(LOCAL_SERVER),
        },
        service.clone(),
    ] {
        a.handle_command(T0, command).unwrap();
    }
    for command in [
        CalicoCommand::AddLocalBlock(block_b),
        CalicoCommand::SetRoute { prefix: block_a, next_hops: vec![HOST_A] },
        CalicoCommand::AddEndpoint { id: SERVER_IF, name: "server".into(), ip: SERVER, mac: mac(SERVER) },
        service,
    ] {
        b.handle_command(T0, command).unwrap();
    }
    (a, b)
}

fn packet(src: Ipv4Addr, dst: Ipv4Addr, src_port: u16, dst_port: u16) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(mac(src), CALICO_GATEWAY_MAC)
        .ipv4(src.octets(), dst.octets(), 64)
        .tcp(src_port, dst_port, 1, 1024);
    let payload = [7u8; 32];
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut frame, &payload).unwrap();
    frame
}

/// The frame's inner (or only) IPv4 packet's (src, dst, src_port, dst_port, ttl), checking
/// both checksums.
fn inspect(frame: &[u8]) -> (Ipv4Addr, Ipv4Addr, u16, u16, u8) {
    let sliced = SlicedPacket::from_ethernet(frame).expect("a valid frame");
    let Some(etherparse::NetSlice::Ipv4(ip)) = sliced.net else { panic!("IPv4") };
    let header = ip.header().to_header();
    assert_eq!(header.header_checksum, header.calc_header_checksum(), "IP checksum");
    let Some(TransportSlice::Tcp(tcp)) = sliced.transport else { panic!("TCP") };
    let expected = tcp.to_header().calc_checksum_ipv4(&header, tcp.payload()).unwrap();
    assert_eq!(tcp.checksum(), expected, "TCP checksum");
    (
        header.source.into(),
        header.destination.into(),
        tcp.source_port(),
        tcp.destination_port(),
        header.time_to_live,
    )
}

/// Addresses and ports of the frame's packet.
fn ends(frame: &[u8]) -> (Ipv4Addr, Ipv4Addr, u16, u16) {
    let (src, dst, src_port, dst_port, _) = inspect(frame);
    (src, dst, src_port, dst_port)
}

fn fabric(forward: Forward) -> Vec<u8> {
    match forward {
        Forward::Fabric(frame) => frame,
        other => panic!("expected the fabric, got {other:?}"),
    }
}

fn interface(forward: Forward) -> (InterfaceId, Vec<u8>) {
    match forward {
        Forward::Interface(id, frame) => (id, frame),
        other => panic!("expected an interface, got {other:?}"),
    }
}

fn dropped(forward: Forward) -> DropReason {
    match forward {
        Forward::Drop { reason, .. } => reason,
        other => panic!("expected a drop, got {other:?}"),
    }
}

#[test]
fn pods_on_different_hosts_talk_over_plain_routed_ip() {
    let (mut a, mut b) = pair(CalicoEncapsulation::None);
    let out = fabric(a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, SERVER, 40000, 8080)));
    // Plain IP on the wire: the pod addresses, the host as a router hop.
    assert_eq!(inspect(&out), (CLIENT, SERVER, 40000, 8080, 63));
    assert_eq!(&out[6..12], &a.config().host_mac);
    let (id, delivered) = interface(b.handle_packet(T0, Port::Fabric, out));
    assert_eq!(id, SERVER_IF);
    assert_eq!(inspect(&delivered), (CLIENT, SERVER, 40000, 8080, 62));
    assert_eq!((&delivered[0..6], &delivered[6..12]), (&mac(SERVER)[..], &CALICO_GATEWAY_MAC[..]));
    let reply = fabric(b.handle_packet(T0, Port::Interface(SERVER_IF), packet(SERVER, CLIENT, 8080, 40000)));
    let (id, _) = interface(a.handle_packet(T0, Port::Fabric, reply));
    assert_eq!(id, CLIENT_IF);
    assert_eq!((a.counters().connections, b.counters().connections), (1, 1));
    assert_eq!((a.counters().conntrack_hits, b.counters().conntrack_hits), (1, 1));
}

#[test]
fn ipip_and_vxlan_wrap_the_packet_to_the_next_hop_and_unwrap_it_there() {
    for (encapsulation, overhead) in [(CalicoEncapsulation::IpIp, 20), (CalicoEncapsulation::Vxlan, 50)] {
        let (mut a, mut b) = pair(encapsulation);
        let inner = packet(CLIENT, SERVER, 40000, 8080);
        let out = fabric(a.handle_packet(T0, Port::Interface(CLIENT_IF), inner.clone()));
        assert_eq!(out.len(), inner.len() + overhead);
        let outer = etherparse::Ipv4HeaderSlice::from_slice(&out[14..]).unwrap().to_header();
        assert_eq!(outer.header_checksum, outer.calc_header_checksum());
        assert_eq!((Ipv4Addr::from(outer.source), Ipv4Addr::from(outer.destination)), (HOST_A, HOST_B));
        assert_eq!(usize::from(outer.total_len), out.len() - 14);
        if encapsulation == CalicoEncapsulation::IpIp {
            assert_eq!(outer.protocol.0, IP_PROTO_IPIP);
            assert_eq!(inspect(&[&out[..14], &out[34..]].concat()).0, CLIENT);
        } else {
            assert_eq!(outer.protocol.0, IP_PROTO_UDP);
            assert_eq!(u16::from_be_bytes([out[36], out[37]]), VXLAN_UDP_PORT);
            assert_eq!(Vxlan::parse(&out[42..]).unwrap().vni, CALICO_VNI);
            assert_eq!(&out[50..56], &vxlan_mac(HOST_B));
            assert_eq!(inspect(&out[50..]).1, SERVER);
        }
        let (id, delivered) = interface(b.handle_packet(T0, Port::Fabric, out));
        assert_eq!(id, SERVER_IF);
        assert_eq!(delivered.len(), inner.len());
        assert_eq!(inspect(&delivered), (CLIENT, SERVER, 40000, 8080, 62));
        assert_eq!(b.counters().decapsulated, 1);
    }
}

#[test]
fn a_tunnel_to_another_host_is_not_unwrapped_here() {
    let (mut a, _) = pair(CalicoEncapsulation::IpIp);
    let (_, mut c) = pair(CalicoEncapsulation::IpIp);
    let out = fabric(a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, SERVER, 1, 8080)));
    let mut host_c = CalicoHost::new(CalicoConfig::new(Ipv4Addr::new(172, 16, 0, 9)));
    assert_eq!(dropped(host_c.handle_packet(T0, Port::Fabric, out.clone())), DropReason::NotForHost);
    // And a host does not forward plain packets for pods it does not have.
    let plain = packet(CLIENT, Ipv4Addr::new(10, 0, 0, 99), 1, 80);
    assert_eq!(dropped(c.handle_packet(T0, Port::Fabric, plain)), DropReason::NoRoute);
}

#[test]
fn kube_proxy_spreads_connections_evenly_and_replies_come_from_the_cluster_ip() {
    let (mut a, mut b) = pair(CalicoEncapsulation::None);
    let mut to_remote = 0;
    let connections = 4000u16;
    for port in 0..connections {
        let sport = 20000 + port;
        match a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, VIP, sport, 3000)) {
            Forward::Fabric(frame) => {
                to_remote += 1;
                assert_eq!(inspect(&frame), (CLIENT, SERVER, sport, 8080, 63));
                let (_, at_server) = interface(b.handle_packet(T0, Port::Fabric, frame));
                assert_eq!(inspect(&at_server).1, SERVER);
                let reply = fabric(b.handle_packet(
                    T0,
                    Port::Interface(SERVER_IF),
                    packet(SERVER, CLIENT, 8080, sport),
                ));
                let (id, back) = interface(a.handle_packet(T0, Port::Fabric, reply));
                assert_eq!(id, CLIENT_IF);
                assert_eq!(ends(&back), (VIP, CLIENT, 3000, sport));
            }
            Forward::Interface(id, frame) => {
                assert_eq!(id, LOCAL_SERVER_IF);
                assert_eq!(inspect(&frame), (CLIENT, LOCAL_SERVER, sport, 8080, 63));
                let reply = packet(LOCAL_SERVER, CLIENT, 8080, sport);
                let (id, back) = interface(a.handle_packet(T0, Port::Interface(LOCAL_SERVER_IF), reply));
                assert_eq!(id, CLIENT_IF);
                assert_eq!(ends(&back), (VIP, CLIENT, 3000, sport));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // Binomial(4000, 1/2): the standard deviation is about 32; allow five.
    assert!((to_remote - 2000i32).abs() < 160, "{to_remote} of {connections} to the remote backend");
    assert_eq!(a.counters().nat_connections, u64::from(connections));
}

fn allow_from(set: IpSetId, port: u16) -> PolicyChains {
    PolicyChains {
        ingress: vec![Rule {
            protocol: Some(6),
            src: AddrMatch::Set(set),
            dst: AddrMatch::Any,
            dst_ports: vec![(port, port)],
            action: Verdict::Allow,
        }],
        egress: Vec::new(),
    }
}

#[test]
fn policy_judges_new_connections_and_conntrack_lets_their_replies_through() {
    let (mut a, mut b) = pair(CalicoEncapsulation::None);
    // The server admits only the client, on 8080; its egress is closed entirely.
    b.handle_command(
        T0,
        CalicoCommand::SetIpSet { id: IpSetId(1), members: vec![SetMember::address(CLIENT)] },
    )
    .unwrap();
    b.handle_command(T0, CalicoCommand::SetPolicy { id: PolicyId(7), chains: allow_from(IpSetId(1), 8080) })
        .unwrap();
    b.handle_command(
        T0,
        CalicoCommand::SetEndpointPolicy {
            id: SERVER_IF,
            policy: EndpointPolicy { ingress: Some(vec![PolicyId(7)]), egress: Some(Vec::new()) },
        },
    )
    .unwrap();
    let allowed = fabric(a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, SERVER, 5000, 8080)));
    interface(b.handle_packet(T0, Port::Fabric, allowed));
    // The reply is not a new connection: the closed egress does not apply.
    let reply = fabric(b.handle_packet(T0, Port::Interface(SERVER_IF), packet(SERVER, CLIENT, 8080, 5000)));
    interface(a.handle_packet(T0, Port::Fabric, reply));
    // Another port, and the server opening a connection of its own, are denied.
    let other = fabric(a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, SERVER, 5001, 9090)));
    assert_eq!(dropped(b.handle_packet(T0, Port::Fabric, other)), DropReason::Policy);
    assert_eq!(
        dropped(b.handle_packet(T0, Port::Interface(SERVER_IF), packet(SERVER, CLIENT, 8080, 5002))),
        DropReason::Policy
    );
    assert_eq!(b.counters().drops[&DropReason::Policy], 2);
    // The local server: the client's egress is judged at its own host before anything leaves.
    a.handle_command(
        T0,
        CalicoCommand::SetEndpointPolicy {
            id: CLIENT_IF,
            policy: EndpointPolicy { ingress: None, egress: Some(Vec::new()) },
        },
    )
    .unwrap();
    assert_eq!(
        dropped(a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, LOCAL_SERVER, 6000, 8080))),
        DropReason::Policy
    );
    // Established connections survive the change (conntrack), as on Linux.
    fabric(a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, SERVER, 5000, 8080)));
}

/// The seeds' label model as felix compiles it, on the client: its own collection (set 2, here
/// holding both servers) by original destination on any port, and the service VIP:3000 (set 3)
/// by original destination and port.
fn label_model_on_the_client(a: &mut CalicoHost) {
    let collection = vec![SetMember::address(SERVER), SetMember::address(LOCAL_SERVER)];
    let used = vec![SetMember { address: VIP, port: Some((6, 3000)) }];
    let egress = vec![
        Rule {
            protocol: None,
            src: AddrMatch::Any,
            dst: AddrMatch::OriginalSet(IpSetId(2)),
            dst_ports: Vec::new(),
            action: Verdict::Allow,
        },
        Rule {
            protocol: None,
            src: AddrMatch::Any,
            dst: AddrMatch::OriginalPorts(IpSetId(3)),
            dst_ports: Vec::new(),
            action: Verdict::Allow,
        },
    ];
    for command in [
        CalicoCommand::SetIpSet { id: IpSetId(2), members: collection },
        CalicoCommand::SetIpSet { id: IpSetId(3), members: used },
        CalicoCommand::SetPolicy { id: PolicyId(4), chains: PolicyChains { ingress: Vec::new(), egress } },
        CalicoCommand::SetEndpointPolicy {
            id: CLIENT_IF,
            policy: EndpointPolicy { ingress: None, egress: Some(vec![PolicyId(4)]) },
        },
    ] {
        a.handle_command(T0, command).unwrap();
    }
}

#[test]
fn egress_chains_tell_a_service_call_from_a_call_to_its_backend_by_the_original_destination() {
    let (mut a, mut b) = pair(CalicoEncapsulation::None);
    // Only the service is used; the servers are not in the client's collection.
    label_model_on_the_client(&mut a);
    a.handle_command(T0, CalicoCommand::SetIpSet { id: IpSetId(2), members: Vec::new() }).unwrap();
    for sport in 20000..20020u16 {
        let explained =
            a.explain(T0, Port::Interface(CLIENT_IF), &packet(CLIENT, VIP, sport, 3000)).join("\n");
        assert!(
            explained.contains(
                "egress policy of client: Allow by policy #4 rule #1: allow to ctorigdst:port in set #3"
            ),
            "{explained}"
        );
        // Translated to a backend at this host, and admitted though the backend is no pod the
        // client may call: the chain saw the ClusterIP.
        match a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, VIP, sport, 3000)) {
            Forward::Fabric(frame) => {
                assert_eq!(ends(&frame).1, SERVER);
                interface(b.handle_packet(T0, Port::Fabric, frame));
                let reply = packet(SERVER, CLIENT, 8080, sport);
                let back = fabric(b.handle_packet(T0, Port::Interface(SERVER_IF), reply));
                let (id, back) = interface(a.handle_packet(T0, Port::Fabric, back));
                assert_eq!((id, ends(&back)), (CLIENT_IF, (VIP, CLIENT, 3000, sport)));
            }
            Forward::Interface(id, _) => assert_eq!(id, LOCAL_SERVER_IF),
            other => panic!("unexpected {other:?}"),
        }
    }
    // The same backends called by their own addresses, and the ClusterIP on another port
    // (which kube-proxy does not translate), are denied at the client.
    for (dst, port) in [(SERVER, 8080), (LOCAL_SERVER, 8080), (VIP, 3001)] {
        let explained =
            a.explain(T0, Port::Interface(CLIENT_IF), &packet(CLIENT, dst, 7000, port)).join("\n");
        assert!(
            explained.contains("egress policy of client: Deny: no rule of its policies matches"),
            "{explained}"
        );
        assert_eq!(
            dropped(a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, dst, 7000, port))),
            DropReason::Policy
        );
    }

    // With the servers in the client's collection they are reached directly, on any port;
    // and a collection that does not use the service cannot reach it through its ClusterIP
    // although every backend is in the collection.
    label_model_on_the_client(&mut a);
    a.handle_command(T0, CalicoCommand::SetIpSet { id: IpSetId(3), members: Vec::new() }).unwrap();
    fabric(a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, SERVER, 7001, 9999)));
    interface(a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, LOCAL_SERVER, 7001, 1)));
    assert_eq!(
        dropped(a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, VIP, 7002, 3000))),
        DropReason::Policy
    );
    let explained = a.explain(T0, Port::Interface(CLIENT_IF), &packet(CLIENT, SERVER, 7003, 22)).join("\n");
    assert!(explained.contains("Allow by policy #4 rule #0: allow to ctorigdst in set #2"), "{explained}");
}

#[test]
fn withdrawn_routes_removed_endpoints_and_blackholes_drop_with_reasons() {
    let (mut a, _) = pair(CalicoEncapsulation::None);
    fabric(a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, SERVER, 1, 80)));
    a.handle_command(T0, CalicoCommand::RemoveRoute("10.0.0.64/26".parse().unwrap())).unwrap();
    // Routing is per packet: the established connection loses its route at once.
    assert_eq!(
        dropped(a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, SERVER, 1, 80))),
        DropReason::NoRoute
    );
    // An unallocated address in our own block is blackholed.
    let unused = Ipv4Addr::new(10, 0, 0, 33);
    assert_eq!(
        dropped(a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, unused, 1, 80))),
        DropReason::NoRoute
    );
    // A pod may only send from its own address.
    assert_eq!(
        dropped(a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(SERVER, CLIENT, 1, 80))),
        DropReason::SourceMismatch
    );
    assert_eq!(
        dropped(a.handle_packet(T0, Port::Interface(InterfaceId(99)), packet(CLIENT, SERVER, 1, 80))),
        DropReason::UnknownInterface
    );
    // Removing an endpoint removes its route and flushes its connections.
    interface(a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, LOCAL_SERVER, 2, 80)));
    // Two connections (the first to the remote server): each is a pair of entries.
    assert_eq!(a.conntrack_len(), 4);
    a.handle_command(T0, CalicoCommand::RemoveEndpoint(LOCAL_SERVER_IF)).unwrap();
    assert_eq!((a.conntrack_len(), a.counters().conntrack_flushed), (2, 1));
    assert_eq!(
        dropped(a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, LOCAL_SERVER, 2, 80))),
        DropReason::NoRoute
    );
    assert_eq!(
        a.handle_command(T0, CalicoCommand::RemoveEndpoint(LOCAL_SERVER_IF)),
        Err(CalicoCommandError::UnknownEndpoint(LOCAL_SERVER_IF))
    );
}

/// Opens connections from the client to the VIP until kube-proxy's draw sends one to the remote
/// server; returns its source port.
fn remote_connection_port(host: &mut CalicoHost) -> u16 {
    (1000..)
        .find(|&p| {
            matches!(
                host.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, VIP, p, 3000)),
                Forward::Fabric(_)
            )
        })
        .expect("the draw reaches the remote backend within the ports")
}

#[test]
fn a_removed_backend_gets_no_more_packets_and_empty_services_reject() {
    let (mut a, _) = pair(CalicoEncapsulation::None);
    // Find a connection that went to the remote server, then remove that backend.
    let sport = remote_connection_port(&mut a);
    a.handle_command(
        T0,
        CalicoCommand::SetService { key: (VIP, 3000, 6), backends: vec![(LOCAL_SERVER, 8080)] },
    )
    .unwrap();
    assert!(a.counters().conntrack_flushed > 0);
    let (id, frame) =
        interface(a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, VIP, sport, 3000)));
    assert_eq!((id, ends(&frame).1), (LOCAL_SERVER_IF, LOCAL_SERVER));
    a.handle_command(T0, CalicoCommand::SetService { key: (VIP, 3000, 6), backends: Vec::new() }).unwrap();
    assert_eq!(
        dropped(a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, VIP, 1, 3000))),
        DropReason::NatNoMapping
    );
}

#[test]
fn a_shared_service_table_replaces_the_hosts_and_flushes_only_backends_that_went() {
    let (mut a, _) = pair(CalicoEncapsulation::None);
    let sport = remote_connection_port(&mut a);
    let both: Arc<[(Ipv4Addr, u16)]> = vec![(SERVER, 8080), (LOCAL_SERVER, 8080)].into();
    let table = Arc::new(ServiceTable::from([((VIP, 3000, 6), Arc::clone(&both))]));
    a.handle_command(T0, CalicoCommand::SetServices(Arc::clone(&table))).unwrap();
    a.handle_command(T0, CalicoCommand::SetServices(table)).unwrap();
    assert_eq!(a.counters().conntrack_flushed, 0, "same backends: nothing flushed");
    let local: Arc<[(Ipv4Addr, u16)]> = vec![(LOCAL_SERVER, 8080)].into();
    let table = Arc::new(ServiceTable::from([((VIP, 3000, 6), local)]));
    a.handle_command(T0, CalicoCommand::SetServices(table)).unwrap();
    assert!(a.counters().conntrack_flushed > 0);
    let (id, frame) =
        interface(a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, VIP, sport, 3000)));
    assert_eq!((id, ends(&frame).1), (LOCAL_SERVER_IF, LOCAL_SERVER));
    a.handle_command(T0, CalicoCommand::SetServices(Arc::default())).unwrap();
    // No service any more: the ClusterIP is just an address nobody routes.
    assert_eq!(
        dropped(a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, VIP, 1, 3000))),
        DropReason::NoRoute
    );
}

#[test]
fn a_learnt_route_behind_a_local_one_comes_back_when_it_goes() {
    let (mut a, _) = pair(CalicoEncapsulation::None);
    let client: Ipv4Net = Ipv4Net::from(CLIENT);
    let block_a: Ipv4Net = "10.0.0.0/26".parse().unwrap();
    // A learnt /32 for the local pod's address and a learnt route for our own block: hidden.
    a.handle_command(T0, CalicoCommand::SetRoute { prefix: client, next_hops: vec![HOST_B] }).unwrap();
    a.handle_command(T0, CalicoCommand::SetRoute { prefix: block_a, next_hops: vec![HOST_B, HOST_B] })
        .unwrap();
    assert_eq!(a.next_hops(CLIENT), Some(Vec::new()));
    assert_eq!(a.next_hops(Ipv4Addr::new(10, 0, 0, 30)), Some(Vec::new()));
    // The local routes go: the learnt ones are back.
    a.handle_command(T0, CalicoCommand::RemoveEndpoint(CLIENT_IF)).unwrap();
    assert_eq!(a.next_hops(CLIENT), Some(vec![HOST_B]));
    a.handle_command(T0, CalicoCommand::RemoveLocalBlock(block_a)).unwrap();
    assert_eq!(a.next_hops(Ipv4Addr::new(10, 0, 0, 30)), Some(vec![HOST_B]));
    // A local route over a learnt one hides it again; withdrawn meanwhile, it stays gone.
    a.handle_command(T0, CalicoCommand::AddLocalBlock(block_a)).unwrap();
    a.handle_command(T0, CalicoCommand::RemoveRoute(block_a)).unwrap();
    a.handle_command(T0, CalicoCommand::RemoveLocalBlock(block_a)).unwrap();
    assert_eq!(a.next_hops(Ipv4Addr::new(10, 0, 0, 30)), None);
    // Several next hops, deduplicated and sorted.
    a.handle_command(
        T0,
        CalicoCommand::SetRoute { prefix: block_a, next_hops: vec![HOST_B, HOST_A, HOST_B] },
    )
    .unwrap();
    assert_eq!(a.next_hops(Ipv4Addr::new(10, 0, 0, 30)), Some(vec![HOST_A, HOST_B]));
}

#[test]
fn conntrack_ages_out_idle_connections() {
    let (mut a, _) = pair(CalicoEncapsulation::None);
    fabric(a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, SERVER, 1, 80)));
    let due = a.poll_timeout().unwrap();
    assert_eq!(due, T0 + SimDuration::from_secs(60));
    a.handle_timeout(due + SimDuration::from_secs(1));
    assert_eq!((a.conntrack_len(), a.counters().conntrack_aged, a.poll_timeout()), (0, 2, None));
}

#[test]
fn encapsulation_past_the_underlay_mtu_is_dropped() {
    let (mut a, _) = pair(CalicoEncapsulation::IpIp);
    let builder = PacketBuilder::ethernet2(mac(CLIENT), CALICO_GATEWAY_MAC)
        .ipv4(CLIENT.octets(), SERVER.octets(), 64)
        .udp(1, 2);
    let mut frame = Vec::new();
    builder.write(&mut frame, &[0u8; 1472]).unwrap();
    assert_eq!(dropped(a.handle_packet(T0, Port::Interface(CLIENT_IF), frame)), DropReason::MtuExceeded);
}

#[test]
fn equal_cost_next_hops_share_connections_and_keep_each_on_one() {
    let (mut a, _) = pair(CalicoEncapsulation::IpIp);
    let hops = vec![HOST_B, Ipv4Addr::new(172, 16, 0, 3)];
    a.handle_command(
        T0,
        CalicoCommand::SetRoute { prefix: "10.0.0.64/26".parse().unwrap(), next_hops: hops.clone() },
    )
    .unwrap();
    let mut per_hop = [0; 2];
    for port in 0..400 {
        let out = fabric(a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, SERVER, port, 80)));
        let again = fabric(a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, SERVER, port, 80)));
        assert_eq!(out[30..34], again[30..34], "a connection stays on its next hop");
        per_hop[hops.iter().position(|h| h.octets() == out[30..34]).unwrap()] += 1;
    }
    assert!(per_hop.iter().all(|&n| n > 150), "{per_hop:?}");
}

proptest! {
    /// Whatever the client's port and backends, a connection through a service comes back to
    /// the client from exactly the ClusterIP and port it called.
    #[test]
    fn service_replies_are_translated_back(sport in 1u16.., vport in 1u16.., backend_port in 1u16..) {
        let (mut a, mut b) = pair(CalicoEncapsulation::Vxlan);
        let key = (VIP, vport, 6);
        let command = CalicoCommand::SetService { key, backends: vec![(SERVER, backend_port)] };
        a.handle_command(T0, command.clone()).unwrap();
        b.handle_command(T0, command).unwrap();
        let out = fabric(a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, VIP, sport, vport)));
        let (_, at_server) = interface(b.handle_packet(T0, Port::Fabric, out));
        prop_assert_eq!(ends(&at_server), (CLIENT, SERVER, sport, backend_port));
        let reply = fabric(b.handle_packet(T0, Port::Interface(SERVER_IF), packet(SERVER, CLIENT, backend_port, sport)));
        let (_, back) = interface(a.handle_packet(T0, Port::Fabric, reply));
        prop_assert_eq!(ends(&back), (VIP, CLIENT, vport, sport));
    }

    /// No bytes from a pod or the fabric make a host panic; each frame gets exactly one fate.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), from_pod: bool) {
        for encapsulation in [CalicoEncapsulation::None, CalicoEncapsulation::IpIp, CalicoEncapsulation::Vxlan] {
            let (mut a, _) = pair(encapsulation);
            let port = if from_pod { Port::Interface(CLIENT_IF) } else { Port::Fabric };
            let _ = a.handle_packet(T0, port, bytes.clone());
        }
    }

    /// Valid packets with some bytes changed or cut never make a host panic.
    #[test]
    fn mutated_packets_never_panic(flips in prop::collection::vec((0usize..120, any::<u8>()), 0..6), cut in 0usize..130) {
        for encapsulation in [CalicoEncapsulation::None, CalicoEncapsulation::IpIp, CalicoEncapsulation::Vxlan] {
            let (mut a, mut b) = pair(encapsulation);
            let mut frame = fabric(a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, SERVER, 9, 80)));
            let mut from_pod = packet(CLIENT, VIP, 9, 3000);
            for &(at, value) in &flips {
                if at < frame.len() { frame[at] = value; }
                if at < from_pod.len() { from_pod[at] = value; }
            }
            frame.truncate(cut.max(1));
            from_pod.truncate(cut.max(1));
            let _ = b.handle_packet(T0, Port::Fabric, frame);
            let _ = a.handle_packet(T0, Port::Interface(CLIENT_IF), from_pod);
        }
    }
}

/// A frame's headers in one line each: Ethernet, then IPv4 (and IP-in-IP) and TCP.
fn describe(frame: &[u8]) -> String {
    let mac = |m: &[u8]| m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    let mut out = format!("eth {} > {}", mac(&frame[6..12]), mac(&frame[0..6]));
    let mut at = 14;
    loop {
        let ip = &frame[at..];
        let (src, dst) =
            (Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]), Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
        let l4 = at + usize::from(ip[0] & 0xf) * 4;
        if ip[9] == IP_PROTO_IPIP {
            out += &format!("\n  | IPv4 {src} > {dst} ttl {} proto 4 (IP-in-IP)", ip[8]);
            at = l4;
            continue;
        }
        let port = |at: usize| u16::from_be_bytes([frame[at], frame[at + 1]]);
        out += &format!("\n  | IPv4 {src} > {dst} ttl {} | TCP {} > {}", ip[8], port(l4), port(l4 + 2));
        return out;
    }
}

/// The book's packet walk ("The Calico data path"): the overlay chapter's request from a client
/// to a service's ClusterIP and its reply, through Calico. Reviewed by hand: kube-proxy
/// translates at the client's host (step 2 already carries the backend's address and port),
/// the wire carries the pods' own addresses with no tunnel header (plain) or behind one 20-byte
/// IPv4 header (IP-in-IP), and the reply is translated back at the client's host (step 6).
#[test]
fn packet_walk_for_the_book() {
    let (mut a, mut b) = pair(CalicoEncapsulation::None);
    let mut ipip = pair(CalicoEncapsulation::IpIp).0;
    // kube-proxy's draws: the first connection whose backend is on host B (the IP-in-IP host
    // draws the same numbers, connection by connection).
    let (sport, out, tunnelled) = (40000u16..41000)
        .find_map(|p| {
            let out = a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, VIP, p, 3000));
            let tunnelled = ipip.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, VIP, p, 3000));
            match (out, tunnelled) {
                (Forward::Fabric(out), Forward::Fabric(tunnelled)) => Some((p, out, tunnelled)),
                _ => None,
            }
        })
        .unwrap();
    let mut walk = String::new();
    let mut step =
        |title: &str, frame: &[u8]| walk += &format!("{title}\n  {}\n{}\n", describe(frame), hex(frame));
    step(
        "1. the client (10.0.0.10, host A) sends to the service's ClusterIP 10.96.0.2:3000",
        &packet(CLIENT, VIP, sport, 3000),
    );
    step(
        "2. host A: kube-proxy picks the backend on host B and translates to 10.0.0.70:8080; egress policy; routed (TTL 63) via host B's block, plain IP",
        &out,
    );
    step("2'. the same with ipipMode: one outer IPv4 header, host A to host B, protocol 4", &tunnelled);
    let (_, delivered) = interface(b.handle_packet(T0, Port::Fabric, out));
    step("3. host B: the /32 route to the server's interface; ingress policy; conntrack entry", &delivered);
    let reply = packet(SERVER, CLIENT, 8080, sport);
    step("4. the server answers its client directly", &reply);
    let out = fabric(b.handle_packet(T0, Port::Interface(SERVER_IF), reply));
    step("5. host B: conntrack knows the connection (no policy); routed via host A's block", &out);
    let (_, delivered) = interface(a.handle_packet(T0, Port::Fabric, out));
    step("6. host A: conntrack translates the source back to the ClusterIP and port 3000", &delivered);
    insta::assert_snapshot!(walk);
}

/// `explain` says what `handle_packet` then does — the backend kube-proxy draws, the route,
/// the policy and rule — and changes nothing.
#[test]
fn explanations_name_the_backend_the_route_and_the_deciding_rule() {
    let (mut a, mut b) = pair(CalicoEncapsulation::IpIp);
    b.handle_command(
        T0,
        CalicoCommand::SetIpSet { id: IpSetId(1), members: vec![SetMember::address(CLIENT)] },
    )
    .unwrap();
    b.handle_command(T0, CalicoCommand::SetPolicy { id: PolicyId(7), chains: allow_from(IpSetId(1), 8080) })
        .unwrap();
    b.handle_command(
        T0,
        CalicoCommand::SetEndpointPolicy {
            id: SERVER_IF,
            policy: EndpointPolicy { ingress: Some(vec![PolicyId(7)]), egress: None },
        },
    )
    .unwrap();
    for sport in 30000..30040u16 {
        let request = packet(CLIENT, VIP, sport, 3000);
        let before = a.counters().clone();
        let steps = a.explain(T0, Port::Interface(CLIENT_IF), &request);
        assert_eq!(a.counters(), &before, "explaining changes nothing");
        let text = steps.join("\n");
        assert!(text.contains("conntrack: no entry"), "{text}");
        assert!(text.contains("has 2 backend(s)"), "{text}");
        match a.handle_packet(T0, Port::Interface(CLIENT_IF), request) {
            Forward::Fabric(frame) => {
                assert!(text.contains(&format!("kube-proxy DNAT: {VIP}:3000 -> {SERVER}:8080")), "{text}");
                assert!(text.contains(&format!("host {HOST_B}")), "{text}");
                assert!(text.contains("encapsulate IP-in-IP"), "{text}");
                assert_eq!(steps.last().unwrap(), &format!("to the fabric, towards host {HOST_B}"));
                let far = b.explain(T0, Port::Fabric, &frame).join("\n");
                assert!(far.contains("decapsulate IP-in-IP"), "{far}");
                assert!(far.contains("ingress policy of server: Allow by policy #7 rule #0"), "{far}");
                assert!(far.ends_with("deliver to endpoint server"), "{far}");
                interface(b.handle_packet(T0, Port::Fabric, frame));
            }
            Forward::Interface(id, _) => {
                assert_eq!(id, LOCAL_SERVER_IF);
                assert!(text.contains(&format!("-> {LOCAL_SERVER}:8080")), "{text}");
                assert!(text.ends_with("deliver to endpoint local-server"), "{text}");
            }
            other => panic!("unexpected {other:?}"),
        }
        // The connection is now tracked: the explanation names its entry.
        let again = a.explain(T0, Port::Interface(CLIENT_IF), &packet(CLIENT, VIP, sport, 3000)).join("\n");
        assert!(again.contains("conntrack: established"), "{again}");
    }
    // Another port is denied at the server, by the default of its policies.
    let other = fabric(a.handle_packet(T0, Port::Interface(CLIENT_IF), packet(CLIENT, SERVER, 5001, 9090)));
    let denied = b.explain(T0, Port::Fabric, &other);
    assert!(
        denied.join("\n").contains("Deny: no rule of its policies matches (default deny; policy #7)"),
        "{denied:?}"
    );
    assert_eq!(denied.last().unwrap(), "drop: policy");
    assert_eq!(dropped(b.handle_packet(T0, Port::Fabric, other)), DropReason::Policy);
}
