//! The default 100-host scenario through a host-link failure and a spine failure: exact counts
//! (snapshot) and the properties they must have, derived independently of the simulator.

use netsim_tests::{results, shipped};

#[test]
fn link_and_spine_failures_on_the_default_fabric() {
    let scenario = shipped("fabric-failover.toml");
    let results = results(&scenario);
    let packets = &results.packets;

    // Every packet has exactly one fate.
    assert_eq!(packets.sent, packets.delivered + packets.dropped_total());
    // Only the failures lose packets, and only inside their windows.
    let reasons: Vec<&str> = packets.dropped.keys().copied().collect();
    assert_eq!(reasons, ["link_down", "node_down"]);
    assert_eq!(results.drops_outside_failure_windows, 0);

    // Expected loss to the spine failure, from first principles: for the 50 ms detection delay,
    // a quarter of the flows that cross the spines hash onto spine-2. Of 99 possible
    // destinations, 90 are in another leaf pair. At 1M packets/s that is about
    // 50e-3 * 1e6 * 90/99 / 4 = 11,364 packets, give or take the flows' random placement.
    let spine_loss = packets.dropped["node_down"] as f64;
    assert!((0.8 * 11_364.0..1.2 * 11_364.0).contains(&spine_loss), "spine loss {spine_loss}");
    // The host uplink carries about half of host-7's sent and received traffic (2 of the 2000
    // flows' share each way): 50 ms * 1e6/s * (2/100) / 2 = 500 packets.
    let link_loss = packets.dropped["link_down"] as f64;
    assert!((0.6 * 500.0..1.4 * 500.0).contains(&link_loss), "link loss {link_loss}");

    // Routing learnt of each change after the 50 ms detection delay.
    let changes: Vec<(u64, &str, bool)> =
        results.routing_changes.iter().map(|c| (c.at_ns, c.element.as_str(), c.up)).collect();
    assert_eq!(
        changes,
        [
            (250_000_000, "host-7:uplink0", false),
            (450_000_000, "spine-2", false),
            (650_000_000, "host-7:uplink0", true),
            (850_000_000, "spine-2", true),
        ]
    );
    assert!(results.passed(), "{}", results.summary());
    insta::assert_snapshot!(results.summary());
}
