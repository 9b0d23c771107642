//! The overlay data plane, after OpenContrail's vrouter.
//!
//! Each pod has an interface with its private address and MAC, in a virtual network whose VRF
//! (private forwarding table) holds routes to the pods and services it may reach. A packet from
//! a pod is routed in its interface's VRF; a route's next hop is a local interface, a tunnel to
//! the host of the destination (with the MPLS label of the destination interface, or the VNI of
//! its network), a composite of equal-cost members, or a discard.
//!
//! The first packet of a flow is judged once — route, policy, ECMP member, NAT — and the result
//! is stored as a flow pair: the entry for this direction and the entry for the replies. Later
//! packets only look up their entry. A service's ClusterIP is a floating IP on every backend
//! interface, in the service's VRF: the sender's VRF sees it as a composite route to the
//! backends' labels; the receiving vrouter finds that the label's interface owns the floating
//! IP and translates the destination to the pod's address and port, storing the reverse
//! translation in the reply entry, so that the client sees replies from exactly the address and
//! port it targeted.
//!
//! The vrouter is programmed with [`Command`]s — by tests directly, and by the control plane's
//! network manager in a simulation.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use netsim_core::packet::{ETHERNET_HEADER_LEN, ETHERTYPE_IPV4, IP_PROTO_UDP, ethertype};
use netsim_core::{FiveTuple, SimDuration, SimTime};

use crate::acl::{Acl, FlowView, Verdict, VnId};
use crate::flow::{Egress, FlowAction, FlowEntry, FlowKey, FlowTable, Rewrite, TableFull};
use crate::ipv4::{check_ip_header, check_ipv4, decrement_ttl, outer_header, reversed, set_ethernet};
use crate::lpm::RouteTable;
use crate::nat::{End, rewrite};
use crate::nexthop::{NextHop, Tunnel, select};
use crate::wire::{
    GRE_LEN, GRE_PROTO_MPLS, Gre, IP_PROTO_GRE, MPLS_LEN, MPLS_UDP_PORT, MplsLabel, VXLAN_LEN,
    VXLAN_UDP_PORT, Vxlan,
};
use crate::{DataPlane, DropReason, Forward, InterfaceId, Notes, Port, VrfId, note};
use netsim_core::planted::PlantedBugs;

/// The MAC address the vrouter answers for as every pod's gateway (OpenContrail's).
pub const VROUTER_MAC: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x01, 0x00];
/// The destination MAC of outer frames: the fabric rewrites it hop by hop anyway.
pub const UNDERLAY_GATEWAY_MAC: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x01, 0x01];

/// How packets travel between vrouters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Encapsulation {
    /// MPLS over UDP (RFC 7510), UDP port 6635: 46 bytes on the wire beyond the inner packet.
    #[default]
    MplsOverUdp,
    /// MPLS over GRE: 42 bytes.
    MplsOverGre,
    /// VXLAN (RFC 7348), UDP port 4789, a VNI per virtual network: 50 bytes (the inner
    /// Ethernet header travels too).
    Vxlan,
}

impl Encapsulation {
    /// Bytes of outer headers (including the outer Ethernet header) in front of the inner IP
    /// packet.
    pub const fn header_len(self) -> usize {
        match self {
            Encapsulation::MplsOverUdp => ETHERNET_HEADER_LEN + 20 + 8 + MPLS_LEN,
            Encapsulation::MplsOverGre => ETHERNET_HEADER_LEN + 20 + GRE_LEN + MPLS_LEN,
            Encapsulation::Vxlan => ETHERNET_HEADER_LEN + 20 + 8 + VXLAN_LEN + ETHERNET_HEADER_LEN,
        }
    }
}

/// A vrouter's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VrouterConfig {
    /// The host's underlay address (tunnel endpoint).
    pub host_ip: Ipv4Addr,
    /// The host's uplink MAC address.
    pub host_mac: [u8; 6],
    /// Tunnel encapsulation.
    pub encapsulation: Encapsulation,
    /// Bound on flow table entries (each direction of a pair is one).
    pub flows_max: usize,
    /// A flow pair idle this long is removed.
    pub flow_idle_timeout: SimDuration,
    /// Largest outer IP packet the underlay carries.
    pub underlay_mtu: u32,
    /// Seed of the outer UDP source-port hash (underlay entropy).
    pub entropy_seed: u64,
    /// Bugs planted by tests (none by default).
    pub planted: PlantedBugs,
}

impl VrouterConfig {
    /// Defaults for a host: MPLS over UDP, 512k flows, 60 s idle timeout, MTU 1500.
    pub fn new(host_ip: Ipv4Addr) -> Self {
        VrouterConfig {
            host_ip,
            host_mac: [0x02, 0, 0, 0, 0, 0],
            encapsulation: Encapsulation::MplsOverUdp,
            flows_max: 512 * 1024,
            flow_idle_timeout: SimDuration::from_secs(60),
            underlay_mtu: 1500,
            entropy_seed: 0,
            planted: PlantedBugs::default(),
        }
    }
}

/// A floating IP on an interface: an address of another VRF (a service's) that maps to the
/// interface, with optional port translations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FloatingIp {
    /// The floating address (a ClusterIP or external IP).
    pub ip: Ipv4Addr,
    /// The VRF it lives in.
    pub vrf: VrfId,
    /// Port translations: (protocol, floating port, pod port). Empty: every port, unchanged.
    pub ports: Vec<(u8, u16, u16)>,
}

/// A route of a VRF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Where it leads.
    pub next_hop: NextHop,
    /// The virtual network of its destination (for VN-to-VN policy).
    pub vn: Option<VnId>,
}

/// Programming of a vrouter.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Creates (or replaces the settings of) a VRF.
    AddVrf {
        /// Its id.
        vrf: VrfId,
        /// Its virtual network.
        vn: VnId,
        /// The network's VNI (VXLAN).
        vni: u32,
        /// The network's policy.
        acl: Acl,
    },
    /// Replaces a VRF's policy.
    SetVrfAcl {
        /// The VRF.
        vrf: VrfId,
        /// The policy.
        acl: Acl,
    },
    /// Adds or replaces a route.
    SetRoute {
        /// The VRF.
        vrf: VrfId,
        /// The prefix.
        prefix: Ipv4Net,
        /// The route.
        route: Route,
    },
    /// Removes a route.
    RemoveRoute {
        /// The VRF.
        vrf: VrfId,
        /// The prefix.
        prefix: Ipv4Net,
    },
    /// Adds a pod interface, reachable with `label` in its VRF.
    AddInterface {
        /// Its id.
        id: InterfaceId,
        /// The pod, for traces.
        name: String,
        /// The pod's address.
        ip: Ipv4Addr,
        /// The pod's MAC.
        mac: [u8; 6],
        /// Its VRF.
        vrf: VrfId,
        /// Its MPLS label.
        label: u32,
    },
    /// Removes an interface, its labels and the flows through it.
    RemoveInterface(InterfaceId),
    /// Sets an interface's own ingress and egress ACLs (security groups).
    SetInterfaceAcls {
        /// The interface.
        id: InterfaceId,
        /// Applied to flows towards the pod.
        ingress: Option<Acl>,
        /// Applied to flows from the pod.
        egress: Option<Acl>,
    },
    /// Adds a floating IP to an interface, reachable with `label`.
    AddFloatingIp {
        /// The interface.
        interface: InterfaceId,
        /// The floating IP.
        floating_ip: FloatingIp,
        /// The label that reaches the interface in the floating IP's VRF.
        label: u32,
    },
    /// Removes a floating IP (and its label) from an interface.
    RemoveFloatingIp {
        /// The interface.
        interface: InterfaceId,
        /// The floating address.
        ip: Ipv4Addr,
        /// Its VRF.
        vrf: VrfId,
    },
}

