//! Calico in a run: a [`CalicoHost`] and a BGP [`Speaker`] per host, felix's and kube-proxy's
//! programming compiled from the cluster.
//!
//! - Routes: each host's speaker originates its IPAM blocks (and /32s of borrowed addresses,
//!   or of every pod under cluster-wide IPAM); UPDATEs, WITHDRAWs and KEEPALIVEs
//!   are TCP segments over the simulated fabric, so failures delay and lose them; route events
//!   become the host's learnt routes. Without encapsulation the fabric routes pod blocks too
//!   (hosts peer with their leaves, Calico's AS-per-rack design).
//! - Policy and services: felix and kube-proxy watch the datastore: a change of the cluster
//!   reaches each host's programming after the propagation delay plus a per-host jitter, as
//!   the difference between what the host has and what it should have.
//! - Start: the cluster has been up for a while: BGP sessions are established and routes
//!   exchanged before the first event (in memory, at time zero).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use netsim_control::bgp::{BgpConfig, RouteEvent, Speaker};
use netsim_control::felix::{Felix, HostProgram};
use netsim_control::ipam::IpamMode;
use netsim_core::planted::PlantedBugs;
use netsim_core::{SimDuration, SimTime};
use netsim_fabric::{Element, Fabric, NodeId};
use netsim_vrouter::calico::{CalicoCommand, CalicoConfig, CalicoEncapsulation, CalicoHost};
use netsim_vrouter::{DataPlane, InterfaceId};
use rand_core::Rng;

use super::{Event, Overlay, Simulation, kind};
use crate::engine::RngStreams;
use crate::scenario::{BgpTopology, ClusterSpec};

/// The BGP port: frames to or from it belong to the speakers.
const BGP_PORT: u16 = 179;

/// BGP and felix counters for results.json.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BgpCounts {
    /// `full-mesh` or `route-reflectors`.
    pub topology: &'static str,
    /// Sessions configured, over all hosts (each session counted at both ends).
    pub sessions_configured: u64,
    /// Sessions established when traffic ended, over all hosts.
    pub sessions_established: u64,
    /// Most and fewest sessions configured on one host.
    pub sessions_per_host_max: u64,
    /// Fewest sessions configured on one host.
    pub sessions_per_host_min: u64,
    /// BGP messages sent (all types), over all hosts.
    pub messages_sent: u64,
    /// Most messages sent by one host.
    pub messages_per_host_max: u64,
    /// UPDATE messages sent.
    pub updates_sent: u64,
    /// Prefixes announced in UPDATEs.
    pub prefixes_announced: u64,
    /// Prefixes withdrawn in UPDATEs.
    pub prefixes_withdrawn: u64,
    /// TCP segments retransmitted.
    pub retransmissions: u64,
    /// Established sessions that went down.
    pub session_downs: u64,
    /// Sessions brought down by the hold timer.
    pub hold_timer_expiries: u64,
    /// BGP frames the fabric lost.
    pub lost: u64,
    /// Route changes installed in hosts' tables after the start.
    pub route_changes: u64,
    /// Longest time from a fault or change of the cluster to a route change it caused, in
    /// nanoseconds (route convergence).
    pub convergence_ns_max: u64,
    /// Felix updates applied (one per host per change that concerned it).
    pub felix_updates: u64,
    /// Commands those updates carried.
    pub felix_commands: u64,
}

/// One host's pending felix update.
struct FelixUpdate {
    host: u32,
    commands: Vec<CalicoCommand>,
    /// The host's IPAM blocks once applied.
    blocks: BTreeSet<Ipv4Net>,
}

/// The Calico side of a run.
pub(super) struct CalicoState {
    pub(super) hosts: Vec<CalicoHost>,
    speakers: Vec<Speaker>,
    felix: Felix,
    /// What each host is (or will be, once its pending update applies) programmed with.
    programs: Vec<HostProgram>,
    /// Each host's originated blocks.
    blocks: Vec<BTreeSet<Ipv4Net>>,
    updates: Vec<Option<FelixUpdate>>,
    bgp_timers: Vec<Option<SimTime>>,
    /// Whether the fabric routes pod blocks (no encapsulation).
    announce_in_fabric: bool,
    /// Time of the latest fault or change, for convergence.
    last_disturbance: Option<SimTime>,
    /// Bugs planted by tests.
    planted: PlantedBugs,
    pub(super) counts: BgpCounts,
}

