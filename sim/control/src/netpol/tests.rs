//! The reference evaluator against the upstream netpol e2e model: namespaces x, y, z with
//! pods a, b, c each, every pod serving 80 and 81 over TCP and UDP on named ports. Expected
//! truth tables are written by hand from the Kubernetes documentation: rows are sources,
//! columns destinations, `.` allowed, `X` denied, `-` not probed (a pod to itself).

use super::*;
use crate::cluster::{Cluster, ClusterConfig, PodId};
use crate::k8s::manifest;
use proptest::prelude::*;

pub(crate) const PODS: [&str; 9] = ["x/a", "x/b", "x/c", "y/a", "y/b", "y/c", "z/a", "z/b", "z/c"];

/// The model cluster plus `policies` (YAML documents).
pub(crate) fn model(policies: &str) -> Cluster {
    let mut text = String::new();
    for ns in ["x", "y", "z"] {
        text += &format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{ns: {ns}}}}}\n"
        );
        for pod in ["a", "b", "c"] {
            text += &format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}, namespace: {ns}, labels: {{pod: {pod}}}}}\n\
                 spec:\n  containers:\n  - name: c\n    ports:\n\
                 \x20   - {{name: serve-80-tcp, containerPort: 80}}\n\
                 \x20   - {{name: serve-81-tcp, containerPort: 81}}\n\
                 \x20   - {{name: serve-80-udp, containerPort: 80, protocol: UDP}}\n\
                 \x20   - {{name: serve-81-udp, containerPort: 81, protocol: UDP}}\n"
            );
        }
    }
    text += policies;
    let (objects, _) = manifest::parse("model.yaml", &text).unwrap_or_else(|e| panic!("{e:?}"));
    Cluster::build(ClusterConfig::default(), objects).expect("the model builds")
}

pub(crate) fn id(cluster: &Cluster, name: &str) -> PodId {
    let (ns, pod) = name.split_once('/').expect("ns/pod");
    cluster.pod_by_name(ns, pod).expect(name)
}

fn allowed(cluster: &Cluster, from: &str, to: Ipv4Addr, port: u16, protocol: Protocol) -> bool {
    let source = Endpoint::Pod(cluster.view(id(cluster, from)));
    evaluate(cluster.policies(), &source, &cluster.endpoint(to), port, protocol).allowed()
}

/// The truth table for `port`/`protocol`, one row per source.
fn matrix(cluster: &Cluster, port: u16, protocol: Protocol) -> Vec<String> {
    PODS.iter()
        .map(|from| {
            PODS.iter()
                .map(|to| {
                    if from == to {
                        '-'
                    } else if allowed(cluster, from, cluster.pod(id(cluster, to)).ip, port, protocol) {
                        '.'
                    } else {
                        'X'
                    }
                })
                .collect()
        })
        .collect()
}

pub(crate) fn policy(name: &str, ns: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}"
    )
}

fn check(policies: &str, expected: [&str; 9]) {
    let cluster = model(policies);
    assert_eq!(matrix(&cluster, 80, Protocol::Tcp), expected, "\n{policies}");
}

const ALL_OPEN: [&str; 9] = [
    "-........",
    ".-.......",
    "..-......",
    "...-.....",
    "....-....",
    ".....-...",
    "......-..",
    ".......-.",
    "........-",
];

#[test]
fn no_policy_allows_everything() {
    check("", ALL_OPEN);
}

#[test]
fn default_deny_ingress_isolates_a_namespace() {
    check(
        &policy("deny", "x", "  podSelector: {}\n"),
        [
            "-XX......",
            "X-X......",
            "XX-......",
            "XXX-.....",
            "XXX.-....",
            "XXX..-...",
            "XXX...-..",
            "XXX....-.",
            "XXX.....-",
        ],
    );
}

#[test]
fn allow_all_ingress_rule_reopens() {
    check(
        &(policy("deny", "x", "  podSelector: {}\n")
            + &policy("all", "x", "  podSelector: {}\n  ingress: [{}]\n")),
        ALL_OPEN,
    );
}

#[test]
fn pod_selector_peer_is_the_policy_namespace_only() {
    check(
        &policy(
            "to-a",
            "x",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {pod: b}}}]\n",
        ),
        [
            "-........",
            ".-.......",
            "X.-......",
            "X..-.....",
            "X...-....",
            "X....-...",
            "X.....-..",
            "X......-.",
            "X.......-",
        ],
    );
}

#[test]
fn namespace_selector_peer_is_every_pod_there() {
    check(
        &policy(
            "to-a",
            "x",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {ns: y}}}]\n",
        ),
        [
            "-........",
            "X-.......",
            "X.-......",
            "...-.....",
            "....-....",
            ".....-...",
            "X.....-..",
            "X......-.",
            "X.......-",
        ],
    );
}