/// Why a command was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// It names a VRF the vrouter does not have.
    #[error("unknown VRF {0:?}")]
    UnknownVrf(VrfId),
    /// It names an interface the vrouter does not have.
    #[error("unknown interface {0:?}")]
    UnknownInterface(InterfaceId),
    /// The label is already handed out, or out of range.
    #[error("label {0} is in use or out of range")]
    BadLabel(u32),
}

/// Per-interface counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterfaceCounters {
    /// Packets received from the pod.
    pub rx_packets: u64,
    /// Packets delivered to the pod.
    pub tx_packets: u64,
    /// Packets from the pod that were dropped.
    pub drops: u64,
}

/// Vrouter-wide counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Drops by reason.
    pub drops: BTreeMap<DropReason, u64>,
    /// Flow pairs (or lone drop entries) created.
    pub flows_created: u64,
    /// Packets that hit an existing flow entry.
    pub flow_hits: u64,
    /// Packets encapsulated towards the fabric.
    pub encapsulated: u64,
    /// Packets decapsulated from the fabric.
    pub decapsulated: u64,
    /// Flow entries aged out.
    pub flows_aged: u64,
}

#[derive(Clone, Debug)]
struct Interface {
    name: String,
    ip: Ipv4Addr,
    mac: [u8; 6],
    vrf: VrfId,
    ingress_acl: Option<Acl>,
    egress_acl: Option<Acl>,
    floating_ips: Vec<(FloatingIp, u32)>,
    counters: InterfaceCounters,
}

#[derive(Clone, Debug)]
struct Vrf {
    vn: VnId,
    vni: u32,
    routes: RouteTable<Route>,
    acl: Acl,
}

/// The overlay vrouter of one host.
#[derive(Clone, Debug)]
pub struct Vrouter {
    config: VrouterConfig,
    interfaces: BTreeMap<InterfaceId, Interface>,
    vrfs: BTreeMap<VrfId, Vrf>,
    /// Label → (interface, VRF the label reaches it in).
    labels: BTreeMap<u32, (InterfaceId, VrfId)>,
    vnis: BTreeMap<u32, VrfId>,
    flows: FlowTable,
    counters: Counters,
    next_ip_ident: u16,
    next_aging: Option<SimTime>,
}

impl Vrouter {
    /// A vrouter with no VRFs or interfaces.
    pub fn new(config: VrouterConfig) -> Self {
        Vrouter {
            flows: FlowTable::new(config.flows_max),
            config,
            interfaces: BTreeMap::new(),
            vrfs: BTreeMap::new(),
            labels: BTreeMap::new(),
            vnis: BTreeMap::new(),
            counters: Counters::default(),
            next_ip_ident: 0,
            next_aging: None,
        }
    }

    /// Plants known bugs (tests of the checks only).
    pub fn plant(&mut self, planted: PlantedBugs) {
        self.config.planted = planted;
    }

    /// Its settings.
    pub fn config(&self) -> &VrouterConfig {
        &self.config
    }

    /// Its counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// An interface's counters.
    pub fn interface_counters(&self, id: InterfaceId) -> Option<InterfaceCounters> {
        self.interfaces.get(&id).map(|i| i.counters)
    }

    /// The flow table.
    pub fn flows(&self) -> &FlowTable {
        &self.flows
    }

    /// The name (pod) of an interface.
    pub fn interface_name(&self, id: InterfaceId) -> Option<&str> {
        self.interfaces.get(&id).map(|i| i.name.as_str())
    }

    /// Routes held, over all VRFs: a measure of forwarding state.
    pub fn route_count(&self) -> usize {
        self.vrfs.values().map(|v| v.routes.len()).sum()
    }

    /// The route a VRF uses for `address`.
    pub fn lookup(&self, vrf: VrfId, address: Ipv4Addr) -> Option<(Ipv4Net, &Route)> {
        self.vrfs.get(&vrf)?.routes.lookup(address)
    }

