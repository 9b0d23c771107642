//! Calico data plane benchmarks: ns per packet on the fast path (a connection conntrack
//! knows), per new connection (kube-proxy NAT and policy), and the cost of policy evaluation as
//! the number of policies on an endpoint grows — iptables-style linear chains against
//! ipset-style set matching.
//!
//! `cargo bench -p netsim-vrouter --bench calico`. Recorded figures: the book's "Performance"
//! chapter.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use etherparse::PacketBuilder;
use netsim_core::SimTime;
use netsim_core::acl::Verdict;
use netsim_core::chains::{AddrMatch, EndpointPolicy, IpSetId, PolicyChains, PolicyId, Rule, SetMember};
use netsim_vrouter::calico::{
    CALICO_GATEWAY_MAC, CalicoCommand, CalicoConfig, CalicoEncapsulation, CalicoHost,
};
use netsim_vrouter::{DataPlane, Forward, InterfaceId, Port};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 70);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 2);
const CLIENT_IF: InterfaceId = InterfaceId(1);
const SERVER_IF: InterfaceId = InterfaceId(2);

/// Host A with the client, routing 10.0.0.64/26 to host B; host B with the server; a service
/// on both.
fn hosts(encapsulation: CalicoEncapsulation) -> (CalicoHost, CalicoHost) {
    let host = |last| {
        CalicoHost::new(CalicoConfig { encapsulation, ..CalicoConfig::new(Ipv4Addr::new(172, 16, 0, last)) })
    };
    let (mut a, mut b) = (host(1), host(2));
    let service = CalicoCommand::SetService { key: (VIP, 3000, 6), backends: vec![(SERVER, 8080)] };
    for command in [
        CalicoCommand::SetRoute {
            prefix: "10.0.0.64/26".parse().unwrap(),
            next_hops: vec![Ipv4Addr::new(172, 16, 0, 2)],
        },
        CalicoCommand::AddEndpoint {
            id: CLIENT_IF,
            name: "client".into(),
            ip: CLIENT,
            mac: [2, 0, 0, 0, 0, 10],
        },
        service.clone(),
    ] {
        a.handle_command(SimTime::ZERO, command).unwrap();
    }
    for command in [
        CalicoCommand::SetRoute {
            prefix: "10.0.0.0/26".parse().unwrap(),
            next_hops: vec![Ipv4Addr::new(172, 16, 0, 1)],
        },
        CalicoCommand::AddEndpoint {
            id: SERVER_IF,
            name: "server".into(),
            ip: SERVER,
            mac: [2, 0, 0, 0, 0, 70],
        },
        service,
    ] {
        b.handle_command(SimTime::ZERO, command).unwrap();
    }
    (a, b)
}

fn frame(src: Ipv4Addr, dst: Ipv4Addr, src_port: u16, dst_port: u16, payload: usize) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 10], CALICO_GATEWAY_MAC)
        .ipv4(src.octets(), dst.octets(), 64)
        .tcp(src_port, dst_port, 1, 1024);
    let mut bytes = Vec::with_capacity(builder.size(payload));
    builder.write(&mut bytes, &vec![0u8; payload]).unwrap();
    bytes
}

