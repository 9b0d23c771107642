//! A two-host testbed, programmed by hand as the network manager would program it for the
//! seeds' example: a load generator `bps` on host A reaching service `frontend` (ClusterIP
//! 10.96.0.2:3000 → the pods' port 8080), with one replica on host B and one on host A.
//!
//! Used by the unit tests and the benchmarks (quinn's `Pair`, str0m's `progress`): small, in
//! the crate, and public so that benchmarks outside the test build can use it.

use std::net::Ipv4Addr;

use etherparse::PacketBuilder;
use netsim_core::SimTime;

use crate::acl::{Acl, AclRule, Match, Verdict, VnId};
use crate::nexthop::{NextHop, Tunnel};
use crate::overlay::{Command, Encapsulation, FloatingIp, Route, VROUTER_MAC, Vrouter, VrouterConfig};
use crate::{InterfaceId, VrfId};

/// Host A's underlay address.
pub const HOST_A: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);
/// Host B's underlay address.
pub const HOST_B: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 2);
/// The load generator pod.
pub const BPS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
/// The frontend replica on host B.
pub const FE0: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 20);
/// The frontend replica on host A.
pub const FE1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 21);
/// The frontend service's ClusterIP.
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 2);
/// bps's interface (host A).
pub const BPS_IF: InterfaceId = InterfaceId(1);
/// frontend-0's interface (host B).
pub const FE0_IF: InterfaceId = InterfaceId(2);
/// frontend-1's interface (host A).
pub const FE1_IF: InterfaceId = InterfaceId(3);
/// The bps network.
pub const VN_BPS: VnId = VnId(1);
/// The frontend network.
pub const VN_FE: VnId = VnId(2);
/// The frontend service's network.
pub const VN_SVC: VnId = VnId(3);
/// The bps VRF.
pub const VRF_BPS: VrfId = VrfId(1);
/// The frontend VRF.
pub const VRF_FE: VrfId = VrfId(2);
/// The service VRF.
pub const VRF_SVC: VrfId = VrfId(3);
/// bps's MAC.
pub const MAC_BPS: [u8; 6] = [2, 0, 0, 0, 0, 10];
/// frontend-0's MAC.
pub const MAC_FE0: [u8; 6] = [2, 0, 0, 0, 0, 20];
/// frontend-1's MAC.
pub const MAC_FE1: [u8; 6] = [2, 0, 0, 0, 0, 21];

/// A tunnel next hop.
pub fn tunnel(host: Ipv4Addr, label: u32, vni: u32) -> NextHop {
    NextHop::Tunnel(Tunnel { host, label, vni })
}

/// A route into network `vn`.
pub fn route(next_hop: NextHop, vn: VnId) -> Route {
    Route { next_hop, vn: Some(vn) }
}

/// bps may reach its own network, and the frontend service on TCP 3000.
fn bps_policy() -> Acl {
    Acl {
        rules: vec![
            AclRule::allow(Match::Vn(VN_BPS), Match::Vn(VN_BPS)),
            AclRule {
                protocol: Some(6),
                dst_ports: (3000, 3000),
                ..AclRule::allow(Match::Vn(VN_BPS), Match::Vn(VN_SVC))
            },
        ],
        default: Verdict::Deny,
    }
}

fn service_policy() -> Acl {
    Acl {
        rules: vec![AclRule {
            protocol: Some(6),
            dst_ports: (3000, 3000),
            ..AclRule::allow(Match::Vn(VN_BPS), Match::Vn(VN_SVC))
        }],
        default: Verdict::Deny,
    }
}

fn frontend_policy() -> Acl {
    Acl { rules: vec![AclRule::allow(Match::Vn(VN_FE), Match::Vn(VN_FE))], default: Verdict::Deny }
}

/// Host A's and host B's vrouters, programmed.
pub fn pair(encapsulation: Encapsulation) -> (Vrouter, Vrouter) {
    pair_between(HOST_A, HOST_B, encapsulation)
}