    /// Applies a programming command.
    pub fn handle_command(&mut self, _now: SimTime, command: Command) -> Result<(), CommandError> {
        match command {
            Command::AddVrf { vrf, vn, vni, acl } => {
                if let Some(existing) = self.vrfs.get_mut(&vrf) {
                    let old_vni = existing.vni;
                    existing.vn = vn;
                    existing.vni = vni;
                    existing.acl = acl;
                    self.vnis.remove(&old_vni);
                } else {
                    self.vrfs.insert(vrf, Vrf { vn, vni, routes: RouteTable::new(), acl });
                }
                self.vnis.insert(vni, vrf);
                self.flush(|key, _| key.vrf == vrf);
            }
            Command::SetVrfAcl { vrf, acl } => {
                self.vrfs.get_mut(&vrf).ok_or(CommandError::UnknownVrf(vrf))?.acl = acl;
                self.flush(|key, _| key.vrf == vrf);
            }
            Command::SetRoute { vrf, prefix, route } => {
                // Flows the new route still carries the same way keep going (an established
                // connection survives a backend being added, or another one removed); the others
                // are judged again on their next packet.
                let members: Vec<Egress> = self.egresses(&route.next_hop);
                self.vrfs.get_mut(&vrf).ok_or(CommandError::UnknownVrf(vrf))?.routes.insert(prefix, route);
                let rehash = self.config.planted.ecmp_rehashes_on_change;
                self.flush(|key, action| {
                    let kept = matches!(action, FlowAction::Forward { egress, routed: true, .. } if members.contains(egress));
                    key.vrf == vrf && prefix.contains(&key.tuple.dst) && (!kept || rehash)
                });
            }
            Command::RemoveRoute { vrf, prefix } => {
                self.vrfs.get_mut(&vrf).ok_or(CommandError::UnknownVrf(vrf))?.routes.remove(prefix);
                self.flush(|key, _| key.vrf == vrf && prefix.contains(&key.tuple.dst));
            }
            Command::AddInterface { id, name, ip, mac, vrf, label } => {
                if !self.vrfs.contains_key(&vrf) {
                    return Err(CommandError::UnknownVrf(vrf));
                }
                if label > MplsLabel::LABEL_MAX || self.labels.get(&label).is_some_and(|&(i, _)| i != id) {
                    return Err(CommandError::BadLabel(label));
                }
                self.labels.insert(label, (id, vrf));
                let interface = Interface {
                    name,
                    ip,
                    mac,
                    vrf,
                    ingress_acl: None,
                    egress_acl: None,
                    floating_ips: Vec::new(),
                    counters: InterfaceCounters::default(),
                };
                self.interfaces.insert(id, interface);
            }
            Command::RemoveInterface(id) => {
                let interface = self.interfaces.remove(&id).ok_or(CommandError::UnknownInterface(id))?;
                self.labels.retain(|_, (i, _)| *i != id);
                let ip = interface.ip;
                self.flush(|key, action| {
                    key.tuple.src == ip
                        || key.tuple.dst == ip
                        || matches!(action, FlowAction::Forward { egress: Egress::Interface(i), .. } if *i == id)
                });
            }
            Command::SetInterfaceAcls { id, ingress, egress } => {
                let interface = self.interfaces.get_mut(&id).ok_or(CommandError::UnknownInterface(id))?;
                interface.ingress_acl = ingress;
                interface.egress_acl = egress;
                let ip = interface.ip;
                // Flows towards the pod are keyed by the address they arrived with: its own, or
                // one of its floating IPs (a service's ClusterIP, before destination NAT).
                let floating: Vec<Ipv4Addr> = interface.floating_ips.iter().map(|(f, _)| f.ip).collect();
                self.flush(|key, _| {
                    key.tuple.src == ip || key.tuple.dst == ip || floating.contains(&key.tuple.dst)
                });
            }
            Command::AddFloatingIp { interface, floating_ip, label } => {
                if !self.vrfs.contains_key(&floating_ip.vrf) {
                    return Err(CommandError::UnknownVrf(floating_ip.vrf));
                }
                if label > MplsLabel::LABEL_MAX
                    || self.labels.get(&label).is_some_and(|&(i, _)| i != interface)
                {
                    return Err(CommandError::BadLabel(label));
                }
                let entry =
                    self.interfaces.get_mut(&interface).ok_or(CommandError::UnknownInterface(interface))?;
                entry.floating_ips.retain(|(f, _)| !(f.ip == floating_ip.ip && f.vrf == floating_ip.vrf));
                self.labels.insert(label, (interface, floating_ip.vrf));
                entry.floating_ips.push((floating_ip, label));
            }
            Command::RemoveFloatingIp { interface, ip, vrf } => {
                let entry =
                    self.interfaces.get_mut(&interface).ok_or(CommandError::UnknownInterface(interface))?;
                let removed: Vec<u32> = entry
                    .floating_ips
                    .iter()
                    .filter(|(f, _)| f.ip == ip && f.vrf == vrf)
                    .map(|(_, l)| *l)
                    .collect();
                entry.floating_ips.retain(|(f, _)| !(f.ip == ip && f.vrf == vrf));
                for label in removed {
                    self.labels.remove(&label);
                }
                self.flush(|key, _| key.tuple.dst == ip || key.tuple.src == ip);
            }
        }
        Ok(())
    }

    /// Where a next hop can send a new flow from this host.
    fn egresses(&self, next_hop: &NextHop) -> Vec<Egress> {
        match next_hop {
            NextHop::Interface(id) => vec![Egress::Interface(*id)],
            NextHop::Tunnel(t) if t.host == self.config.host_ip => {
                self.labels.get(&t.label).map(|&(id, _)| Egress::Interface(id)).into_iter().collect()
            }
            NextHop::Tunnel(t) => vec![Egress::Tunnel(*t)],
            NextHop::Receive => vec![Egress::Host],
            NextHop::Composite(members) => members.iter().flat_map(|m| self.egresses(m)).collect(),
            NextHop::Discard => Vec::new(),
        }
    }

    /// Removes every flow pair one of whose halves matches.
    fn flush(&mut self, matches: impl Fn(&FlowKey, &FlowAction) -> bool) {
        let keys: Vec<FlowKey> =
            self.flows.iter().filter(|e| matches(&e.key, &e.action)).map(|e| e.key).collect();
        for key in keys {
            self.flows.remove_pair(&key);
        }
    }

    fn drop(&mut self, reason: DropReason, frame: Vec<u8>) -> Forward {
        *self.counters.drops.entry(reason).or_default() += 1;
        Forward::Drop { reason, frame }
    }

    /// A frame from a local pod.
    fn packet_from_pod(&mut self, now: SimTime, id: InterfaceId, mut frame: Vec<u8>) -> Forward {
        let Some(interface) = self.interfaces.get_mut(&id) else {
            return self.drop(DropReason::UnknownInterface, frame);
        };
        interface.counters.rx_packets += 1;
        let (vrf, own_ip) = (interface.vrf, interface.ip);
        let inner = match check_ipv4(&frame, ETHERNET_HEADER_LEN) {
            Ok(inner) => inner,
            Err(reason) => return self.interface_drop(id, reason, frame),
        };
        if inner.tuple.src != own_ip {
            return self.interface_drop(id, DropReason::SourceMismatch, frame);
        }
        let key = FlowKey { vrf, tuple: inner.tuple };
        let action = match self.flows.hit(&key, now) {
            Some(entry) => {
                self.counters.flow_hits += 1;
                entry.action
            }
            None => match self.setup_from_interface(now, id, key) {
                Ok(action) => action,
                Err(reason) => return self.interface_drop(id, reason, frame),
            },
        };
        match self.apply(action, inner.at, &inner.tuple, &mut frame) {
            Ok(emit) => emit.forward(frame),
            Err(reason) => self.interface_drop(id, reason, frame),
        }
    }

    fn interface_drop(&mut self, id: InterfaceId, reason: DropReason, frame: Vec<u8>) -> Forward {
        if let Some(interface) = self.interfaces.get_mut(&id) {
            interface.counters.drops += 1;
        }
        self.drop(reason, frame)
    }

    /// Applies a flow action to the frame (inner IP packet at `at`); returns where it goes.
    fn apply(
        &mut self,
        action: FlowAction,
        at: usize,
        tuple: &FiveTuple,
        frame: &mut Vec<u8>,
    ) -> Result<Emit, DropReason> {
        let FlowAction::Forward { egress, rewrite: nat, routed } = action else {
            let FlowAction::Drop(reason) = action else { unreachable!("two variants") };
            return Err(reason);
        };
        if routed && !decrement_ttl(&mut frame[at..]) {
            return Err(DropReason::TtlExpired);
        }
        if let Some(nat) = nat {
            if let Some((ip, port)) = nat.src {
                rewrite(&mut frame[at..], End::Source, ip, port);
            }
            if let Some((ip, port)) = nat.dst {
                rewrite(&mut frame[at..], End::Destination, ip, port);
            }
        }
        match egress {
            Egress::Interface(target) => {
                let Some(interface) = self.interfaces.get_mut(&target) else {
                    return Err(DropReason::UnknownInterface);
                };
                interface.counters.tx_packets += 1;
                set_ethernet(frame, at, interface.mac, VROUTER_MAC);
                Ok(Emit::Interface(target))
            }
            Egress::Tunnel(tunnel) => {
                self.encapsulate(frame, at, tunnel, tuple)?;
                self.counters.encapsulated += 1;
                Ok(Emit::Fabric)
            }
            Egress::Host => {
                set_ethernet(frame, at, self.config.host_mac, VROUTER_MAC);
                Ok(Emit::Host)
            }
        }
    }