/// What each of `hosts` hosts announces: its IPAM blocks and the /32s of its pods with
/// borrowed addresses; with cluster-wide IPAM (no blocks), every one of its pods' /32s. One pass
/// over the pods for all hosts.
fn originated(cluster: &netsim_control::cluster::Cluster, hosts: u32) -> Vec<BTreeSet<Ipv4Net>> {
    let mut announced: Vec<BTreeSet<Ipv4Net>> =
        (0..hosts).map(|host| cluster.ipam().blocks(host).iter().copied().collect()).collect();
    let per_pod = cluster.ipam().mode() == IpamMode::ClusterWide;
    for pod in cluster.pods() {
        if (pod.borrowed_ip || per_pod)
            && !pod.deleted
            && let Some(own) = announced.get_mut(pod.host as usize)
        {
            own.insert(Ipv4Net::from(pod.ip));
        }
    }
    announced
}

/// The commands taking a host from `old` to `new`: additions first (sets before the policies
/// naming them, policies before the endpoints listing them), removals after.
pub(super) fn program_diff(old: &HostProgram, new: &HostProgram) -> Vec<CalicoCommand> {
    let mut commands = Vec::new();
    for (&id, members) in &new.ipsets {
        if old.ipsets.get(&id) != Some(members) {
            commands.push(CalicoCommand::SetIpSet { id, members: members.clone() });
        }
    }
    for (&id, chains) in &new.policies {
        if old.policies.get(&id) != Some(chains) {
            commands.push(CalicoCommand::SetPolicy { id, chains: chains.clone() });
        }
    }
    for (&pod, endpoint) in &new.endpoints {
        let id = InterfaceId(pod.0);
        match old.endpoints.get(&pod) {
            None => {
                commands.push(CalicoCommand::AddEndpoint {
                    id,
                    name: endpoint.name.clone(),
                    ip: endpoint.ip,
                    mac: endpoint.mac,
                });
                if endpoint.policy != Default::default() {
                    commands.push(CalicoCommand::SetEndpointPolicy { id, policy: endpoint.policy.clone() });
                }
            }
            Some(before) if before.policy != endpoint.policy => {
                commands.push(CalicoCommand::SetEndpointPolicy { id, policy: endpoint.policy.clone() })
            }
            Some(_) => {}
        }
    }
    // Every host shares felix's table: an unchanged one is the same `Arc`.
    if !Arc::ptr_eq(&old.services, &new.services) && old.services != new.services {
        commands.push(CalicoCommand::SetServices(Arc::clone(&new.services)));
    }
    for &pod in old.endpoints.keys() {
        if !new.endpoints.contains_key(&pod) {
            commands.push(CalicoCommand::RemoveEndpoint(InterfaceId(pod.0)));
        }
    }
    for &id in old.policies.keys() {
        if !new.policies.contains_key(&id) {
            commands.push(CalicoCommand::RemovePolicy(id));
        }
    }
    for &id in old.ipsets.keys() {
        if !new.ipsets.contains_key(&id) {
            commands.push(CalicoCommand::RemoveIpSet(id));
        }
    }
    commands
}

