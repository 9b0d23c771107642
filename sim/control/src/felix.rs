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
//! Under the seeds' label model (`Isolation::UsesLabels`) NetworkPolicies are ignored, as the
//! overlay's network manager ignores them, and every pod gets one egress policy instead:
//!
//! 1. allow any protocol and port to an original destination in its collection's IP set (the
//!    live pods sharing its namespace and `name` label);
//! 2. allow the (ClusterIP or external IP, protocol, port) of each port of the services its
//!    `uses` label names, matched on the *original* destination;
//! 3. deny the rest (the endpoint's default), and no ingress policy.
//!
//! Both rules look at the destination before kube-proxy's DNAT (iptables' `--ctorigdst`,
//! `--ctorigdstport`), which only the client's host knows: so a pod that uses a service reaches
//! its backends through the ClusterIP but not by their own addresses, and a pod whose
//! collection serves a service it does not use cannot reach that ClusterIP either. Replies pass
//! by connection tracking at both hosts.
//!
//! Ids of sets and policies are stable across recompilations (interned by name), so that a
//! change to the cluster becomes a small difference in each host's programming.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use netsim_core::acl::Verdict;
use netsim_core::chains::{AddrMatch, EndpointPolicy, IpSetId, PolicyChains, PolicyId, Rule, SetMember};

use crate::cluster::{Cluster, PodId};
use crate::k8s::{NetworkPolicy, Peer, PolicyRule, TargetPort};
use crate::labels::{Collection, USES_LABEL, service_is_named};
use crate::network_manager::{Isolation, pod_mac};
use crate::overlay_policy::{peer_pods, resolve_ports, selected_by, selecting};

/// A service as kube-proxy programs it: (ClusterIP, port, IP protocol number).
pub type ServiceKey = (Ipv4Addr, u16, u8);

/// kube-proxy's table: every service's backends (address, target port) in kube-proxy's order.
pub type ServiceTable = BTreeMap<ServiceKey, Arc<[(Ipv4Addr, u16)]>>;

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
    /// The same on every host, so every host's program shares one table; a service whose
    /// backends did not change keeps its `Arc` from one compilation to the next, and an
    /// unchanged table is the same `Arc`.
    pub services: Arc<ServiceTable>,
}

/// Felix's compiler: remembers the ids it handed out.
#[derive(Clone, Debug, Default)]
pub struct Felix {
    sets: BTreeMap<String, u32>,
    policies: BTreeMap<String, u32>,
    /// The service table last compiled, whose parts the next one reuses.
    services: Arc<ServiceTable>,
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

    /// The policies it compiled, by id: `(id, name)` — `namespace/name` for a NetworkPolicy,
    /// `uses-labels <collection>[ uses <service>]` for the label model's.
    pub fn policy_names(&self) -> impl Iterator<Item = (u32, &str)> {
        self.policies.iter().map(|(name, &id)| (id, name.as_str()))
    }

    /// The IP sets it compiled, by id: `(id, name)`.
    pub fn set_names(&self) -> impl Iterator<Item = (u32, &str)> {
        self.sets.iter().map(|(name, &id)| (id, name.as_str()))
    }

    /// kube-proxy's table for the cluster as it is, sharing what did not change with the last.
    fn service_table(&mut self, cluster: &Cluster) -> Arc<ServiceTable> {
        let mut table = services(cluster);
        for (key, backends) in &mut table {
            if let Some(old) = self.services.get(key)
                && old == backends
            {
                *backends = Arc::clone(old);
            }
        }
        if *self.services != table {
            self.services = Arc::new(table);
        }
        Arc::clone(&self.services)
    }

    /// Every host's programming for the cluster as it is (`hosts` hosts), under `isolation`.
    pub fn compile(&mut self, cluster: &Cluster, hosts: u32, isolation: Isolation) -> Vec<HostProgram> {
        match isolation {
            Isolation::NetworkPolicy => self.compile_policies(cluster, hosts),
            Isolation::UsesLabels => self.compile_labels(cluster, hosts),
        }
    }