    /// Judges the first packet of a flow from a local pod and records the flow pair.
    fn setup_from_interface(
        &mut self,
        now: SimTime,
        source: InterfaceId,
        key: FlowKey,
    ) -> Result<FlowAction, DropReason> {
        let decision = self.judge_from_interface(source, &key, &mut None);
        let (forward, reverse, ecmp) = match decision {
            Ok(pair) => pair,
            Err(reason) => (FlowAction::Drop(reason), None, None),
        };
        self.record_flow(now, key, forward, reverse, ecmp)?;
        Ok(forward)
    }

    /// Stores a new flow and its reverse as a pair (or a lone drop entry).
    fn record_flow(
        &mut self,
        now: SimTime,
        key: FlowKey,
        forward: FlowAction,
        reverse: Option<(FlowKey, FlowAction)>,
        ecmp: Option<(u16, u16)>,
    ) -> Result<(), DropReason> {
        let entry = |key: FlowKey, action: FlowAction| FlowEntry {
            key,
            action,
            reverse: None,
            created: now,
            last_used: now,
            packets: 1,
            ecmp,
        };
        let reverse = reverse.map(|(key, action)| entry(key, action));
        self.flows
            .insert_pair(entry(key, forward), reverse)
            .map_err(|TableFull| DropReason::FlowTableFull)?;
        self.counters.flows_created += 1;
        self.schedule_aging(now);
        Ok(())
    }

    /// Route, policy, ECMP and NAT for a new flow from `source`: the forward action, the reverse
    /// entry, and the ECMP decision.
    #[allow(clippy::type_complexity)]
    fn judge_from_interface(
        &self,
        source: InterfaceId,
        key: &FlowKey,
        notes: &mut Notes<'_>,
    ) -> Result<(FlowAction, Option<(FlowKey, FlowAction)>, Option<(u16, u16)>), DropReason> {
        let tuple = key.tuple;
        let interface = &self.interfaces[&source];
        let vrf = self.vrfs.get(&key.vrf).ok_or(DropReason::NoRoute)?;
        let Some((prefix, route)) = vrf.routes.lookup(tuple.dst) else {
            note(notes, || format!("route lookup in VRF {}: no route to {}", key.vrf.0, tuple.dst));
            return Err(DropReason::NoRoute);
        };
        note(notes, || {
            format!(
                "route lookup in VRF {} (vn {}): {} matches {prefix} -> {}",
                key.vrf.0,
                vrf.vn.0,
                tuple.dst,
                self.describe_next_hop(&route.next_hop)
            )
        });
        let view = FlowView {
            src: tuple.src,
            src_vn: Some(vrf.vn),
            dst: tuple.dst,
            dst_vn: route.vn,
            protocol: tuple.protocol,
            dst_port: tuple.dst_port,
        };
        let reverse_of = self.taken_for_reverse(key.vrf, &tuple, notes);
        if reverse_of.is_none() {
            let verdict = vrf.acl.evaluate(&view);
            note(notes, || format!("VN ACL of VRF {}: {}", key.vrf.0, describe_verdict(verdict)));
            if verdict.0 == Verdict::Deny {
                return Err(DropReason::Policy);
            }
            if let Some(acl) = &interface.egress_acl {
                let verdict = acl.evaluate(&view);
                note(notes, || format!("egress ACL of {}: {}", interface.name, describe_verdict(verdict)));
                if verdict.0 == Verdict::Deny {
                    return Err(DropReason::Policy);
                }
            }
        }
        let (member, ecmp) = match &route.next_hop {
            NextHop::Composite(members) => {
                let hashed = if self.config.planted.ecmp_ignores_ports {
                    FiveTuple { src_port: 0, dst_port: 0, ..tuple }
                } else {
                    tuple
                };
                let chosen = if self.config.planted.ecmp_rehashes_on_change {
                    members.get((hashed.hash(0) % members.len().max(1) as u64) as usize)
                } else {
                    select(members, &hashed)
                }
                .ok_or(DropReason::NoRoute)?;
                let index = members.iter().position(|m| m == chosen).unwrap_or(0);
                note(notes, || {
                    format!(
                        "ECMP: member {index} of {} chosen by the flow's hash: {}",
                        members.len(),
                        self.describe_next_hop(chosen)
                    )
                });
                (chosen, Some((members.len() as u16, index as u16)))
            }
            other => (other, None),
        };
        let reverse_key = FlowKey { vrf: key.vrf, tuple: reversed(&tuple) };
        let back_to_source =
            FlowAction::Forward { egress: Egress::Interface(source), rewrite: None, routed: false };
        match member {
            NextHop::Interface(target) => {
                // Same host, no floating IP: deliver, with the target's ingress policy.
                let target_interface = self.interfaces.get(target).ok_or(DropReason::NoRoute)?;
                if let Some(acl) = target_interface.ingress_acl.as_ref().filter(|_| reverse_of.is_none()) {
                    let verdict = acl.evaluate(&view);
                    note(notes, || {
                        format!("ingress ACL of {}: {}", target_interface.name, describe_verdict(verdict))
                    });
                    if verdict.0 == Verdict::Deny {
                        return Err(DropReason::Policy);
                    }
                }
                let forward =
                    FlowAction::Forward { egress: Egress::Interface(*target), rewrite: None, routed: true };
                let reverse_key = FlowKey { vrf: target_interface.vrf, tuple: reversed(&tuple) };
                let back =
                    FlowAction::Forward { egress: Egress::Interface(source), rewrite: None, routed: true };
                Ok((forward, Some((reverse_key, back)), ecmp))
            }
            NextHop::Tunnel(tunnel) if tunnel.host == self.config.host_ip => {
                // A tunnel to ourselves: the destination's half of the work, done here.
                note(notes, || "the tunnel ends on this host: the destination's half, done here".to_string());
                let arrival = self.judge_arrival(tunnel.label, None, &tuple, notes)?;
                let forward = FlowAction::Forward {
                    egress: Egress::Interface(arrival.target),
                    rewrite: arrival.dnat,
                    routed: true,
                };
                let reverse_key = FlowKey { vrf: arrival.target_vrf, tuple: reversed(&arrival.translated) };
                let back = FlowAction::Forward {
                    egress: Egress::Interface(source),
                    rewrite: arrival
                        .dnat
                        .map(|_| Rewrite { src: Some((tuple.dst, tuple.dst_port)), dst: None }),
                    routed: true,
                };
                Ok((forward, Some((reverse_key, back)), ecmp))
            }
            NextHop::Tunnel(tunnel) => {
                let forward =
                    FlowAction::Forward { egress: Egress::Tunnel(*tunnel), rewrite: None, routed: true };
                Ok((forward, Some((reverse_key, back_to_source)), ecmp))
            }
            NextHop::Receive => {
                let forward = FlowAction::Forward { egress: Egress::Host, rewrite: None, routed: true };
                Ok((forward, Some((reverse_key, back_to_source)), ecmp))
            }
            NextHop::Discard => Err(DropReason::Discard),
            NextHop::Composite(_) => Err(DropReason::NoRoute),
        }
    }

