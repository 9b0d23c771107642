//! Over random small fabrics, traffic and failure schedules: every packet sent is either
//! delivered or dropped with a reason, exactly once.

use std::collections::BTreeMap;

use netsim::runner::{self, Fate, RunOptions};
use netsim_tests::scenario;
use proptest::prelude::*;

/// A small scenario: `hosts` hosts on `pairs` leaf pairs and `spines` spines, two traffic
/// entries, and failure/recovery pairs of random elements at random times.
fn small_scenario(hosts: u32, pairs: u32, spines: u32, queue: u32, faults: &[(u8, u32, u32, u32)]) -> String {
    let mut text = format!(
        "name = \"small\"\nseed = 1\nduration = \"20ms\"\n\
         [fabric]\nhosts = {hosts}\nleaves = {}\nspines = {spines}\ndetection_delay = \"2ms\"\n\
         host_link = {{ bandwidth = \"1Gbps\", queue = \"{queue}B\" }}\n\
         [[traffic]]\nfrom = \"all\"\nto = \"all\"\nrate = \"200k/s\"\nsize = \"1200B\"\nflows = 40\npattern = \"poisson\"\n\
         [[traffic]]\nfrom = \"host-0\"\nto = \"all\"\nrate = \"50k/s\"\nsize = \"64B\"\nflows = 3\n",
        pairs * 2
    );
    for &(kind, index, at_us, down_us) in faults {
        let target = match kind % 3 {
            0 => format!("host = \"host-{}\"", index % hosts),
            1 => format!("switch = \"spine-{}\"", index % spines),
            _ => format!("link = \"host-{}:uplink{}\"", index % hosts, index % 2),
        };
        let recover = at_us + down_us;
        text += &format!("[[event]]\nat = \"{at_us}us\"\naction = \"fail\"\n{target}\n");
        if recover < 20_000 {
            text += &format!("[[event]]\nat = \"{recover}us\"\naction = \"recover\"\n{target}\n");
        }
    }
    text
}

/// Asserts that the recorded fates account for every packet once; returns how many were dropped.
fn assert_exactly_once(report: &runner::RunReport) -> Result<u64, TestCaseError> {
    let mut fates: BTreeMap<(u32, u64), Vec<Fate>> = BTreeMap::new();
    for &(flow, seq, fate) in &report.fates {
        fates.entry((flow, seq)).or_default().push(fate);
    }
    prop_assert_eq!(report.fates.len() as u64, report.packets.sent);
    prop_assert_eq!(fates.len() as u64, report.packets.sent, "a packet has two fates");
    // Sequence numbers of each flow are dense from zero: no packet went missing.
    let mut per_flow: BTreeMap<u32, u64> = BTreeMap::new();
    for &(flow, seq) in fates.keys() {
        let next = per_flow.entry(flow).or_default();
        prop_assert_eq!(seq, *next);
        *next += 1;
    }
    let delivered = report.fates.iter().filter(|f| f.2 == Fate::Delivered).count() as u64;
    prop_assert_eq!(delivered, report.packets.delivered);
    prop_assert_eq!(report.packets.sent, report.packets.delivered + report.packets.dropped_total());
    Ok(report.packets.dropped_total())
}

#[test]
fn a_spine_failure_drops_packets_and_still_accounts_for_each() {
    let scenario = scenario(&small_scenario(8, 2, 2, 200_000, &[(1, 0, 1_000, 5_000)]));
    let report =
        runner::run(&scenario, RunOptions { record_fates: true, ..RunOptions::default() }, &mut |_| {});
    let dropped = assert_exactly_once(&report).expect("exactly once");
    assert!(dropped > 0, "the failure should lose packets");
    assert_eq!(report.drops_outside_windows, 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_packet_has_exactly_one_fate(
        hosts in 2u32..24,
        pairs in 1u32..4,
        spines in 1u32..4,
        queue in 3_000u32..200_000,
        fault in proptest::option::of((0u8..3, 0u32..64, 0u32..19_000, 1u32..10_000)),
    ) {
        let faults: Vec<_> = fault.into_iter().collect();
        let scenario = scenario(&small_scenario(hosts, pairs, spines, queue, &faults));
        let report = runner::run(&scenario, RunOptions { record_fates: true, ..RunOptions::default() }, &mut |_| {});
        assert_exactly_once(&report)?;
        if faults.is_empty() {
            prop_assert_eq!(report.drops_in_windows, 0);
        }
    }
}
