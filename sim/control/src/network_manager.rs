//! The OpenContrail network manager, in the seeds' label model: Kubernetes objects in, the
//! programming of every host's vrouter out.
//!
//! What it builds (the seeds' "Kubernetes networking with OpenContrail"):
//! - a virtual network per collection (`namespace:name`), whose pods reach each other on any
//!   port;
//! - a virtual network per service (`namespace:service-<name>`), holding the ClusterIP (and
//!   external IPs) as a floating IP on every backend interface, with the service's port
//!   translations;
//! - for a collection labelled `uses: X`, a policy letting it reach service X's network on the
//!   service's ports only, and the route leaking that makes the ClusterIP visible in the
//!   collection's VRF as an equal-cost route to every backend; the service network in turn
//!   learns the collection's pod routes, so replies find their way back.
//!
//! Every decision is deterministic: networks are numbered in name order, labels per host in pod
//! creation order. The output is a list of [`AgentMessage`]s per host — what the control nodes
//! send to each vrouter agent.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use netsim_core::acl::{Acl, AclRule, Match, Verdict, VnId};

use crate::cluster::{Cluster, PodId, ServiceState};
use crate::labels::{Collection, USES_LABEL, service_is_named};

/// The first MPLS label a host hands out (0-15 are reserved by RFC 3032).
pub const FIRST_LABEL: u32 = 16;

/// A virtual network.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VirtualNetwork {
    /// Its id, also its VXLAN VNI.
    pub id: VnId,
    /// `namespace:name`, or `namespace:service-<name>` for a service's network.
    pub name: String,
    /// Its policy.
    pub acl: Acl,
}

/// Where a route leads: the host and the label (or VNI) that reach the destination there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct RouteTarget {
    /// The destination host's underlay address.
    pub host: Ipv4Addr,
    /// The label of the destination interface (or floating IP) on that host.
    pub label: u32,
    /// The VNI of the destination's network.
    pub vni: u32,
}

/// What the control plane tells one host's vrouter agent.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AgentMessage {
    /// A network whose VRF the host needs.
    Network(VirtualNetwork),
    /// A local pod's interface.
    Interface {
        /// The pod.
        pod: PodId,
        /// `namespace/name`.
        name: String,
        /// Its address.
        ip: Ipv4Addr,
        /// Its MAC.
        mac: [u8; 6],
        /// Its network.
        vn: VnId,
        /// The label that reaches it.
        label: u32,
    },
    /// A floating IP on a local pod's interface.
    FloatingIp {
        /// The pod.
        pod: PodId,
        /// The floating address.
        ip: Ipv4Addr,
        /// The service network it lives in.
        vn: VnId,
        /// (protocol, service port, pod port).
        ports: Vec<(u8, u16, u16)>,
        /// The label that reaches the interface in the service network.
        label: u32,
    },
    /// A local pod's own ACLs (NetworkPolicy isolation): `None` leaves a direction open.
    InterfaceAcls {
        /// The pod.
        pod: PodId,
        /// Applied to flows towards the pod.
        ingress: Option<Acl>,
        /// Applied to flows from the pod.
        egress: Option<Acl>,
    },
    /// Withdraws a route.
    RemoveRoute {
        /// The VRF's network.
        vrf: VnId,
        /// The destination.
        prefix: Ipv4Net,
    },
    /// Removes a floating IP from a pod's interface.
    RemoveFloatingIp {
        /// The pod.
        pod: PodId,
        /// The floating address.
        ip: Ipv4Addr,
        /// Its network.
        vn: VnId,
    },
    /// Removes a deleted pod's interface.
    RemoveInterface {
        /// The pod.
        pod: PodId,
    },
    /// A route of a network's VRF on this host: one target, or several of equal cost.
    Route {
        /// The VRF's network.
        vrf: VnId,
        /// The destination.
        prefix: Ipv4Net,
        /// Equal-cost targets (more than one: ECMP).
        targets: Vec<RouteTarget>,
        /// The destination's network.
        vn: VnId,
    },
}

/// A network's own routes, shared by every host whose VRFs import them.
type Routes = Vec<(Ipv4Net, Vec<RouteTarget>)>;

