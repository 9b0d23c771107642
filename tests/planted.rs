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
    // The finding traces the reply as its backend sent it: from a pod's own port back to the
    // client, which meets the connection's entry that should have translated it.
    let (_, command) = verdict.detail.split_once("first misaddressed reply: ").expect(&verdict.detail);
    assert!(command.starts_with("netsim trace ") && command.contains(" --flow 10.0.0."), "{command}");
    let flow = command.split(" --flow ").nth(1).and_then(|f| f.split_whitespace().next()).expect(command);
    let (server, client) = flow.split_once("->").expect(flow);
    assert!(server.ends_with(":3000") || server.ends_with(":6379"), "a backend's port: {flow}");
    assert!(client.ends_with("/tcp") && !client.starts_with("10.96."), "the client: {flow}");
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
fn a_vrouter_that_skips_policy_on_the_reverse_flow_is_caught_by_the_isolation_check() {
    // The petstore's policies admit bps to the frontends on port 3000 and nothing to bps. bps
    // calls the frontends directly; from 200 ms each frontend calls back to bps, on a port of its
    // own: a new connection from server to client, which policy forbids. The planted vrouter
    // takes each callback for the reverse flow of a bps -> frontend connection between the same
    // two pods (it compares addresses, not ports) and lets it through unjudged.
    let extra = "
[[traffic]]
name = \"bps-to-frontend-pods\"
from = \"pods:name=bps\"
to = \"pods:name=frontend\"
port = 3000
rate = \"20k/s\"
flows = 200

[[traffic]]
name = \"frontend-calls-bps\"
from = \"pods:name=frontend\"
to = \"pods:name=bps\"
port = 9000
rate = \"4k/s\"
flows = 16
start = \"200ms\"
";
    let overlay = scenario("petstore.toml", extra);
    let planted = PlantedBugs { reverse_flow_skips_policy: true, ..PlantedBugs::default() };
    let verdict = caught(&overlay, planted, "isolation", "violations");
    // The diagnosis names the callback, the policy that forbids it, and how to trace it.
    assert!(
        verdict.detail.contains("(frontend-calls-bps): NetworkPolicy")
            && verdict.detail.contains(":9000 tcp")
            && verdict.detail.contains("reproduce: netsim trace "),
        "{}",
        verdict.detail
    );
}

#[test]
fn ecmp_that_rehashes_every_flow_on_a_change_is_caught_by_the_ecmp_check() {
    // The frontend scales 4 -> 3 at 300 ms: only the flows of the removed replica have to move.
    let churn = scenario("petstore-churn.toml", "");
    let planted = PlantedBugs { ecmp_rehashes_on_change: true, ..PlantedBugs::default() };
    let clean = judge(&churn, PlantedBugs::default(), "ecmp");
    assert!(clean.passed, "{}", clean.detail);
    let removal = |verdict: &CheckResult| {
        verdict
            .disruptions
            .iter()
            .find(|d| d.change == "scale default/frontend to 3" && d.group == "service bps-to-frontend")
            .cloned()
            .unwrap_or_else(|| panic!("no disruption of the scale-down: {:?}", verdict.disruptions))
    };
    // Rendezvous hashing and pinned flows: exactly the flows that had to move.
    let minimal = removal(&clean);
    assert!(minimal.live_flows > 300 && minimal.minimum > 0, "{minimal:?}");
    assert_eq!((minimal.moved, minimal.ratio), (minimal.on_removed, Some(1.0)), "{minimal:?}");
    let buggy = judge(&churn, planted, "ecmp");
    assert!(!buggy.passed && buggy.metrics["disruptive_changes"] > 0.0, "{}", buggy.detail);
    // Hashing modulo 3 instead of 4 keeps a flow in place only when both agree: about a quarter.
    let rehashed = removal(&buggy);
    assert!(rehashed.ratio.is_some_and(|r| r > 2.0), "{rehashed:?}");
    assert!(buggy.detail.contains("too disruptive, e.g. service bps-to-frontend"), "{}", buggy.detail);
}

#[test]
fn the_underlays_modulo_hashing_is_caught_under_an_underlay_disruption_bound() {
    // Not a planted bug but the fabric as built: switches hash modulo the group size, as
    // commodity ones do, so the petstore's spine failure moves about three quarters of the
    // leaves' flows where a quarter had to. Reported always; judged under a bound.
    let extra = "
[[check]]
kind = \"ecmp\"
name = \"resilient-underlay\"
max_underlay_disruption_ratio = 1.5
";
    let petstore = scenario("petstore.toml", extra);
    let report = runner::run(&petstore, RunOptions::default(), &mut |_| {});
    let verdicts = checks::evaluate(&petstore, &report);
    let verdict = |name: &str| verdicts.iter().find(|c| c.name == name).expect(name);
    let (default, bounded) = (verdict("ecmp"), verdict("resilient-underlay"));
    assert!(default.passed, "{}", default.detail);
    assert!(default.metrics["underlay_disruption_ratio_max"] > 2.0, "{}", default.detail);
    assert!(!bounded.passed && bounded.metrics["disruptive_changes"] == 2.0, "{}", bounded.detail);
    assert!(
        bounded
            .detail
            .contains("too disruptive, e.g. leaves at 450ms (routing: spine-1 down, 4 -> 3 members)"),
        "{}",
        bounded.detail
    );
    // Both changes, with their numbers, go to results.json.
    let changes: Vec<_> =
        bounded.disruptions.iter().map(|d| (d.change.as_str(), d.minimum_fraction)).collect();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(bounded.disruptions.iter().all(|d| d.moved_fraction > 2.0 * d.minimum_fraction), "{changes:?}");
}

#[test]
fn one_ecmp_hash_seed_everywhere_is_caught_as_polarization_across_tiers() {
    let uniform = scenario("petstore-overlay.toml", "\n[fabric]\necmp_seeding = \"uniform\"\n");
    let clean = judge(&scenario("petstore-overlay.toml", ""), PlantedBugs::default(), "ecmp");
    assert!(clean.passed && clean.metrics["polarized_tiers"] == 0.0, "{}", clean.detail);
    let verdict = judge(&uniform, PlantedBugs::default(), "ecmp");
    assert!(!verdict.passed && verdict.metrics["polarized_tiers"] == 1.0, "{}", verdict.detail);
    // A host's uplink choice fixes its leaf's spine choice to half the spines.
    assert!(
        verdict
            .detail
            .contains("hash polarization across tiers: hosts (2 next hops) -> leaves (4 next hops)"),
        "{}",
        verdict.detail
    );
    assert!(verdict.metrics["polarization_cramers_v_max"] > 0.99, "{}", verdict.detail);
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