    /// The seeds' label model: one egress policy per (collection, `uses` value), matching
    /// original destinations (see the module's documentation).
    fn compile_labels(&mut self, cluster: &Cluster, hosts: u32) -> Vec<HostProgram> {
        let services = self.service_table(cluster);
        let mut programs = vec![HostProgram { services, ..HostProgram::default() }; hosts as usize];
        let mut collections: BTreeMap<Collection, Vec<SetMember>> = BTreeMap::new();
        for pod in cluster.pods().iter().filter(|p| !p.deleted) {
            let collection = Collection::of(&pod.pod.namespace, &pod.pod.template.labels);
            collections.entry(collection).or_default().push(SetMember::address(pod.ip));
        }
        // Sorted once here, copied once per host that has a member (not once per pod).
        let collections: BTreeMap<Collection, Vec<SetMember>> =
            collections.into_iter().map(|(collection, members)| (collection, sorted(members))).collect();
        let mut used_ports: BTreeMap<(&str, &str), Vec<SetMember>> = BTreeMap::new();
        let allow = |dst| Rule {
            protocol: None,
            src: AddrMatch::Any,
            dst,
            dst_ports: Vec::new(),
            action: Verdict::Allow,
        };
        for (index, pod) in cluster.pods().iter().enumerate() {
            if pod.deleted {
                continue;
            }
            let Some(program) = programs.get_mut(pod.host as usize) else { continue };
            let collection = Collection::of(&pod.pod.namespace, &pod.pod.template.labels);
            let members = self.set_id(format!("uses-labels {collection} members"));
            program.ipsets.entry(members).or_insert_with(|| collections[&collection].clone());
            let mut egress = vec![allow(AddrMatch::OriginalSet(members))];
            let mut name = format!("uses-labels {collection}");
            if let Some(value) = pod.pod.template.labels.get(USES_LABEL) {
                let used = self.set_id(format!("uses-labels {} uses {value}", collection.namespace));
                let ports = used_ports
                    .entry((&pod.pod.namespace, value))
                    .or_insert_with(|| used_service_ports(cluster, &pod.pod.namespace, value));
                program.ipsets.entry(used).or_insert_with(|| ports.clone());
                egress.push(allow(AddrMatch::OriginalPorts(used)));
                name += &format!(" uses {value}");
            }
            let id = self.policy_id(name);
            program.policies.insert(id, PolicyChains { ingress: Vec::new(), egress });
            program.endpoints.insert(
                PodId(index as u32),
                EndpointSpec {
                    name: pod.key(),
                    ip: pod.ip,
                    mac: pod_mac(pod.ip),
                    policy: EndpointPolicy { ingress: None, egress: Some(vec![id]) },
                },
            );
        }
        programs
    }

    /// Kubernetes NetworkPolicy: each policy's chains, listed by the endpoints it selects.
    fn compile_policies(&mut self, cluster: &Cluster, hosts: u32) -> Vec<HostProgram> {
        let mut ipsets = BTreeMap::new();
        let mut policies = BTreeMap::new();
        let mut ids = Vec::new();
        for policy in cluster.policies() {
            let id = self.policy_id(format!("{}/{}", policy.namespace, policy.name));
            let chains = self.chains(cluster, policy, &mut ipsets);
            policies.insert(id, chains);
            ids.push((policy, id));
        }
        let services = self.service_table(cluster);
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

/// The addresses kube-proxy translates for a service: its ClusterIP, then its external IPs (a
/// headless service has none).
fn service_addresses(service: &crate::cluster::ServiceState) -> impl Iterator<Item = Ipv4Addr> + '_ {
    service
        .cluster_ip
        .into_iter()
        .chain(service.service.external_ips.iter().copied().filter(|_| service.cluster_ip.is_some()))
}

/// The (address, protocol, port) of every port of the services in `namespace` that a
/// `uses: value` label names, sorted: what the label model lets a collection call.
fn used_service_ports(cluster: &Cluster, namespace: &str, value: &str) -> Vec<SetMember> {
    let mut members = Vec::new();
    for service in cluster.live_services() {
        if service.service.namespace != namespace || !service_is_named(service, value) {
            continue;
        }
        for address in service_addresses(service) {
            for port in &service.service.ports {
                members.push(SetMember { address, port: Some((port.protocol.number(), port.port)) });
            }
        }
    }
    sorted(members)
}

/// kube-proxy's table: every port of every service with a ClusterIP, at the ClusterIP and at
/// each external IP (kube-proxy translates those for pods too), with its backends (a deleted
/// service has none: it rejects).
pub fn services(cluster: &Cluster) -> ServiceTable {
    let mut table = BTreeMap::new();
    for service in cluster.services() {
        for ip in service_addresses(service) {
            for (port, backends) in service.service.ports.iter().zip(&service.backends) {
                table.insert(
                    (ip, port.port, port.protocol.number()),
                    backends.iter().map(|b| (b.ip, b.port)).collect::<Vec<_>>().into(),
                );
            }
        }
    }
    table
}

#[cfg(test)]
mod tests;