/// Builds every host's Calico data plane and speaker, programs them, and converges BGP.
pub(super) fn build(
    spec: &ClusterSpec,
    fabric: &mut Fabric,
    streams: &RngStreams,
    planted: PlantedBugs,
) -> CalicoState {
    let topology = fabric.topology();
    let hosts = topology.host_count();
    let host_ips: Vec<Ipv4Addr> = (0..hosts).map(|h| topology.host_ip(NodeId(h))).collect();
    let settings = &spec.calico;
    let nat_seed = streams.seed_for("calico/kube-proxy");
    let ecmp_seed = streams.seed_for("calico/ecmp");
    let mut felix = Felix::default();
    let programs = felix.compile(&spec.cluster, hosts, spec.isolation);
    let mut calico_hosts = Vec::new();
    let mut speakers = Vec::new();
    let reflectors: BTreeSet<u32> = match settings.bgp {
        BgpTopology::FullMesh => BTreeSet::new(),
        BgpTopology::RouteReflectors => spec.control_nodes.iter().copied().collect(),
    };
    let blocks = originated(&spec.cluster, hosts);
    for host in 0..hosts {
        let mac = topology.port_mac(NodeId(host), 0);
        let config = CalicoConfig {
            host_ip: host_ips[host as usize],
            host_mac: mac,
            encapsulation: settings.encapsulation,
            conntrack_max: spec.flows_max,
            conntrack_idle_timeout: spec.flow_idle_timeout,
            underlay_mtu: topology.config().host_link.mtu_bytes,
            nat_seed: nat_seed ^ u64::from(host),
            ecmp_seed,
            planted,
        };
        let mut calico_host = CalicoHost::new(config);
        let own = &blocks[host as usize];
        for &block in own {
            if block.prefix_len() < 32 {
                // Built from scratch: commands that cannot fail.
                let _ = calico_host.handle_command(SimTime::ZERO, CalicoCommand::AddLocalBlock(block));
            }
        }
        for command in program_diff(&HostProgram::default(), &programs[host as usize]) {
            calico_host
                .handle_command(SimTime::ZERO, command)
                .expect("felix's program applies to an empty host");
        }
        let mut config = BgpConfig::new(host_ips[host as usize], mac);
        config.keepalive = settings.keepalive;
        config.hold_time = settings.hold_time;
        config.route_reflector = reflectors.contains(&host);
        let mut speaker = Speaker::new(config);
        for peer in 0..hosts {
            if peer == host {
                continue;
            }
            let (configured, client) = match settings.bgp {
                BgpTopology::FullMesh => (true, false),
                BgpTopology::RouteReflectors => {
                    match (reflectors.contains(&host), reflectors.contains(&peer)) {
                        (true, true) => (true, false),
                        (true, false) => (true, true),
                        (false, true) => (true, false),
                        (false, false) => (false, false),
                    }
                }
            };
            if configured {
                speaker.add_peer(SimTime::ZERO, host_ips[peer as usize], client);
            }
        }
        for &block in own {
            speaker.originate(SimTime::ZERO, block);
        }
        calico_hosts.push(calico_host);
        speakers.push(speaker);
    }
    let announce_in_fabric = settings.encapsulation == CalicoEncapsulation::None;
    let mut state = CalicoState {
        hosts: calico_hosts,
        speakers,
        felix,
        programs,
        blocks,
        updates: Vec::new(),
        bgp_timers: vec![None; hosts as usize],
        announce_in_fabric,
        last_disturbance: None,
        planted,
        counts: BgpCounts {
            topology: match settings.bgp {
                BgpTopology::FullMesh => "full-mesh",
                BgpTopology::RouteReflectors => "route-reflectors",
            },
            ..BgpCounts::default()
        },
    };
    if announce_in_fabric {
        for (host, own) in state.blocks.iter().enumerate() {
            for block in own {
                // IPAM hands a block to one host only.
                let _ = fabric.announce(NodeId(host as u32), block.network(), block.prefix_len());
            }
        }
    }
    state.converge_at_start(fabric);
    state
}

impl CalicoState {
    /// Exchanges BGP messages in memory at time zero until every speaker is quiet: the
    /// sessions are up and the routes known before the run starts.
    fn converge_at_start(&mut self, fabric: &Fabric) {
        let topology = fabric.topology();
        loop {
            let mut moved = false;
            for host in 0..self.speakers.len() {
                if self.speakers[host].poll_timeout().is_some_and(|at| at <= SimTime::ZERO) {
                    self.speakers[host].handle_timeout(SimTime::ZERO);
                }
                while let Some((to, frame)) = self.speakers[host].poll_transmit() {
                    moved = true;
                    if let Some(peer) = topology.host_by_ip(to) {
                        self.speakers[peer.0 as usize].handle_frame(SimTime::ZERO, &frame);
                    }
                    self.speakers[host].recycle(frame);
                }
                while let Some(event) = self.speakers[host].poll_event() {
                    install(&mut self.hosts[host], event);
                }
            }
            if !moved {
                break;
            }
        }
    }
}

