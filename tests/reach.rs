//! `netsim reach` through the overlay and through Calico agrees with the reference evaluator: on
//! the upstream netpol model with classic policies, on random pods, labels and policies (both
//! data planes allow and deny exactly the same connections), and on the seeds' labels.

use netsim::reach::{Reach, ReachPlane, reach};
use netsim_control::k8s::manifest;
use netsim_control::network_manager::Isolation;
use proptest::prelude::*;

/// Namespaces x, y, z (labelled ns), pods a, b, c (labelled pod) serving 80/TCP and 81/UDP on
/// named ports, plus `extra` documents.
fn model(extra: &str) -> String {
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
                 \x20   - {{name: serve-81-udp, containerPort: 81, protocol: UDP}}\n"
            );
        }
    }
    text + extra
}

fn policy(name: &str, ns: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}"
    )
}

fn probe(text: &str, plane: ReachPlane, isolation: Isolation) -> Reach {
    let (objects, _) = manifest::parse("test.yaml", text).unwrap_or_else(|e| panic!("{e:?}"));
    reach(objects, &[], plane, isolation).unwrap_or_else(|e| panic!("{e:?}"))
}

fn assert_conforms(reach: &Reach) {
    let mismatches: Vec<_> = reach.mismatches().collect();
    assert!(mismatches.is_empty(), "{} probes disagree, e.g. {:?}", mismatches.len(), mismatches.first());
}

fn denied(reach: &Reach) -> usize {
    reach.probes.iter().filter(|p| p.result == "denied").count()
}

#[test]
fn classic_policies_through_both_data_planes() {
    let cases = [
        (String::new(), 0),
        (policy("deny", "x", "  podSelector: {}\n"), 2 * 3 * 8),
        (policy("deny-out", "x", "  podSelector: {}\n  policyTypes: [Egress]\n"), 2 * 3 * 8),
        (
            policy(
                "a-from-yb",
                "x",
                "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {ns: y}}\n      podSelector: {matchLabels: {pod: b}}\n    ports: [{port: serve-80-tcp}]\n",
            ),
            2 * 8 - 1,
        ),
        (
            policy(
                "a-out-ipblock",
                "x",
                "  podSelector: {matchLabels: {pod: a}}\n  egress:\n  - to: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.0.5/32]}}]\n    ports: [{protocol: UDP}]\n",
            ),
            // Egress: TCP everywhere and UDP to y/a (10.0.0.5) denied; and with no policyTypes
            // given, Ingress is in them too: everything into x/a is denied.
            8 + 1 + 16,
        ),
    ];
    for (policies, expected_denied) in cases {
        for plane in [ReachPlane::Overlay, ReachPlane::Calico] {
            let reach = probe(&model(&policies), plane, Isolation::NetworkPolicy);
            assert_eq!(reach.probes.len(), 9 * 8 * 2);
            assert_conforms(&reach);
            assert_eq!(denied(&reach), expected_denied, "{plane:?}\n{policies}");
        }
    }
}

/// Probe results without the oracle's column: what a data plane did.
fn results(reach: &Reach) -> Vec<(String, String, u16, &'static str, &'static str)> {
    reach.probes.iter().map(|p| (p.from.clone(), p.to.clone(), p.port, p.protocol, p.result)).collect()
}

