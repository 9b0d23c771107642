//! The petstore through Calico: the same workload as through the overlay, plain routed IP on
//! the wire (or IP-in-IP, or VXLAN), BGP over the fabric with a full mesh or route reflectors,
//! host and reflector failures, and churn reaching felix.

use netsim::checks;
use netsim::results::Results;
use netsim::runner::{self, RunOptions, RunReport};
use netsim::scenario::Scenario;
use netsim_tests::{root, shipped};

/// petstore-calico.toml with `replace` applied to its text and `extra` appended.
fn petstore(replace: &[(&str, &str)], extra: &str) -> Scenario {
    let path = root().join("scenarios/petstore-calico.toml");
    let mut text = std::fs::read_to_string(&path).expect("scenario");
    for (from, to) in replace {
        assert!(text.contains(from), "{from}");
        text = text.replace(from, to);
    }
    Scenario::parse(&path, &(text + extra)).unwrap_or_else(|e| panic!("{e}"))
}

fn run(scenario: &Scenario, captures: &[&str]) -> RunReport {
    let options = RunOptions {
        record_fates: true,
        captures: captures.iter().map(ToString::to_string).collect(),
        ..RunOptions::default()
    };
    runner::run(scenario, options, &mut |_| {})
}

/// (IP protocol, source, destination) of an outer IPv4 packet on a captured frame.
fn outer(frame: &[u8]) -> (u8, [u8; 4], [u8; 4]) {
    (frame[23], frame[26..30].try_into().unwrap(), frame[30..34].try_into().unwrap())
}

#[test]
fn petstore_on_calico_allows_and_denies_what_the_overlay_does() {
    let calico = shipped("petstore-calico.toml");
    // The host of the first frontend replica: its uplink carries requests from bps.
    let report = run(&calico, &["host-11:uplink0"]);
    assert_eq!(report.fates.len() as u64, report.packets.sent, "every packet has one fate");
    let mut seen = std::collections::BTreeSet::new();
    assert!(report.fates.iter().all(|(_, _, fate)| *fate != netsim::runner::Fate::Dropped("no_route")));
    assert!(report.fates.iter().all(|&(flow, seq, _)| seen.insert((flow, seq))), "a packet with two fates");
    let overlay = runner::run(&shipped("petstore-overlay.toml"), RunOptions::default(), &mut |_| {});
    for ((name, on_calico), (_, on_overlay)) in report.per_traffic.iter().zip(&overlay.per_traffic) {
        assert_eq!((on_calico.sent, on_calico.delivered), (on_overlay.sent, on_overlay.delivered), "{name}");
    }
    // The denied probe is dropped by policy (the overlay has no route for it instead).
    assert_eq!(report.drops_by_layer["calico"]["policy"], 2000);
    for replies in report.replies.iter().flatten() {
        assert_eq!((replies.delivered, replies.misaddressed), (replies.sent, 0));
    }
    // Plain IP on the wire: TCP between pod addresses (10.0.0.0/16), no tunnel header.
    let capture = &report.captures[0];
    assert!(capture.frames.len() > 1000, "{} frames", capture.frames.len());
    let pods = capture.frames.iter().filter(|(_, f)| outer(f).0 == 6 && outer(f).1[..2] == [10, 0]).count();
    let bgp = capture.frames.len() - pods;
    assert!(pods > 1000 && bgp < 1000, "{pods} pod frames, {bgp} others");
    let bgp_counts = report.bgp.as_ref().expect("calico reports BGP");
    assert_eq!(bgp_counts.sessions_established, 100 * 99, "a full mesh, every session up");
    assert_eq!((bgp_counts.session_downs, bgp_counts.lost), (0, 0));

    let checks = checks::evaluate(&calico, &report);
    let results = Results::new(&calico, report, checks, 0);
    assert!(results.passed(), "{}", results.summary());
    insta::assert_snapshot!(results.summary());
}