/// The network manager's output: every network, and what each host's agent is told.
///
/// A host's route messages are not stored per host (at 5,000 hosts that would be tens of
/// millions of messages): each network's routes are kept once, with the VRFs each host needs and
/// the networks each VRF imports, and [`OverlayPlan::messages`] spells a host's messages out on
/// demand. [`OverlayPlan::diff`] compares two plans VRF by VRF, so a change costs the VRFs it
/// touches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OverlayPlan {
    /// Every network, by id.
    pub networks: Vec<VirtualNetwork>,
    /// Per host: networks, interfaces, floating IPs and ACLs, in order (routes apart).
    locals: Vec<Vec<AgentMessage>>,
    /// Per host: the VRFs it needs.
    host_networks: Vec<BTreeSet<VnId>>,
    /// Per VRF: the networks whose routes it imports (itself included).
    imports: BTreeMap<VnId, BTreeSet<VnId>>,
    /// Per network: its own routes.
    own_routes: BTreeMap<VnId, Routes>,
}

impl OverlayPlan {
    /// The network called `name`.
    pub fn network(&self, name: &str) -> Option<&VirtualNetwork> {
        self.networks.iter().find(|n| n.name == name)
    }

    /// How many hosts the plan covers.
    pub fn host_count(&self) -> usize {
        self.locals.len()
    }

    /// Everything host `host`'s agent is told, in order: networks, interfaces, floating IPs,
    /// ACLs, then each VRF's routes.
    pub fn messages(&self, host: usize) -> Vec<AgentMessage> {
        let mut messages = self.locals[host].clone();
        for &vrf in &self.host_networks[host] {
            self.push_routes(vrf, &mut messages);
        }
        messages
    }

    /// The route messages of one VRF, in import order.
    fn push_routes(&self, vrf: VnId, out: &mut Vec<AgentMessage>) {
        for source in self.imports.get(&vrf).into_iter().flatten() {
            for (prefix, targets) in self.own_routes.get(source).into_iter().flatten() {
                out.push(AgentMessage::Route { vrf, prefix: *prefix, targets: targets.clone(), vn: *source });
            }
        }
    }

    /// The messages that take host `host` from `old`'s programming to `new`'s: the same as
    /// [`diff`] of the two hosts' [`messages`](Self::messages), computed over the VRFs whose
    /// routes may differ only. `changed` is [`OverlayPlan::changed_networks`] of the two plans.
    pub fn diff(
        old: &OverlayPlan,
        new: &OverlayPlan,
        host: usize,
        changed: &BTreeSet<VnId>,
    ) -> Vec<AgentMessage> {
        let (old_vrfs, new_vrfs) = (&old.host_networks[host], &new.host_networks[host]);
        // A VRF's routes may differ if it is not on the host in both plans, its imports differ,
        // or a network it imports has different routes. Routes of other VRFs are equal on both
        // sides, so leaving them out of both changes nothing in the difference.
        let dirty = |vrf: &VnId| {
            !(old_vrfs.contains(vrf) && new_vrfs.contains(vrf))
                || old.imports.get(vrf) != new.imports.get(vrf)
                || new.imports.get(vrf).into_iter().flatten().any(|source| changed.contains(source))
        };
        if old.locals[host] == new.locals[host] && old_vrfs == new_vrfs && !old_vrfs.iter().any(dirty) {
            return Vec::new();
        }
        let spell = |plan: &OverlayPlan, vrfs: &BTreeSet<VnId>| {
            let mut messages = plan.locals[host].clone();
            for vrf in vrfs.iter().filter(|vrf| dirty(vrf)) {
                plan.push_routes(*vrf, &mut messages);
            }
            messages
        };
        diff(&spell(old, old_vrfs), &spell(new, new_vrfs))
    }

    /// The networks whose own routes differ between two plans.
    pub fn changed_networks(old: &OverlayPlan, new: &OverlayPlan) -> BTreeSet<VnId> {
        let ids: BTreeSet<VnId> = old.own_routes.keys().chain(new.own_routes.keys()).copied().collect();
        ids.into_iter().filter(|id| old.own_routes.get(id) != new.own_routes.get(id)).collect()
    }
}

/// A pod's MAC address: locally administered, derived from its address.
pub fn pod_mac(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// How pods are isolated from each other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Isolation {
    /// The seeds' model: a network per `name` collection, reaching the services it `uses`.
    #[default]
    UsesLabels,
    /// Kubernetes NetworkPolicy: one network for all pods, every service reachable, isolation
    /// by per-pod ACLs compiled from the policies (open by default).
    NetworkPolicy,
}