#[test]
fn the_seeds_label_model_through_both_data_planes() {
    let text =
        std::fs::read_to_string(netsim_tests::root().join("scenarios/k8s/petstore.yaml")).expect("petstore");
    // A pod's collection: its name without a workload's replica index.
    let collection = |pod: &str| {
        let name = pod.split('/').nth(1).unwrap();
        match name.rsplit_once('-') {
            Some((workload, index)) if index.parse::<u32>().is_ok() => workload.to_string(),
            _ => name.to_string(),
        }
    };
    let mut planes = Vec::new();
    for plane in [ReachPlane::Overlay, ReachPlane::Calico] {
        let reach = probe(&text, plane, Isolation::UsesLabels);
        assert_conforms(&reach);
        let (to_services, to_pods): (Vec<_>, Vec<_>) =
            reach.probes.iter().partition(|p| p.to.starts_with("service:"));
        // Pod to pod, only collections talk among themselves: bps has no ports; the frontends
        // reach each other on 3000, the slaves each other on 6379.
        let allowed: Vec<_> = to_pods.iter().filter(|p| p.result == "allowed").collect();
        assert_eq!(allowed.len(), 4 * 3 + 3 * 2, "{plane:?}");
        assert!(allowed.iter().all(|p| collection(&p.from) == collection(&p.to)), "{plane:?}");
        // Every pod probes both services on their port: only what the `uses` labels name gets
        // through — bps the frontend, the frontends and the slaves the redis master.
        assert_eq!(to_services.len(), 16 * 2);
        let mut used: Vec<(String, &str)> = to_services
            .iter()
            .filter(|p| p.result == "allowed")
            .map(|p| (collection(&p.from), p.to.as_str()))
            .collect();
        used.sort();
        used.dedup();
        assert_eq!(
            used,
            [
                ("bps".to_string(), "service:default/frontend"),
                ("frontend".to_string(), "service:default/redismaster"),
                ("redis-slave".to_string(), "service:default/redismaster"),
            ],
            "{plane:?}"
        );
        assert_eq!(to_services.iter().filter(|p| p.result == "allowed").count(), 8 + 4 + 3, "{plane:?}");
        planes.push(results(&reach));
    }
    assert_eq!(planes[0], planes[1], "the overlay and Calico reach the same");
}

fn selector() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{}".to_string()),
        prop::sample::select(vec!["a", "b", "c"]).prop_map(|p| format!("{{matchLabels: {{pod: {p}}}}}")),
        prop::sample::select(vec!["a", "b"])
            .prop_map(|p| format!("{{matchExpressions: [{{key: pod, operator: NotIn, values: [{p}]}}]}}")),
    ]
}

fn peer() -> impl Strategy<Value = String> {
    prop_oneof![
        selector().prop_map(|s| format!("{{podSelector: {s}}}")),
        prop::sample::select(vec!["x", "y", "z"])
            .prop_map(|n| format!("{{namespaceSelector: {{matchLabels: {{ns: {n}}}}}}}")),
        (selector(), prop::sample::select(vec!["x", "y"])).prop_map(|(s, n)| format!(
            "{{namespaceSelector: {{matchLabels: {{ns: {n}}}}}, podSelector: {s}}}"
        )),
        (0u8..12).prop_map(|last| format!("{{ipBlock: {{cidr: 10.0.0.0/28, except: [10.0.0.{last}/32]}}}}")),
    ]
}

fn port() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "{port: 80}",
        "{port: serve-81-udp, protocol: UDP}",
        "{protocol: UDP}",
        "{port: 79, endPort: 80}",
    ])
    .prop_map(str::to_string)
}

fn rule(direction: &'static str) -> impl Strategy<Value = String> {
    (prop::collection::vec(peer(), 0..3), prop::collection::vec(port(), 0..2)).prop_map(
        move |(peers, ports)| {
            let key = if direction == "ingress" { "from" } else { "to" };
            format!("  - {key}: [{}]\n    ports: [{}]\n", peers.join(", "), ports.join(", "))
        },
    )
}

