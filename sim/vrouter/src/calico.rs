//! The Calico data plane: each host is a plain IPv4 router for its pods.
//!
//! A pod's interface has a /32 route on its host; the host's own IPAM blocks are blackholed (an
//! unallocated address goes nowhere); other hosts' blocks are routes learnt by BGP, with the
//! owning host's underlay address as next hop, several next hops being ECMP. Packets travel
//! unencapsulated by default (the fabric routes pod blocks), or in IP-in-IP (protocol 4) or
//! VXLAN (VNI 4096) to the next hop, as Calico's `ipipMode` and `vxlanMode` choose.
//!
//! Policy is felix's: per endpoint, ordered policy chains per direction over IP sets
//! ([`netsim_core::chains`]), judged on a connection's first packet — egress at the sender's
//! host after service NAT, ingress at the receiver's — and remembered by connection tracking,
//! so replies and later packets of an allowed connection pass without judgement. The sender's
//! host, which made the translation, also knows where the connection was first headed (a
//! ClusterIP): its chains can match that original destination, as iptables' `--ctorigdst`.
//!
//! Services are kube-proxy's in iptables mode: a new connection from a local pod to a
//! ClusterIP and port is translated at the client's host to a backend drawn at random (each of
//! `n` rules matching with probability 1/(n-i), as iptables' `statistic` module does: equal
//! chances overall); conntrack keeps the translation so that replies come back from the
//! ClusterIP. Routing is looked up per packet (conntrack does not pin a route), so a BGP
//! withdrawal moves established connections at once.
//!
//! The host is programmed with [`CalicoCommand`]s: by tests directly, and in a simulation by
//! the control plane (felix's compilation of the cluster, kube-proxy's service table, BGP).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use netsim_core::acl::{FlowView, Verdict};
use netsim_core::chains::{
    Decider, Direction, EndpointPolicy, IpSetId, PolicyChains, PolicyId, PolicyStore, SetMember,
};
use netsim_core::packet::{ETHERNET_HEADER_LEN, IP_PROTO_UDP};
use netsim_core::planted::PlantedBugs;
use netsim_core::{FiveTuple, SimDuration, SimTime, mix64};

use crate::flow::{FlowEntry, FlowKey, FlowTable, Rewrite};
use crate::ipv4::{check_ip_header, check_ipv4, decrement_ttl, outer_header, reversed, set_ethernet};
use crate::lpm::RouteTable;
use crate::nat::{End, rewrite};
use crate::wire::{VXLAN_LEN, VXLAN_UDP_PORT, Vxlan};
use crate::{DataPlane, DropReason, Forward, InterfaceId, Notes, Port, VrfId, note};

/// The MAC of the host side of every pod's veth: Calico answers every pod's ARP with it.
pub const CALICO_GATEWAY_MAC: [u8; 6] = [0xee; 6];
/// The destination MAC of frames to the fabric: the fabric rewrites it hop by hop anyway.
pub const UNDERLAY_GATEWAY_MAC: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x01, 0x01];
/// Calico's VXLAN network identifier.
pub const CALICO_VNI: u32 = 4096;
/// IP protocol number of IP-in-IP.
pub const IP_PROTO_IPIP: u8 = 4;

/// How packets travel between hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CalicoEncapsulation {
    /// Plain IP: the fabric routes pod blocks (hosts peer with their leaves).
    #[default]
    None,
    /// IP-in-IP to the next hop's underlay address: 20 bytes.
    IpIp,
    /// VXLAN to the next hop: 50 bytes (the inner Ethernet header travels too).
    Vxlan,
}

impl CalicoEncapsulation {
    /// Bytes added in front of the inner IP packet (behind the outer Ethernet header).
    pub const fn overhead(self) -> usize {
        match self {
            CalicoEncapsulation::None => 0,
            CalicoEncapsulation::IpIp => 20,
            CalicoEncapsulation::Vxlan => 20 + 8 + VXLAN_LEN + ETHERNET_HEADER_LEN,
        }
    }
}

/// A Calico host's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CalicoConfig {
    /// The host's underlay address.
    pub host_ip: Ipv4Addr,
    /// The host's uplink MAC.
    pub host_mac: [u8; 6],
    /// Encapsulation between hosts.
    pub encapsulation: CalicoEncapsulation,
    /// Bound on conntrack entries (each direction of a connection is one).
    pub conntrack_max: usize,
    /// A connection idle this long is forgotten.
    pub conntrack_idle_timeout: SimDuration,
    /// Largest IP packet the underlay carries.
    pub underlay_mtu: u32,
    /// Seed of kube-proxy's random backend choice.
    pub nat_seed: u64,
    /// Seed of the ECMP hash over next hops and of the VXLAN source port.
    pub ecmp_seed: u64,
    /// Bugs planted by tests (none by default).
    pub planted: PlantedBugs,
}

impl CalicoConfig {
    /// Defaults for a host: no encapsulation, 512k conntrack entries, 60 s idle, MTU 1500.
    pub fn new(host_ip: Ipv4Addr) -> Self {
        CalicoConfig {
            host_ip,
            host_mac: [0x02, 0, 0, 0, 0, 0],
            encapsulation: CalicoEncapsulation::None,
            conntrack_max: 512 * 1024,
            conntrack_idle_timeout: SimDuration::from_secs(60),
            underlay_mtu: 1500,
            nat_seed: 0,
            ecmp_seed: 0,
            planted: PlantedBugs::default(),
        }
    }
}

/// A service as kube-proxy programs it: (ClusterIP, port, protocol).
pub type ServiceKey = (Ipv4Addr, u16, u8);

/// kube-proxy's table: every service's backends (pod address, target port), in kube-proxy's
/// order. It is the same on every host, so hosts share one copy ([`CalicoCommand::SetServices`]),
/// and a service whose backends did not change keeps its `Arc` from one table to the next.
pub type ServiceTable = BTreeMap<ServiceKey, Arc<[(Ipv4Addr, u16)]>>;

