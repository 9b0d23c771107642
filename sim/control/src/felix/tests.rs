//! Felix's compilation against the reference NetworkPolicy evaluator, on the upstream netpol
//! model (namespaces x, y, z with pods a, b, c serving 80 and 81 on named ports).

use super::*;
use crate::k8s::Protocol;
use crate::netpol::tests::{PODS, id, model, policy};
use crate::netpol::{Endpoint, evaluate};
use netsim_core::acl::FlowView;
use netsim_core::chains::{Direction, PolicyStore};
use proptest::prelude::*;

/// Every host's policy store, as its felix would program it.
fn stores(programs: &[HostProgram]) -> Vec<PolicyStore> {
    programs
        .iter()
        .map(|program| {
            let mut store = PolicyStore::default();
            for (&set, members) in &program.ipsets {
                store.set_ipset(set, members.clone());
            }
            for (&policy, chains) in &program.policies {
                store.set_policy(policy, chains.clone());
            }
            store
        })
        .collect()
}

/// Whether the compiled chains let `from` open a connection to `to` (egress at the source's
/// host, ingress at the destination's).
fn compiled_allows(
    cluster: &Cluster,
    programs: &[HostProgram],
    stores: &[PolicyStore],
    from: PodId,
    to: PodId,
    port: u16,
    protocol: Protocol,
) -> bool {
    let (source, destination) = (cluster.pod(from), cluster.pod(to));
    let view = FlowView {
        src: source.ip,
        src_vn: None,
        dst: destination.ip,
        dst_vn: None,
        protocol: protocol.number(),
        dst_port: port,
    };
    let (src_host, dst_host) = (source.host as usize, destination.host as usize);
    let egress = programs[src_host].endpoints[&from].policy.egress.as_deref();
    let ingress = programs[dst_host].endpoints[&to].policy.ingress.as_deref();
    stores[src_host].evaluate(egress, Direction::Egress, &view).0 == Verdict::Allow
        && stores[dst_host].evaluate(ingress, Direction::Ingress, &view).0 == Verdict::Allow
}

/// Compiles the cluster and compares every pod pair, port and protocol with the reference.
fn agree(cluster: &Cluster) -> Result<usize, String> {
    let programs = Felix::default().compile(cluster, 100);
    let stores = stores(&programs);
    let mut compared = 0;
    for from in PODS {
        for to in PODS {
            if from == to {
                continue;
            }
            let (f, t) = (id(cluster, from), id(cluster, to));
            for protocol in [Protocol::Tcp, Protocol::Udp] {
                for port in [80, 81] {
                    let reference = evaluate(
                        cluster.policies(),
                        &Endpoint::Pod(cluster.view(f)),
                        &Endpoint::Pod(cluster.view(t)),
                        port,
                        protocol,
                    )
                    .allowed();
                    let compiled = compiled_allows(cluster, &programs, &stores, f, t, port, protocol);
                    if reference != compiled {
                        return Err(format!(
                            "{from} -> {to} {port}/{protocol:?}: reference {reference}, compiled {compiled}"
                        ));
                    }
                    compared += 1;
                }
            }
        }
    }
    Ok(compared)
}

#[test]
fn unselected_pods_are_open_and_ids_are_stable_across_recompilation() {
    let cluster =
        model(&policy("deny", "x", "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Ingress]\n"));
    let mut felix = Felix::default();
    let programs = felix.compile(&cluster, 100);
    let x_a = id(&cluster, "x/a");
    let host = cluster.pod(x_a).host as usize;
    assert_eq!(
        programs[host].endpoints[&x_a].policy,
        EndpointPolicy { ingress: Some(vec![PolicyId(0)]), egress: None }
    );
    let x_b = id(&cluster, "x/b");
    let b_host = cluster.pod(x_b).host as usize;
    assert_eq!(programs[b_host].endpoints[&x_b].policy, EndpointPolicy::default());
    assert_eq!(felix.compile(&cluster, 100), programs);
    assert_eq!(agree(&cluster), Ok(9 * 8 * 4));
}