fn random_policy() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["x", "y", "z"]),
        selector(),
        prop::collection::vec(rule("ingress"), 0..3),
        prop::option::of(prop::collection::vec(rule("egress"), 0..2)),
        any::<u16>(),
    )
        .prop_map(|(ns, selector, ingress, egress, id)| {
            let mut spec = format!("  podSelector: {selector}\n");
            if !ingress.is_empty() {
                spec += &format!("  ingress:\n{}", ingress.concat());
            }
            if let Some(egress) = egress {
                spec += "  policyTypes: [Ingress, Egress]\n";
                if !egress.is_empty() {
                    spec += &format!("  egress:\n{}", egress.concat());
                }
            }
            policy(&format!("p{id}"), ns, &spec)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random policies: the overlay's and Calico's reachability both equal the reference
    /// evaluator's, probe for probe — so the same workload is allowed and denied exactly the
    /// same connections under both data planes.
    #[test]
    fn random_policies_conform_on_both_data_planes(policies in prop::collection::vec(random_policy(), 1..4)) {
        let text = model(&policies.concat());
        let overlay = probe(&text, ReachPlane::Overlay, Isolation::NetworkPolicy);
        let calico = probe(&text, ReachPlane::Calico, Isolation::NetworkPolicy);
        for reach in [&overlay, &calico] {
            let mismatches: Vec<_> = reach.mismatches().cloned().collect();
            prop_assert!(mismatches.is_empty(), "{}: {} disagree, e.g. {:?}\n{}", reach.dataplane, mismatches.len(), mismatches.first(), policies.concat());
        }
        let results = |reach: &Reach| reach.probes.iter().map(|p| (p.from.clone(), p.to.clone(), p.port, p.result)).collect::<Vec<_>>();
        prop_assert_eq!(results(&overlay), results(&calico));
    }
}

/// A random workload for the seeds' label model: namespaces x and y; collections a, b, c and
/// the unnamed `default`, each with perhaps a `uses` label (the same on all its pods, as the
/// network manager reads it from the collection); pods serving 80/TCP and 81/UDP; services
/// selecting a collection, called by a `name` label or by their object name, on 7080/TCP or
/// 7081/UDP.
fn random_collections() -> impl Strategy<Value = String> {
    let uses = prop::option::of(prop::sample::select(vec!["sa", "sb", "a"]));
    let pod = (prop::sample::select(vec!["x", "y"]), prop::sample::select(vec!["a", "b", "c", "default"]));
    let service = (
        prop::sample::select(vec!["x", "y"]),
        prop::sample::select(vec!["a", "b", "c"]),
        prop::sample::select(vec!["sa", "sb", "a"]),
        any::<bool>(),
        any::<bool>(),
    );
    (
        prop::collection::vec(uses, 8),
        prop::collection::vec(pod, 2..9),
        prop::collection::vec(service, 0..4),
    )
        .prop_map(|(uses, pods, services)| {
            let mut text = String::new();
            for ns in ["x", "y"] {
                text += &format!("---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n");
            }
            let collections = ["a", "b", "c", "default"];
            for (index, (ns, collection)) in pods.iter().enumerate() {
                let slot = usize::from(*ns == "y") * 4 + collections.iter().position(|c| c == collection).unwrap();
                let mut labels = Vec::new();
                if *collection != "default" {
                    labels.push(format!("name: {collection}"));
                }
                labels.extend(uses[slot].map(|u| format!("uses: {u}")));
                text += &format!(
                    "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p{index}, namespace: {ns}, labels: {{{}}}}}\n\
                     spec: {{containers: [{{name: c, ports: [{{containerPort: 80}}, {{containerPort: 81, protocol: UDP}}]}}]}}\n",
                    labels.join(", ")
                );
            }
            for (index, (ns, selects, called, by_label, udp)) in services.iter().enumerate() {
                let (name, labels) =
                    if *by_label { (format!("s{index}"), format!("{{name: {called}}}")) } else { (called.to_string(), "{}".into()) };
                let (port, target, protocol) = if *udp { (7081, 81, "UDP") } else { (7080, 80, "TCP") };
                text += &format!(
                    "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}, labels: {labels}}}\n\
                     spec: {{selector: {{name: {selects}}}, ports: [{{port: {port}, targetPort: {target}, protocol: {protocol}}}]}}\n"
                );
            }
            text
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random collections, `uses` labels and services: the overlay's and Calico's reachability
    /// (pod to pod, and pod to every service's ClusterIP) both equal the label oracle's, probe
    /// for probe. On Calico this holds only because felix's egress chains match the original
    /// destination (the ClusterIP called), not the backend kube-proxy chose.
    #[test]
    fn random_collections_conform_to_the_label_model_on_both_data_planes(text in random_collections()) {
        let (objects, _) = manifest::parse("test.yaml", &text).unwrap_or_else(|e| panic!("{e:?}"));
        // Two services of one name in one namespace do not build: not a case.
        let overlay = reach(objects.clone(), &[], ReachPlane::Overlay, Isolation::UsesLabels);
        prop_assume!(overlay.is_ok());
        let overlay = overlay.unwrap();
        let calico = reach(objects, &[], ReachPlane::Calico, Isolation::UsesLabels).unwrap_or_else(|e| panic!("{e:?}"));
        for reach in [&overlay, &calico] {
            let mismatches: Vec<_> = reach.mismatches().cloned().collect();
            prop_assert!(mismatches.is_empty(), "{}: {} disagree, e.g. {:?}\n{}", reach.dataplane, mismatches.len(), mismatches.first(), text);
        }
        prop_assert_eq!(results(&overlay), results(&calico));
    }
}