/// A change to a Calico host's programming.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CalicoCommand {
    /// A pod's interface (the CNI plugin's work): a /32 route to it.
    AddEndpoint {
        /// Its id.
        id: InterfaceId,
        /// Its name, for diagnostics.
        name: String,
        /// The pod's address.
        ip: Ipv4Addr,
        /// The pod's MAC.
        mac: [u8; 6],
    },
    /// A pod's interface goes, with its route and its connections.
    RemoveEndpoint(InterfaceId),
    /// The policies that apply to an endpoint (felix's endpoint chains).
    SetEndpointPolicy {
        /// The endpoint.
        id: InterfaceId,
        /// Its policies per direction.
        policy: EndpointPolicy,
    },
    /// An IP set's members.
    SetIpSet {
        /// The set.
        id: IpSetId,
        /// Its members.
        members: Vec<SetMember>,
    },
    /// An IP set goes.
    RemoveIpSet(IpSetId),
    /// A policy's chains.
    SetPolicy {
        /// The policy.
        id: PolicyId,
        /// Its chains.
        chains: PolicyChains,
    },
    /// A policy goes.
    RemovePolicy(PolicyId),
    /// A route learnt by BGP: `prefix` via the hosts `next_hops` (several: ECMP).
    SetRoute {
        /// The destination block.
        prefix: Ipv4Net,
        /// Underlay addresses of the hosts announcing it.
        next_hops: Vec<Ipv4Addr>,
    },
    /// A learnt route is withdrawn.
    RemoveRoute(Ipv4Net),
    /// One of this host's IPAM blocks: blackholed, behind its pods' /32 routes.
    AddLocalBlock(Ipv4Net),
    /// A block released.
    RemoveLocalBlock(Ipv4Net),
    /// A service's backends (kube-proxy's KUBE-SVC chain); an empty list rejects.
    SetService {
        /// ClusterIP, port and protocol.
        key: ServiceKey,
        /// Backend (pod address, target port), in kube-proxy's order.
        backends: Vec<(Ipv4Addr, u16)>,
    },
    /// A service goes.
    RemoveService(ServiceKey),
    /// The whole service table, shared with other hosts: replaces every service. Backends that
    /// went (those of an entry whose `Arc` changed) have their connections flushed.
    SetServices(Arc<ServiceTable>),
}

/// A command that does not apply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CalicoCommandError {
    /// The endpoint does not exist.
    #[error("unknown endpoint {0:?}")]
    UnknownEndpoint(InterfaceId),
    /// An endpoint with this id exists already.
    #[error("endpoint {0:?} exists already")]
    DuplicateEndpoint(InterfaceId),
    /// A route without next hops.
    #[error("route {0} has no next hop")]
    NoNextHop(Ipv4Net),
}

/// Host counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CalicoCounters {
    /// Drops by reason.
    pub drops: BTreeMap<DropReason, u64>,
    /// Connections admitted (conntrack pairs created).
    pub connections: u64,
    /// Of which translated by kube-proxy (service connections).
    pub nat_connections: u64,
    /// Packets of known connections (conntrack hits).
    pub conntrack_hits: u64,
    /// Policy verdicts computed (new connections judged, per direction).
    pub policy_evaluations: u64,
    /// Packets encapsulated towards the fabric.
    pub encapsulated: u64,
    /// Packets decapsulated from the fabric.
    pub decapsulated: u64,
    /// Conntrack entries aged out.
    pub conntrack_aged: u64,
    /// Conntrack entries flushed because their endpoint or backend went.
    pub conntrack_flushed: u64,
}

/// What a host's routing table says about a destination.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Route {
    /// A local pod.
    Endpoint(InterfaceId),
    /// Another host's block, via these hosts.
    Remote(NextHops),
    /// One of our own blocks: an unallocated address.
    Blackhole,
}

/// A learnt route's next hops (sorted, deduplicated, at least one): one is inline, as almost
/// every route has, so that a host's thousands of learnt routes cost no allocation each.
#[derive(Clone, Debug, PartialEq, Eq)]
enum NextHops {
    One(Ipv4Addr),
    Many(Box<[Ipv4Addr]>),
}

impl NextHops {
    fn new(mut hops: Vec<Ipv4Addr>) -> NextHops {
        hops.sort_unstable();
        hops.dedup();
        match hops[..] {
            [one] => NextHops::One(one),
            _ => NextHops::Many(hops.into()),
        }
    }
}

impl std::ops::Deref for NextHops {
    type Target = [Ipv4Addr];

    fn deref(&self) -> &[Ipv4Addr] {
        match self {
            NextHops::One(hop) => std::slice::from_ref(hop),
            NextHops::Many(hops) => hops,
        }
    }
}

#[derive(Clone, Debug)]
struct Endpoint {
    name: String,
    ip: Ipv4Addr,
    mac: [u8; 6],
    policy: EndpointPolicy,
}

/// What conntrack remembers of one direction of a connection: the translation its packets get.
pub type ConntrackEntry = FlowEntry<Option<Rewrite>>;

/// One Calico host: routing table, felix's policy, kube-proxy's NAT, connection tracking.
#[derive(Clone, Debug)]
pub struct CalicoHost {
    config: CalicoConfig,
    endpoints: BTreeMap<InterfaceId, Endpoint>,
    routes: RouteTable<Route>,
    /// Learnt routes hidden behind a local route for the same prefix (a pod's /32, one of our
    /// blocks), put back in `routes` when the local route goes. Other learnt routes are in
    /// `routes` only.
    shadowed: BTreeMap<Ipv4Net, NextHops>,
    store: PolicyStore,
    services: Arc<ServiceTable>,
    conntrack: FlowTable<Option<Rewrite>>,
    counters: CalicoCounters,
    /// Draws of kube-proxy's `statistic` rules so far.
    nat_draws: u64,
    next_ip_ident: u16,
    next_aging: Option<SimTime>,
}

const CONNTRACK_VRF: VrfId = VrfId(0);