fn fast_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("calico");
    group.throughput(Throughput::Elements(1));
    for (name, encapsulation) in [
        ("plain", CalicoEncapsulation::None),
        ("ipip", CalicoEncapsulation::IpIp),
        ("vxlan", CalicoEncapsulation::Vxlan),
    ] {
        let (mut a, mut b) = hosts(encapsulation);
        // A 1400-byte TCP packet of a connection through the service, already tracked.
        let template = frame(CLIENT, VIP, 40000, 3000, 1360 - 20);
        let Forward::Fabric(wire) = a.handle_packet(SimTime(1), Port::Interface(CLIENT_IF), template.clone())
        else {
            panic!("to host B")
        };
        let _ = b.handle_packet(SimTime(2), Port::Fabric, wire.clone());
        let mut buffer = Vec::with_capacity(2048);
        group.bench_function(format!("fast-path/{name}/send-nat"), |bench| {
            bench.iter(|| {
                buffer.clear();
                buffer.extend_from_slice(&template);
                match a.handle_packet(SimTime(3), Port::Interface(CLIENT_IF), std::mem::take(&mut buffer)) {
                    Forward::Fabric(frame) => buffer = black_box(frame),
                    other => panic!("{other:?}"),
                }
            })
        });
        group.bench_function(format!("fast-path/{name}/receive"), |bench| {
            bench.iter(|| {
                buffer.clear();
                buffer.extend_from_slice(&wire);
                match b.handle_packet(SimTime(3), Port::Fabric, std::mem::take(&mut buffer)) {
                    Forward::Interface(_, frame) => buffer = black_box(frame),
                    other => panic!("{other:?}"),
                }
            })
        });
    }
    // A new connection each time (a fresh copy of the host, not timed): kube-proxy's choice,
    // egress policy, conntrack pair.
    let (a, _) = hosts(CalicoEncapsulation::None);
    let template = frame(CLIENT, VIP, 40000, 3000, 0);
    group.bench_function("new-connection/nat-and-policy", |bench| {
        bench.iter_batched(
            || (a.clone(), template.clone()),
            |(mut host, frame)| {
                let forward = host.handle_packet(SimTime(3), Port::Interface(CLIENT_IF), frame);
                (host, black_box(forward))
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// An endpoint with `n` ingress policies: with `sets`, each allows one peer set of 16
/// addresses (ipset matching); without, each lists the 16 addresses as 16 rules (iptables
/// without ipsets). The packet's source matches only the last policy: the worst case.
fn judged(n: usize, sets: bool) -> (CalicoHost, Vec<u8>) {
    let (_, mut b) = hosts(CalicoEncapsulation::None);
    let peers = |policy: usize| -> Vec<Ipv4Addr> {
        (0..16).map(|i| Ipv4Addr::new(10, 1 + (policy / 250) as u8, (policy % 250) as u8, i)).collect()
    };
    let mut list = Vec::new();
    for policy in 0..n {
        let addresses = if policy + 1 == n { vec![CLIENT] } else { peers(policy) };
        let rules = if sets {
            let set = IpSetId(policy as u32);
            let members = addresses.iter().map(|&a| SetMember::address(a)).collect();
            b.handle_command(SimTime::ZERO, CalicoCommand::SetIpSet { id: set, members }).unwrap();
            vec![Rule {
                protocol: Some(6),
                src: AddrMatch::Set(set),
                dst: AddrMatch::Any,
                dst_ports: vec![(8080, 8080)],
                action: Verdict::Allow,
            }]
        } else {
            addresses
                .iter()
                .map(|&a| Rule {
                    protocol: Some(6),
                    src: AddrMatch::Nets { nets: vec![a.into()], not_nets: Vec::new() },
                    dst: AddrMatch::Any,
                    dst_ports: vec![(8080, 8080)],
                    action: Verdict::Allow,
                })
                .collect()
        };
        let id = PolicyId(policy as u32);
        b.handle_command(
            SimTime::ZERO,
            CalicoCommand::SetPolicy { id, chains: PolicyChains { ingress: rules, egress: Vec::new() } },
        )
        .unwrap();
        list.push(id);
    }
    let policy = EndpointPolicy { ingress: Some(list), egress: None };
    b.handle_command(SimTime::ZERO, CalicoCommand::SetEndpointPolicy { id: SERVER_IF, policy }).unwrap();
    (b, frame(CLIENT, SERVER, 1, 8080, 0))
}

fn policy_scaling(c: &mut Criterion) {
    let mut group = c.benchmark_group("calico-policy");
    group.throughput(Throughput::Elements(1));
    for n in [1, 10, 100, 1000] {
        for (name, sets) in [("ipset", true), ("linear", false)] {
            let (host, template) = judged(n, sets);
            group.bench_with_input(BenchmarkId::new(format!("new-connection/{name}"), n), &n, |bench, _| {
                // A fresh copy of the host each time (not timed): a new connection, judged
                // from scratch.
                bench.iter_batched(
                    || (host.clone(), template.clone()),
                    |(mut host, frame)| match host.handle_packet(SimTime(3), Port::Fabric, frame) {
                        Forward::Interface(_, frame) => (host, black_box(frame)),
                        other => panic!("{other:?}"),
                    },
                    BatchSize::SmallInput,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, fast_path, policy_scaling);
criterion_main!(benches);