/// The single pod network under NetworkPolicy isolation.
pub const CLUSTER_NETWORK: &str = "cluster:pods";

/// Plans the overlay once for `cluster`, whose host `i` has underlay address `host_ips[i]`.
pub fn plan(cluster: &Cluster, host_ips: &[Ipv4Addr], isolation: Isolation) -> OverlayPlan {
    NetworkManager::default().plan(cluster, host_ips, isolation)
}

/// What a label is handed out for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum LabelOwner {
    Interface(PodId),
    FloatingIp(PodId, String),
}

/// The network manager with its memory: network ids and labels, once handed out, stay with
/// their network, interface or floating IP across re-plans, so that a change of the cluster
/// changes only the routes it must (and established flows elsewhere survive it).
#[derive(Clone, Debug, Default)]
pub struct NetworkManager {
    network_ids: BTreeMap<String, VnId>,
    labels: BTreeMap<(u32, LabelOwner), u32>,
    next_label: BTreeMap<u32, u32>,
}

impl NetworkManager {
    fn network_id(&mut self, name: &str) -> VnId {
        let next = VnId(self.network_ids.len() as u32 + 1);
        *self.network_ids.entry(name.to_string()).or_insert(next)
    }

    fn label(&mut self, host: u32, owner: LabelOwner) -> u32 {
        if let Some(&label) = self.labels.get(&(host, owner.clone())) {
            return label;
        }
        let next = self.next_label.entry(host).or_insert(FIRST_LABEL);
        let label = *next;
        *next += 1;
        self.labels.insert((host, owner), label);
        label
    }

