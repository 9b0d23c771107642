//! The seeds' petstore through the overlay, end to end: the network manager programs every
//! vrouter from the manifests, pods call services' ClusterIPs over MPLS over UDP, answering pods
//! reply through the destination NAT's flow pair, and bps cannot reach redis.

use std::collections::BTreeMap;
use std::process::Command;

use netsim::checks;
use netsim::results::Results;
use netsim::runner::{self, Fate, RunOptions};
use netsim::traffic::REPLY_BIT;
use netsim_tests::shipped;

#[test]
fn petstore_over_the_overlay() {
    let scenario = shipped("petstore-overlay.toml");
    let options =
        RunOptions { record_fates: true, captures: vec!["host-7:uplink0".into()], ..RunOptions::default() };
    let mut report = runner::run(&scenario, options, &mut |_| {});
    let captures = std::mem::take(&mut report.captures);

    // Every packet, request or reply, has exactly one fate.
    let mut fates: BTreeMap<(u32, u64), Vec<Fate>> = BTreeMap::new();
    for &(flow, seq, fate) in &report.fates {
        fates.entry((flow, seq)).or_default().push(fate);
    }
    assert_eq!(report.fates.len() as u64, report.packets.sent);
    assert!(fates.values().all(|f| f.len() == 1), "a packet with two fates");
    // Every delivered request got a reply, and every reply was delivered.
    let requests_delivered =
        fates.iter().filter(|((flow, _), f)| flow & REPLY_BIT == 0 && f[0] == Fate::Delivered).count();
    let replies = fates.keys().filter(|(flow, _)| flow & REPLY_BIT != 0).count();
    let answered_entries: u64 = report.replies.iter().flatten().map(|r| r.sent).sum();
    assert_eq!(replies as u64, answered_entries);
    assert!(requests_delivered >= replies);

    // The only losses are the isolation probes, dropped by bps's vrouter for lack of a route.
    let vrouter_drops = &report.drops_by_layer["vrouter"];
    assert_eq!(vrouter_drops.keys().copied().collect::<Vec<_>>(), ["no_route"]);
    assert!(!report.drops_by_layer.contains_key("fabric"));
    let denied = &report.per_traffic.iter().find(|(name, _)| name == "bps-to-redis-denied").unwrap().1;
    assert_eq!(denied.delivered, 0);
    assert_eq!(denied.dropped["no_route"], denied.sent);

    // Replies come from exactly the ClusterIP and port the client targeted.
    for replies in report.replies.iter().flatten() {
        assert_eq!(replies.misaddressed, 0);
        assert_eq!(replies.delivered, replies.sent);
    }

    // The capture of host-7's first uplink holds MPLS-over-UDP frames in both directions.
    let capture = &captures[0];
    assert!(capture.frames.len() > 1000, "{} frames captured", capture.frames.len());
    let udp_6635 = capture
        .frames
        .iter()
        .filter(|(_, f)| f.len() > 38 && f[23] == 17 && f[36..38] == [0x19, 0xeb])
        .count();
    assert_eq!(udp_6635, capture.frames.len(), "every frame on the uplink is MPLS over UDP");
    check_with_tshark(&capture.frames);

    let checks = checks::evaluate(&scenario, &report);
    let results = Results::new(&scenario, report, checks, 0);
    assert!(results.passed(), "{}", results.summary());
    insta::assert_snapshot!(results.summary());
}

/// Runs tshark over the capture when it is installed (CI installs it; without it the test fails
/// under CI rather than skipping silently).
fn check_with_tshark(frames: &[(netsim_core::SimTime, Vec<u8>)]) {
    let available = Command::new("tshark").arg("--version").output().is_ok_and(|o| o.status.success());
    if !available {
        assert!(std::env::var_os("CI").is_none(), "CI must install tshark (see .ci/run)");
        eprintln!("tshark is not installed: skipping the dissection check");
        return;
    }
    let path = std::env::temp_dir().join(format!("netsim-petstore-{}.pcap", std::process::id()));
    let file = std::fs::File::create(&path).expect("temp pcap");
    netsim::pcap::write(std::io::BufWriter::new(file), &frames[..2000.min(frames.len())])
        .expect("write pcap");
    let fields = Command::new("tshark")
        .args([
            "-r",
            path.to_str().unwrap(),
            "-d",
            "udp.port==6635,mpls",
            "-T",
            "fields",
            "-e",
            "mpls.label",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
            "-e",
            "tcp.dstport",
        ])
        .output()
        .expect("tshark runs");
    let text = String::from_utf8_lossy(&fields.stdout);
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert!(!rows.is_empty(), "tshark read no frame");
    for row in &rows {
        // A label, then outer and inner addresses: underlay 172.16/12 outside, pods and VIPs inside.
        assert!(!row[0].is_empty(), "no MPLS label: {row:?}");
        let addresses: Vec<&str> = row[1].split(',').collect();
        assert_eq!(addresses.len(), 2, "{row:?}");
        assert!(addresses[0].starts_with("172.16.") && addresses[1].starts_with("10."), "{row:?}");
    }
    let bad = Command::new("tshark")
        .args([
            "-r", path.to_str().unwrap(), "-d", "udp.port==6635,mpls",
            "-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
            "-Y", "ip.checksum.status==0 || tcp.checksum.status==0 || _ws.malformed || _ws.expert.severity >= warning",
        ])
        .output()
        .expect("tshark runs");
    let _ = std::fs::remove_file(&path);
    let bad = String::from_utf8_lossy(&bad.stdout);
    assert!(bad.trim().is_empty(), "tshark flags frames:\n{bad}");
}
