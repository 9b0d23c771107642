//! Planted bugs: a test-only switch plants known faults in the data and control planes, and
//! each must be caught by the check meant for it, with the right diagnosis — while the clean
//! build passes every check of every shipped scenario.

use netsim::checks::{self, CheckResult};
use netsim::runner::{self, RunOptions};
use netsim::scenario::Scenario;
use netsim_core::planted::PlantedBugs;
use netsim_tests::root;

/// A shipped scenario (which carries the isolation, ecmp and nat checks) with `extra` appended.
fn scenario(name: &str, extra: &str) -> Scenario {
    let path = root().join("scenarios").join(name);
    let text = std::fs::read_to_string(&path).expect("scenario") + extra;
    Scenario::parse(&path, &text).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `scenario` with `planted` bugs and returns the named check's verdict.
fn judge(scenario: &Scenario, planted: PlantedBugs, check: &str) -> CheckResult {
    let report = runner::run(scenario, RunOptions { planted, ..RunOptions::default() }, &mut |_| {});
    checks::evaluate(scenario, &report)
        .into_iter()
        .find(|c| c.name == check)
        .unwrap_or_else(|| panic!("no check {check}"))
}

/// The clean run passes `check`; with `planted` it fails and `metric` is positive.
fn caught(scenario: &Scenario, planted: PlantedBugs, check: &str, metric: &str) -> CheckResult {
    let clean = judge(scenario, PlantedBugs::default(), check);
    assert!(clean.passed, "the clean build fails {check}: {}", clean.detail);
    assert_eq!(clean.metrics[metric], 0.0, "{}", clean.detail);
    let buggy = judge(scenario, planted, check);
    assert!(!buggy.passed, "{planted:?} not caught by {check}: {}", buggy.detail);
    assert!(buggy.metrics[metric] > 0.0, "{planted:?}: {metric} = 0: {}", buggy.detail);
    buggy
}

#[test]
fn an_ecmp_hash_that_ignores_ports_is_caught_by_the_ecmp_check() {
    let overlay = scenario("petstore-overlay.toml", "");
    let planted = PlantedBugs { ecmp_ignores_ports: true, ..PlantedBugs::default() };
    let verdict = caught(&overlay, planted, "ecmp", "unbalanced_groups");
    // The diagnosis names the service whose flows clump: every flow of a client on one backend.
    assert!(verdict.detail.contains("service bps-to-frontend"), "{}", verdict.detail);
}

#[test]
fn nat_that_forgets_the_reverse_translation_is_caught_by_the_nat_check() {
    let planted = PlantedBugs { nat_forgets_reverse: true, ..PlantedBugs::default() };
    // Calico: replies reach the client from the backend's own address and port.
    let calico = scenario("petstore-calico.toml", "");
    let verdict = caught(&calico, planted, "nat", "misaddressed_replies");
    assert_eq!(verdict.metrics["misaddressed_replies"], verdict.metrics["replies"], "every service reply");
    // The overlay: the client's vrouter has no flow for a reply from the backend's address, so
    // no reply comes back at all.
    let overlay = scenario("petstore-overlay.toml", "");
    assert!(judge(&overlay, PlantedBugs::default(), "nat").passed);
    let verdict = judge(&overlay, planted, "nat");
    assert!(
        !verdict.passed && verdict.metrics["replies"] == 0.0 && verdict.metrics["replies_sent"] > 0.0,
        "{}",
        verdict.detail
    );
}

#[test]
fn policy_programmed_after_the_route_is_caught_by_the_isolation_check() {
    // The frontend scales from 4 to 8 at 300 ms; hosts learn of it 20-30 ms later. The redis
    // slaves, which the frontend's policy does not admit, open connections to the frontend
    // service from 325 ms: kube-proxy sends some to the new replicas, which must never admit them.
    let extra = "
[[event]]
at = \"300ms\"
action = \"scale\"
workload = \"default/frontend\"
replicas = 8

[[traffic]]
name = \"slaves-to-frontend-denied\"
from = \"pods:name=redis-slave\"
to = \"service:frontend\"
port = 3000
rate = \"30k/s\"
flows = 600
start = \"325ms\"
";
    let calico = scenario("petstore-calico.toml", extra);
    let planted = PlantedBugs { policy_after_route: true, ..PlantedBugs::default() };
    let verdict = caught(&calico, planted, "isolation", "violations");
    assert!(
        verdict.detail.contains("slaves-to-frontend-denied") && verdict.detail.contains("NetworkPolicy"),
        "{}",
        verdict.detail
    );
}

#[test]
fn a_kube_proxy_that_keeps_a_deleted_backend_is_caught_by_the_nat_check() {
    let extra = "
[[event]]
at = \"300ms\"
action = \"delete\"
pod = \"default/frontend-1\"
";
    let calico = scenario("petstore-calico.toml", extra);
    let planted = PlantedBugs { stale_backends: true, ..PlantedBugs::default() };
    let verdict = caught(&calico, planted, "nat", "stale_backend_packets");
    // The finding names the command that traces the offending packet.
    assert!(verdict.detail.contains("first to a removed backend: netsim trace "), "{}", verdict.detail);
}

#[test]
fn conntrack_that_admits_denied_connections_is_caught_by_the_isolation_check() {
    let calico = scenario("petstore-calico.toml", "");
    let planted = PlantedBugs { conntrack_before_policy: true, ..PlantedBugs::default() };
    let verdict = caught(&calico, planted, "isolation", "violations");
    assert!(verdict.detail.contains("reproduce: netsim trace "), "{}", verdict.detail);
    // bps's first packet to redis is denied; its later ones ride the tracked connection.
    assert!(verdict.detail.contains("bps-to-redis-denied"), "{}", verdict.detail);
}

#[test]
fn the_clean_build_passes_every_check_of_every_shipped_scenario() {
    let mut paths: Vec<_> = std::fs::read_dir(root().join("scenarios"))
        .expect("scenarios")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 5);
    for path in paths {
        let scenario = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let report = runner::run(&scenario, RunOptions::default(), &mut |_| {});
        for check in checks::evaluate(&scenario, &report) {
            assert!(check.passed, "{}: {}: {}", path.display(), check.name, check.detail);
        }
    }
}