    /// Plans the overlay for the cluster as it is now (deleted pods excluded).
    pub fn plan(&mut self, cluster: &Cluster, host_ips: &[Ipv4Addr], isolation: Isolation) -> OverlayPlan {
        // Collections and services, named and numbered in name order.
        let mut collections: BTreeMap<Collection, Vec<PodId>> = BTreeMap::new();
        for (index, pod) in cluster.pods().iter().enumerate().filter(|(_, p)| !p.deleted) {
            let collection = match isolation {
                Isolation::UsesLabels => Collection::of(&pod.pod.namespace, &pod.pod.template.labels),
                Isolation::NetworkPolicy => Collection { namespace: "cluster".into(), name: "pods".into() },
            };
            collections.entry(collection).or_default().push(PodId(index as u32));
        }
        let services: Vec<&ServiceState> =
            cluster.live_services().filter(|s| s.cluster_ip.is_some()).collect();
        let collection_names: BTreeMap<&Collection, String> =
            collections.keys().map(|c| (c, c.to_string())).collect();
        let service_names: Vec<String> = services.iter().map(|s| service_network_name(s)).collect();
        let mut names: BTreeSet<&String> = collection_names.values().collect();
        names.extend(&service_names);
        let ids: BTreeMap<String, VnId> = names.iter().map(|&n| (n.clone(), self.network_id(n))).collect();
        let collection_id = |collection: &Collection| ids[&collection_names[collection]];
        let service_ids: Vec<VnId> = service_names.iter().map(|n| ids[n]).collect();

        // Which services (indices into `services`) each collection uses. Under the label model a
        // collection's `uses` value names services of its namespace.
        let mut services_by_name: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
        for (index, s) in services.iter().enumerate() {
            services_by_name.entry((&s.service.namespace, &s.service.name)).or_default().push(index);
            if let Some(label) = s.service.labels.get(crate::labels::NAME_LABEL)
                && *label != s.service.name
            {
                services_by_name.entry((&s.service.namespace, label)).or_default().push(index);
            }
        }
        let uses: BTreeMap<&Collection, Vec<usize>> = collections
            .iter()
            .map(|(collection, pods)| {
                let used = match isolation {
                    // Under NetworkPolicy every pod may reach every service; policies decide.
                    Isolation::NetworkPolicy => (0..services.len()).collect(),
                    Isolation::UsesLabels => {
                        let value = cluster.pod(pods[0]).pod.template.labels.get(USES_LABEL);
                        let mut used: Vec<usize> = value
                            .and_then(|v| services_by_name.get(&(collection.namespace.as_str(), v.as_str())))
                            .cloned()
                            .unwrap_or_default();
                        used.sort_unstable();
                        used.dedup();
                        debug_assert!(used.iter().all(|&i| service_is_named(services[i], value.unwrap())));
                        used
                    }
                };
                (collection, used)
            })
            .collect();

        let service_ports = |service: &ServiceState, from: VnId, to: VnId| -> Vec<AclRule> {
            service
                .service
                .ports
                .iter()
                .map(|p| AclRule {
                    protocol: Some(p.protocol.number()),
                    dst_ports: (p.port, p.port),
                    ..AclRule::allow(Match::Vn(from), Match::Vn(to))
                })
                .collect()
        };
        let mut networks: BTreeMap<VnId, VirtualNetwork> = BTreeMap::new();
        // The collections using each service, in collection order.
        let mut users: Vec<Vec<VnId>> = vec![Vec::new(); services.len()];
        for (collection, used) in &uses {
            let id = collection_id(collection);
            let mut rules = vec![AclRule::allow(Match::Vn(id), Match::Vn(id))];
            for &service in used {
                rules.extend(service_ports(services[service], id, service_ids[service]));
                users[service].push(id);
            }
            networks.insert(
                id,
                VirtualNetwork {
                    id,
                    name: collection_names[collection].clone(),
                    acl: Acl { rules, default: Verdict::Deny },
                },
            );
        }
        for (index, service) in services.iter().enumerate() {
            let id = service_ids[index];
            let mut rules = Vec::new();
            for &user in &users[index] {
                rules.extend(service_ports(service, user, id));
            }
            networks.insert(
                id,
                VirtualNetwork {
                    id,
                    name: service_names[index].clone(),
                    acl: Acl { rules, default: Verdict::Deny },
                },
            );
        }

        // Labels: per host, interfaces first in pod order, then floating IPs in service order.
        let mut pod_vn: BTreeMap<PodId, VnId> = BTreeMap::new();
        let mut pod_label: BTreeMap<PodId, u32> = BTreeMap::new();
        let mut hosts: Vec<Vec<AgentMessage>> = vec![Vec::new(); host_ips.len()];
        let mut host_networks: Vec<BTreeSet<VnId>> = vec![BTreeSet::new(); host_ips.len()];
        let mut interfaces = Vec::new();
        for (collection, pods) in &collections {
            let vn = collection_id(collection);
            for &pod in pods {
                pod_vn.insert(pod, vn);
            }
        }
        for (index, state) in cluster.pods().iter().enumerate().filter(|(_, p)| !p.deleted) {
            let pod = PodId(index as u32);
            let label = self.label(state.host, LabelOwner::Interface(pod));
            pod_label.insert(pod, label);
            host_networks[state.host as usize].insert(pod_vn[&pod]);
            interfaces.push((
                state.host,
                AgentMessage::Interface {
                    pod,
                    name: state.key(),
                    ip: state.ip,
                    mac: pod_mac(state.ip),
                    vn: pod_vn[&pod],
                    label,
                },
            ));
        }
        // Floating IPs: every backend of every service port, once per (pod, service).
        let mut floating: Vec<(u32, AgentMessage)> = Vec::new();
        let mut service_targets: BTreeMap<VnId, Vec<RouteTarget>> = BTreeMap::new();
        for (index, service) in services.iter().enumerate() {
            let vn = service_ids[index];
            let mut backends: BTreeMap<PodId, Vec<(u8, u16, u16)>> = BTreeMap::new();
            for (port, list) in service.service.ports.iter().zip(&service.backends) {
                for backend in list {
                    backends.entry(backend.pod).or_default().push((
                        port.protocol.number(),
                        port.port,
                        backend.port,
                    ));
                }
            }
            let mut targets = Vec::new();
            for (pod, ports) in backends {
                let host = cluster.pod(pod).host;
                let label = self.label(host, LabelOwner::FloatingIp(pod, service.key()));
                host_networks[host as usize].insert(vn);
                let addresses =
                    service.cluster_ip.into_iter().chain(service.service.external_ips.iter().copied());
                for ip in addresses {
                    floating
                        .push((host, AgentMessage::FloatingIp { pod, ip, vn, ports: ports.clone(), label }));
                }
                targets.push(RouteTarget { host: host_ips[host as usize], label, vni: vn.0 });
            }
            targets.sort();
            service_targets.insert(vn, targets);
        }

        // Which networks' routes each VRF imports: its own, and for a collection the services it
        // uses; for a service, the collections that use it (for replies).
        let mut imports: BTreeMap<VnId, BTreeSet<VnId>> =
            networks.keys().map(|&id| (id, BTreeSet::from([id]))).collect();
        for (collection, used) in &uses {
            let id = collection_id(collection);
            for &service in used {
                let service_id = service_ids[service];
                imports.entry(id).or_default().insert(service_id);
                imports.entry(service_id).or_default().insert(id);
            }
        }
        // Each network's own routes.
        let mut own_routes: BTreeMap<VnId, Routes> = BTreeMap::new();
        for (collection, pods) in &collections {
            let vn = collection_id(collection);
            let routes = own_routes.entry(vn).or_default();
            for &pod in pods {
                let state = cluster.pod(pod);
                let target =
                    RouteTarget { host: host_ips[state.host as usize], label: pod_label[&pod], vni: vn.0 };
                routes.push((Ipv4Net::from(state.ip), vec![target]));
            }
        }
        for (index, service) in services.iter().enumerate() {
            let vn = service_ids[index];
            let targets = &service_targets[&vn];
            if targets.is_empty() {
                continue;
            }
            let routes = own_routes.entry(vn).or_default();
            for ip in service.cluster_ip.into_iter().chain(service.service.external_ips.iter().copied()) {
                routes.push((Ipv4Net::from(ip), targets.clone()));
            }
        }

        // Assemble each host's messages: networks, interfaces, floating IPs, then routes.
        for (host, wanted) in host_networks.iter().enumerate() {
            let messages = &mut hosts[host];
            for vn in wanted {
                messages.push(AgentMessage::Network(networks[vn].clone()));
            }
        }
        for (host, message) in interfaces.into_iter().chain(floating) {
            hosts[host as usize].push(message);
        }
        if isolation == Isolation::NetworkPolicy {
            for acls in crate::overlay_policy::compile(cluster) {
                if acls.ingress.is_some() || acls.egress.is_some() {
                    let host = cluster.pod(acls.pod).host as usize;
                    hosts[host].push(AgentMessage::InterfaceAcls {
                        pod: acls.pod,
                        ingress: acls.ingress,
                        egress: acls.egress,
                    });
                }
            }
        }
        OverlayPlan {
            networks: networks.into_values().collect(),
            locals: hosts,
            host_networks,
            imports,
            own_routes,
        }
    }
}

