//! Calico's per-host agents, as pure functions of the cluster: felix's compilation of
//! NetworkPolicy into IP sets, policy chains and endpoint policy lists, and kube-proxy's
//! service table.
//!
//! Each NetworkPolicy becomes one policy with an ingress and an egress chain; a rule with
//! several peers and ports becomes one chain rule per (peer, port). Pod peers are IP sets of
//! the selected pods' addresses (a selector's set is updated as pods come and go; the chain
//! does not change); ipBlocks are nets with holes; named ports are named-port sets of
//! (address, protocol, port) of the pods that declare the name — the policy's own pods for
//! ingress, the peers for egress. An endpoint lists, per direction, the policies whose
//! selector picks it and that isolate that direction; none means open.
//!
//! Ids of sets and policies are stable across recompilations (interned by name), so that a
//! change to the cluster becomes a small difference in each host's programming.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use netsim_core::acl::Verdict;
use netsim_core::chains::{AddrMatch, EndpointPolicy, IpSetId, PolicyChains, PolicyId, Rule, SetMember};

use crate::cluster::{Cluster, PodId};
use crate::k8s::{NetworkPolicy, Peer, PolicyRule, TargetPort};
use crate::network_manager::pod_mac;
use crate::overlay_policy::{peer_pods, resolve_ports, selected_by, selecting};

/// A service as kube-proxy programs it: (ClusterIP, port, IP protocol number).
pub type ServiceKey = (Ipv4Addr, u16, u8);

/// A pod's interface on its host, with its policies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSpec {
    /// `namespace/name`.
    pub name: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its MAC.
    pub mac: [u8; 6],
    /// Its policies per direction.
    pub policy: EndpointPolicy,
}

/// What one host's felix and kube-proxy program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostProgram {
    /// The host's pods.
    pub endpoints: BTreeMap<PodId, EndpointSpec>,
    /// The IP sets its policies use.
    pub ipsets: BTreeMap<IpSetId, Vec<SetMember>>,
    /// The policies its endpoints list.
    pub policies: BTreeMap<PolicyId, PolicyChains>,
    /// Every service with a ClusterIP: backends (address, target port) in kube-proxy's order.
    pub services: BTreeMap<ServiceKey, Vec<(Ipv4Addr, u16)>>,
}

/// Felix's compiler: remembers the ids it handed out.
#[derive(Clone, Debug, Default)]
pub struct Felix {
    sets: BTreeMap<String, u32>,
    policies: BTreeMap<String, u32>,
}

impl Felix {
    fn set_id(&mut self, name: String) -> IpSetId {
        let next = self.sets.len() as u32;
        IpSetId(*self.sets.entry(name).or_insert(next))
    }

    fn policy_id(&mut self, name: String) -> PolicyId {
        let next = self.policies.len() as u32;
        PolicyId(*self.policies.entry(name).or_insert(next))
    }

    /// The policies it compiled, by id: `(id, namespace/name)`.
    pub fn policy_names(&self) -> impl Iterator<Item = (u32, &str)> {
        self.policies.iter().map(|(name, &id)| (id, name.as_str()))
    }

    /// Every host's programming for the cluster as it is (`hosts` hosts).
    pub fn compile(&mut self, cluster: &Cluster, hosts: u32) -> Vec<HostProgram> {
        let mut ipsets = BTreeMap::new();
        let mut policies = BTreeMap::new();
        let mut ids = Vec::new();
        for policy in cluster.policies() {
            let id = self.policy_id(format!("{}/{}", policy.namespace, policy.name));
            let chains = self.chains(cluster, policy, &mut ipsets);
            policies.insert(id, chains);
            ids.push((policy, id));
        }
        let services = services(cluster);
        let mut programs = vec![HostProgram { services, ..HostProgram::default() }; hosts as usize];
        for (index, pod) in cluster.pods().iter().enumerate() {
            if pod.deleted {
                continue;
            }
            let Some(program) = programs.get_mut(pod.host as usize) else { continue };
            let list = |ingress: bool| {
                let selected: Vec<PolicyId> = selecting(cluster, pod, ingress)
                    .map(|p| ids.iter().find(|(q, _)| std::ptr::eq(*q, p)).expect("listed above").1)
                    .collect();
                (!selected.is_empty()).then_some(selected)
            };
            let policy = EndpointPolicy { ingress: list(true), egress: list(false) };
            for id in policy.ingress.iter().chain(&policy.egress).flatten() {
                let chains: &PolicyChains = &policies[id];
                for rule in chains.ingress.iter().chain(&chains.egress) {
                    for matcher in [&rule.src, &rule.dst] {
                        if let AddrMatch::Set(set) | AddrMatch::NamedPorts(set) = matcher {
                            program.ipsets.insert(*set, ipsets[set].clone());
                        }
                    }
                }
                program.policies.insert(*id, chains.clone());
            }
            program.endpoints.insert(
                PodId(index as u32),
                EndpointSpec { name: pod.key(), ip: pod.ip, mac: pod_mac(pod.ip), policy },
            );
        }
        programs
    }