#[test]
fn ip_in_ip_and_vxlan_carry_the_same_traffic_in_tunnels_between_hosts() {
    let plain = runner::run(&shipped("petstore-calico.toml"), RunOptions::default(), &mut |_| {});
    for (encapsulation, protocol) in [("ipip", 4u8), ("vxlan", 17)] {
        let scenario =
            petstore(&[("encapsulation = \"none\"", &format!("encapsulation = \"{encapsulation}\""))], "");
        let report = run(&scenario, &["host-11:uplink0"]);
        assert_eq!(report.packets, plain.packets, "{encapsulation}");
        let frames = &report.captures[0].frames;
        // Host to host: both outer addresses are underlay addresses (172.16.0.0/16).
        let tunnelled = frames
            .iter()
            .filter(|(_, f)| {
                outer(f).0 == protocol && outer(f).1[..2] == [172, 16] && outer(f).2[..2] == [172, 16]
            })
            .count();
        assert!(tunnelled > 1000, "{encapsulation}: {tunnelled} of {} frames tunnelled", frames.len());
        if encapsulation == "vxlan" {
            assert!(frames.iter().filter(|(_, f)| outer(f).0 == 17).all(|(_, f)| f[36..38] == [0x12, 0xb5]));
        }
    }
}

/// A lighter petstore for long runs: fewer requests, and more simulated time.
fn long(extra: &str, replace: &[(&str, &str)]) -> Scenario {
    let mut replace = replace.to_vec();
    replace.extend([
        ("duration = \"1s\"", "duration = \"6s\""),
        ("rate = \"200k/s\"", "rate = \"20k/s\""),
        ("rate = \"50k/s\"", "rate = \"5k/s\""),
    ]);
    petstore(&replace, extra)
}

#[test]
fn a_failed_host_is_withdrawn_everywhere_after_the_hold_time() {
    // The host of frontend-0 fails at 1 s and stays down.
    let shipped = shipped("petstore-calico.toml");
    let cluster = &shipped.dataplane.cluster_spec().unwrap().cluster;
    let host = cluster.pod(cluster.pod_by_name("default", "frontend-0").unwrap()).host;
    let scenario =
        long(&format!("\n[[event]]\nat = \"1s\"\naction = \"fail\"\nhost = \"host-{host}\"\n"), &[]);
    let report = run(&scenario, &[]);
    let bgp = report.bgp.as_ref().unwrap();
    // Every other host's session with host-11 dies by its hold timer (3 s)...
    assert_eq!(bgp.hold_timer_expiries, 99);
    assert_eq!(bgp.sessions_established, 99 * 98);
    // ...and its block is withdrawn from every table within the hold time: the last keepalive
    // heard was at most a keepalive interval (1 s) before the failure.
    assert!(
        (2_000_000_000..=3_050_000_000).contains(&bgp.convergence_ns_max),
        "converged after {} ns",
        bgp.convergence_ns_max
    );
    assert!(bgp.route_changes >= 99, "{} route changes", bgp.route_changes);
    // Requests to frontend-0 are lost in the fabric (which stops routing to the host after its
    // detection delay) until then, and at the sending hosts for want of a route after.
    let fabric = &report.drops_by_layer["fabric"];
    let calico = &report.drops_by_layer["calico"];
    assert!(fabric.get("no_route").is_some_and(|&n| n > 0), "{fabric:?}");
    assert!(calico.get("no_route").is_some_and(|&n| n > 0), "{calico:?}");
    // Outside the failure's window, only the denied probe loses packets.
    assert!(report.drop_examples.iter().all(|d| d.reason == "policy"), "{:?}", report.drop_examples);
    assert!(report.drops_outside_windows <= report.packets.dropped["policy"]);
}

#[test]
fn route_reflectors_carry_every_route_and_survive_the_loss_of_one() {
    let reflected = long("", &[("bgp = \"full-mesh\"", "bgp = \"route-reflectors\"")]);
    let report = run(&reflected, &[]);
    let bgp = report.bgp.as_ref().unwrap();
    assert_eq!(bgp.topology, "route-reflectors");
    // Two reflectors (host-98, host-99): each peers with everyone, clients with both.
    assert_eq!((bgp.sessions_per_host_max, bgp.sessions_per_host_min), (99, 2));
    assert_eq!(bgp.sessions_configured, 2 * 99 + 98 * 2);
    assert_eq!(report.packets.dropped_total(), 2000 * 6, "only the denied probe");
    let mesh = run(&long("", &[]), &[]);
    assert!(bgp.messages_sent * 10 < mesh.bgp.as_ref().unwrap().messages_sent, "reflection saves messages");

    // host-99 fails: its clients keep every route through host-98, and no packet is lost.
    let failed = long(
        "\n[[event]]\nat = \"1s\"\naction = \"fail\"\nhost = \"host-99\"\n",
        &[("bgp = \"full-mesh\"", "bgp = \"route-reflectors\"")],
    );
    let report = run(&failed, &[]);
    let bgp = report.bgp.as_ref().unwrap();
    assert_eq!(bgp.hold_timer_expiries, 99, "every peer of host-99 notices");
    assert_eq!(report.packets.dropped_total(), 2000 * 6, "only the denied probe");
}

