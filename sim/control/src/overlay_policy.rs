//! NetworkPolicy compiled for the overlay: per-pod ingress and egress ACLs (security groups).
//!
//! Under the NetworkPolicy isolation model all pods share one virtual network, so everything is
//! routable and isolation comes from ACLs on the pods' interfaces, evaluated at flow setup
//! (ingress at the destination's vrouter after destination NAT, egress at the source's). A pod
//! that no policy isolates in a direction gets no ACL for it (open, as Kubernetes specifies). An
//! isolated pod gets one allow rule per (peer, port) of every rule of every policy selecting it,
//! and a default deny. Selectors are expanded to the current pods' /32 addresses; named ports are
//! resolved against the destination pod (the pod itself for ingress, each peer for egress).
//! Replies pass through the flow pair, as connection tracking lets them.

use netsim_core::acl::{Acl, AclRule, Match, Verdict};

use crate::cluster::{Cluster, PodId, PodState};
use crate::k8s::{ContainerPort, NetworkPolicy, Peer, PolicyPort, PolicyRule, TargetPort};

/// The ACLs of one pod: `None` where no policy isolates it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodAcls {
    /// The pod.
    pub pod: PodId,
    /// Applied to flows towards the pod.
    pub ingress: Option<Acl>,
    /// Applied to flows from the pod.
    pub egress: Option<Acl>,
}

/// Compiles every pod's ACLs.
pub fn compile(cluster: &Cluster) -> Vec<PodAcls> {
    (0..cluster.pods().len() as u32)
        .map(PodId)
        .filter(|&pod| !cluster.pod(pod).deleted)
        .map(|pod| PodAcls { pod, ingress: ingress(cluster, pod), egress: egress(cluster, pod) })
        .collect()
}

pub(crate) fn selecting<'a>(
    cluster: &'a Cluster,
    pod: &'a PodState,
    ingress: bool,
) -> impl Iterator<Item = &'a NetworkPolicy> {
    cluster.policies().iter().filter(move |p| {
        (if ingress { p.ingress_isolation } else { p.egress_isolation })
            && p.namespace == pod.pod.namespace
            && p.pod_selector.matches(&pod.pod.template.labels)
    })
}

fn ingress(cluster: &Cluster, id: PodId) -> Option<Acl> {
    let pod = cluster.pod(id);
    let mut isolated = false;
    let mut rules = Vec::new();
    for policy in selecting(cluster, pod, true) {
        isolated = true;
        for rule in &policy.ingress {
            let ports = resolve_ports(rule, &pod.pod.template.ports);
            for peer in peers(cluster, &policy.namespace, rule) {
                for &(protocol, range) in &ports {
                    rules.push(AclRule {
                        src: peer.clone(),
                        dst: Match::Any,
                        protocol,
                        dst_ports: range,
                        verdict: Verdict::Allow,
                    });
                }
            }
        }
    }
    isolated.then_some(Acl { rules, default: Verdict::Deny })
}

fn egress(cluster: &Cluster, id: PodId) -> Option<Acl> {
    let pod = cluster.pod(id);
    let mut isolated = false;
    let mut rules = Vec::new();
    for policy in selecting(cluster, pod, false) {
        isolated = true;
        for rule in &policy.egress {
            let named = rule.ports.iter().any(|p| matches!(p.port, Some(TargetPort::Name(_))));
            if !named {
                let ports = resolve_ports(rule, &[]);
                for peer in peers(cluster, &policy.namespace, rule) {
                    for &(protocol, range) in &ports {
                        rules.push(AclRule {
                            src: Match::Any,
                            dst: peer.clone(),
                            protocol,
                            dst_ports: range,
                            verdict: Verdict::Allow,
                        });
                    }
                }
                continue;
            }
            // Named ports resolve per destination pod: expand to each pod the rule's peers
            // select, address blocks included (a named port never matches a non-pod).
            for target in peer_pods(cluster, &policy.namespace, rule) {
                let state = cluster.pod(target);
                for (protocol, range) in resolve_ports(rule, &state.pod.template.ports) {
                    let dst = Match::Prefix { net: state.ip.into(), except: Vec::new() };
                    rules.push(AclRule {
                        src: Match::Any,
                        dst,
                        protocol,
                        dst_ports: range,
                        verdict: Verdict::Allow,
                    });
                }
            }
        }
    }
    isolated.then_some(Acl { rules, default: Verdict::Deny })
}