#[test]
fn selectors_become_ip_sets_and_named_ports_become_named_port_sets() {
    let cluster = model(&policy(
        "mixed",
        "x",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {ns: y}}}, {ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/24]}}]\n    ports: [{port: serve-81-tcp}, {protocol: UDP, port: 80}]\n",
    ));
    let programs = Felix::default().compile(&cluster, 100);
    let x_a = id(&cluster, "x/a");
    let program = &programs[cluster.pod(x_a).host as usize];
    let chains = program.policies.values().next().expect("one policy");
    // Two peers times two ports.
    assert_eq!(chains.ingress.len(), 4);
    let sets: Vec<&Vec<SetMember>> = program.ipsets.values().collect();
    // The namespace peer's set: y's three pods; the named-port set: x/a's 81/TCP.
    assert!(sets.iter().any(|m| m.len() == 3 && m.iter().all(|m| m.port.is_none())));
    assert!(sets.contains(&&vec![SetMember { address: cluster.pod(x_a).ip, port: Some((6, 81)) }]));
    assert_eq!(agree(&cluster), Ok(288));
}

#[test]
fn services_list_their_backends_per_port() {
    let mut cluster = model("");
    let text = "---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: x}\nspec:\n  selector: {pod: a}\n  ports: [{port: 80, targetPort: serve-81-tcp}]\n";
    let (objects, _) = crate::k8s::manifest::parse("svc.yaml", text).unwrap();
    cluster.apply(objects).unwrap();
    let table = services(&cluster);
    let (&(_, port, protocol), backends) = table.iter().next().expect("one service port");
    assert_eq!((port, protocol), (80, 6));
    assert_eq!(backends, &vec![(cluster.pod(id(&cluster, "x/a")).ip, 81)]);
}

/// Random policy documents over the model: ingress and egress rules with pod, namespace and
/// address-block peers and numeric, named and protocol-only ports.
fn random_policy(index: usize) -> impl Strategy<Value = String> {
    let peer = prop_oneof![
        prop::sample::select(vec!["a", "b", "c"]).prop_map(|p| format!("{{podSelector: {{matchLabels: {{pod: {p}}}}}}}")),
        prop::sample::select(vec!["x", "y", "z"])
            .prop_map(|n| format!("{{namespaceSelector: {{matchLabels: {{ns: {n}}}}}}}")),
        (prop::sample::select(vec!["x", "y"]), prop::sample::select(vec!["a", "b"])).prop_map(|(n, p)| format!(
            "{{namespaceSelector: {{matchLabels: {{ns: {n}}}}}, podSelector: {{matchLabels: {{pod: {p}}}}}}}"
        )),
        Just("{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/30]}}".to_string()),
    ];
    let port = prop_oneof![
        Just("{port: 80}".to_string()),
        Just("{port: 80, endPort: 81}".to_string()),
        Just("{port: serve-81-tcp}".to_string()),
        Just("{protocol: UDP, port: serve-80-udp}".to_string()),
        Just("{protocol: UDP}".to_string()),
    ];
    let rule = (prop::collection::vec(peer, 0..3), prop::collection::vec(port, 0..3));
    (
        prop::sample::select(vec!["x", "y"]),
        prop::sample::select(vec!["{}", "{matchLabels: {pod: a}}", "{matchLabels: {pod: b}}"]),
        prop::collection::vec(rule.clone(), 0..3),
        prop::collection::vec(rule, 0..3),
        prop::sample::select(vec!["[Ingress]", "[Egress]", "[Ingress, Egress]"]),
    )
        .prop_map(move |(namespace, selector, ingress, egress, types)| {
            let rules = |key: &str, rules: &[(Vec<String>, Vec<String>)]| {
                rules
                    .iter()
                    .map(|(peers, ports)| {
                        format!("  - {key}: [{}]\n    ports: [{}]\n", peers.join(", "), ports.join(", "))
                    })
                    .collect::<String>()
            };
            let mut spec = format!("  podSelector: {selector}\n  policyTypes: {types}\n");
            if !ingress.is_empty() {
                spec += &format!("  ingress:\n{}", rules("from", &ingress));
            }
            if !egress.is_empty() {
                spec += &format!("  egress:\n{}", rules("to", &egress));
            }
            policy(&format!("p{index}"), namespace, &spec)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The chains felix compiles, evaluated as the data plane evaluates them, allow exactly
    /// what the reference NetworkPolicy semantics allow, for every pod pair, port and protocol.
    #[test]
    fn compiled_chains_agree_with_the_reference(
        policies in (random_policy(0), random_policy(1), random_policy(2), 1usize..=3)
    ) {
        let (p0, p1, p2, count) = policies;
        let text = [p0, p1, p2][..count].concat();
        let cluster = model(&text);
        prop_assert_eq!(agree(&cluster).map(|_| ()), Ok(()), "{}", text);
    }
}