    /// A policy's chains; the sets they name are added to `ipsets`.
    fn chains(
        &mut self,
        cluster: &Cluster,
        policy: &NetworkPolicy,
        ipsets: &mut BTreeMap<IpSetId, Vec<SetMember>>,
    ) -> PolicyChains {
        let key = format!("{}/{}", policy.namespace, policy.name);
        let mut chains = PolicyChains::default();
        for (ingress, rules) in [(true, &policy.ingress), (false, &policy.egress)] {
            let direction = if ingress { "ingress" } else { "egress" };
            for (index, rule) in rules.iter().enumerate() {
                let prefix = format!("{key}/{direction}/{index}");
                let compiled = self.rule(cluster, policy, rule, ingress, &prefix, ipsets);
                if ingress { &mut chains.ingress } else { &mut chains.egress }.extend(compiled);
            }
        }
        chains
    }

    /// One NetworkPolicy rule as chain rules, one per (peer, port).
    fn rule(
        &mut self,
        cluster: &Cluster,
        policy: &NetworkPolicy,
        rule: &PolicyRule,
        ingress: bool,
        prefix: &str,
        ipsets: &mut BTreeMap<IpSetId, Vec<SetMember>>,
    ) -> Vec<Rule> {
        let mut peers = Vec::new();
        if rule.peers.is_empty() {
            peers.push(AddrMatch::Any);
        }
        for (index, peer) in rule.peers.iter().enumerate() {
            match peer {
                Peer::IpBlock { cidr, except } => {
                    peers.push(AddrMatch::Nets { nets: vec![*cidr], not_nets: except.clone() })
                }
                Peer::Pods { .. } => {
                    let id = self.set_id(format!("{prefix}/peer/{index}"));
                    let members = selected_by(cluster, &policy.namespace, peer)
                        .into_iter()
                        .map(|pod| SetMember::address(cluster.pod(pod).ip))
                        .collect();
                    ipsets.insert(id, sorted(members));
                    peers.push(AddrMatch::Set(id));
                }
            }
        }
        let allow = |protocol, src: AddrMatch, dst: AddrMatch, dst_ports| Rule {
            protocol,
            src,
            dst,
            dst_ports,
            action: Verdict::Allow,
        };
        let mut rules = Vec::new();
        if rule.ports.is_empty() {
            for peer in &peers {
                let (src, dst) =
                    if ingress { (peer.clone(), AddrMatch::Any) } else { (AddrMatch::Any, peer.clone()) };
                rules.push(allow(None, src, dst, Vec::new()));
            }
            return rules;
        }
        for (index, port) in rule.ports.iter().enumerate() {
            let protocol = port.protocol.number();
            if let Some(TargetPort::Name(_)) = &port.port {
                // A named-port set: the pods that declare the name, with what it stands for.
                let pods = if ingress {
                    live_pods(cluster)
                        .filter(|&p| {
                            selecting(cluster, cluster.pod(p), true).any(|q| std::ptr::eq(q, policy))
                        })
                        .collect()
                } else {
                    peer_pods(cluster, &policy.namespace, rule)
                };
                let mut members = Vec::new();
                for pod in pods {
                    let state = cluster.pod(pod);
                    let single = PolicyRule { peers: Vec::new(), ports: vec![port.clone()] };
                    for (_, (low, _)) in resolve_ports(&single, &state.pod.template.ports) {
                        members.push(SetMember { address: state.ip, port: Some((protocol, low)) });
                    }
                }
                let id = self.set_id(format!("{prefix}/port/{index}"));
                ipsets.insert(id, sorted(members));
                let named = AddrMatch::NamedPorts(id);
                if ingress {
                    for peer in &peers {
                        rules.push(allow(Some(protocol), peer.clone(), named.clone(), Vec::new()));
                    }
                } else {
                    // The set already holds only the peers' addresses.
                    rules.push(allow(Some(protocol), AddrMatch::Any, named, Vec::new()));
                }
                continue;
            }
            let range = match port.port {
                Some(TargetPort::Number(start)) => vec![(start, port.end_port.unwrap_or(start))],
                _ => vec![(0, u16::MAX)],
            };
            for peer in &peers {
                let (src, dst) =
                    if ingress { (peer.clone(), AddrMatch::Any) } else { (AddrMatch::Any, peer.clone()) };
                rules.push(allow(Some(protocol), src, dst, range.clone()));
            }
        }
        rules
    }
}

fn sorted(mut members: Vec<SetMember>) -> Vec<SetMember> {
    members.sort_unstable();
    members.dedup();
    members
}

fn live_pods(cluster: &Cluster) -> impl Iterator<Item = PodId> + '_ {
    (0..cluster.pods().len() as u32).map(PodId).filter(|&p| !cluster.pod(p).deleted)
}

/// kube-proxy's table: every ClusterIP service port with its backends.
pub fn services(cluster: &Cluster) -> BTreeMap<ServiceKey, Vec<(Ipv4Addr, u16)>> {
    let mut table = BTreeMap::new();
    for service in cluster.services() {
        let Some(ip) = service.cluster_ip else { continue };
        for (port, backends) in service.service.ports.iter().zip(&service.backends) {
            table.insert(
                (ip, port.port, port.protocol.number()),
                backends.iter().map(|b| (b.ip, b.port)).collect(),
            );
        }
    }
    table
}

#[cfg(test)]
mod tests;
