//! The petstore while the cluster changes: the frontend scales 4 -> 3 -> 5 and a redis slave is
//! deleted. Each change reaches each host after 20 ms plus up to 10 ms of jitter, so hosts
//! disagree for a while. What must hold: every packet has one fate; losses happen only inside
//! the change windows, only to requests hashed to the removed replica; established connections
//! elsewhere survive; every reply comes from the ClusterIP.

use std::collections::BTreeMap;

use netsim::checks;
use netsim::results::Results;
use netsim::runner::{self, Fate, RunOptions};
use netsim::traffic::REPLY_BIT;
use netsim_tests::shipped;

#[test]
fn petstore_under_churn() {
    let scenario = shipped("petstore-churn.toml");
    let options = RunOptions { record_fates: true, ..RunOptions::default() };
    let report = runner::run(&scenario, options, &mut |_| {});

    let mut fates: BTreeMap<(u32, u64), Vec<Fate>> = BTreeMap::new();
    for &(flow, seq, fate) in &report.fates {
        fates.entry((flow, seq)).or_default().push(fate);
    }
    assert_eq!(report.fates.len() as u64, report.packets.sent);
    assert!(fates.values().all(|f| f.len() == 1), "a packet with two fates");

    // Only requests are lost, never replies: a request that reached a live replica is answered
    // and its answer gets back, even while hosts disagree.
    let lost_replies =
        fates.iter().filter(|((flow, _), f)| flow & REPLY_BIT != 0 && f[0] != Fate::Delivered).count();
    assert_eq!(lost_replies, 0);
    for replies in report.replies.iter().flatten() {
        assert_eq!((replies.delivered, replies.misaddressed), (replies.sent, 0));
    }

    // The losses: requests to the removed replica (frontend-3) while senders had not learnt of
    // it. It holds about a quarter of bps's 400 flows at 200k requests/s; senders learn within
    // 20-30 ms: between 500 and 2000 lost requests, all inside the windows.
    let lost = report.packets.dropped_total();
    assert!((500..2000).contains(&lost), "{lost} lost");
    assert_eq!(report.drops_outside_windows, 0);
    let reasons: Vec<&str> = report.packets.dropped.keys().copied().collect();
    assert!(reasons.iter().all(|r| ["pod_deleted", "unknown_label"].contains(r)), "{reasons:?}");
    let frontend_to_redis =
        &report.per_traffic.iter().find(|(name, _)| name == "frontend-to-redis").unwrap().1;
    assert_eq!(frontend_to_redis.delivered, frontend_to_redis.sent, "unrelated churn costs nothing");

    let checks = checks::evaluate(&scenario, &report);
    let results = Results::new(&scenario, report, checks, 0);
    assert!(results.passed(), "{}", results.summary());
    insta::assert_snapshot!(results.summary());
}