    /// The destination's half of a new flow arriving with `label` (MPLS) or in `vni_vrf`
    /// (VXLAN): which interface, whether a floating IP is translated, and the destination's
    /// policies.
    fn judge_arrival(
        &self,
        label: u32,
        vni_vrf: Option<VrfId>,
        tuple: &FiveTuple,
        notes: &mut Notes<'_>,
    ) -> Result<Arrival, DropReason> {
        let (target, vrf_id) = match vni_vrf {
            None => *self.labels.get(&label).ok_or(DropReason::UnknownLabel)?,
            Some(vrf_id) => {
                let vrf = self.vrfs.get(&vrf_id).ok_or(DropReason::UnknownVni)?;
                let (_, route) = vrf.routes.lookup(tuple.dst).ok_or(DropReason::NoRoute)?;
                (self.local_member(&route.next_hop, tuple).ok_or(DropReason::NoRoute)?, vrf_id)
            }
        };
        let interface = self.interfaces.get(&target).ok_or(DropReason::UnknownLabel)?;
        let vrf = self.vrfs.get(&vrf_id).ok_or(DropReason::NoRoute)?;
        note(notes, || match vni_vrf {
            None => {
                format!("label {label} -> interface {} ({}), VRF {}", interface.name, interface.ip, vrf_id.0)
            }
            Some(_) => format!(
                "VRF {} route to {} -> local interface {} ({})",
                vrf_id.0, tuple.dst, interface.name, interface.ip
            ),
        });
        let dnat = if tuple.dst == interface.ip {
            None
        } else {
            let (floating_ip, _) = interface
                .floating_ips
                .iter()
                .find(|(f, _)| f.ip == tuple.dst && f.vrf == vrf_id)
                .ok_or(DropReason::NoRoute)?;
            let port = if floating_ip.ports.is_empty() {
                tuple.dst_port
            } else {
                floating_ip
                    .ports
                    .iter()
                    .find(|(protocol, port, _)| *protocol == tuple.protocol && *port == tuple.dst_port)
                    .map(|(_, _, target_port)| *target_port)
                    .ok_or(DropReason::NatNoMapping)?
            };
            note(notes, || {
                format!(
                    "floating IP {}:{} on {}: destination NAT to {}:{port}",
                    tuple.dst, tuple.dst_port, interface.name, interface.ip
                )
            });
            Some(Rewrite { src: None, dst: Some((interface.ip, port)) })
        };
        let translated = match dnat.and_then(|d| d.dst) {
            Some((ip, port)) => FiveTuple { dst: ip, dst_port: port, ..*tuple },
            None => *tuple,
        };
        // The network's policy, with the source's network found by a lookup back to it.
        let source_vn = vrf.routes.lookup(tuple.src).and_then(|(_, r)| r.vn);
        let network_view = FlowView {
            src: tuple.src,
            src_vn: source_vn,
            dst: tuple.dst,
            dst_vn: Some(vrf.vn),
            protocol: tuple.protocol,
            dst_port: tuple.dst_port,
        };
        if self.taken_for_reverse(vrf_id, tuple, notes).is_some() {
            return Ok(Arrival { target, target_vrf: interface.vrf, arrival_vrf: vrf_id, dnat, translated });
        }
        let verdict = vrf.acl.evaluate(&network_view);
        note(notes, || format!("VN ACL of VRF {}: {}", vrf_id.0, describe_verdict(verdict)));
        if verdict.0 == Verdict::Deny {
            return Err(DropReason::Policy);
        }
        // The pod's own policy sees the translated packet: its address and port.
        let pod_view = FlowView {
            dst: translated.dst,
            dst_port: translated.dst_port,
            dst_vn: Some(vrf.vn),
            ..network_view
        };
        if let Some(acl) = &interface.ingress_acl {
            let verdict = acl.evaluate(&pod_view);
            note(notes, || format!("ingress ACL of {}: {}", interface.name, describe_verdict(verdict)));
            if verdict.0 == Verdict::Deny {
                return Err(DropReason::Policy);
            }
        }
        Ok(Arrival { target, target_vrf: interface.vrf, arrival_vrf: vrf_id, dnat, translated })
    }

    /// With the planted `reverse_flow_skips_policy` bug, the entry a new flow in `vrf` is taken
    /// to be the reverse of: a forwarded flow from its destination to its source, compared on
    /// addresses and protocol only — the ports, which tell a reply from a new connection, are
    /// not. Its policy is then skipped, as a reply's is. The clean vrouter never asks: replies
    /// meet their pair's reverse entry, keyed by the whole 5-tuple.
    fn taken_for_reverse(&self, vrf: VrfId, tuple: &FiveTuple, notes: &mut Notes<'_>) -> Option<FiveTuple> {
        if !self.config.planted.reverse_flow_skips_policy {
            return None;
        }
        let entry = self.flows.iter().find(|e| {
            e.key.vrf == vrf
                && (e.key.tuple.src, e.key.tuple.dst, e.key.tuple.protocol)
                    == (tuple.dst, tuple.src, tuple.protocol)
                && matches!(e.action, FlowAction::Forward { .. })
        })?;
        note(notes, || format!("taken for the reverse flow of {}: policy skipped", entry.key.tuple));
        Some(entry.key.tuple)
    }

    /// On arrival, a composite next hop resolves to one of its local interface members.
    fn local_member(&self, next_hop: &NextHop, tuple: &FiveTuple) -> Option<InterfaceId> {
        match next_hop {
            NextHop::Interface(id) => Some(*id),
            NextHop::Tunnel(t) if t.host == self.config.host_ip => self.labels.get(&t.label).map(|&(i, _)| i),
            NextHop::Composite(members) => {
                let local: Vec<NextHop> = members
                    .iter()
                    .filter(|m| match m {
                        NextHop::Interface(_) => true,
                        NextHop::Tunnel(t) => t.host == self.config.host_ip,
                        _ => false,
                    })
                    .cloned()
                    .collect();
                select(&local, tuple).and_then(|m| self.local_member(m, tuple))
            }
            _ => None,
        }
    }

    /// A frame from the fabric.
    fn packet_from_fabric(&mut self, now: SimTime, mut frame: Vec<u8>) -> Forward {
        let (label, vni_vrf, inner_at) = match self.parse_outer(&frame) {
            Ok(outer) => outer,
            Err(reason) => return self.drop(reason, frame),
        };
        let inner = match check_ipv4(&frame, inner_at) {
            Ok(inner) => inner,
            Err(reason) => return self.drop(reason, frame),
        };
        self.counters.decapsulated += 1;
        // Decapsulate: an Ethernet header for the pod, then the inner packet.
        let inner_len = usize::from(u16::from_be_bytes([frame[inner_at + 2], frame[inner_at + 3]]));
        frame.copy_within(inner_at..inner_at + inner_len, ETHERNET_HEADER_LEN);
        frame.truncate(ETHERNET_HEADER_LEN + inner_len);
        let vrf = match vni_vrf {
            Some(vrf) => vrf,
            // The label was found by `parse_outer`.
            None => self.labels[&label].1,
        };
        let key = FlowKey { vrf, tuple: inner.tuple };
        let action = match self.flows.hit(&key, now) {
            Some(entry) => {
                self.counters.flow_hits += 1;
                entry.action
            }
            None => match self.setup_arrival(now, label, vni_vrf, key) {
                Ok(action) => action,
                Err(reason) => return self.drop(reason, frame),
            },
        };
        match self.apply(action, ETHERNET_HEADER_LEN, &inner.tuple, &mut frame) {
            Ok(emit) => emit.forward(frame),
            Err(reason) => self.drop(reason, frame),
        }
    }