#[test]
fn churn_reaches_felix_and_new_blocks_reach_bgp() {
    // Scale the frontend from 4 to 6 at 300 ms: two pods on new hosts, whose new blocks are
    // announced over the fabric; felix programs endpoints, sets and services everywhere.
    let scenario = petstore(
        &[],
        "\n[[event]]\nat = \"300ms\"\naction = \"scale\"\nworkload = \"default/frontend\"\nreplicas = 6\n",
    );
    let report = run(&scenario, &[]);
    let bgp = report.bgp.as_ref().unwrap();
    assert!(bgp.felix_updates >= 100, "{} felix updates", bgp.felix_updates);
    assert!(bgp.route_changes >= 2 * 99, "{} route changes", bgp.route_changes);
    assert!(
        bgp.convergence_ns_max > 20_000_000 && bgp.convergence_ns_max < 100_000_000,
        "{}",
        bgp.convergence_ns_max
    );
    // Scaling up costs nothing: the only losses are the denied probe's.
    assert_eq!(report.packets.dropped.get("policy"), Some(&2000));
    assert_eq!(report.packets.dropped_total(), 2000);
    let checks = checks::evaluate(&scenario, &report);
    assert!(checks.iter().all(|c| c.passed), "{checks:#?}");
}

#[test]
fn deleting_a_policy_opens_what_it_denied_once_hosts_learn_on_both_data_planes() {
    let extra = "\n[[event]]\nat = \"300ms\"\naction = \"delete\"\npolicy = \"default/redis-master-users\"\n";
    for name in ["petstore.toml", "petstore-calico.toml"] {
        let path = root().join("scenarios").join(name);
        let text = std::fs::read_to_string(&path).expect("scenario") + extra;
        let scenario = Scenario::parse(&path, &text).unwrap_or_else(|e| panic!("{e}"));
        let report = runner::run(&scenario, RunOptions::default(), &mut |_| {});
        let denied = &report.per_traffic.iter().find(|(n, _)| n == "bps-to-redis-denied").unwrap().1;
        // Denied until every host has learnt of the deletion (20 ms + up to 10 ms of jitter),
        // delivered after: about 30% of the run's 2,000 probes are lost.
        let lost = denied.sent - denied.delivered;
        assert!((550..700).contains(&lost), "{name}: {lost} of {} lost", denied.sent);
        let checks = checks::evaluate(&scenario, &report);
        let verdict = |check: &str| checks.iter().find(|c| c.name == check).unwrap().passed;
        // The oracle follows the cluster: nothing forbidden was delivered.
        assert!(verdict("isolation"), "{name}: {checks:#?}");
        assert!(!verdict("bps-cannot-reach-redis"), "{name}: the probe now gets through");
    }
}

