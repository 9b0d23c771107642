//! Overlay vrouter benchmarks: ns per packet on the established-flow fast path (both ends), and
//! per flow setup with policy, ECMP and NAT.
//!
//! `cargo bench -p netsim-vrouter`. Targets and recorded figures: the book's "Performance"
//! chapter.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use netsim_core::SimTime;
use netsim_vrouter::overlay::Encapsulation;
use netsim_vrouter::testbed::{BPS, BPS_IF, MAC_BPS, VIP, pair, pod_frame};
use netsim_vrouter::{DataPlane, Forward, Port};

/// A source port whose flow to the VIP goes to the remote replica.
fn remote_port() -> u16 {
    (40000..41000)
        .find(|&port| {
            let (mut a, _) = pair(Encapsulation::MplsOverUdp);
            let frame = pod_frame(MAC_BPS, BPS, VIP, port, 3000, true, 10);
            matches!(a.handle_packet(SimTime::ZERO, Port::Interface(BPS_IF), frame), Forward::Fabric(_))
        })
        .expect("some port reaches the remote replica")
}

fn fast_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("vrouter");
    group.throughput(Throughput::Elements(1));
    let port = remote_port();
    let (mut a, mut b) = pair(Encapsulation::MplsOverUdp);
    // A 1400-byte TCP packet of an established flow.
    let template = pod_frame(MAC_BPS, BPS, VIP, port, 3000, true, 1360);
    let Forward::Fabric(outer_template) =
        a.handle_packet(SimTime(1), Port::Interface(BPS_IF), template.clone())
    else {
        panic!("the flow goes to host B");
    };
    let _ = b.handle_packet(SimTime(2), Port::Fabric, outer_template.clone());
    let mut buffer = Vec::with_capacity(2048);
    group.bench_function("fast-path/encapsulate", |bench| {
        bench.iter(|| {
            buffer.clear();
            buffer.extend_from_slice(&template);
            match a.handle_packet(SimTime(3), Port::Interface(BPS_IF), std::mem::take(&mut buffer)) {
                Forward::Fabric(frame) => buffer = black_box(frame),
                other => panic!("{other:?}"),
            }
        })
    });
    group.bench_function("fast-path/decapsulate-nat", |bench| {
        bench.iter(|| {
            buffer.clear();
            buffer.extend_from_slice(&outer_template);
            match b.handle_packet(SimTime(3), Port::Fabric, std::mem::take(&mut buffer)) {
                Forward::Interface(_, frame) => buffer = black_box(frame),
                other => panic!("{other:?}"),
            }
        })
    });
    group.finish();
}

fn flow_setup(c: &mut Criterion) {
    const FLOWS: u16 = 1000;
    let mut group = c.benchmark_group("vrouter");
    group.throughput(Throughput::Elements(u64::from(FLOWS)));
    let frames: Vec<Vec<u8>> =
        (0..FLOWS).map(|i| pod_frame(MAC_BPS, BPS, VIP, 20000 + i, 3000, true, 10)).collect();
    // Source side: route lookup, network policy, ECMP choice, flow pair insertion (some flows
    // take the local replica: then destination NAT too).
    group.bench_function("flow-setup/source", |bench| {
        bench.iter_batched(
            || (pair(Encapsulation::MplsOverUdp).0, frames.clone()),
            |(mut a, frames)| {
                for frame in frames {
                    black_box(a.handle_packet(SimTime(1), Port::Interface(BPS_IF), frame));
                }
            },
            BatchSize::LargeInput,
        )
    });
    // Destination side: label lookup, floating IP and NAT, both policies, route back.
    let (mut a, _) = pair(Encapsulation::MplsOverUdp);
    let outers: Vec<Vec<u8>> = frames
        .iter()
        .filter_map(|frame| match a.handle_packet(SimTime(1), Port::Interface(BPS_IF), frame.clone()) {
            Forward::Fabric(outer) => Some(outer),
            _ => None,
        })
        .collect();
    group.throughput(Throughput::Elements(outers.len() as u64));
    group.bench_function("flow-setup/destination-nat", |bench| {
        bench.iter_batched(
            || (pair(Encapsulation::MplsOverUdp).1, outers.clone()),
            |(mut b, outers)| {
                for outer in outers {
                    black_box(b.handle_packet(SimTime(1), Port::Fabric, outer));
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, fast_path, flow_setup);
criterion_main!(benches);