    fn setup_arrival(
        &mut self,
        now: SimTime,
        label: u32,
        vni_vrf: Option<VrfId>,
        key: FlowKey,
    ) -> Result<FlowAction, DropReason> {
        let (forward, reverse) = self.decide_arrival(label, vni_vrf, key, &mut None);
        self.record_flow(now, key, forward, reverse, None)?;
        Ok(forward)
    }

    /// The flow pair a new flow arriving from the fabric gets (a lone drop entry if refused).
    fn decide_arrival(
        &self,
        label: u32,
        vni_vrf: Option<VrfId>,
        key: FlowKey,
        notes: &mut Notes<'_>,
    ) -> (FlowAction, Option<(FlowKey, FlowAction)>) {
        match self.judge_arrival(label, vni_vrf, &key.tuple, notes) {
            Ok(arrival) => {
                let forward = FlowAction::Forward {
                    egress: Egress::Interface(arrival.target),
                    rewrite: arrival.dnat,
                    routed: false,
                };
                // Replies go back through the VRF the flow arrived in (the service's, for a
                // floating IP), reverse-translated to the address and port the client targeted.
                let back = self.route_back(arrival.arrival_vrf, &reversed(&arrival.translated));
                let reverse = back.map(|egress| {
                    let rewrite = arrival
                        .dnat
                        .filter(|_| !self.config.planted.nat_forgets_reverse)
                        .map(|_| Rewrite { src: Some((key.tuple.dst, key.tuple.dst_port)), dst: None });
                    let key = FlowKey { vrf: arrival.target_vrf, tuple: reversed(&arrival.translated) };
                    (key, FlowAction::Forward { egress, rewrite, routed: true })
                });
                match reverse {
                    Ok(reverse) => (forward, Some(reverse)),
                    Err(reason) => {
                        note(notes, || format!("no way back to the client: {reason}"));
                        (FlowAction::Drop(reason), None)
                    }
                }
            }
            Err(reason) => (FlowAction::Drop(reason), None),
        }
    }

    /// Where replies to a flow go: the route to the client in `vrf`.
    fn route_back(&self, vrf: VrfId, reply: &FiveTuple) -> Result<Egress, DropReason> {
        let (_, route) =
            self.vrfs.get(&vrf).and_then(|v| v.routes.lookup(reply.dst)).ok_or(DropReason::NoRoute)?;
        let member = match &route.next_hop {
            NextHop::Composite(members) => select(members, reply).ok_or(DropReason::NoRoute)?,
            other => other,
        };
        match member {
            NextHop::Interface(id) => Ok(Egress::Interface(*id)),
            NextHop::Tunnel(t) if t.host == self.config.host_ip => {
                self.labels.get(&t.label).map(|&(i, _)| Egress::Interface(i)).ok_or(DropReason::UnknownLabel)
            }
            NextHop::Tunnel(t) => Ok(Egress::Tunnel(*t)),
            NextHop::Receive => Ok(Egress::Host),
            NextHop::Discard => Err(DropReason::Discard),
            NextHop::Composite(_) => Err(DropReason::NoRoute),
        }
    }

    /// Checks the outer headers: returns the MPLS label (or, for VXLAN, the VRF of the VNI)
    /// and where the inner IP packet starts.
    fn parse_outer(&self, frame: &[u8]) -> Result<(u32, Option<VrfId>, usize), DropReason> {
        if ethertype(frame) != Some(ETHERTYPE_IPV4) {
            return Err(DropReason::Malformed);
        }
        let outer = check_ip_header(frame, ETHERNET_HEADER_LEN)?;
        let destination = Ipv4Addr::new(frame[30], frame[31], frame[32], frame[33]);
        if destination != self.config.host_ip {
            return Err(DropReason::NotForHost);
        }
        let l4 = ETHERNET_HEADER_LEN + outer;
        let protocol = frame[ETHERNET_HEADER_LEN + 9];
        let encapsulation = self.config.encapsulation;
        let mpls_at = match (protocol, encapsulation) {
            (IP_PROTO_UDP, Encapsulation::MplsOverUdp | Encapsulation::Vxlan) => {
                let udp = frame.get(l4..l4 + 8).ok_or(DropReason::Malformed)?;
                let port = u16::from_be_bytes([udp[2], udp[3]]);
                match (port, encapsulation) {
                    (MPLS_UDP_PORT, Encapsulation::MplsOverUdp) => l4 + 8,
                    (VXLAN_UDP_PORT, Encapsulation::Vxlan) => {
                        let vxlan = Vxlan::parse(&frame[l4 + 8..]).ok_or(DropReason::Malformed)?;
                        let vrf = *self.vnis.get(&vxlan.vni).ok_or(DropReason::UnknownVni)?;
                        let inner_ethernet = l4 + 8 + VXLAN_LEN;
                        if ethertype(&frame[inner_ethernet..]) != Some(ETHERTYPE_IPV4) {
                            return Err(DropReason::Malformed);
                        }
                        return Ok((0, Some(vrf), inner_ethernet + ETHERNET_HEADER_LEN));
                    }
                    _ => return Err(DropReason::UnknownEncapsulation),
                }
            }
            (IP_PROTO_GRE, Encapsulation::MplsOverGre) => {
                let gre = Gre::parse(&frame[l4..]).ok_or(DropReason::Malformed)?;
                if gre.protocol != GRE_PROTO_MPLS {
                    return Err(DropReason::UnknownEncapsulation);
                }
                l4 + GRE_LEN
            }
            _ => return Err(DropReason::UnknownEncapsulation),
        };
        let mpls = MplsLabel::parse(&frame[mpls_at..]).ok_or(DropReason::Malformed)?;
        if !mpls.bottom {
            return Err(DropReason::Malformed);
        }
        if !self.labels.contains_key(&mpls.label) {
            return Err(DropReason::UnknownLabel);
        }
        Ok((mpls.label, None, mpls_at + MPLS_LEN))
    }