/// The messages that take a host from `old` to `new` programming: additions and changes
/// first (networks, interfaces, floating IPs, ACLs, routes), then removals (routes, floating
/// IPs, interfaces). Unchanged items are not sent again.
pub fn diff(old: &[AgentMessage], new: &[AgentMessage]) -> Vec<AgentMessage> {
    let old_by_key: BTreeMap<MessageKey, &AgentMessage> =
        old.iter().filter_map(|m| Some((key(m)?, m))).collect();
    let new_by_key: BTreeMap<MessageKey, &AgentMessage> =
        new.iter().filter_map(|m| Some((key(m)?, m))).collect();
    let mut out: Vec<AgentMessage> =
        new.iter().filter(|m| key(m).is_none_or(|k| old_by_key.get(&k) != Some(m))).cloned().collect();
    for (key, _) in old_by_key.iter().filter(|(k, _)| !new_by_key.contains_key(k)) {
        let removal = match *key {
            MessageKey::Route(vrf, prefix) => Some(AgentMessage::RemoveRoute { vrf, prefix }),
            MessageKey::FloatingIp(pod, ip, vn) => Some(AgentMessage::RemoveFloatingIp { pod, ip, vn }),
            MessageKey::Interface(pod) => Some(AgentMessage::RemoveInterface { pod }),
            // A pod that keeps its interface but loses its ACLs is opened again.
            MessageKey::Acls(pod) => new_by_key
                .contains_key(&MessageKey::Interface(pod))
                .then_some(AgentMessage::InterfaceAcls { pod, ingress: None, egress: None }),
            MessageKey::Network(_) => None,
        };
        out.extend(removal);
    }
    // Removals in a safe order: routes before the floating IPs and interfaces they lead to.
    out.sort_by_key(|m| match m {
        AgentMessage::RemoveRoute { .. } => 1,
        AgentMessage::RemoveFloatingIp { .. } => 2,
        AgentMessage::RemoveInterface { .. } => 3,
        _ => 0,
    });
    out
}