/// The scenario with extra fabric events (failures are fine alongside churn).
fn with_events(extra: &str) -> netsim::scenario::Scenario {
    let path = netsim_tests::root().join("scenarios/petstore-churn.toml");
    let text = std::fs::read_to_string(&path).expect("scenario") + extra;
    netsim::scenario::Scenario::parse(&path, &text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_failed_control_node_is_taken_over_and_routes_stay() {
    // host-99 runs the preferred control node; it fails before the first change.
    let scenario = with_events("\n[[event]]\nat = \"200ms\"\naction = \"fail\"\nhost = \"host-99\"\n");
    let report = runner::run(&scenario, RunOptions::default(), &mut |_| {});
    let control = report.control.expect("overlay runs report the control channel");
    assert_eq!(control.failovers, control.updates, "every update was sent by the other control node");
    assert_eq!(control.applied, control.updates);
    // The failure itself costs no traffic: no pod runs on host-99, and vrouters keep their routes.
    let baseline = runner::run(&shipped("petstore-churn.toml"), RunOptions::default(), &mut |_| {});
    assert_eq!(report.packets.dropped, baseline.packets.dropped);
}

#[test]
fn control_datagrams_lost_in_the_fabric_are_retransmitted() {
    // Just before the updates of the first change leave (at 320-330 ms), one spine fails; routing
    // learns of it 50 ms later. Datagrams hashed onto it are lost and sent again until then.
    let scenario = with_events("\n[[event]]\nat = \"315ms\"\naction = \"fail\"\nswitch = \"spine-1\"\n");
    let report = runner::run(&scenario, RunOptions::default(), &mut |_| {});
    let control = report.control.expect("overlay runs report the control channel");
    assert!(control.lost > 0, "{control:?}");
    assert!(control.retransmissions >= control.lost, "{control:?}");
    assert_eq!(control.applied, control.updates, "every update got through in the end");
    // The slowest update waited for routing to converge: longer than without the failure.
    assert!(control.convergence_ns_max > 40_000_000, "{control:?}");
    assert!(control.convergence_ns_max < 100_000_000, "{control:?}");
}

#[test]
fn updates_to_a_dead_host_are_abandoned_when_the_run_ends() {
    // host-0 runs redis-master... and never comes back: its updates are never acknowledged.
    let scenario = with_events("\n[[event]]\nat = \"100ms\"\naction = \"fail\"\nhost = \"host-0\"\n");
    let report = runner::run(&scenario, RunOptions::default(), &mut |_| {});
    let control = report.control.expect("overlay runs report the control channel");
    assert!(control.applied < control.updates, "{control:?}");
    // The run ended: retransmissions are bounded by the run's duration (every 5 ms at most).
    assert!(report.sim_time < netsim_core::SimTime(1_010_000_000), "ran until {}", report.sim_time);
}

#[test]
fn draining_a_host_and_restarting_a_pod_converge() {
    // host-37 runs bps-0; redis-master is a bare pod behind the redismaster service.
    let scenario = with_events(
        "\n[[event]]\nat = \"400ms\"\naction = \"drain\"\nhost = \"host-37\"\n\
         [[event]]\nat = \"700ms\"\naction = \"restart\"\npod = \"default/redis-master\"\n",
    );
    let report = runner::run(&scenario, RunOptions::default(), &mut |_| {});
    // Losses stay inside the change windows, replies always come from the ClusterIPs, every
    // update reaches its host.
    assert_eq!(report.drops_outside_windows, 0, "{:?}", report.drop_examples);
    for replies in report.replies.iter().flatten() {
        assert_eq!(replies.misaddressed, 0);
    }
    let control = report.control.expect("overlay runs report the control channel");
    assert_eq!(control.applied, control.updates);
    // The restarted redis master moved: frontends lost requests while they learnt its new
    // address, then were served again.
    let redis = &report.per_traffic.iter().find(|(name, _)| name == "frontend-to-redis").unwrap().1;
    assert!(redis.dropped_total() > 0 && redis.delivered > redis.sent * 9 / 10, "{redis:?}");
}

#[test]
fn frontends_restarting_at_a_rate() {
    let scenario = with_events(
        "\n[[churn]]\naction = \"restart\"\npods = \"pods:name=frontend\"\nrate = \"10/s\"\nstart = \"100ms\"\nstop = \"900ms\"\n",
    );
    let report = runner::run(&scenario, RunOptions::default(), &mut |_| {});
    let restarts = report.windows.iter().filter(|w| w.target.starts_with("restart")).count();
    // A Poisson process of mean 8 events over 800 ms.
    assert!((2..=16).contains(&restarts), "{restarts} restarts");
    assert_eq!(report.drops_outside_windows, 0, "{:?}", report.drop_examples);
    for replies in report.replies.iter().flatten() {
        assert_eq!(replies.misaddressed, 0);
    }
    let control = report.control.expect("overlay runs report the control channel");
    assert_eq!(control.applied, control.updates);
    // Same seed, same restarts.
    let again = runner::run(&scenario, RunOptions::default(), &mut |_| {});
    assert_eq!(again.trace_hash, report.trace_hash);
}

#[test]
fn a_policy_applied_during_the_run_takes_effect_once_programmed() {
    let path = netsim_tests::root().join("scenarios/petstore-churn.toml");
    let text = std::fs::read_to_string(&path)
        .expect("scenario")
        .replace("isolation = \"uses-labels\"", "isolation = \"network-policy\"")
        + "\n[[event]]\nat = \"400ms\"\naction = \"apply\"\nmanifest = \"k8s/redis-only-from-slaves.yaml\"\n";
    let scenario = netsim::scenario::Scenario::parse(&path, &text).unwrap_or_else(|e| panic!("{e}"));
    let report =
        runner::run(&scenario, RunOptions { record_fates: true, ..RunOptions::default() }, &mut |_| {});
    let redis = &report.per_traffic.iter().find(|(name, _)| name == "frontend-to-redis").unwrap().1;
    let slaves = &report.per_traffic.iter().find(|(name, _)| name == "slaves-to-master").unwrap().1;
    // Open by default: until 400 ms the frontends reach redis through its ClusterIP. From then
    // on (once redis-master's host has its ACL) their requests are dropped by policy; the
    // slaves are still served.
    assert!(redis.delivered > redis.sent / 3, "{redis:?}");
    assert!(redis.dropped.get("policy").copied().unwrap_or(0) > redis.sent / 3, "{redis:?}");
    assert_eq!(slaves.delivered, slaves.sent, "{slaves:?}");
    let control = report.control.expect("overlay runs report the control channel");
    assert_eq!(control.applied, control.updates);
}