    /// Wraps the inner packet (at `at`) in the configured encapsulation, in place.
    fn encapsulate(
        &mut self,
        frame: &mut Vec<u8>,
        at: usize,
        tunnel: Tunnel,
        tuple: &FiveTuple,
    ) -> Result<(), DropReason> {
        let encapsulation = self.config.encapsulation;
        let inner_len = frame.len() - at;
        let header_len = encapsulation.header_len();
        let outer_ip_len = header_len - ETHERNET_HEADER_LEN + inner_len;
        if outer_ip_len > self.config.underlay_mtu as usize {
            return Err(DropReason::MtuExceeded);
        }
        // Move the inner packet (with its Ethernet header, for VXLAN) behind the new headers.
        let keep_from = if encapsulation == Encapsulation::Vxlan { at - ETHERNET_HEADER_LEN } else { at };
        let new_start =
            if encapsulation == Encapsulation::Vxlan { header_len - ETHERNET_HEADER_LEN } else { header_len };
        let old_len = frame.len();
        let new_len = new_start + (old_len - keep_from);
        frame.resize(new_len.max(old_len), 0);
        frame.copy_within(keep_from..old_len, new_start);
        frame.truncate(new_len);

        frame[0..6].copy_from_slice(&UNDERLAY_GATEWAY_MAC);
        frame[6..12].copy_from_slice(&self.config.host_mac);
        frame[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let ip = ETHERNET_HEADER_LEN;
        let protocol = if encapsulation == Encapsulation::MplsOverGre { IP_PROTO_GRE } else { IP_PROTO_UDP };
        let ident = self.next_ip_ident;
        self.next_ip_ident = self.next_ip_ident.wrapping_add(1);
        let header = outer_header(self.config.host_ip, tunnel.host, protocol, ident, outer_ip_len);
        frame[ip..ip + 20].copy_from_slice(&header);
        let l4 = ip + 20;
        let mpls = MplsLabel { label: tunnel.label, tc: 0, bottom: true, ttl: 64 }.to_bytes();
        match encapsulation {
            Encapsulation::MplsOverUdp | Encapsulation::Vxlan => {
                // RFC 7510 and RFC 7348: the source port carries a hash of the inner flow, so
                // that the underlay's ECMP spreads overlay flows; zero checksum (IPv4).
                let source_port = 49152 + (tuple.hash(self.config.entropy_seed) % 16384) as u16;
                let (port, rest) = if encapsulation == Encapsulation::Vxlan {
                    (VXLAN_UDP_PORT, 8 + VXLAN_LEN + ETHERNET_HEADER_LEN + inner_len)
                } else {
                    (MPLS_UDP_PORT, 8 + MPLS_LEN + inner_len)
                };
                frame[l4..l4 + 2].copy_from_slice(&source_port.to_be_bytes());
                frame[l4 + 2..l4 + 4].copy_from_slice(&port.to_be_bytes());
                frame[l4 + 4..l4 + 6].copy_from_slice(&(rest as u16).to_be_bytes());
                frame[l4 + 6..l4 + 8].fill(0);
                if encapsulation == Encapsulation::Vxlan {
                    frame[l4 + 8..l4 + 16].copy_from_slice(&Vxlan { vni: tunnel.vni }.to_bytes());
                    let inner_ethernet = l4 + 16;
                    frame[inner_ethernet..inner_ethernet + 6].copy_from_slice(&VROUTER_MAC);
                    frame[inner_ethernet + 6..inner_ethernet + 12].copy_from_slice(&VROUTER_MAC);
                } else {
                    frame[l4 + 8..l4 + 12].copy_from_slice(&mpls);
                }
            }
            Encapsulation::MplsOverGre => {
                frame[l4..l4 + 4].copy_from_slice(&Gre { protocol: GRE_PROTO_MPLS }.to_bytes());
                frame[l4 + 4..l4 + 8].copy_from_slice(&mpls);
            }
        }
        Ok(())
    }

    /// A next hop in words.
    fn describe_next_hop(&self, next_hop: &NextHop) -> String {
        match next_hop {
            NextHop::Interface(id) => format!("interface {}", self.interface_name(*id).unwrap_or("?")),
            NextHop::Tunnel(t) => self.describe_tunnel(t),
            NextHop::Composite(members) => format!("composite of {} members", members.len()),
            NextHop::Discard => "discard".to_string(),
            NextHop::Receive => "receive (the host)".to_string(),
        }
    }

    fn describe_tunnel(&self, tunnel: &Tunnel) -> String {
        match self.config.encapsulation {
            Encapsulation::Vxlan => format!("tunnel to host {} VNI {}", tunnel.host, tunnel.vni),
            _ => format!("tunnel to host {} label {}", tunnel.host, tunnel.label),
        }
    }

    /// A flow action in words.
    fn describe_action(&self, action: &FlowAction) -> String {
        let FlowAction::Forward { egress, rewrite, .. } = action else {
            let FlowAction::Drop(reason) = action else { unreachable!("two variants") };
            return format!("drop ({reason})");
        };
        let to = match egress {
            Egress::Interface(id) => format!("interface {}", self.interface_name(*id).unwrap_or("?")),
            Egress::Tunnel(t) => self.describe_tunnel(t),
            Egress::Host => "the host".to_string(),
        };
        match rewrite {
            Some(rewrite) => format!("{rewrite}, then to {to}"),
            None => format!("to {to}"),
        }
    }

    /// The flow state a packet of `key` meets: its entry's action, or a new flow's judgement
    /// (`decide` runs the forwarding path's own judge, taking notes) and whether it fits.
    fn explain_flow(
        &self,
        key: FlowKey,
        steps: &mut Vec<String>,
        decide: impl FnOnce(&mut Vec<String>) -> (FlowAction, Option<FlowKey>, Option<(u16, u16)>),
    ) -> Result<FlowAction, DropReason> {
        if let Some(entry) = self.flows.get(&key) {
            let ecmp =
                entry.ecmp.map_or(String::new(), |(n, i)| format!("; ECMP member {i} of {n} at setup"));
            steps.push(format!(
                "flow table hit (created {}, {} packets): {}{ecmp}",
                entry.created,
                entry.packets,
                self.describe_action(&entry.action)
            ));
            return Ok(entry.action);
        }
        steps.push(format!(
            "flow table: no entry for {} in VRF {}: a new flow, judged now",
            key.tuple, key.vrf.0
        ));
        let (action, reverse, _) = decide(steps);
        if !self.flows.fits_pair(&key, reverse.as_ref()) {
            steps.push(format!("flow table full ({} entries)", self.flows.len()));
            return Err(DropReason::FlowTableFull);
        }
        steps.push(match action {
            FlowAction::Drop(reason) => format!("new flow: a lone drop entry ({reason})"),
            action => format!("new flow pair: {}", self.describe_action(&action)),
        });
        Ok(action)
    }

    /// What [`Vrouter::apply`] does with `action` for an inner packet of `inner_len` bytes
    /// with TTL `ttl`: the fate in words.
    fn explain_apply(
        &self,
        action: FlowAction,
        ttl: u8,
        inner_len: usize,
        tuple: &FiveTuple,
        steps: &mut Vec<String>,
    ) -> Result<String, DropReason> {
        let FlowAction::Forward { egress, rewrite, routed } = action else {
            let FlowAction::Drop(reason) = action else { unreachable!("two variants") };
            return Err(reason);
        };
        if routed && ttl <= 1 {
            return Err(DropReason::TtlExpired);
        }
        if let Some(rewrite) = rewrite {
            steps.push(format!("NAT: {rewrite}"));
        }
        match egress {
            Egress::Interface(target) => {
                let interface = self.interfaces.get(&target).ok_or(DropReason::UnknownInterface)?;
                Ok(format!("deliver to interface {} ({})", interface.name, interface.ip))
            }
            Egress::Tunnel(tunnel) => {
                let encapsulation = self.config.encapsulation;
                let outer_ip_len = encapsulation.header_len() - ETHERNET_HEADER_LEN + inner_len;
                if outer_ip_len > self.config.underlay_mtu as usize {
                    steps.push(format!(
                        "encapsulated: {outer_ip_len} bytes > underlay MTU {}",
                        self.config.underlay_mtu
                    ));
                    return Err(DropReason::MtuExceeded);
                }
                let header = match encapsulation {
                    Encapsulation::Vxlan => format!("VXLAN VNI {}", tunnel.vni),
                    Encapsulation::MplsOverUdp => format!("MPLS-over-UDP label {}", tunnel.label),
                    Encapsulation::MplsOverGre => format!("MPLS-over-GRE label {}", tunnel.label),
                };
                let entropy = match encapsulation {
                    Encapsulation::MplsOverGre => String::new(),
                    _ => format!(
                        ", UDP source port {}",
                        49152 + (tuple.hash(self.config.entropy_seed) % 16384)
                    ),
                };
                steps.push(format!(
                    "encapsulate {header}: outer {} -> {}{entropy}, {outer_ip_len} bytes",
                    self.config.host_ip, tunnel.host
                ));
                Ok("to the fabric".to_string())
            }
            Egress::Host => Ok("deliver to the host's stack".to_string()),
        }
    }

    fn explain_from_pod(
        &self,
        id: InterfaceId,
        frame: &[u8],
        steps: &mut Vec<String>,
    ) -> Result<String, DropReason> {
        let interface = self.interfaces.get(&id).ok_or(DropReason::UnknownInterface)?;
        steps
            .push(format!("from interface {} ({}) in VRF {}", interface.name, interface.ip, interface.vrf.0));
        let inner = check_ipv4(frame, ETHERNET_HEADER_LEN)?;
        if inner.tuple.src != interface.ip {
            return Err(DropReason::SourceMismatch);
        }
        let key = FlowKey { vrf: interface.vrf, tuple: inner.tuple };
        let action = self.explain_flow(key, steps, |steps| {
            match self.judge_from_interface(id, &key, &mut Some(steps)) {
                Ok((forward, reverse, ecmp)) => (forward, reverse.map(|(k, _)| k), ecmp),
                Err(reason) => (FlowAction::Drop(reason), None, None),
            }
        })?;
        self.explain_apply(action, frame[inner.at + 8], frame.len() - inner.at, &inner.tuple, steps)
    }

    fn explain_from_fabric(&self, frame: &[u8], steps: &mut Vec<String>) -> Result<String, DropReason> {
        let (label, vni_vrf, inner_at) = self.parse_outer(frame)?;
        let source = Ipv4Addr::new(frame[26], frame[27], frame[28], frame[29]);
        let vrf = match vni_vrf {
            Some(vrf) => vrf,
            // The label was found by `parse_outer`.
            None => self.labels[&label].1,
        };
        steps.push(match vni_vrf {
            Some(vrf) => format!("decapsulate VXLAN from {source}: VNI -> VRF {}", vrf.0),
            None => {
                let (interface, _) = self.labels[&label];
                let encapsulation = match self.config.encapsulation {
                    Encapsulation::MplsOverGre => "MPLS-over-GRE",
                    _ => "MPLS-over-UDP",
                };
                format!(
                    "decapsulate {encapsulation} from {source}: label {label} -> interface {}, VRF {}",
                    self.interface_name(interface).unwrap_or("?"),
                    vrf.0
                )
            }
        });
        let inner = check_ipv4(frame, inner_at)?;
        let key = FlowKey { vrf, tuple: inner.tuple };
        let action = self.explain_flow(key, steps, |steps| {
            let (forward, reverse) = self.decide_arrival(label, vni_vrf, key, &mut Some(steps));
            (forward, reverse.map(|(k, _)| k), None)
        })?;
        let inner_len = usize::from(u16::from_be_bytes([frame[inner_at + 2], frame[inner_at + 3]]));
        self.explain_apply(action, frame[inner_at + 8], inner_len, &inner.tuple, steps)
    }

    fn schedule_aging(&mut self, now: SimTime) {
        if self.next_aging.is_none() {
            self.next_aging = Some(now + self.config.flow_idle_timeout);
        }
    }
}

/// Where an applied flow action sends the frame.
enum Emit {
    Interface(InterfaceId),
    Fabric,
    Host,
}

impl Emit {
    fn forward(self, frame: Vec<u8>) -> Forward {
        match self {
            Emit::Interface(id) => Forward::Interface(id, frame),
            Emit::Fabric => Forward::Fabric(frame),
            Emit::Host => Forward::Host(frame),
        }
    }
}

/// The destination side of a new flow.
struct Arrival {
    target: InterfaceId,
    /// The target interface's own VRF (where its replies are looked up).
    target_vrf: VrfId,
    /// The VRF the flow arrived in (the label's).
    arrival_vrf: VrfId,
    dnat: Option<Rewrite>,
    /// The tuple after translation.
    translated: FiveTuple,
}

impl DataPlane for Vrouter {
    fn handle_packet(&mut self, now: SimTime, port: Port, frame: Vec<u8>) -> Forward {
        match port {
            Port::Interface(id) => self.packet_from_pod(now, id, frame),
            Port::Fabric => self.packet_from_fabric(now, frame),
        }
    }