impl CalicoHost {
    /// A host with nothing programmed.
    pub fn new(config: CalicoConfig) -> Self {
        let conntrack = FlowTable::new(config.conntrack_max);
        CalicoHost {
            config,
            endpoints: BTreeMap::new(),
            routes: RouteTable::new(),
            shadowed: BTreeMap::new(),
            store: PolicyStore::default(),
            services: Arc::default(),
            conntrack,
            counters: CalicoCounters::default(),
            nat_draws: 0,
            next_ip_ident: 0,
            next_aging: None,
        }
    }

    /// The host's settings.
    pub fn config(&self) -> &CalicoConfig {
        &self.config
    }

    /// The host's counters.
    pub fn counters(&self) -> &CalicoCounters {
        &self.counters
    }

    /// Routes in the table (endpoints, blocks and learnt routes).
    pub fn route_count(&self) -> usize {
        self.routes.len()
    }

    /// Conntrack entries in use.
    pub fn conntrack_len(&self) -> usize {
        self.conntrack.len()
    }

    /// The policy store (IP sets and chains), for inspection.
    pub fn policy_store(&self) -> &PolicyStore {
        &self.store
    }

    /// An endpoint's name.
    pub fn endpoint_name(&self, id: InterfaceId) -> Option<&str> {
        self.endpoints.get(&id).map(|e| e.name.as_str())
    }

    /// The next hops a destination is routed to: `Some(empty)` for a local pod or blackhole.
    pub fn next_hops(&self, destination: Ipv4Addr) -> Option<Vec<Ipv4Addr>> {
        self.routes.lookup(destination).map(|(_, route)| match route {
            Route::Remote(hops) => hops.to_vec(),
            Route::Endpoint(_) | Route::Blackhole => Vec::new(),
        })
    }

    /// Applies one command.
    pub fn handle_command(
        &mut self,
        _now: SimTime,
        command: CalicoCommand,
    ) -> Result<(), CalicoCommandError> {
        match command {
            CalicoCommand::AddEndpoint { id, name, ip, mac } => {
                if self.endpoints.contains_key(&id) {
                    return Err(CalicoCommandError::DuplicateEndpoint(id));
                }
                if let Some(Route::Remote(hops)) = self.routes.insert(Ipv4Net::from(ip), Route::Endpoint(id))
                {
                    self.shadowed.insert(Ipv4Net::from(ip), hops);
                }
                self.endpoints.insert(id, Endpoint { name, ip, mac, policy: EndpointPolicy::default() });
            }
            CalicoCommand::RemoveEndpoint(id) => {
                let endpoint = self.endpoints.remove(&id).ok_or(CalicoCommandError::UnknownEndpoint(id))?;
                let host = Ipv4Net::from(endpoint.ip);
                self.routes.remove(host);
                if let Some(hops) = self.shadowed.remove(&host) {
                    self.routes.insert(host, Route::Remote(hops));
                }
                // The CNI plugin's teardown: the pod's connections go with it.
                self.flush(|tuple, _| tuple.src == endpoint.ip || tuple.dst == endpoint.ip);
            }
            CalicoCommand::SetEndpointPolicy { id, policy } => {
                self.endpoints.get_mut(&id).ok_or(CalicoCommandError::UnknownEndpoint(id))?.policy = policy;
            }
            CalicoCommand::SetIpSet { id, members } => self.store.set_ipset(id, members),
            CalicoCommand::RemoveIpSet(id) => self.store.remove_ipset(id),
            CalicoCommand::SetPolicy { id, chains } => self.store.set_policy(id, chains),
            CalicoCommand::RemovePolicy(id) => self.store.remove_policy(id),
            CalicoCommand::SetRoute { prefix, next_hops } => {
                if next_hops.is_empty() {
                    return Err(CalicoCommandError::NoNextHop(prefix));
                }
                let prefix = prefix.trunc();
                let hops = NextHops::new(next_hops);
                // Local routes (a pod's /32, our own block) win over learnt ones. One search in
                // the common case; the rare local route is put back.
                if let Some(local @ (Route::Endpoint(_) | Route::Blackhole)) =
                    self.routes.insert(prefix, Route::Remote(hops))
                    && let Some(Route::Remote(hops)) = self.routes.insert(prefix, local)
                {
                    self.shadowed.insert(prefix, hops);
                }
            }
            CalicoCommand::RemoveRoute(prefix) => {
                let prefix = prefix.trunc();
                self.shadowed.remove(&prefix);
                if matches!(self.routes.get(prefix), Some(Route::Remote(_))) {
                    self.routes.remove(prefix);
                }
            }
            CalicoCommand::AddLocalBlock(prefix) => {
                let prefix = prefix.trunc();
                if let Some(Route::Remote(hops)) = self.routes.insert(prefix, Route::Blackhole) {
                    self.shadowed.insert(prefix, hops);
                }
            }
            CalicoCommand::RemoveLocalBlock(prefix) => {
                let prefix = prefix.trunc();
                if matches!(self.routes.get(prefix), Some(Route::Blackhole)) {
                    self.routes.remove(prefix);
                    if let Some(hops) = self.shadowed.remove(&prefix) {
                        self.routes.insert(prefix, Route::Remote(hops));
                    }
                }
            }
            CalicoCommand::SetService { key, backends } => {
                // kube-proxy flushes the connections of backends that went (its conntrack
                // cleanup), so that no new packet is sent to a deleted pod.
                let gone: Vec<(Ipv4Addr, u16)> = self
                    .services
                    .get(&key)
                    .map(|old| old.iter().filter(|b| !backends.contains(b)).copied().collect())
                    .unwrap_or_default();
                Arc::make_mut(&mut self.services).insert(key, backends.into());
                self.flush_backends(key, &gone);
            }
            CalicoCommand::RemoveService(key) => {
                let gone = Arc::make_mut(&mut self.services).remove(&key);
                self.flush_backends(key, gone.as_deref().unwrap_or_default());
            }
            CalicoCommand::SetServices(table) => {
                let old = std::mem::replace(&mut self.services, table);
                if Arc::ptr_eq(&old, &self.services) {
                    return Ok(());
                }
                // Both tables are sorted by key: walk them side by side.
                let new = Arc::clone(&self.services);
                let mut after = new.iter().peekable();
                let mut departed: BTreeMap<ServiceKey, Vec<(Ipv4Addr, u16)>> = BTreeMap::new();
                for (&key, before) in old.iter() {
                    while after.next_if(|&(&k, _)| k < key).is_some() {}
                    let now = after.next_if(|&(&k, _)| k == key).map(|(_, backends)| backends);
                    if now.is_some_and(|now| Arc::ptr_eq(now, before)) {
                        continue;
                    }
                    let gone: Vec<(Ipv4Addr, u16)> =
                        before.iter().filter(|b| !now.is_some_and(|now| now.contains(b))).copied().collect();
                    if !gone.is_empty() {
                        departed.insert(key, gone);
                    }
                }
                // One walk of the connections for every service that lost backends.
                if !departed.is_empty() {
                    self.flush(|tuple, rewrite| {
                        departed.get(&(tuple.dst, tuple.dst_port, tuple.protocol)).is_some_and(|gone| {
                            rewrite.and_then(|r| r.dst).is_some_and(|dst| gone.contains(&dst))
                        })
                    });
                }
            }
        }
        Ok(())
    }