#[test]
fn both_selectors_in_one_peer_intersect() {
    check(
        &policy(
            "to-a",
            "x",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {ns: y}}\n      podSelector: {matchLabels: {pod: b}}\n",
        ),
        [
            "-........",
            "X-.......",
            "X.-......",
            "X..-.....",
            "....-....",
            "X....-...",
            "X.....-..",
            "X......-.",
            "X.......-",
        ],
    );
}

#[test]
fn two_peers_unite() {
    check(
        &policy(
            "to-a",
            "x",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {ns: y}}\n    - podSelector: {matchLabels: {pod: b}}\n",
        ),
        [
            "-........",
            ".-.......",
            "X.-......",
            "...-.....",
            "....-....",
            ".....-...",
            "X.....-..",
            "X......-.",
            "X.......-",
        ],
    );
}

#[test]
fn empty_namespace_selector_means_all_namespaces() {
    check(
        &policy(
            "to-a",
            "x",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - namespaceSelector: {}\n      podSelector: {matchLabels: {pod: b}}\n",
        ),
        [
            "-........",
            ".-.......",
            "X.-......",
            "X..-.....",
            "....-....",
            "X....-...",
            "X.....-..",
            ".......-.",
            "X.......-",
        ],
    );
}

#[test]
fn egress_only_policy_leaves_ingress_open() {
    check(
        &policy("no-out", "x", "  podSelector: {}\n  policyTypes: [Egress]\n"),
        [
            "-XXXXXXXX",
            "X-XXXXXXX",
            "XX-XXXXXX",
            "...-.....",
            "....-....",
            ".....-...",
            "......-..",
            ".......-.",
            "........-",
        ],
    );
}

#[test]
fn match_expressions_select_pods() {
    check(
        &policy(
            "not-c",
            "y",
            "  podSelector: {matchExpressions: [{key: pod, operator: NotIn, values: [c]}]}\n",
        ),
        [
            "-..XX....",
            ".-.XX....",
            "..-XX....",
            "...-X....",
            "...X-....",
            "...XX-...",
            "...XX.-..",
            "...XX..-.",
            "...XX...-",
        ],
    );
}

#[test]
fn ports_numbers_ranges_names_and_protocols() {
    let tcp = Protocol::Tcp;
    let udp = Protocol::Udp;
    let to_a = |ports: &str| {
        model(&policy(
            "p",
            "x",
            &format!("  podSelector: {{matchLabels: {{pod: a}}}}\n  ingress:\n  - ports:\n{ports}"),
        ))
    };
    let a = |cluster: &Cluster| cluster.pod(id(cluster, "x/a")).ip;

    let cluster = to_a("    - {port: 80}\n");
    assert!(allowed(&cluster, "y/b", a(&cluster), 80, tcp));
    assert!(!allowed(&cluster, "y/b", a(&cluster), 81, tcp));
    assert!(!allowed(&cluster, "y/b", a(&cluster), 80, udp), "the protocol defaults to TCP");

    let cluster = to_a("    - {port: serve-81-tcp}\n");
    assert!(allowed(&cluster, "y/b", a(&cluster), 81, tcp));
    assert!(!allowed(&cluster, "y/b", a(&cluster), 80, tcp));
    assert!(!allowed(&cluster, "y/b", a(&cluster), 81, udp));

    let cluster = to_a("    - {port: serve-81-udp, protocol: UDP}\n");
    assert!(allowed(&cluster, "y/b", a(&cluster), 81, udp));
    assert!(!allowed(&cluster, "y/b", a(&cluster), 81, tcp));

    let cluster = to_a("    - {port: 80, endPort: 81}\n");
    assert!(allowed(&cluster, "y/b", a(&cluster), 80, tcp));
    assert!(allowed(&cluster, "y/b", a(&cluster), 81, tcp));
    assert!(!allowed(&cluster, "y/b", a(&cluster), 82, tcp));

    let cluster = to_a("    - {protocol: UDP}\n");
    assert!(allowed(&cluster, "y/b", a(&cluster), 12345, udp));
    assert!(!allowed(&cluster, "y/b", a(&cluster), 80, tcp));
}

#[test]
fn egress_named_ports_resolve_on_the_destination() {
    let cluster = model(&policy(
        "out",
        "x",
        "  podSelector: {matchLabels: {pod: a}}\n  egress:\n  - ports: [{port: serve-80-udp, protocol: UDP}]\n",
    ));
    let y_b = cluster.pod(id(&cluster, "y/b")).ip;
    assert!(allowed(&cluster, "x/a", y_b, 80, Protocol::Udp));
    assert!(!allowed(&cluster, "x/a", y_b, 80, Protocol::Tcp));
    assert!(
        !allowed(&cluster, "x/a", "192.0.2.9".parse().unwrap(), 80, Protocol::Udp),
        "no pod, no named port"
    );
}

