//! Engine benchmarks: events per second of the bare event queue, and of a whole scenario.
//!
//! `cargo bench -p netsim --bench engine`. Targets and recorded figures: the book's
//! "Performance" chapter.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use netsim::engine::EventQueue;
use netsim::runner::{self, RunOptions};
use netsim::scenario::Scenario;
use netsim_core::{SimDuration, SimTime, mix64};

/// The bare engine: a queue holding `backlog` events; each step pops the earliest and schedules
/// a successor a pseudo-random 0-10 us later (the hold model of event-queue benchmarks).
fn bare_engine(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    for backlog in [1_000u64, 100_000] {
        const STEPS: u64 = 1_000_000;
        group.throughput(Throughput::Elements(STEPS));
        group.bench_function(format!("hold/backlog-{backlog}"), |b| {
            let mut queue = EventQueue::new();
            for i in 0..backlog {
                queue.push(SimTime(mix64(i) % 10_000), i);
            }
            let mut step = 0u64;
            b.iter(|| {
                for _ in 0..STEPS {
                    let (now, event) = queue.pop().expect("the backlog never empties");
                    step += 1;
                    queue.push(now + SimDuration::from_nanos(mix64(step) % 10_000), black_box(event));
                }
            });
        });
    }
    group.finish();
}

/// The default scenario end to end, in events per second.
fn default_scenario(c: &mut Criterion) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/fabric-failover.toml");
    let scenario = Scenario::load(&path).expect("the default scenario loads");
    let events = runner::run(&scenario, RunOptions::default(), &mut |_| {}).events;
    let mut group = c.benchmark_group("scenario");
    group.sample_size(10);
    group.throughput(Throughput::Elements(events));
    group.bench_function("fabric-failover", |b| {
        b.iter(|| runner::run(black_box(&scenario), RunOptions::default(), &mut |_| {}))
    });
    group.finish();
}

criterion_group!(benches, bare_engine, default_scenario);
criterion_main!(benches);