    /// Removes the connections to `key` translated to one of `backends`.
    fn flush_backends(&mut self, key: ServiceKey, backends: &[(Ipv4Addr, u16)]) {
        if backends.is_empty() {
            return;
        }
        self.flush(|tuple, rewrite| {
            (tuple.dst, tuple.dst_port, tuple.protocol) == key
                && rewrite.and_then(|r| r.dst).is_some_and(|dst| backends.contains(&dst))
        });
    }

    /// Removes the conntrack pairs whose entry matches (visited in slot order: deterministic).
    fn flush(&mut self, matches: impl Fn(&FiveTuple, Option<Rewrite>) -> bool) {
        let keys: Vec<FlowKey> =
            self.conntrack.iter().filter(|e| matches(&e.key.tuple, e.action)).map(|e| e.key).collect();
        for key in keys {
            if self.conntrack.get(&key).is_some() {
                self.conntrack.remove_pair(&key);
                self.counters.conntrack_flushed += 1;
            }
        }
    }

    fn drop(&mut self, reason: DropReason, frame: Vec<u8>) -> Forward {
        *self.counters.drops.entry(reason).or_default() += 1;
        Forward::Drop { reason, frame }
    }

    /// kube-proxy's choice among `n` backends: rule `i` matches with probability 1/(n-i).
    fn pick_backend(&mut self, n: usize) -> usize {
        let (chosen, draws) = self.draw_backend(self.nat_draws, n);
        self.nat_draws = draws;
        chosen
    }

    /// The backend kube-proxy's rules pick among `n` after `draws` draws so far, and the draws
    /// made by then.
    fn draw_backend(&self, mut draws: u64, n: usize) -> (usize, u64) {
        for index in 0..n - 1 {
            draws += 1;
            let draw = mix64(self.config.nat_seed ^ mix64(draws));
            // A uniform draw in [0, 1) below 1/(n - index).
            if (draw >> 11) as f64 * (1.0 / (1u64 << 53) as f64) * ((n - index) as f64) < 1.0 {
                return (index, draws);
            }
        }
        (n - 1, draws)
    }

    fn packet_from_endpoint(&mut self, now: SimTime, id: InterfaceId, mut frame: Vec<u8>) -> Forward {
        let Some(endpoint) = self.endpoints.get(&id) else {
            return self.drop(DropReason::UnknownInterface, frame);
        };
        let inner = match check_ipv4(&frame, ETHERNET_HEADER_LEN) {
            Ok(inner) => inner,
            Err(reason) => return self.drop(reason, frame),
        };
        let tuple = inner.tuple;
        if tuple.src != endpoint.ip {
            // Calico's anti-spoofing: a workload sends only from its own address.
            return self.drop(DropReason::SourceMismatch, frame);
        }
        let key = FlowKey { vrf: CONNTRACK_VRF, tuple };
        let translation = match self.conntrack.hit(&key, now) {
            Some(entry) => {
                self.counters.conntrack_hits += 1;
                entry.action
            }
            None => match self.admit_from_endpoint(now, id, tuple) {
                Ok(translation) => translation,
                Err(reason) => return self.drop(reason, frame),
            },
        };
        if let Some(translation) = translation {
            apply_rewrite(&mut frame, translation);
        }
        self.route_out(now, frame, &tuple)
    }

    /// Judges a new connection from a local endpoint: service NAT, egress policy, then (for a
    /// local destination) its ingress policy; on success records it in conntrack.
    fn admit_from_endpoint(
        &mut self,
        now: SimTime,
        id: InterfaceId,
        tuple: FiveTuple,
    ) -> Result<Option<Rewrite>, DropReason> {
        let service = (tuple.dst, tuple.dst_port, tuple.protocol);
        let chosen = match self.services.get(&service) {
            Some(backends) if backends.is_empty() => return Err(DropReason::NatNoMapping),
            Some(backends) => Some(self.pick_backend(backends.len())),
            None => None,
        };
        let mut evaluations = 0;
        let judged = self.judge_connection(id, tuple, chosen, &mut evaluations, &mut None);
        self.counters.policy_evaluations += evaluations;
        let (translated, dnat) = judged?;
        let unnat = dnat
            .filter(|_| !self.config.planted.nat_forgets_reverse)
            .map(|_| Rewrite { src: Some((tuple.dst, tuple.dst_port)), dst: None });
        self.track(now, tuple, dnat, reversed(&translated), unnat)?;
        self.counters.nat_connections += u64::from(dnat.is_some());
        Ok(dnat)
    }