#[test]
fn ip_blocks_match_pod_addresses_with_holes() {
    let probe = model("");
    let y_b = probe.pod(id(&probe, "y/b")).ip;
    let y_c = probe.pod(id(&probe, "y/c")).ip;
    let cluster = model(&policy(
        "out",
        "x",
        &format!(
            "  podSelector: {{matchLabels: {{pod: a}}}}\n  egress:\n  - to: [{{ipBlock: {{cidr: {y_b}/32}}}}]\n"
        ),
    ));
    assert!(allowed(&cluster, "x/a", y_b, 80, Protocol::Tcp));
    assert!(!allowed(&cluster, "x/a", y_c, 80, Protocol::Tcp));
    assert!(allowed(&cluster, "x/b", y_c, 80, Protocol::Tcp), "x/b is not selected");

    let cluster = model(&policy(
        "in",
        "x",
        &format!(
            "  podSelector: {{matchLabels: {{pod: a}}}}\n  ingress:\n  - from: [{{ipBlock: {{cidr: 10.0.0.0/16, except: [{y_b}/32]}}}}]\n"
        ),
    ));
    let x_a = cluster.pod(id(&cluster, "x/a")).ip;
    assert!(!allowed(&cluster, "y/b", x_a, 80, Protocol::Tcp));
    assert!(allowed(&cluster, "y/c", x_a, 80, Protocol::Tcp));
}

#[test]
fn verdicts_name_the_policies() {
    let cluster = model(
        &(policy("deny", "x", "  podSelector: {}\n")
            + &policy(
                "from-b",
                "x",
                "  podSelector: {}\n  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]\n",
            )),
    );
    let source = Endpoint::Pod(cluster.view(id(&cluster, "x/b")));
    let verdict = evaluate(
        cluster.policies(),
        &source,
        &cluster.endpoint(cluster.pod(id(&cluster, "x/a")).ip),
        80,
        Protocol::Tcp,
    );
    assert_eq!(
        verdict,
        Verdict { egress: Decision::NotIsolated, ingress: Decision::AllowedBy("x/from-b".into()) }
    );
    let source = Endpoint::Pod(cluster.view(id(&cluster, "y/b")));
    let verdict = evaluate(
        cluster.policies(),
        &source,
        &cluster.endpoint(cluster.pod(id(&cluster, "x/a")).ip),
        80,
        Protocol::Tcp,
    );
    assert_eq!(verdict.ingress, Decision::Denied(vec!["x/deny".into(), "x/from-b".into()]));
}

/// Random ingress rules for a policy selecting `pod: a` in x.
fn rule() -> impl Strategy<Value = String> {
    let peer = prop_oneof![
        prop::sample::select(vec!["a", "b", "c"])
            .prop_map(|p| format!("{{podSelector: {{matchLabels: {{pod: {p}}}}}}}")),
        prop::sample::select(vec!["x", "y", "z"])
            .prop_map(|n| format!("{{namespaceSelector: {{matchLabels: {{ns: {n}}}}}}}")),
    ];
    let port = prop_oneof![
        Just("{port: 80}".to_string()),
        Just("{port: serve-81-tcp}".to_string()),
        Just("{protocol: UDP}".to_string())
    ];
    (prop::collection::vec(peer, 0..3), prop::collection::vec(port, 0..2)).prop_map(|(peers, ports)| {
        format!("  - from: [{}]\n    ports: [{}]\n", peers.join(", "), ports.join(", "))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Policies are additive: adding a rule never denies a connection that was allowed, and
    /// pods no policy selects stay open.
    #[test]
    fn adding_a_rule_never_takes_anything_away(rules in prop::collection::vec(rule(), 1..4), extra in rule()) {
        let spec = |rules: &[String]| format!("  podSelector: {{matchLabels: {{pod: a}}}}\n  ingress:\n{}", rules.concat());
        let before = model(&policy("p", "x", &spec(&rules)));
        let mut more = rules.clone();
        more.push(extra);
        let after = model(&policy("p", "x", &spec(&more)));
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            for port in [80, 81] {
                let (b, a) = (matrix(&before, port, protocol), matrix(&after, port, protocol));
                for (row_before, row_after) in b.iter().zip(&a) {
                    for (cell_before, cell_after) in row_before.chars().zip(row_after.chars()) {
                        prop_assert!(!(cell_before == '.' && cell_after == 'X'), "{b:?} -> {a:?}");
                    }
                }
                // Only the x/a column can ever be denied.
                for row in &a {
                    prop_assert!(row.chars().skip(1).all(|c| c != 'X'), "{a:?}");
                }
            }
        }
    }
}