#[test]
fn deleting_a_service_stops_its_traffic_once_hosts_learn_and_spares_the_others_on_both_data_planes() {
    let extra = "\n[[event]]\nat = \"500ms\"\naction = \"delete\"\nservice = \"default/redismaster\"\n";
    for name in ["petstore-overlay.toml", "petstore-calico.toml", "petstore-calico-labels.toml"] {
        let path = root().join("scenarios").join(name);
        let text = std::fs::read_to_string(&path).expect("scenario") + extra;
        let scenario = Scenario::parse(&path, &text).unwrap_or_else(|e| panic!("{e}"));
        let report = runner::run(&scenario, RunOptions::default(), &mut |_| {});
        let traffic = |n: &str| &report.per_traffic.iter().find(|(name, _)| name == n).unwrap().1;
        // Both redis entries call the deleted service (50k/s and 3k/s of requests): its requests
        // are delivered (and answered) until every host has learnt of the deletion, 20 ms + up
        // to 10 ms of jitter after 500 ms, and all lost after; nothing else is lost.
        for (entry, requests_after) in [("frontend-to-redis", 25_000), ("slaves-to-master", 1_500)] {
            let t = traffic(entry);
            let lost = t.sent - t.delivered;
            assert!(
                lost <= requests_after && lost >= requests_after * 30 / 32,
                "{name} {entry}: {lost} lost of {} sent",
                t.sent
            );
        }
        let bps = traffic("bps-to-frontend");
        assert_eq!(bps.delivered, bps.sent, "{name}");
        let judged = &report.judgements;
        assert!(judged.gaps.is_empty(), "{name}: a deleted service's traffic is not owed: {:?}", judged.gaps);
        let isolation = scenario.dataplane.cluster_spec().expect("pods").isolation;
        if isolation == netsim_control::network_manager::Isolation::UsesLabels {
            // The label model's permission came from the service: until the hosts learn of the
            // deletion, the old VIP still reaches redis, which the oracle calls a violation.
            assert!(judged.violations > 0, "{name}");
            for v in &judged.violation_examples {
                assert!((500_000_000..530_000_000).contains(&v.at_ns), "{name}: {v:?}");
                assert!(v.cause.contains("DeletedService(\"default/redismaster\")"), "{name}: {v:?}");
            }
        } else {
            // Under NetworkPolicy pod-to-pod permission does not depend on services.
            assert_eq!(judged.violations, 0, "{name}");
        }
    }
}

#[test]
fn the_seeds_label_model_on_calico_delivers_what_the_overlay_does() {
    // The same manifests, traffic and checks as petstore-overlay.toml, isolated by the `name`
    // and `uses` labels on both data planes: no NetworkPolicy is involved.
    let scenario = shipped("petstore-calico-labels.toml");
    let report = run(&scenario, &[]);
    let overlay = runner::run(&shipped("petstore-overlay.toml"), RunOptions::default(), &mut |_| {});
    assert_eq!(report.per_traffic.len(), overlay.per_traffic.len());
    for ((name, on_calico), (_, on_overlay)) in report.per_traffic.iter().zip(&overlay.per_traffic) {
        assert_eq!((on_calico.sent, on_calico.delivered), (on_overlay.sent, on_overlay.delivered), "{name}");
    }
    // bps's probe of redis is refused at bps's own host by its egress chain (the overlay has
    // no route for it instead); nothing else is lost.
    assert_eq!(report.drops_by_layer["calico"]["policy"], 2000);
    assert_eq!(report.packets.dropped_total(), 2000);
    let checks = checks::evaluate(&scenario, &report);
    let results = Results::new(&scenario, report, checks, 0);
    assert!(results.passed(), "{}", results.summary());
    let isolation = results.checks.iter().find(|c| c.name == "isolation").expect("an isolation check");
    assert!(isolation.passed && isolation.detail.contains("0 of 253458"), "{}", isolation.detail);
}

#[test]
fn churn_under_the_label_model_reaches_felix_sets() {
    // Scale the frontend up and delete a redis slave: the collections' sets change on every
    // host that has a member, and the oracle finds nothing forbidden delivered while they do.
    let path = root().join("scenarios/petstore-calico-labels.toml");
    let text = std::fs::read_to_string(&path).expect("scenario")
        + "\n[[event]]\nat = \"300ms\"\naction = \"scale\"\nworkload = \"default/frontend\"\nreplicas = 6\n\
           \n[[event]]\nat = \"500ms\"\naction = \"delete\"\npod = \"default/redis-slave-2\"\n";
    let scenario = Scenario::parse(&path, &text).unwrap_or_else(|e| panic!("{e}"));
    let report = run(&scenario, &[]);
    let bgp = report.bgp.as_ref().unwrap();
    assert!(bgp.felix_updates >= 100, "{} felix updates", bgp.felix_updates);
    let checks = checks::evaluate(&scenario, &report);
    assert!(checks.iter().all(|c| c.passed), "{checks:#?}");
    // The new frontends serve bps (through the ClusterIP) once programmed.
    let frontend = &report.per_traffic.iter().find(|(n, _)| n == "bps-to-frontend").unwrap().1;
    assert_eq!(frontend.delivered, frontend.sent);
}