    fn handle_timeout(&mut self, now: SimTime) {
        let Some(due) = self.next_aging else { return };
        if now < due {
            return;
        }
        self.counters.flows_aged += self.flows.expire(now, self.config.flow_idle_timeout) as u64;
        // Sweep again after half a timeout while flows remain: idle pairs live at most 1.5x.
        self.next_aging = (!self.flows.is_empty())
            .then(|| now + SimDuration::from_nanos(self.config.flow_idle_timeout.as_nanos() / 2));
    }

    fn poll_timeout(&self) -> Option<SimTime> {
        self.next_aging
    }

    fn explain(&self, _now: SimTime, port: Port, frame: &[u8]) -> Vec<String> {
        let mut steps = Vec::new();
        let fate = match port {
            Port::Interface(id) => self.explain_from_pod(id, frame, &mut steps),
            Port::Fabric => self.explain_from_fabric(frame, &mut steps),
        };
        steps.push(match fate {
            Ok(fate) => fate,
            Err(reason) => format!("drop: {reason}"),
        });
        steps
    }
}

/// An ACL's verdict and the rule that decided it.
fn describe_verdict((verdict, rule): (Verdict, Option<usize>)) -> String {
    match rule {
        Some(rule) => format!("{verdict:?} by rule #{rule}"),
        None => format!("{verdict:?} by default"),
    }
}

#[cfg(test)]
mod tests;