/// The same two vrouters on hosts with other underlay addresses (as a fabric numbers them).
pub fn pair_between(host_a: Ipv4Addr, host_b: Ipv4Addr, encapsulation: Encapsulation) -> (Vrouter, Vrouter) {
    let vip_route = route(NextHop::Composite(vec![tunnel(host_b, 19, 3), tunnel(host_a, 20, 3)]), VN_SVC);
    let mut a = Vrouter::new(VrouterConfig {
        encapsulation,
        host_mac: [2, 0, 0, 0, 1, 1],
        ..VrouterConfig::new(host_a)
    });
    let mut b = Vrouter::new(VrouterConfig {
        encapsulation,
        host_mac: [2, 0, 0, 0, 1, 2],
        ..VrouterConfig::new(host_b)
    });
    let commands_a = vec![
        Command::AddVrf { vrf: VRF_BPS, vn: VN_BPS, vni: 1, acl: bps_policy() },
        Command::AddVrf { vrf: VRF_FE, vn: VN_FE, vni: 2, acl: frontend_policy() },
        Command::AddVrf { vrf: VRF_SVC, vn: VN_SVC, vni: 3, acl: service_policy() },
        Command::AddInterface {
            id: BPS_IF,
            name: "bps-0".into(),
            ip: BPS,
            mac: MAC_BPS,
            vrf: VRF_BPS,
            label: 16,
        },
        Command::AddInterface {
            id: FE1_IF,
            name: "frontend-1".into(),
            ip: FE1,
            mac: MAC_FE1,
            vrf: VRF_FE,
            label: 18,
        },
        Command::AddFloatingIp {
            interface: FE1_IF,
            floating_ip: FloatingIp { ip: VIP, vrf: VRF_SVC, ports: vec![(6, 3000, 8080)] },
            label: 20,
        },
        Command::SetRoute {
            vrf: VRF_BPS,
            prefix: "10.0.0.10/32".parse().unwrap(),
            route: route(NextHop::Interface(BPS_IF), VN_BPS),
        },
        Command::SetRoute { vrf: VRF_BPS, prefix: "10.96.0.2/32".parse().unwrap(), route: vip_route.clone() },
        Command::SetRoute {
            vrf: VRF_FE,
            prefix: "10.0.0.21/32".parse().unwrap(),
            route: route(NextHop::Interface(FE1_IF), VN_FE),
        },
        Command::SetRoute {
            vrf: VRF_FE,
            prefix: "10.0.0.20/32".parse().unwrap(),
            route: route(tunnel(host_b, 17, 2), VN_FE),
        },
        Command::SetRoute { vrf: VRF_SVC, prefix: "10.96.0.2/32".parse().unwrap(), route: vip_route.clone() },
        Command::SetRoute {
            vrf: VRF_SVC,
            prefix: "10.0.0.10/32".parse().unwrap(),
            route: route(NextHop::Interface(BPS_IF), VN_BPS),
        },
    ];
    let commands_b = vec![
        Command::AddVrf { vrf: VRF_FE, vn: VN_FE, vni: 2, acl: frontend_policy() },
        Command::AddVrf { vrf: VRF_SVC, vn: VN_SVC, vni: 3, acl: service_policy() },
        Command::AddInterface {
            id: FE0_IF,
            name: "frontend-0".into(),
            ip: FE0,
            mac: MAC_FE0,
            vrf: VRF_FE,
            label: 17,
        },
        Command::AddFloatingIp {
            interface: FE0_IF,
            floating_ip: FloatingIp { ip: VIP, vrf: VRF_SVC, ports: vec![(6, 3000, 8080)] },
            label: 19,
        },
        Command::SetRoute {
            vrf: VRF_FE,
            prefix: "10.0.0.20/32".parse().unwrap(),
            route: route(NextHop::Interface(FE0_IF), VN_FE),
        },
        Command::SetRoute {
            vrf: VRF_FE,
            prefix: "10.0.0.21/32".parse().unwrap(),
            route: route(tunnel(host_a, 18, 2), VN_FE),
        },
        Command::SetRoute { vrf: VRF_SVC, prefix: "10.96.0.2/32".parse().unwrap(), route: vip_route },
        Command::SetRoute {
            vrf: VRF_SVC,
            prefix: "10.0.0.10/32".parse().unwrap(),
            route: route(tunnel(host_a, 16, 1), VN_BPS),
        },
    ];
    for command in commands_a {
        a.handle_command(SimTime::ZERO, command).expect("valid programming");
    }
    for command in commands_b {
        b.handle_command(SimTime::ZERO, command).expect("valid programming");
    }
    (a, b)
}

/// A frame from a pod: Ethernet to the vrouter, IPv4, TCP (a SYN) or UDP, `payload` bytes.
pub fn pod_frame(
    mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    tcp: bool,
    payload: usize,
) -> Vec<u8> {
    let ip = PacketBuilder::ethernet2(mac, VROUTER_MAC).ipv4(src.octets(), dst.octets(), 64);
    let payload = vec![0x5a; payload];
    let mut frame = Vec::new();
    if tcp {
        ip.tcp(sport, dport, 7, 65535).syn().write(&mut frame, &payload).unwrap();
    } else {
        ip.udp(sport, dport).write(&mut frame, &payload).unwrap();
    }
    frame
}