    /// A new connection from endpoint `id` with kube-proxy's backend `chosen` (for a service):
    /// its translated tuple and NAT, after egress policy and, for a local destination, its
    /// ingress policy (`evaluations` counts the verdicts computed).
    fn judge_connection(
        &self,
        id: InterfaceId,
        tuple: FiveTuple,
        chosen: Option<usize>,
        evaluations: &mut u64,
        notes: &mut Notes<'_>,
    ) -> Result<(FiveTuple, Option<Rewrite>), DropReason> {
        let service = (tuple.dst, tuple.dst_port, tuple.protocol);
        let mut translated = tuple;
        let mut dnat = None;
        if let Some(chosen) = chosen {
            let (address, port) = self.services[&service][chosen];
            translated.dst = address;
            translated.dst_port = port;
            dnat = Some(Rewrite { src: None, dst: Some((address, port)) });
            note(notes, || format!("kube-proxy DNAT: {}:{} -> {address}:{port}", tuple.dst, tuple.dst_port));
        }
        let view = flow_view(&translated);
        // This host translated the connection, so its chains know where it was first headed
        // (conntrack's original destination).
        let original = (tuple.dst, tuple.dst_port);
        let endpoint = &self.endpoints[&id];
        *evaluations += 1;
        let verdict = self.store.evaluate_original(
            endpoint.policy.egress.as_deref(),
            Direction::Egress,
            &view,
            original,
        );
        note(notes, || {
            format!(
                "egress policy of {}: {}",
                endpoint.name,
                self.describe_verdict(endpoint.policy.egress.as_deref(), Direction::Egress, verdict)
            )
        });
        if verdict.0 == Verdict::Deny {
            return Err(DropReason::Policy);
        }
        match self.routes.lookup(translated.dst).map(|(_, route)| route) {
            Some(Route::Endpoint(target)) => {
                let target = &self.endpoints[target];
                *evaluations += 1;
                let verdict = self.store.evaluate_original(
                    target.policy.ingress.as_deref(),
                    Direction::Ingress,
                    &view,
                    original,
                );
                note(notes, || {
                    format!(
                        "ingress policy of {} (same host): {}",
                        target.name,
                        self.describe_verdict(target.policy.ingress.as_deref(), Direction::Ingress, verdict)
                    )
                });
                if verdict.0 == Verdict::Deny {
                    return Err(DropReason::Policy);
                }
            }
            Some(Route::Remote(_)) => {}
            Some(Route::Blackhole) | None => return Err(DropReason::NoRoute),
        }
        Ok((translated, dnat))
    }

    /// Records a connection: its first direction and the replies' direction.
    fn track(
        &mut self,
        now: SimTime,
        forward: FiveTuple,
        forward_rewrite: Option<Rewrite>,
        reply: FiveTuple,
        reply_rewrite: Option<Rewrite>,
    ) -> Result<(), DropReason> {
        let entry = |tuple, action| FlowEntry {
            key: FlowKey { vrf: CONNTRACK_VRF, tuple },
            action,
            reverse: None,
            created: now,
            last_used: now,
            packets: 1,
            ecmp: None,
        };
        self.conntrack
            .insert_pair(entry(forward, forward_rewrite), Some(entry(reply, reply_rewrite)))
            .map_err(|_| DropReason::FlowTableFull)?;
        self.counters.connections += 1;
        if self.next_aging.is_none() {
            self.next_aging = Some(now + self.config.conntrack_idle_timeout);
        }
        Ok(())
    }

    /// Routes a (translated) packet out: to a local pod, or towards the next hop's host.
    fn route_out(&mut self, _now: SimTime, mut frame: Vec<u8>, original: &FiveTuple) -> Forward {
        let at = ETHERNET_HEADER_LEN;
        let destination = Ipv4Addr::from([frame[at + 16], frame[at + 17], frame[at + 18], frame[at + 19]]);
        let next = match self.next_hop(destination, original) {
            Ok(next) => next,
            Err(reason) => return self.drop(reason, frame),
        };
        if !decrement_ttl(&mut frame[at..]) {
            return self.drop(DropReason::TtlExpired, frame);
        }
        match next {
            Ok(target) => {
                let mac = self.endpoints[&target].mac;
                set_ethernet(&mut frame, at, mac, CALICO_GATEWAY_MAC);
                Forward::Interface(target, frame)
            }
            Err(next_hop) => match self.encapsulate(&mut frame, next_hop, original) {
                Ok(()) => Forward::Fabric(frame),
                Err(reason) => self.drop(reason, frame),
            },
        }
    }

    /// Where a packet to `destination` goes: a local endpoint (`Ok`), or the host of an ECMP
    /// next hop chosen by the hash of its `original` tuple (`Err`).
    fn next_hop(
        &self,
        destination: Ipv4Addr,
        original: &FiveTuple,
    ) -> Result<Result<InterfaceId, Ipv4Addr>, DropReason> {
        match self.routes.lookup(destination).map(|(_, route)| route) {
            Some(Route::Endpoint(target)) => Ok(Ok(*target)),
            Some(Route::Remote(hops)) => Ok(Err(hops[self.ecmp_index(hops.len(), original)])),
            Some(Route::Blackhole) | None => Err(DropReason::NoRoute),
        }
    }

    /// The index of the next hop a flow takes among `n`.
    fn ecmp_index(&self, n: usize, original: &FiveTuple) -> usize {
        match n {
            1 => 0,
            n => (original.hash(self.config.ecmp_seed) % n as u64) as usize,
        }
    }

