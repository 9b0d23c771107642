//! Felix's compilation against the reference NetworkPolicy evaluator, on the upstream netpol
//! model (namespaces x, y, z with pods a, b, c serving 80 and 81 on named ports).

use super::*;
use crate::cluster::ClusterConfig;
use crate::k8s::Protocol;
use crate::labels;
use crate::netpol::tests::{PODS, id, model, policy};
use crate::netpol::{Endpoint, evaluate};
use crate::network_manager::Isolation;
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
    let programs = Felix::default().compile(cluster, 100, Isolation::NetworkPolicy);
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
    let programs = felix.compile(&cluster, 100, Isolation::NetworkPolicy);
    let x_a = id(&cluster, "x/a");
    let host = cluster.pod(x_a).host as usize;
    assert_eq!(
        programs[host].endpoints[&x_a].policy,
        EndpointPolicy { ingress: Some(vec![PolicyId(0)]), egress: None }
    );
    let x_b = id(&cluster, "x/b");
    let b_host = cluster.pod(x_b).host as usize;
    assert_eq!(programs[b_host].endpoints[&x_b].policy, EndpointPolicy::default());
    assert_eq!(felix.compile(&cluster, 100, Isolation::NetworkPolicy), programs);
    assert_eq!(agree(&cluster), Ok(9 * 8 * 4));
}

#[test]
fn selectors_become_ip_sets_and_named_ports_become_named_port_sets() {
    let cluster = model(&policy(
        "mixed",
        "x",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {ns: y}}}, {ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/24]}}]\n    ports: [{port: serve-81-tcp}, {protocol: UDP, port: 80}]\n",
    ));
    let programs = Felix::default().compile(&cluster, 100, Isolation::NetworkPolicy);
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
    assert_eq!(backends[..], [(cluster.pod(id(&cluster, "x/a")).ip, 81)]);
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

/// Whether the label model's compiled chains let pod `from` open a connection to `address` on
/// `port`/`protocol`: kube-proxy's translation at the client's host (every backend tried: all
/// must agree), egress there with the original destination, ingress at the destination's host.
/// `None` for a service without backends (rejected whatever the policy).
fn label_chains_allow(
    cluster: &Cluster,
    programs: &[HostProgram],
    stores: &[PolicyStore],
    from: PodId,
    address: Ipv4Addr,
    port: u16,
    protocol: Protocol,
) -> Option<bool> {
    let source = cluster.pod(from);
    let host = source.host as usize;
    let key = (address, port, protocol.number());
    let targets: Vec<(Ipv4Addr, u16)> = match programs[host].services.get(&key) {
        Some(backends) if backends.is_empty() => return None,
        Some(backends) => backends.to_vec(),
        None => vec![(address, port)],
    };
    let verdicts: Vec<bool> = targets
        .iter()
        .map(|&(dst, dst_port)| {
            let view = FlowView {
                src: source.ip,
                src_vn: None,
                dst,
                dst_vn: None,
                protocol: protocol.number(),
                dst_port,
            };
            let egress = programs[host].endpoints[&from].policy.egress.as_deref();
            let out = stores[host].evaluate_original(egress, Direction::Egress, &view, (address, port)).0;
            let into = match cluster.pod_by_ip(dst) {
                Some(target) => {
                    let target_host = cluster.pod(target).host as usize;
                    let ingress = programs[target_host].endpoints[&target].policy.ingress.as_deref();
                    stores[target_host].evaluate(ingress, Direction::Ingress, &view).0
                }
                None => Verdict::Allow,
            };
            out == Verdict::Allow && into == Verdict::Allow
        })
        .collect();
    assert!(verdicts.windows(2).all(|w| w[0] == w[1]), "backends judged differently: {verdicts:?}");
    Some(verdicts[0])
}