/// Installs a BGP route event in a host's routing table.
fn install(host: &mut CalicoHost, event: RouteEvent) {
    let command = match event {
        RouteEvent::Installed { prefix, next_hops } => CalicoCommand::SetRoute { prefix, next_hops },
        RouteEvent::Withdrawn { prefix } => CalicoCommand::RemoveRoute(prefix),
    };
    // Speakers report routes with next hops only; removing an absent route is harmless.
    let _ = host.handle_command(SimTime::ZERO, command);
}

/// The NetworkPolicy (or label-model collection) behind each policy id felix handed out, for
/// traces.
pub(super) fn policy_names(calico: &CalicoState) -> BTreeMap<u32, String> {
    calico.felix.policy_names().map(|(id, name)| (id, name.to_string())).collect()
}

/// What each IP set id felix handed out stands for, for traces.
pub(super) fn set_names(calico: &CalicoState) -> BTreeMap<u32, String> {
    calico.felix.set_names().map(|(id, name)| (id, name.to_string())).collect()
}

/// Whether a frame is a BGP segment (TCP, either port 179).
pub(super) fn is_bgp(frame: &[u8]) -> bool {
    netsim_core::FiveTuple::from_ethernet(frame)
        .is_some_and(|t| t.protocol == 6 && (t.src_port == BGP_PORT || t.dst_port == BGP_PORT))
}

impl Overlay {
    /// The Calico side, for data planes that have one.
    pub(super) fn calico_mut(&mut self) -> Option<&mut CalicoState> {
        self.calico.as_mut()
    }
}