/// A rule's ports as (protocol, range); named ports resolved against `ports` (skipped if the
/// pod has no such port). No ports: every protocol and port.
pub(crate) fn resolve_ports(rule: &PolicyRule, ports: &[ContainerPort]) -> Vec<(Option<u8>, (u16, u16))> {
    if rule.ports.is_empty() {
        return vec![(None, (0, u16::MAX))];
    }
    rule.ports
        .iter()
        .filter_map(|PolicyPort { protocol, port, end_port }| {
            let range = match port {
                None => (0, u16::MAX),
                Some(TargetPort::Number(start)) => (*start, end_port.unwrap_or(*start)),
                Some(TargetPort::Name(name)) => {
                    let found =
                        ports.iter().find(|p| p.name.as_deref() == Some(name) && p.protocol == *protocol)?;
                    (found.port, found.port)
                }
            };
            Some((Some(protocol.number()), range))
        })
        .collect()
}

/// A rule's peers as ACL matches: pods as /32s, address blocks as prefixes; no peers: anyone.
fn peers(cluster: &Cluster, policy_namespace: &str, rule: &PolicyRule) -> Vec<Match> {
    if rule.peers.is_empty() {
        return vec![Match::Any];
    }
    let mut matches = Vec::new();
    for peer in &rule.peers {
        match peer {
            Peer::IpBlock { cidr, except } => {
                matches.push(Match::Prefix { net: *cidr, except: except.clone() })
            }
            Peer::Pods { .. } => {
                for pod in selected_by(cluster, policy_namespace, peer) {
                    matches.push(Match::Prefix { net: cluster.pod(pod).ip.into(), except: Vec::new() });
                }
            }
        }
    }
    matches
}

/// The pods a rule's peers select (every pod when the rule has no peers), address blocks
/// selecting the pods whose addresses they hold.
pub(crate) fn peer_pods(cluster: &Cluster, policy_namespace: &str, rule: &PolicyRule) -> Vec<PodId> {
    let mut pods: Vec<PodId> = if rule.peers.is_empty() {
        (0..cluster.pods().len() as u32).map(PodId).filter(|&p| !cluster.pod(p).deleted).collect()
    } else {
        rule.peers.iter().flat_map(|peer| selected_by(cluster, policy_namespace, peer)).collect()
    };
    pods.sort();
    pods.dedup();
    pods
}

pub(crate) fn selected_by(cluster: &Cluster, policy_namespace: &str, peer: &Peer) -> Vec<PodId> {
    let (pod_selector, namespace_selector) = match peer {
        Peer::Pods { pod_selector, namespace_selector } => (pod_selector, namespace_selector),
        Peer::IpBlock { cidr, except } => {
            return cluster
                .pods()
                .iter()
                .enumerate()
                .filter(|(_, state)| {
                    !state.deleted
                        && cidr.contains(&state.ip)
                        && !except.iter().any(|e| e.contains(&state.ip))
                })
                .map(|(index, _)| PodId(index as u32))
                .collect();
        }
    };
    cluster
        .pods()
        .iter()
        .enumerate()
        .filter(|(_, state)| !state.deleted)
        .filter(|(_, state)| {
            let namespace_ok = match namespace_selector {
                None => state.pod.namespace == policy_namespace,
                Some(selector) => selector.matches(&cluster.namespaces()[&state.pod.namespace].labels),
            };
            namespace_ok && pod_selector.as_ref().is_none_or(|s| s.matches(&state.pod.template.labels))
        })
        .map(|(index, _)| PodId(index as u32))
        .collect()
}