    /// Puts the routed packet on the uplink towards `next_hop`, encapsulated as configured.
    fn encapsulate(
        &mut self,
        frame: &mut Vec<u8>,
        next_hop: Ipv4Addr,
        tuple: &FiveTuple,
    ) -> Result<(), DropReason> {
        let encapsulation = self.config.encapsulation;
        let inner_len = frame.len() - ETHERNET_HEADER_LEN;
        let outer_len = inner_len + encapsulation.overhead();
        if outer_len > self.config.underlay_mtu as usize {
            return Err(DropReason::MtuExceeded);
        }
        set_ethernet(frame, ETHERNET_HEADER_LEN, UNDERLAY_GATEWAY_MAC, self.config.host_mac);
        if encapsulation == CalicoEncapsulation::None {
            return Ok(());
        }
        let overhead = encapsulation.overhead();
        let old_len = frame.len();
        frame.resize(old_len + overhead, 0);
        frame.copy_within(ETHERNET_HEADER_LEN..old_len, ETHERNET_HEADER_LEN + overhead);
        let ident = self.next_ip_ident;
        self.next_ip_ident = self.next_ip_ident.wrapping_add(1);
        let protocol = if encapsulation == CalicoEncapsulation::IpIp { IP_PROTO_IPIP } else { IP_PROTO_UDP };
        let header = outer_header(self.config.host_ip, next_hop, protocol, ident, outer_len);
        let ip = ETHERNET_HEADER_LEN;
        frame[ip..ip + 20].copy_from_slice(&header);
        if encapsulation == CalicoEncapsulation::Vxlan {
            let l4 = ip + 20;
            // RFC 7348: the source port carries a hash of the inner flow for underlay ECMP.
            let source_port = 49152 + (tuple.hash(self.config.ecmp_seed) % 16384) as u16;
            frame[l4..l4 + 2].copy_from_slice(&source_port.to_be_bytes());
            frame[l4 + 2..l4 + 4].copy_from_slice(&VXLAN_UDP_PORT.to_be_bytes());
            frame[l4 + 4..l4 + 6].copy_from_slice(&((outer_len - 20) as u16).to_be_bytes());
            frame[l4 + 6..l4 + 8].fill(0);
            frame[l4 + 8..l4 + 16].copy_from_slice(&Vxlan { vni: CALICO_VNI }.to_bytes());
            let inner_ethernet = l4 + 16;
            frame[inner_ethernet..inner_ethernet + 6].copy_from_slice(&vxlan_mac(next_hop));
            frame[inner_ethernet + 6..inner_ethernet + 12].copy_from_slice(&vxlan_mac(self.config.host_ip));
            frame[inner_ethernet + 12..inner_ethernet + 14].copy_from_slice(&[0x08, 0x00]);
        }
        self.counters.encapsulated += 1;
        Ok(())
    }

    /// Strips an IP-in-IP or VXLAN header addressed to this host, leaving the inner IP packet
    /// behind the Ethernet header; a plain packet is left as it is.
    fn decapsulate(&mut self, frame: &mut Vec<u8>) -> Result<(), DropReason> {
        let Some(inner_at) = self.tunnel_inner(frame)? else { return Ok(()) };
        strip_tunnel(frame, inner_at);
        self.counters.decapsulated += 1;
        Ok(())
    }

    /// Checks an IP-in-IP or VXLAN header addressed to this host: where the inner IP packet
    /// starts (`None` for a plain packet).
    fn tunnel_inner(&self, frame: &[u8]) -> Result<Option<usize>, DropReason> {
        let ip = ETHERNET_HEADER_LEN;
        let header_len = check_ip_header(frame, ip)?;
        let protocol = frame[ip + 9];
        let destination = Ipv4Addr::from([frame[ip + 16], frame[ip + 17], frame[ip + 18], frame[ip + 19]]);
        let total = usize::from(u16::from_be_bytes([frame[ip + 2], frame[ip + 3]]));
        let inner_at = match protocol {
            IP_PROTO_IPIP => ip + header_len,
            IP_PROTO_UDP
                if frame.get(ip + header_len + 2..ip + header_len + 4)
                    == Some(&VXLAN_UDP_PORT.to_be_bytes()) =>
            {
                let vxlan = ip + header_len + 8;
                let Some(Vxlan { vni }) = frame.get(vxlan..).and_then(Vxlan::parse) else {
                    return Err(DropReason::Malformed);
                };
                if vni != CALICO_VNI {
                    return Err(DropReason::UnknownVni);
                }
                vxlan + VXLAN_LEN + ETHERNET_HEADER_LEN
            }
            _ => return Ok(None),
        };
        if destination != self.config.host_ip {
            return Err(DropReason::NotForHost);
        }
        if inner_at >= ip + total {
            return Err(DropReason::Malformed);
        }
        Ok(Some(inner_at))
    }

    fn packet_from_fabric(&mut self, now: SimTime, mut frame: Vec<u8>) -> Forward {
        if let Err(reason) = self.decapsulate(&mut frame) {
            return self.drop(reason, frame);
        }
        let inner = match check_ipv4(&frame, ETHERNET_HEADER_LEN) {
            Ok(inner) => inner,
            Err(reason) => return self.drop(reason, frame),
        };
        let tuple = inner.tuple;
        let key = FlowKey { vrf: CONNTRACK_VRF, tuple };
        let translation = match self.conntrack.hit(&key, now) {
            Some(entry) => {
                self.counters.conntrack_hits += 1;
                entry.action
            }
            None => {
                let denied = match self.ingress_denies(&tuple, &mut None) {
                    Ok(denied) => denied,
                    Err(reason) => return self.drop(reason, frame),
                };
                self.counters.policy_evaluations += 1;
                if self.config.planted.conntrack_before_policy {
                    // The planted bug: the connection is tracked before it is judged.
                    let _ = self.track(now, tuple, None, reversed(&tuple), None);
                }
                if denied {
                    return self.drop(DropReason::Policy, frame);
                }
                if !self.config.planted.conntrack_before_policy
                    && let Err(reason) = self.track(now, tuple, None, reversed(&tuple), None)
                {
                    return self.drop(reason, frame);
                }
                None
            }
        };
        if let Some(translation) = translation {
            apply_rewrite(&mut frame, translation);
        }
        let at = ETHERNET_HEADER_LEN;
        let destination = Ipv4Addr::from([frame[at + 16], frame[at + 17], frame[at + 18], frame[at + 19]]);
        let Some(Route::Endpoint(target)) = self.routes.lookup(destination).map(|(_, route)| route).cloned()
        else {
            return self.drop(DropReason::NotForHost, frame);
        };
        if !decrement_ttl(&mut frame[at..]) {
            return self.drop(DropReason::TtlExpired, frame);
        }
        let mac = self.endpoints[&target].mac;
        set_ethernet(&mut frame, at, mac, CALICO_GATEWAY_MAC);
        Forward::Interface(target, frame)
    }
}