/// What a message programs: two messages with the same key program the same thing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum MessageKey {
    Network(VnId),
    Interface(PodId),
    FloatingIp(PodId, Ipv4Addr, VnId),
    Acls(PodId),
    Route(VnId, Ipv4Net),
}

fn key(message: &AgentMessage) -> Option<MessageKey> {
    Some(match message {
        AgentMessage::Network(network) => MessageKey::Network(network.id),
        AgentMessage::Interface { pod, .. } => MessageKey::Interface(*pod),
        AgentMessage::FloatingIp { pod, ip, vn, .. } => MessageKey::FloatingIp(*pod, *ip, *vn),
        AgentMessage::InterfaceAcls { pod, .. } => MessageKey::Acls(*pod),
        AgentMessage::Route { vrf, prefix, .. } => MessageKey::Route(*vrf, *prefix),
        AgentMessage::RemoveRoute { .. }
        | AgentMessage::RemoveFloatingIp { .. }
        | AgentMessage::RemoveInterface { .. } => {
            return None;
        }
    })
}

/// The name of a service's network.
pub fn service_network_name(service: &ServiceState) -> String {
    format!("{}:service-{}", service.service.namespace, service.service.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterConfig;
    use crate::k8s::manifest;

    const PETSTORE: &str = r#"
apiVersion: v1
kind: ReplicationController
metadata: {name: bps}
spec:
  replicas: 1
  template:
    metadata: {labels: {name: bps, uses: frontend}}
    spec: {containers: [{name: load}]}
---
apiVersion: v1
kind: ReplicationController
metadata: {name: frontend}
spec:
  replicas: 2
  template:
    metadata: {labels: {name: frontend}}
    spec: {containers: [{name: web, ports: [{containerPort: 8080, name: http}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: frontend, labels: {name: frontend}}
spec: {selector: {name: frontend}, ports: [{port: 3000, targetPort: http}]}
"#;

    fn host_ips(n: u32) -> Vec<Ipv4Addr> {
        (0..n).map(|i| Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 1)) + i)).collect()
    }

    #[test]
    fn the_seeds_example_becomes_networks_floating_ips_and_leaked_routes() {
        let (objects, _) = manifest::parse("p.yaml", PETSTORE).expect("valid");
        let cluster =
            Cluster::build(ClusterConfig { hosts: 4, ..ClusterConfig::default() }, objects).expect("builds");
        let plan = plan(&cluster, &host_ips(4), Isolation::UsesLabels);
        let names: Vec<&str> = plan.networks.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["default:bps", "default:frontend", "default:service-frontend"]);
        let bps = plan.network("default:bps").unwrap().id;
        let service = plan.network("default:service-frontend").unwrap().id;
        // bps may reach its own network, and the service on TCP 3000 only.
        let acl = &plan.network("default:bps").unwrap().acl;
        assert_eq!(acl.rules.len(), 2);
        assert_eq!((acl.rules[1].protocol, acl.rules[1].dst_ports), (Some(6), (3000, 3000)));
        assert_eq!(acl.default, Verdict::Deny);

        // Pods: bps-0 on host 0, frontend-0 on host 1 (stride 37 mod 4 = 1), frontend-1 on host 2.
        let hosts: Vec<u32> = cluster.pods().iter().map(|p| p.host).collect();
        assert_eq!(hosts, [0, 1, 2]);
        let vip = cluster.services()[0].cluster_ip.unwrap();
        // Host 0's bps VRF sees the VIP as ECMP over both backends' floating-IP labels.
        let vip_route = plan
            .messages(0)
            .iter()
            .find_map(|m| match m {
                AgentMessage::Route { vrf, prefix, targets, vn } if *vrf == bps && prefix.addr() == vip => {
                    Some((targets.clone(), *vn))
                }
                _ => None,
            })
            .expect("the VIP is leaked into bps's VRF");
        assert_eq!(vip_route.1, service);
        let target_hosts: Vec<Ipv4Addr> = vip_route.0.iter().map(|t| t.host).collect();
        assert_eq!(target_hosts, [host_ips(4)[1], host_ips(4)[2]]);
        // Each backend host has the floating IP, translating 3000 to the named port's 8080.
        for host in [1, 2] {
            let fip = plan.messages(host).iter().find_map(|m| match m {
                AgentMessage::FloatingIp { ip, ports, vn, .. } if *ip == vip => Some((ports.clone(), *vn)),
                _ => None,
            });
            assert_eq!(fip, Some((vec![(6, 3000, 8080)], service)));
            // ...and the service VRF there routes back to bps-0.
            let bps_ip = cluster.pods()[0].ip;
            assert!(plan.messages(host).iter().any(|m| matches!(m, AgentMessage::Route { vrf, prefix, .. } if *vrf == service && prefix.addr() == bps_ip)));
        }
        // The frontend network does not see bps's pods, and host 3 (no pods) gets nothing.
        let frontend = plan.network("default:frontend").unwrap().id;
        assert!(
            !plan
                .messages(1)
                .iter()
                .any(|m| matches!(m, AgentMessage::Route { vrf, vn, .. } if *vrf == frontend && *vn == bps))
        );
        assert!(plan.messages(3).is_empty());
    }

    #[test]
    fn re_plans_keep_labels_and_send_only_differences() {
        let (objects, _) = manifest::parse("p.yaml", PETSTORE).expect("valid");
        let mut cluster =
            Cluster::build(ClusterConfig { hosts: 4, ..ClusterConfig::default() }, objects).expect("builds");
        let mut manager = NetworkManager::default();
        let before = manager.plan(&cluster, &host_ips(4), Isolation::UsesLabels);
        // frontend-1 (host 2) goes away.
        let (created, deleted) = cluster.scale("default", "frontend", 1).expect("scales");
        assert_eq!((created.len(), deleted.len()), (0, 1));
        let after = manager.plan(&cluster, &host_ips(4), Isolation::UsesLabels);
        // Host 0 (bps) only learns the VIP's new, single target.
        let host0 = diff(&before.messages(0), &after.messages(0));
        assert_eq!(host0.len(), 1);
        let AgentMessage::Route { targets, .. } = &host0[0] else { panic!("{host0:?}") };
        assert_eq!(targets.iter().map(|t| t.host).collect::<Vec<_>>(), [host_ips(4)[1]]);
        // Host 2 withdraws routes, then the floating IP, then the interface.
        let host2 = diff(&before.messages(2), &after.messages(2));
        let kinds: Vec<u8> = host2
            .iter()
            .map(|m| match m {
                AgentMessage::RemoveRoute { .. } => 1,
                AgentMessage::RemoveFloatingIp { .. } => 2,
                AgentMessage::RemoveInterface { .. } => 3,
                _ => 0,
            })
            .collect();
        assert!(kinds.windows(2).all(|w| w[0] <= w[1]) && kinds.contains(&3), "{kinds:?}");
        // Host 1 keeps its pod's interface and labels: only routes change (the VIP's targets,
        // and the deleted replica's route in the frontend VRF).
        let host1 = diff(&before.messages(1), &after.messages(1));
        assert_eq!(host1.len(), 2, "{host1:?}");
        assert!(
            host1.iter().all(|m| matches!(m, AgentMessage::Route { .. } | AgentMessage::RemoveRoute { .. })),
            "{host1:?}"
        );
        // Scaling up again gives the new pod fresh labels, never reusing the deleted pod's.
        cluster.scale("default", "frontend", 2).expect("scales");
        let again = manager.plan(&cluster, &host_ips(4), Isolation::UsesLabels);
        let labels = |plan: &OverlayPlan| -> Vec<u32> {
            (0..plan.host_count())
                .flat_map(|host| plan.messages(host))
                .filter_map(|m| match m {
                    AgentMessage::Interface { label, .. } => Some(label),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(labels(&again).len(), 3);
        // The plan-level difference, which skips VRFs whose routes cannot differ, is the plain
        // difference of the hosts' whole programming, host by host.
        for (from, to) in [(&before, &after), (&after, &again), (&again, &before)] {
            let changed = OverlayPlan::changed_networks(from, to);
            for host in 0..4 {
                assert_eq!(
                    OverlayPlan::diff(from, to, host, &changed),
                    diff(&from.messages(host), &to.messages(host)),
                    "host {host}"
                );
            }
        }
        assert!(diff(&after.messages(0), &again.messages(0)).len() == 1);
    }
}