/// Compiles the label model and compares, from every pod, every pod address and service
/// address on its ports (and one port nobody serves) with the label oracle; returns how many
/// were compared and how many of those were allowed.
fn labels_agree(cluster: &Cluster) -> Result<(usize, usize), String> {
    let programs = Felix::default().compile(cluster, 100, Isolation::UsesLabels);
    let stores = stores(&programs);
    let mut destinations: Vec<(Ipv4Addr, Vec<(u16, Protocol)>)> = Vec::new();
    for pod in cluster.pods().iter().filter(|p| !p.deleted) {
        let ports = pod.pod.template.ports.iter().map(|p| (p.port, p.protocol)).collect();
        destinations.push((pod.ip, ports));
    }
    for service in cluster.live_services() {
        let ports: Vec<(u16, Protocol)> =
            service.service.ports.iter().map(|p| (p.port, p.protocol)).collect();
        for address in service.cluster_ip.into_iter().chain(service.service.external_ips.iter().copied()) {
            destinations.push((address, ports.clone()));
        }
    }
    let (mut compared, mut allowed) = (0, 0);
    for (index, pod) in cluster.pods().iter().enumerate().filter(|(_, p)| !p.deleted) {
        let from = PodId(index as u32);
        for (address, ports) in &destinations {
            if *address == pod.ip {
                continue;
            }
            for &(port, protocol) in ports.iter().chain(&[(9999, Protocol::Tcp), (9999, Protocol::Udp)]) {
                let reference = labels::evaluate(cluster, from, *address, port, protocol);
                let Some(compiled) =
                    label_chains_allow(cluster, &programs, &stores, from, *address, port, protocol)
                else {
                    continue;
                };
                if reference.allowed() != compiled {
                    return Err(format!(
                        "{} -> {address}:{port}/{protocol:?}: reference {reference:?}, compiled {compiled}",
                        pod.key()
                    ));
                }
                compared += 1;
                allowed += usize::from(compiled);
            }
        }
    }
    Ok((compared, allowed))
}

fn labelled(text: &str) -> Cluster {
    let (objects, _) = crate::k8s::manifest::parse("labels.yaml", text).unwrap_or_else(|e| panic!("{e:?}"));
    Cluster::build(ClusterConfig::default(), objects).unwrap_or_else(|e| panic!("{e:?}"))
}