impl CalicoHost {
    /// Whether the ingress policy of the local endpoint `tuple` is addressed to denies a new
    /// connection from the fabric (an error if the address is not a local endpoint's).
    fn ingress_denies(&self, tuple: &FiveTuple, notes: &mut Notes<'_>) -> Result<bool, DropReason> {
        let target = match self.routes.lookup(tuple.dst).map(|(_, route)| route) {
            Some(Route::Endpoint(target)) => &self.endpoints[target],
            // A host forwards only to its own pods: anything else is misrouted.
            Some(Route::Remote(_)) => return Err(DropReason::NotForHost),
            Some(Route::Blackhole) | None => return Err(DropReason::NoRoute),
        };
        let verdict =
            self.store.evaluate(target.policy.ingress.as_deref(), Direction::Ingress, &flow_view(tuple));
        note(notes, || {
            format!(
                "ingress policy of {}: {}",
                target.name,
                self.describe_verdict(target.policy.ingress.as_deref(), Direction::Ingress, verdict)
            )
        });
        Ok(verdict.0 == Verdict::Deny)
    }

    /// A verdict of the `policies` of an endpoint in `direction` and what decided it: the
    /// deciding rule written out, or the policies that all passed.
    fn describe_verdict(
        &self,
        policies: Option<&[PolicyId]>,
        direction: Direction,
        (verdict, decider): (Verdict, Decider),
    ) -> String {
        match decider {
            Decider::Unselected => format!("{verdict:?}: no policy selects it"),
            Decider::Rule { policy, rule } => {
                let text = self
                    .store
                    .policy_rule(policy, direction, rule)
                    .map_or(String::new(), |r| format!(": {r}"));
                format!("{verdict:?} by policy #{} rule #{rule}{text}", policy.0)
            }
            Decider::DefaultDeny => {
                let list: Vec<String> =
                    policies.unwrap_or_default().iter().map(|p| format!("policy #{}", p.0)).collect();
                let list = if list.is_empty() { "none".to_string() } else { list.join(", ") };
                format!("{verdict:?}: no rule of its policies matches (default deny; {list})")
            }
        }
    }

    /// The connection state a packet meets: its conntrack entry's translation, or a new
    /// connection's (`judge` decides it, taking notes) if it fits the table.
    fn explain_conntrack(
        &self,
        tuple: FiveTuple,
        steps: &mut Vec<String>,
        judge: impl FnOnce(&mut Vec<String>) -> Result<(Option<Rewrite>, FiveTuple), DropReason>,
    ) -> Result<Option<Rewrite>, DropReason> {
        let key = FlowKey { vrf: CONNTRACK_VRF, tuple };
        if let Some(entry) = self.conntrack.get(&key) {
            let translation = entry.action.map_or("no translation".to_string(), |r| r.to_string());
            steps.push(format!(
                "conntrack: established (created {}, {} packets): {translation}",
                entry.created, entry.packets
            ));
            return Ok(entry.action);
        }
        steps.push(format!("conntrack: no entry for {tuple}: a new connection, judged now"));
        let (translation, reply) = judge(steps)?;
        let reply_key = FlowKey { vrf: CONNTRACK_VRF, tuple: reply };
        if !self.conntrack.fits_pair(&key, Some(&reply_key)) {
            steps.push(format!("conntrack table full ({} entries)", self.conntrack.len()));
            return Err(DropReason::FlowTableFull);
        }
        Ok(translation)
    }

    fn explain_from_endpoint(
        &self,
        id: InterfaceId,
        frame: &[u8],
        steps: &mut Vec<String>,
    ) -> Result<String, DropReason> {
        let endpoint = self.endpoints.get(&id).ok_or(DropReason::UnknownInterface)?;
        steps.push(format!("from endpoint {} ({})", endpoint.name, endpoint.ip));
        let inner = check_ipv4(frame, ETHERNET_HEADER_LEN)?;
        let tuple = inner.tuple;
        if tuple.src != endpoint.ip {
            return Err(DropReason::SourceMismatch);
        }
        let translation = self.explain_conntrack(tuple, steps, |steps| {
            let service = (tuple.dst, tuple.dst_port, tuple.protocol);
            let chosen = match self.services.get(&service) {
                Some(backends) if backends.is_empty() => {
                    steps.push(format!("kube-proxy: service {}:{} has no backends: rejected", tuple.dst, tuple.dst_port));
                    return Err(DropReason::NatNoMapping);
                }
                Some(backends) => {
                    let (chosen, _) = self.draw_backend(self.nat_draws, backends.len());
                    let list: Vec<String> = backends.iter().map(|(ip, port)| format!("{ip}:{port}")).collect();
                    steps.push(format!(
                        "kube-proxy: service {}:{} has {} backend(s) [{}]; a new connection draws one at random: now backend {chosen}",
                        tuple.dst,
                        tuple.dst_port,
                        backends.len(),
                        list.join(", ")
                    ));
                    Some(chosen)
                }
                None => None,
            };
            let (translated, dnat) = self.judge_connection(id, tuple, chosen, &mut 0, &mut Some(steps))?;
            Ok((dnat, reversed(&translated)))
        })?;
        let mut translated = tuple;
        if let Some(rewrite) = translation.and_then(|t| t.dst) {
            (translated.dst, translated.dst_port) = rewrite;
        }
        let (prefix, route) = self.routes.lookup(translated.dst).ok_or_else(|| {
            steps.push(format!("route lookup: no route to {}", translated.dst));
            DropReason::NoRoute
        })?;
        let next = self.next_hop(translated.dst, &tuple)?;
        steps.push(match (route, next) {
            (Route::Remote(hops), Err(hop)) => {
                let list: Vec<String> = hops.iter().map(ToString::to_string).collect();
                format!(
                    "route lookup: {} matches {prefix} via [{}]; ECMP next hop {} of {}: host {hop}",
                    translated.dst,
                    list.join(", "),
                    self.ecmp_index(hops.len(), &tuple),
                    hops.len()
                )
            }
            (_, Ok(target)) => format!(
                "route lookup: {} matches {prefix}: local endpoint {}",
                translated.dst,
                self.endpoint_name(target).unwrap_or("?")
            ),
            (_, Err(hop)) => format!("route lookup: {} matches {prefix} via host {hop}", translated.dst),
        });
        if frame[ETHERNET_HEADER_LEN + 8] <= 1 {
            return Err(DropReason::TtlExpired);
        }
        match next {
            Ok(target) => Ok(format!("deliver to endpoint {}", self.endpoint_name(target).unwrap_or("?"))),
            Err(hop) => {
                let encapsulation = self.config.encapsulation;
                let outer_len = frame.len() - ETHERNET_HEADER_LEN + encapsulation.overhead();
                if outer_len > self.config.underlay_mtu as usize {
                    steps.push(format!("{outer_len} bytes > underlay MTU {}", self.config.underlay_mtu));
                    return Err(DropReason::MtuExceeded);
                }
                steps.push(match encapsulation {
                    CalicoEncapsulation::None => {
                        "no encapsulation: the fabric routes pod addresses".to_string()
                    }
                    CalicoEncapsulation::IpIp => {
                        format!("encapsulate IP-in-IP: outer {} -> {hop}", self.config.host_ip)
                    }
                    CalicoEncapsulation::Vxlan => {
                        format!("encapsulate VXLAN VNI {CALICO_VNI}: outer {} -> {hop}", self.config.host_ip)
                    }
                });
                Ok(format!("to the fabric, towards host {hop}"))
            }
        }
    }

