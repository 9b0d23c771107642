//! Fabric benchmark: packet-hops per second through the default 100-host topology, with real
//! header parsing, TTL and checksum updates, MAC rewrites and ECMP hashing at every hop.
//!
//! `cargo bench -p netsim-fabric`. Targets and recorded figures: the book's "Performance" chapter.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etherparse::PacketBuilder;
use netsim_core::{SimDuration, SimTime};
use netsim_fabric::{Fabric, FabricConfig, Forward, NodeId};

/// Frames between all host pairs (different leaf pairs, so four hops each), 1400-byte packets.
fn frames(fabric: &Fabric) -> Vec<(NodeId, Vec<u8>)> {
    let topology = fabric.topology();
    (0..1000u32)
        .map(|i| {
            let (src, dst) = (NodeId(i % 100), NodeId((i * 37 + 50) % 100));
            let dst = if dst.0 / 10 == src.0 / 10 { NodeId((dst.0 + 10) % 100) } else { dst };
            let builder = PacketBuilder::ethernet2([0; 6], [0; 6])
                .ipv4(topology.host_ip(src).octets(), topology.host_ip(dst).octets(), 64)
                .udp(10_000 + i as u16, 5001);
            let mut frame = Vec::new();
            builder.write(&mut frame, &[0u8; 1372]).expect("write to Vec");
            (src, frame)
        })
        .collect()
}

fn packet_hops(c: &mut Criterion) {
    let mut fabric = Fabric::new(&FabricConfig::default()).expect("default is valid");
    let templates = frames(&fabric);
    let hops_per_round: u64 = 4 * templates.len() as u64;
    let mut group = c.benchmark_group("fabric");
    group.throughput(Throughput::Elements(hops_per_round));
    let mut now = SimTime::ZERO;
    // Reused buffers: the benchmark measures forwarding, not allocation.
    let mut buffers: Vec<Vec<u8>> = templates.iter().map(|(_, f)| f.clone()).collect();
    group.bench_function("packet-hops/default-topology", |b| {
        b.iter(|| {
            for (index, (src, template)) in templates.iter().enumerate() {
                let mut frame = std::mem::take(&mut buffers[index]);
                frame.clear();
                frame.extend_from_slice(template);
                // Spread sends in time so queues stay short, as in a real run.
                now += SimDuration::from_nanos(300);
                let mut forward = fabric.send(now, *src, frame);
                loop {
                    match forward {
                        Forward::Transmit(transmit) => {
                            let at = transmit.arrive_at;
                            forward = fabric.arrive(at, transmit);
                        }
                        Forward::Deliver { frame, .. } => {
                            buffers[index] = black_box(frame);
                            break;
                        }
                        Forward::Drop { reason, .. } => panic!("benchmark frame dropped: {reason}"),
                    }
                }
            }
        })
    });
    group.finish();
}

criterion_group!(benches, packet_hops);
criterion_main!(benches);