impl Simulation<'_> {
    /// A BGP segment reached `host`'s speaker.
    pub(super) fn receive_bgp(&mut self, host: NodeId, frame: Vec<u8>) {
        let now = self.now;
        if let Some(calico) = self.overlay.as_mut().and_then(Overlay::calico_mut) {
            let speaker = &mut calico.speakers[host.0 as usize];
            speaker.handle_frame(now, &frame);
            // The speaker answers (acknowledgements, updates) in the buffer it just read.
            speaker.recycle(frame);
        }
        self.flush_speaker(host.0);
    }

    /// Sends what a speaker has to send, installs its route changes and arms its timer.
    pub(super) fn flush_speaker(&mut self, host: u32) {
        let now = self.now;
        let Some(calico) = self.overlay.as_mut().and_then(Overlay::calico_mut) else { return };
        let mut frames = Vec::new();
        while let Some((_, frame)) = calico.speakers[host as usize].poll_transmit() {
            frames.push(frame);
        }
        while let Some(event) = calico.speakers[host as usize].poll_event() {
            calico.counts.route_changes += 1;
            if let Some(since) = calico.last_disturbance {
                calico.counts.convergence_ns_max =
                    calico.counts.convergence_ns_max.max((now - since).as_nanos());
            }
            install(&mut calico.hosts[host as usize], event);
        }
        let due = calico.speakers[host as usize].poll_timeout();
        let scheduled = &mut calico.bgp_timers[host as usize];
        let arm = due.filter(|&at| at <= self.end && scheduled.is_none_or(|s| at < s));
        if let Some(at) = arm {
            *scheduled = Some(at);
            self.queue.push(at.max(now), Event::BgpTimer(host));
        }
        for frame in frames {
            let forward = self.fabric.send(now, NodeId(host), frame);
            self.handle(forward);
        }
    }

    /// A speaker's timer fired.
    pub(super) fn bgp_timer(&mut self, host: u32) {
        self.trace.record(self.now, kind::BGP_TIMER, &[u64::from(host)]);
        let now = self.now;
        if let Some(calico) = self.overlay.as_mut().and_then(Overlay::calico_mut) {
            if calico.bgp_timers[host as usize] != Some(now) {
                // Superseded by an earlier deadline that re-armed it.
                return;
            }
            calico.bgp_timers[host as usize] = None;
            calico.speakers[host as usize].handle_timeout(now);
        }
        self.flush_speaker(host);
    }

    /// A fabric element failed or recovered: a host's BGP daemon goes down or restarts with
    /// it; any fault starts a convergence measurement.
    pub(super) fn calico_fault(&mut self, element: Element, up: bool) {
        let now = self.now;
        let host = match element {
            Element::Node(node) if self.fabric.topology().kind(node) == netsim_fabric::NodeKind::Host => {
                Some(node.0)
            }
            _ => None,
        };
        let Some(calico) = self.overlay.as_mut().and_then(Overlay::calico_mut) else { return };
        calico.last_disturbance = Some(now);
        if let Some(host) = host {
            calico.speakers[host as usize].set_down(now, !up);
            self.flush_speaker(host);
        }
    }

    /// The cluster changed: every host whose programming differs gets the difference after the
    /// propagation delay and its jitter.
    pub(super) fn calico_plan_change(&mut self, spec: &ClusterSpec) {
        let now = self.now;
        let Some(overlay) = self.overlay.as_mut() else { return };
        let Some(calico) = overlay.calico.as_mut() else { return };
        calico.last_disturbance = Some(now);
        let hosts = calico.hosts.len() as u32;
        let programs = calico.felix.compile(&overlay.cluster, hosts, spec.isolation);
        let mut sends = Vec::new();
        let announced = originated(&overlay.cluster, hosts);
        for ((host, mut new), blocks) in programs.into_iter().enumerate().zip(announced) {
            if calico.planted.stale_backends {
                // The planted bug: kube-proxy adds backends but never removes one.
                let mut stale = Vec::new();
                for (key, old) in calico.programs[host].services.iter() {
                    if let Some(backends) = new.services.get(key) {
                        let gone: Vec<_> = old.iter().filter(|b| !backends.contains(b)).copied().collect();
                        if !gone.is_empty() {
                            stale.push((*key, [&backends[..], &gone].concat()));
                        }
                    }
                }
                if !stale.is_empty() {
                    let services = Arc::make_mut(&mut new.services);
                    for (key, backends) in stale {
                        services.insert(key, backends.into());
                    }
                }
            }
            let mut commands = program_diff(&calico.programs[host], &new);
            let late = if calico.planted.policy_after_route {
                // The planted bug: a new pod's policy comes one propagation delay after its route.
                let added: Vec<InterfaceId> = commands
                    .iter()
                    .filter_map(|c| match c {
                        CalicoCommand::AddEndpoint { id, .. } => Some(*id),
                        _ => None,
                    })
                    .collect();
                let (late, early): (Vec<_>, Vec<_>) = commands.into_iter().partition(
                    |c| matches!(c, CalicoCommand::SetEndpointPolicy { id, .. } if added.contains(id)),
                );
                commands = early;
                late
            } else {
                Vec::new()
            };
            if commands.is_empty() && blocks == calico.blocks[host] {
                continue;
            }
            calico.programs[host] = new;
            let jitter = match spec.propagation_jitter.as_nanos() {
                0 => 0,
                range => overlay.jitter.next_u64() % range,
            };
            let at = now + spec.propagation_delay + SimDuration::from_nanos(jitter);
            if !late.is_empty() {
                let later = at + spec.propagation_delay.max(SimDuration::from_millis(10));
                calico.updates.push(Some(FelixUpdate {
                    host: host as u32,
                    commands: late,
                    blocks: blocks.clone(),
                }));
                sends.push((later, (calico.updates.len() - 1) as u32));
            }
            calico.updates.push(Some(FelixUpdate { host: host as u32, commands, blocks }));
            sends.push((at, (calico.updates.len() - 1) as u32));
        }
        for (at, update) in sends {
            self.queue.push(at, Event::FelixApply(update));
        }
    }

    /// A host's felix (and CNI, and BIRD's exports) apply an update.
    pub(super) fn felix_apply(&mut self, id: u32) {
        self.trace.record(self.now, kind::FELIX_APPLY, &[u64::from(id)]);
        let now = self.now;
        let Some(calico) = self.overlay.as_mut().and_then(Overlay::calico_mut) else { return };
        let Some(update) = calico.updates[id as usize].take() else { return };
        let host = update.host as usize;
        calico.counts.felix_updates += 1;
        calico.counts.felix_commands += update.commands.len() as u64;
        let old = std::mem::take(&mut calico.blocks[host]);
        for &block in update.blocks.difference(&old) {
            if block.prefix_len() < 32 {
                let _ = calico.hosts[host].handle_command(now, CalicoCommand::AddLocalBlock(block));
            }
            calico.speakers[host].originate(now, block);
            if calico.announce_in_fabric {
                let _ = self.fabric.announce(NodeId(update.host), block.network(), block.prefix_len());
            }
        }
        for &block in old.difference(&update.blocks) {
            let _ = calico.hosts[host].handle_command(now, CalicoCommand::RemoveLocalBlock(block));
            calico.speakers[host].withdraw(now, block);
            if calico.announce_in_fabric {
                self.fabric.withdraw(block.network(), block.prefix_len());
            }
        }
        calico.blocks[host] = update.blocks;
        for command in update.commands {
            // The difference was computed against what this host was last sent, applied in
            // order: it applies.
            calico.hosts[host].handle_command(now, command).expect("felix's difference applies");
        }
        self.flush_speaker(update.host);
        self.schedule_vrouter_timer(update.host);
    }

    /// Counters for the report.
    pub(super) fn bgp_counts(calico: &CalicoState) -> BgpCounts {
        let mut counts = calico.counts.clone();
        let per_host: Vec<(u64, u64)> = calico
            .speakers
            .iter()
            .map(|s| {
                let sent = s.counters().sent;
                (s.sessions().count() as u64, sent.open + sent.update + sent.keepalive + sent.notification)
            })
            .collect();
        counts.sessions_configured = per_host.iter().map(|p| p.0).sum();
        counts.sessions_per_host_max = per_host.iter().map(|p| p.0).max().unwrap_or(0);
        counts.sessions_per_host_min = per_host.iter().map(|p| p.0).min().unwrap_or(0);
        counts.messages_sent = per_host.iter().map(|p| p.1).sum();
        counts.messages_per_host_max = per_host.iter().map(|p| p.1).max().unwrap_or(0);
        counts.sessions_established = calico.speakers.iter().map(|s| s.established_count() as u64).sum();
        for speaker in &calico.speakers {
            let c = speaker.counters();
            counts.updates_sent += c.sent.update;
            counts.prefixes_announced += c.prefixes_announced;
            counts.prefixes_withdrawn += c.prefixes_withdrawn;
            counts.retransmissions += c.retransmissions;
            counts.session_downs += c.session_downs;
            counts.hold_timer_expiries += c.hold_timer_expiries;
        }
        counts
    }

    /// Arms every speaker's first timer (keepalives) at the start of the run.
    pub(super) fn start_bgp(&mut self) {
        let hosts = self.overlay.as_ref().and_then(|o| o.calico.as_ref()).map_or(0, |c| c.speakers.len());
        for host in 0..hosts as u32 {
            self.flush_speaker(host);
        }
    }
}

/// Sum of routes and conntrack entries over Calico hosts.
pub(super) fn state_size(calico: &CalicoState) -> (usize, usize) {
    (
        calico.hosts.iter().map(CalicoHost::route_count).sum(),
        calico.hosts.iter().map(CalicoHost::conntrack_len).sum(),
    )
}

/// The host plane of one host, whichever data plane it is.
pub(super) fn plane(calico: &mut CalicoState, host: usize) -> &mut dyn DataPlane {
    &mut calico.hosts[host]
}