    fn explain_from_fabric(&self, frame: &[u8], steps: &mut Vec<String>) -> Result<String, DropReason> {
        let mut frame = frame.to_vec();
        match self.tunnel_inner(&frame)? {
            Some(inner_at) => {
                let source = Ipv4Addr::from([frame[26], frame[27], frame[28], frame[29]]);
                let kind = if frame[ETHERNET_HEADER_LEN + 9] == IP_PROTO_IPIP { "IP-in-IP" } else { "VXLAN" };
                steps.push(format!("decapsulate {kind} from host {source}"));
                strip_tunnel(&mut frame, inner_at);
            }
            None => steps.push("plain IP from the fabric".to_string()),
        }
        let tuple = check_ipv4(&frame, ETHERNET_HEADER_LEN)?.tuple;
        let translation = self.explain_conntrack(tuple, steps, |steps| {
            if self.ingress_denies(&tuple, &mut Some(steps))? {
                return Err(DropReason::Policy);
            }
            Ok((None, reversed(&tuple)))
        })?;
        let mut destination = tuple.dst;
        if let Some(rewrite) = translation {
            steps.push(format!("NAT: {rewrite}"));
            if let Some((ip, _)) = rewrite.dst {
                destination = ip;
            }
        }
        let Some(Route::Endpoint(target)) = self.routes.lookup(destination).map(|(_, route)| route) else {
            return Err(DropReason::NotForHost);
        };
        if frame[ETHERNET_HEADER_LEN + 8] <= 1 {
            return Err(DropReason::TtlExpired);
        }
        Ok(format!("deliver to endpoint {}", self.endpoint_name(*target).unwrap_or("?")))
    }
}

impl DataPlane for CalicoHost {
    fn explain(&self, _now: SimTime, port: Port, frame: &[u8]) -> Vec<String> {
        let mut steps = Vec::new();
        let fate = match port {
            Port::Interface(id) => self.explain_from_endpoint(id, frame, &mut steps),
            Port::Fabric => self.explain_from_fabric(frame, &mut steps),
        };
        steps.push(match fate {
            Ok(fate) => fate,
            Err(reason) => format!("drop: {reason}"),
        });
        steps
    }

    fn handle_packet(&mut self, now: SimTime, port: Port, frame: Vec<u8>) -> Forward {
        match port {
            Port::Interface(id) => self.packet_from_endpoint(now, id, frame),
            Port::Fabric => self.packet_from_fabric(now, frame),
        }
    }

    fn handle_timeout(&mut self, now: SimTime) {
        let Some(due) = self.next_aging else { return };
        if now < due {
            return;
        }
        self.counters.conntrack_aged += self.conntrack.expire(now, self.config.conntrack_idle_timeout) as u64;
        // Sweep again after half a timeout while connections remain: idle ones live at most 1.5x.
        self.next_aging = (!self.conntrack.is_empty())
            .then(|| now + SimDuration::from_nanos(self.config.conntrack_idle_timeout.as_nanos() / 2));
    }

    fn poll_timeout(&self) -> Option<SimTime> {
        self.next_aging
    }
}

/// The MAC of a host's `vxlan.calico` device, derived from its underlay address.
pub fn vxlan_mac(host: Ipv4Addr) -> [u8; 6] {
    let o = host.octets();
    [0x66, 0xee, o[0], o[1], o[2], o[3]]
}

fn flow_view(tuple: &FiveTuple) -> FlowView {
    FlowView {
        src: tuple.src,
        src_vn: None,
        dst: tuple.dst,
        dst_vn: None,
        protocol: tuple.protocol,
        dst_port: tuple.dst_port,
    }
}

/// Removes the tunnel headers in front of the inner IP packet at `inner_at` (checked by
/// [`CalicoHost::tunnel_inner`]).
fn strip_tunnel(frame: &mut Vec<u8>, inner_at: usize) {
    let ip = ETHERNET_HEADER_LEN;
    let total = usize::from(u16::from_be_bytes([frame[ip + 2], frame[ip + 3]]));
    frame.truncate(ip + total);
    frame.copy_within(inner_at.., ip);
    frame.truncate(frame.len() - (inner_at - ip));
}

/// Applies a NAT rewrite to the IP packet behind the Ethernet header.
fn apply_rewrite(frame: &mut [u8], translation: Rewrite) {
    let packet = &mut frame[ETHERNET_HEADER_LEN..];
    if let Some((address, port)) = translation.src {
        rewrite(packet, End::Source, address, port);
    }
    if let Some((address, port)) = translation.dst {
        rewrite(packet, End::Destination, address, port);
    }
}

#[cfg(test)]
mod tests;
