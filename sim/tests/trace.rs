//! `netsim trace`: one packet followed across every layer, its exit code, and its errors.

mod common;
use common::{netsim, text};

fn trace(scenario: &str, flow: &str) -> (Option<i32>, String) {
    let output = netsim(&["trace", scenario, "--flow", flow, "--at", "20ms"]);
    (output.status.code(), format!("{}{}", text(&output.stdout), text(&output.stderr)))
}

#[test]
fn an_overlay_service_request_shows_label_ecmp_nat_and_delivery() {
    let (code, out) = trace("scenarios/petstore-overlay.toml", "bps-0->service:frontend:3000/tcp");
    assert_eq!(code, Some(0), "{out}");
    for expected in [
        "route lookup in VRF",
        "composite of 4 members",
        "ECMP: member",
        "encapsulate MPLS-over-UDP label",
        "(ECMP member 1 of 2)",
        "-> spine-",
        "decapsulate MPLS-over-UDP",
        "destination NAT to",
        "delivered at",
    ] {
        assert!(out.contains(expected), "lacks `{expected}`:\n{out}");
    }
    insta::assert_snapshot!("overlay_service_request", out);
}

#[test]
fn a_calico_service_request_shows_backend_route_policy_and_delivery() {
    let (code, out) = trace("scenarios/petstore-calico.toml", "default/bps-0->service:frontend:3000");
    assert_eq!(code, Some(0), "{out}");
    for expected in [
        "kube-proxy: service 10.96.0.3:3000 has 4 backend(s)",
        "kube-proxy DNAT: 10.96.0.3:3000 ->",
        "route lookup:",
        "to the fabric, towards host",
        "ingress policy of default/frontend-",
        "(default/frontend-users) rule #0",
        "delivered to default/frontend-",
    ] {
        assert!(out.contains(expected), "lacks `{expected}`:\n{out}");
    }
}

#[test]
fn a_denied_flow_shows_the_policy_and_exits_one() {
    let (code, out) = trace("scenarios/petstore-calico.toml", "bps-0->service:redismaster:6379/tcp");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("ingress policy of default/redis-master: Deny"), "{out}");
    assert!(out.contains("dropped at") && out.contains("policy (calico at host-"), "{out}");
    let (code, out) = trace("scenarios/petstore-overlay.toml", "bps-0->service:redismaster:6379/tcp");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no route to 10.96.0.2"), "{out}");
    assert!(out.contains("no_route (vrouter at host-"), "{out}");
}

#[test]
fn under_the_label_model_calico_names_the_egress_rule_that_saw_the_cluster_ip() {
    let scenario = "scenarios/petstore-calico-labels.toml";
    let (code, out) = trace(scenario, "bps-0->service:frontend:3000/tcp");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(
            "egress policy of default/bps-0: Allow by policy #1 (uses-labels default:bps uses frontend) rule #1: \
             allow to ctorigdst:port in set #2 (uses-labels default uses frontend)"
        ),
        "{out}"
    );
    let (code, out) = trace(scenario, "bps-0->service:redismaster:6379/tcp");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("egress policy of default/bps-0: Deny: no rule of its policies matches (default deny; policy #1 (uses-labels default:bps uses frontend))"),
        "{out}"
    );
    // A frontend calling another frontend by its own address: its collection's rule.
    let (code, out) = trace(scenario, "frontend-0->frontend-1:3000/tcp");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("rule #0: allow to ctorigdst in set #")
            && out.contains("(uses-labels default:frontend members)"),
        "{out}"
    );
}

#[test]
fn bad_input_exits_two_with_the_reason() {
    let scenario = "scenarios/petstore-overlay.toml";
    for (flow, at, message) in [
        ("nobody->service:frontend:3000/tcp", "20ms", "no live pod default/nobody"),
        ("bps-0->service:nothing:3000/tcp", "20ms", "no service default/nothing"),
        ("bps-0->frontend:3000/tcp", "20ms", "no live pod default/frontend"),
        ("bps-0=>frontend-0:3000", "20ms", "write SRC->DST:PORT/PROTO"),
        ("bps-0->frontend-0:3000/icmp", "20ms", "neither tcp nor udp"),
        ("bps-0->frontend-0:3000/tcp", "5s", "beyond the scenario's duration"),
    ] {
        let output = netsim(&["trace", scenario, "--flow", flow, "--at", at]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flow}: {stderr}");
        assert!(stderr.contains(message), "{flow}: {stderr}");
    }
    let output = netsim(&["trace", "scenarios/fabric-baseline.toml", "--flow", "a->b:1"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("tracing needs pods"), "{}", text(&output.stderr));
}

#[test]
fn json_parses_and_a_pod_can_be_named_by_address() {
    let output = netsim(&[
        "trace",
        "scenarios/petstore-overlay.toml",
        "--flow",
        "bps-0:10007->service:frontend:3000/tcp",
        "--at",
        "30ms",
        "--seed",
        "7",
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let trace: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(trace["at_ns"], 30_000_000);
    assert_eq!(trace["fate"]["delivered"], true);
    let steps = trace["steps"].as_array().expect("steps");
    assert!(steps.iter().any(|s| s["layer"] == "fabric"), "{trace}");
    assert!(trace["packet"].as_str().unwrap().contains(":10007 > 10.96.0.3:3000"), "{trace}");
    // The same packet, its source written as the pod's address.
    let source = trace["packet"].as_str().unwrap().split(':').next().unwrap().to_string();
    let output = netsim(&[
        "trace",
        "scenarios/petstore-overlay.toml",
        "--flow",
        &format!("{source}:10007->10.96.0.3:3000"),
        "--at",
        "30ms",
        "--seed",
        "7",
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let again: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(again["steps"], trace["steps"]);
}