/// Web uses the db service (two ports, one UDP, an external IP); db's pods reach each other;
/// cache uses its own service; a lone pod without labels; namespace `other` has a `web`
/// collection using a `db` service of its own (named by object name) whose backend is a db
/// collection there.
const LABELLED: &str = "
apiVersion: v1
kind: ReplicationController
metadata: {name: web}
spec:
  replicas: 2
  template:
    metadata: {labels: {name: web, uses: db}}
    spec: {containers: [{name: c, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: ReplicationController
metadata: {name: db}
spec:
  replicas: 2
  template:
    metadata: {labels: {name: db}}
    spec: {containers: [{name: c, ports: [{containerPort: 5432}, {containerPort: 5433, protocol: UDP}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: database, labels: {name: db}}
spec:
  selector: {name: db}
  ports: [{name: sql, port: 5432}, {name: dns, port: 53, targetPort: 5433, protocol: UDP}]
  externalIPs: [192.0.2.7]
---
apiVersion: v1
kind: ReplicationController
metadata: {name: cache}
spec:
  replicas: 2
  template:
    metadata: {labels: {name: cache, uses: cache}}
    spec: {containers: [{name: c, ports: [{containerPort: 6379}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: cache}
spec: {selector: {name: cache}, ports: [{port: 6379}]}
---
apiVersion: v1
kind: Pod
metadata: {name: lone}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: other, labels: {name: web, uses: db}}
spec: {containers: [{name: c, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: other, labels: {name: db}}
spec: {containers: [{name: c, ports: [{containerPort: 5432}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: other}
spec: {selector: {name: db}, ports: [{port: 5432}]}
";

#[test]
fn the_label_model_compiles_to_egress_chains_on_original_destinations() {
    let cluster = labelled(LABELLED);
    let mut felix = Felix::default();
    let programs = felix.compile(&cluster, 100, Isolation::UsesLabels);
    let web = cluster.pod_by_name("default", "web-0").unwrap();
    let program = &programs[cluster.pod(web).host as usize];
    let endpoint = &program.endpoints[&web];
    assert_eq!(endpoint.policy.ingress, None, "no ingress policy");
    let [id] = endpoint.policy.egress.as_deref().unwrap() else { panic!("one egress policy") };
    let chains = &program.policies[id];
    let rules: Vec<String> = chains.egress.iter().map(ToString::to_string).collect();
    let (members, used) = match (&chains.egress[0].dst, &chains.egress[1].dst) {
        (AddrMatch::OriginalSet(members), AddrMatch::OriginalPorts(used)) => (*members, *used),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        rules,
        [
            format!("allow to ctorigdst in set #{}", members.0),
            format!("allow to ctorigdst:port in set #{}", used.0)
        ]
    );
    assert!(chains.ingress.is_empty());
    // The collection: both web pods; the used ports: ClusterIP and external IP, TCP 5432 and
    // UDP 53 (the service's ports, not the targets).
    assert_eq!(program.ipsets[&members].len(), 2);
    let vip = cluster.services().iter().find(|s| s.service.name == "database").unwrap().cluster_ip.unwrap();
    let external: Ipv4Addr = "192.0.2.7".parse().unwrap();
    let mut expected = vec![
        SetMember { address: vip, port: Some((6, 5432)) },
        SetMember { address: vip, port: Some((17, 53)) },
        SetMember { address: external, port: Some((6, 5432)) },
        SetMember { address: external, port: Some((17, 53)) },
    ];
    expected.sort();
    assert_eq!(program.ipsets[&used], expected);
    // kube-proxy translates the external IP too.
    assert!(program.services.contains_key(&(external, 5432, 6)));
    let names: Vec<&str> = felix.policy_names().map(|(_, name)| name).collect();
    assert!(names.contains(&"uses-labels default:web uses db"), "{names:?}");
    assert!(names.contains(&"uses-labels default:default"), "{names:?}");
    // Pods without `uses` have no second rule.
    let db = cluster.pod_by_name("default", "db-0").unwrap();
    let db_program = &programs[cluster.pod(db).host as usize];
    let db_policy = db_program.endpoints[&db].policy.egress.as_ref().unwrap()[0];
    assert_eq!(db_program.policies[&db_policy].egress.len(), 1);

    let (compared, allowed) = labels_agree(&cluster).unwrap();
    assert!(compared > 300 && allowed > 20, "{compared} compared, {allowed} allowed");
    // Recompiling gives the same ids and programs.
    assert_eq!(felix.compile(&cluster, 100, Isolation::UsesLabels), programs);
}

#[test]
fn without_the_original_destination_the_label_model_is_not_exact() {
    // Judged on the translated destination (what a chain without --ctorigdst sees), a client
    // of the database service would be denied it (its backends are another collection), and
    // a db pod would be allowed the service it does not use (its backends are its own
    // collection). The original destination gets both right.
    let cluster = labelled(LABELLED);
    let programs = Felix::default().compile(&cluster, 100, Isolation::UsesLabels);
    let stores = stores(&programs);
    let vip = cluster.services().iter().find(|s| s.service.name == "database").unwrap().cluster_ip.unwrap();
    for (client, expected) in [("web-0", Verdict::Allow), ("db-0", Verdict::Deny)] {
        let pod = cluster.pod_by_name("default", client).unwrap();
        let (host, source) = (cluster.pod(pod).host as usize, cluster.pod(pod).ip);
        let backends = &programs[host].services[&(vip, 5432, 6)];
        // A backend other than the client itself.
        let &(dst, dst_port) = backends.iter().find(|b| b.0 != source).unwrap();
        let view = FlowView { src: source, src_vn: None, dst, dst_vn: None, protocol: 6, dst_port };
        let egress = programs[host].endpoints[&pod].policy.egress.as_deref();
        let translated = stores[host].evaluate(egress, Direction::Egress, &view).0;
        let original = stores[host].evaluate_original(egress, Direction::Egress, &view, (vip, 5432)).0;
        assert_eq!((original, translated == expected), (expected, false), "{client}");
        let oracle = labels::evaluate(&cluster, pod, vip, 5432, Protocol::Tcp).allowed();
        assert_eq!(oracle, expected == Verdict::Allow, "{client}");
    }
}

/// Random collections in two namespaces: pods with a `name` (or none) and perhaps a `uses`
/// label, services selecting a collection and named by a `name` label or their object name.
fn random_labelled() -> impl Strategy<Value = String> {
    let pod = (
        prop::sample::select(vec!["x", "y"]),
        prop::option::of(prop::sample::select(vec!["a", "b", "c"])),
        prop::option::of(prop::sample::select(vec!["sa", "sb", "a", "nothing"])),
        prop::sample::select(vec![80u16, 81]),
    );
    let service = (
        prop::sample::select(vec!["x", "y"]),
        prop::sample::select(vec!["a", "b", "c"]),
        prop::sample::select(vec!["sa", "sb"]),
        any::<bool>(),
        prop::sample::select(vec![80u16, 81]),
        any::<bool>(),
    );
    (prop::collection::vec(pod, 1..8), prop::collection::vec(service, 0..4)).prop_map(|(pods, services)| {
        let mut text = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: y}\n");
        for (index, (ns, name, uses, port)) in pods.iter().enumerate() {
            let mut labels = Vec::new();
            labels.extend(name.map(|n| format!("name: {n}")));
            labels.extend(uses.map(|u| format!("uses: {u}")));
            text += &format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p{index}, namespace: {ns}, labels: {{{}}}}}\nspec: {{containers: [{{name: c, ports: [{{containerPort: {port}}}, {{containerPort: {port}, protocol: UDP}}]}}]}}\n",
                labels.join(", ")
            );
        }
        for (index, (ns, selects, called, by_label, port, udp)) in services.iter().enumerate() {
            let (name, labels) = if *by_label { (format!("s{index}"), format!("{{name: {called}}}")) } else { (called.to_string(), "{}".to_string()) };
            let protocol = if *udp { "UDP" } else { "TCP" };
            text += &format!(
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}, labels: {labels}}}\nspec: {{selector: {{name: {selects}}}, ports: [{{port: 7{port}, targetPort: {port}, protocol: {protocol}}}]}}\n"
            );
        }
        text
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The label model's chains, evaluated as the Calico host evaluates them (with kube-proxy's
    /// translation and the original destination), allow exactly what the label oracle allows.
    #[test]
    fn label_chains_agree_with_the_label_oracle(text in random_labelled()) {
        let (objects, _) = crate::k8s::manifest::parse("labels.yaml", &text).unwrap_or_else(|e| panic!("{e:?}"));
        // Two services of one name in one namespace are refused: skip those draws.
        let Ok(cluster) = Cluster::build(ClusterConfig::default(), objects) else { return Ok(()) };
        prop_assert_eq!(labels_agree(&cluster).map(|_| ()), Ok(()), "{}", text);
    }
}

#[test]
fn hosts_share_one_service_table_and_a_change_rebuilds_only_what_changed() {
    let mut cluster = labelled(LABELLED);
    let mut felix = Felix::default();
    let first = felix.compile(&cluster, 4, Isolation::NetworkPolicy);
    assert!(first.iter().all(|p| Arc::ptr_eq(&p.services, &first[0].services)), "one table for all hosts");
    let again = felix.compile(&cluster, 4, Isolation::UsesLabels);
    assert!(Arc::ptr_eq(&again[0].services, &first[0].services), "unchanged: the same table");
    let cache = cluster.services().iter().find(|s| s.service.name == "cache").unwrap().cluster_ip.unwrap();
    let database =
        cluster.services().iter().find(|s| s.service.name == "database").unwrap().cluster_ip.unwrap();
    let db_0 = cluster.pod_by_name("default", "db-0").unwrap();
    cluster.delete_pod(db_0).unwrap();
    let after = felix.compile(&cluster, 4, Isolation::NetworkPolicy);
    let (before, now) = (&first[0].services, &after[0].services);
    assert!(!Arc::ptr_eq(before, now));
    assert_eq!(*after[3].services, services(&cluster), "the cluster's table");
    assert!(Arc::ptr_eq(&before[&(cache, 6379, 6)], &now[&(cache, 6379, 6)]), "cache kept its backends");
    assert_eq!(now[&(database, 5432, 6)].len(), before[&(database, 5432, 6)].len() - 1);
}
