//! What the conformance checks need, recorded as packets are delivered and dropped: the
//! isolation oracle's verdict on every delivered request, which backend each service flow
//! reached, which member each underlay ECMP group gave each flow, NAT's translated tuples, and
//! the losses each disturbance caused.
//!
//! Recording is on only for the checks a scenario asks for, so plain runs pay nothing.
//!
//! Member changes are measured per flow: a flow whose group (a service's backends, or the next
//! hops of an underlay node towards its destination) changed between two of its packets is a
//! *live* flow of that change; it *moved* if its two packets took different members, and it *had
//! to* if its first member is gone. Each change's totals become a [`Disruption`].

use std::collections::BTreeMap;

use netsim_control::cluster::{Cluster, PodId};
use netsim_control::k8s::Protocol;
use netsim_control::network_manager::Isolation;
use netsim_control::{labels, netpol};
use netsim_core::{FiveTuple, SimTime};
use netsim_fabric::{Fabric, NodeId, NodeKind, RoutingTable, Transmit};
use serde::Serialize;

use crate::scenario::{CheckKind, FailureWindow, Scenario};

/// Most examples of each kind of finding kept.
const EXAMPLES_MAX: usize = 10;
/// Most routing epochs kept (a routing table each: 130 kB for the default fabric); later routing
/// changes are measured together with the last.
const ROUTING_EPOCHS_MAX: usize = 256;

/// A forbidden packet delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// When, in nanoseconds.
    pub at_ns: u64,
    /// The packet as delivered (after any NAT).
    pub flow: String,
    /// The traffic entry.
    pub traffic: String,
    /// Why the oracle forbids it.
    pub cause: String,
    /// The packet as `netsim trace --flow` takes it: source pod address and port, what it
    /// called (a ClusterIP or a pod), port and protocol.
    pub trace_flow: String,
}

/// A permitted flow that lost packets: from its first loss to its next delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// The flow's traffic entry.
    pub traffic: String,
    /// The flow's id.
    pub flow: u32,
    /// When the gap opened, in nanoseconds.
    pub from_ns: u64,
    /// How long it lasted (to the end of the run if it never closed).
    pub duration_ns: u64,
    /// Why its first packet was dropped.
    pub reason: &'static str,
    /// The flow as `netsim trace --flow` takes it (`SRC:SPORT->DST:PORT/PROTO`).
    pub trace_flow: String,
}

/// How flows spread over the members of one load-balancing group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Spread {
    /// The group: `service <traffic>` or `<switch> (<n> next hops)`.
    pub group: String,
    /// Flows per member, in member order.
    pub flows: Vec<u64>,
}

/// How many flows a change of a group's members moved, against the fewest it could have.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Disruption {
    /// What changed: a change of the cluster, or what routing learnt.
    pub change: String,
    /// When (for the underlay: when routing acted on it), in nanoseconds.
    pub at_ns: u64,
    /// The group: `service <traffic>`, or an underlay tier (`leaves`, `hosts`, `spines`).
    pub group: String,
    /// Whether the group is the underlay's.
    pub underlay: bool,
    /// Members before and after (for a tier: of each of its groups that changed alike).
    pub members_before: u32,
    /// Members after.
    pub members_after: u32,
    /// Flows seen both before and after the change.
    pub live_flows: u64,
    /// Live flows that took another member after the change.
    pub moved: u64,
    /// Live flows whose member went: they had to move.
    pub on_removed: u64,
    /// The fewest live flows any scheme could have moved: those on removed members, and at
    /// least the share new members need for an even spread, `live × added / after`
    /// (rounded up), whichever is more.
    pub minimum: u64,
    /// `moved / live_flows`.
    pub moved_fraction: f64,
    /// `minimum / live_flows`.
    pub minimum_fraction: f64,
    /// `moved / minimum`; `None` when nothing had to move.
    pub ratio: Option<f64>,
}

/// How the underlay's ECMP choices at two consecutive tiers of a path go together: flows per
/// (choice at the first, choice at the second). Independent hashes fill every cell alike;
/// polarized ones (the same hash everywhere) leave cells empty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Polarization {
    /// The tiers: `hosts (2 next hops) -> leaves (4 next hops)`.
    pub tiers: String,
    /// Flows per cell: `flows[first][second]`, by member index.
    pub flows: Vec<Vec<u64>>,
}

/// A NAT finding's first example: when, which flow, and the packet as `netsim trace --flow`
/// takes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// When, in nanoseconds.
    pub at_ns: u64,
    /// The traffic flow.
    pub flow: u32,
    /// `SRC:SPORT->DST:PORT/PROTO`.
    pub trace_flow: String,
}

/// A disturbance (fault or change) and the losses it caused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Disturbance {
    /// What happened.
    pub target: String,
    /// When it started, in nanoseconds.
    pub from_ns: u64,
    /// Packets of permitted traffic lost in its window.
    pub lost: u64,
    /// Time from its start to its last loss (0 if it cost nothing), in nanoseconds.
    pub recovered_after_ns: u64,
}

/// Everything the isolation, ECMP, NAT and convergence checks judge.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Judgements {
    /// Delivered requests the oracle judged.
    pub judged: u64,
    /// Forbidden deliveries.
    pub violations: u64,
    /// The first few.
    pub violation_examples: Vec<Violation>,
    /// Availability gaps of permitted flows.
    pub gaps: Vec<Gap>,
    /// Flows per backend of each service, and per member of each underlay ECMP group.
    pub spreads: Vec<Spread>,
    /// Flows that changed backend while their service's backends did not change.
    pub affinity_breaks: u64,
    /// Flows that changed next hop at an underlay node while its group there did not change.
    pub underlay_affinity_breaks: u64,
    /// Member changes of services and underlay tiers, in order of time.
    pub disruptions: Vec<Disruption>,
    /// Consecutive ECMP choices along underlay paths, per pair of group sizes.
    pub polarization: Vec<Polarization>,
    /// Two connections sharing one translated tuple.
    pub nat_collisions: u64,
    /// The first of them (the second connection, as its client sent it).
    pub first_collision: Option<Finding>,
    /// The first reply delivered from another address or port than its request targeted (the
    /// reply as its server sent it).
    pub first_misaddressed: Option<Finding>,
    /// Requests that reached (or were sent to) a removed backend after the change settled.
    pub stale_backend_packets: u64,
    /// The first of them.
    pub first_stale: Option<Finding>,
    /// Requests of connections to live backends lost during churn.
    pub established_broken: u64,
    /// The first of them.
    pub first_broken: Option<Finding>,
    /// Losses per disturbance.
    pub disturbances: Vec<Disturbance>,
}

/// An underlay tier of ECMP groups: the kind of its nodes and their number of next hops.
type Tier = (NodeKind, u16);

/// (source, destination, port, protocol, address called): what an oracle verdict depends on.
type VerdictKey = (PodId, PodId, u16, u8, std::net::Ipv4Addr);

/// A change of one service's backends, and the flows it disrupted so far.
#[derive(Debug)]
struct ServiceChange {
    traffic: u32,
    /// The cluster version the change made.
    version: u64,
    change: String,
    at_ns: u64,
    before: Vec<PodId>,
    after: Vec<PodId>,
    live: u64,
    moved: u64,
    on_removed: u64,
}

/// The backend a service flow reaches.
#[derive(Clone, Copy, Debug)]
struct FlowBackend {
    /// At its last packet, and the port that packet arrived on.
    current: PodId,
    port: u16,
    /// At its last packet while no change of the cluster was spreading, and the cluster version
    /// then: what a move is judged against.
    stable: PodId,
    version: u64,
}

/// The underlay's routing between two changes.
#[derive(Debug)]
struct Epoch {
    table: RoutingTable,
    /// What routing acted on (empty for the initial routing), when, and how many later changes
    /// were merged into it at [`ROUTING_EPOCHS_MAX`].
    what: String,
    at_ns: u64,
    merged: u32,
}

/// Which member a flow direction last took at one underlay node, and under which routing: eight
/// bytes per node and flow direction.
#[derive(Clone, Copy, Debug)]
struct Member {
    /// The link it left by; [`Member::UNSEEN`] before its first packet there.
    link: u32,
    /// The routing epoch (index into `Judge::routing`) of that packet.
    epoch: u16,
    /// A fingerprint of the frame's 5-tuple there: an overlay flow whose backend moved to
    /// another host travels the underlay as another flow.
    tuple: u16,
}

impl Member {
    const UNSEEN: Member = Member { link: u32::MAX, epoch: 0, tuple: 0 };
}

/// Each flow direction's [`Member`] at each node it left, kept by flow direction: a packet's
/// hops then touch one record, not one per node (a record per node and flow direction was a
/// cache miss at every hop, a twentieth of a run). A path has four nodes; every reroute of a
/// run together adds at most a handful, and past [`FlowNodes::INLINE`] they spill to a map.
#[derive(Debug, Default)]
struct HopRecords {
    /// By flow direction (`2 * flow + reply`).
    inline: Vec<FlowNodes>,
    /// (flow direction, node) past the inline ones.
    spilled: BTreeMap<(usize, u32), Member>,
}

/// The nodes a flow direction left, in the order it first did, and its member at each.
#[derive(Clone, Copy, Debug)]
struct FlowNodes {
    /// [`FlowNodes::EMPTY`] past the last.
    nodes: [u32; FlowNodes::INLINE],
    members: [Member; FlowNodes::INLINE],
}

impl FlowNodes {
    /// Nodes kept inline: host, a leaf of its pair, a spine, a leaf of the far pair, and the
    /// other members that reroutes bring.
    const INLINE: usize = 8;
    /// An unused node slot.
    const EMPTY: u32 = u32::MAX;
    const NONE: FlowNodes =
        FlowNodes { nodes: [Self::EMPTY; Self::INLINE], members: [Member::UNSEEN; Self::INLINE] };
}

impl HopRecords {
    /// The record of flow direction `index` at `node` ([`Member::UNSEEN`] if it never left it).
    fn member_mut(&mut self, index: usize, node: u32) -> &mut Member {
        if self.inline.len() <= index {
            self.inline.resize(index + 1, FlowNodes::NONE);
        }
        let HopRecords { inline, spilled } = self;
        let flow = &mut inline[index];
        match flow.nodes.iter().position(|&n| n == node || n == FlowNodes::EMPTY) {
            Some(slot) => {
                flow.nodes[slot] = node;
                &mut flow.members[slot]
            }
            None => spilled.entry((index, node)).or_insert(Member::UNSEEN),
        }
    }
}

/// A 16-bit fingerprint of a frame's 5-tuple.
fn fingerprint(frame: &[u8]) -> u16 {
    FiveTuple::from_ethernet(frame).map_or(0, |t| (t.hash(0) >> 48) as u16)
}

/// Marks a hop tag as read: a frame's tag is never zero once read, probe or not.
const TAG_READ: u64 = 1 << 63;
/// Marks a hop tag of a frame without a probe (not traffic of the scenario).
const TAG_NO_PROBE: u64 = 1 << 62;

/// What [`Judge::hop`] needs of a frame, read once when it is sent and carried by the fabric
/// from hop to hop as the frame's tag: its probe's flow and its 5-tuple's fingerprint (the
/// fabric rewrites neither).
pub(super) fn hop_tag(frame: &[u8]) -> u64 {
    match crate::traffic::Probe::find(frame) {
        Some(probe) => TAG_READ | (u64::from(probe.flow) << 16) | u64::from(fingerprint(frame)),
        None => TAG_READ | TAG_NO_PROBE,
    }
}

/// The flow and fingerprint in a tag from [`hop_tag`]; `None` for a frame without a probe.
pub(super) fn read_hop_tag(tag: u64) -> Option<(u32, u16)> {
    (tag & TAG_NO_PROBE == 0).then_some(((tag >> 16) as u32, tag as u16))
}

/// A flow direction's last ECMP choice among two or more members (none yet: no members).
#[derive(Clone, Copy, Debug, Default)]
struct LastChoice {
    node: u32,
    members: u16,
    chosen: u16,
    /// The fingerprint of the frame's 5-tuple, as in [`Member`].
    tuple: u16,
}

/// Live, moved and had-to-move flows of one underlay tier across one routing change, and the
/// share new members needed (summed over flows).
#[derive(Clone, Copy, Debug, Default)]
struct TierTotals {
    live: u64,
    moved: u64,
    on_removed: u64,
    needed: f64,
}

/// The recorder.
#[derive(Default)]
pub(super) struct Judge {
    isolation: bool,
    spread: bool,
    nat: bool,
    convergence: bool,
    /// Oracle verdicts for (source, destination, port, protocol), valid until the cluster changes;
    /// looked up on every delivered request, never iterated.
    #[allow(clippy::disallowed_types)]
    verdicts: std::collections::HashMap<VerdictKey, Result<(), String>, rustc_hash::FxBuildHasher>,
    /// Open gaps: flow → (since, reason).
    open_gaps: BTreeMap<u32, (SimTime, &'static str)>,
    /// Each service flow's backend, by flow id (flow ids are dense: indexes of the run's flows).
    backends: Vec<Option<FlowBackend>>,
    /// Changes of the cluster so far.
    version: u64,
    /// Until when the last change of the cluster spreads to the hosts.
    settles_at: SimTime,
    /// Flows per (traffic entry, backend).
    per_backend: BTreeMap<(u32, PodId), u64>,
    /// Each service traffic entry's backends now, sorted.
    members: BTreeMap<u32, Vec<PodId>>,
    /// Changes of a service's backends.
    service_changes: Vec<ServiceChange>,
    /// Per flow direction (indexed as `2 * flow + reply`) and node, the member it last took;
    /// and flows per member of each (node, group size), counted at their first packet.
    underlay_members: HopRecords,
    underlay: BTreeMap<(u32, u16), Vec<u64>>,
    /// The routing of each epoch: the initial one, then one per time routing acted on changes.
    routing: Vec<Epoch>,
    /// Per (epoch, tier, members before, members after): the flows the change disrupted.
    tier_totals: BTreeMap<(u16, NodeKind, u16, u16), TierTotals>,
    /// Per flow direction, its last ECMP choice among two or more; and flows per (first,
    /// second) choice of consecutive ones, per the two tiers (node kind, members) — `first *
    /// second members + second` indexes the cells.
    last_choice: Vec<LastChoice>,
    polarization: BTreeMap<(Tier, Tier), Vec<u64>>,
    /// Translated tuples of delivered requests and their flow: looked up on every delivery,
    /// never iterated, so its order cannot reach results.
    #[allow(clippy::disallowed_types)]
    translated: std::collections::HashMap<FiveTuple, u32, rustc_hash::FxBuildHasher>,
    /// Per disturbance window: (lost, last loss).
    losses: Vec<(u64, Option<SimTime>)>,
    pub(super) results: Judgements,
}

impl Judge {
    /// A recorder for the checks `scenario` asks for.
    pub(super) fn new(scenario: &Scenario) -> Judge {
        let mut judge = Judge::default();
        for check in &scenario.checks {
            match check.kind {
                CheckKind::Isolation { .. } => judge.isolation = true,
                CheckKind::Ecmp { .. } => judge.spread = true,
                CheckKind::Nat => {
                    judge.nat = true;
                    judge.spread = true;
                }
                CheckKind::Convergence { .. } => judge.convergence = true,
                _ => {}
            }
        }
        judge
    }

    /// Whether any check needs deliveries judged: plain runs skip the work.
    pub(super) fn active(&self) -> bool {
        self.isolation || self.spread || self.nat || self.convergence
    }

    /// Whether anything is recorded per underlay hop.
    pub(super) fn records_hops(&self) -> bool {
        self.spread
    }

    /// The run starts: the fabric's routing and each service traffic entry's backends, from
    /// which member changes are measured.
    pub(super) fn start(&mut self, fabric: &Fabric, members: Vec<(u32, Vec<PodId>)>) {
        if self.spread {
            self.routing.push(Epoch {
                table: fabric.routing().clone(),
                what: String::new(),
                at_ns: 0,
                merged: 0,
            });
            self.members = members.into_iter().collect();
        }
    }

    /// The cluster changed (`change`, at `now`; every host knows of it by `settles_at`): cached
    /// verdicts are stale, and a change of a service's backends (`members`: each service traffic
    /// entry's, now) starts a disruption.
    pub(super) fn cluster_changed(
        &mut self,
        now: SimTime,
        settles_at: SimTime,
        change: &str,
        members: Vec<(u32, Vec<PodId>)>,
    ) {
        self.verdicts.clear();
        self.version += 1;
        self.settles_at = self.settles_at.max(settles_at);
        if !self.spread {
            return;
        }
        for (traffic, after) in members {
            let before = self.members.insert(traffic, after.clone()).unwrap_or_default();
            if before != after {
                self.service_changes.push(ServiceChange {
                    traffic,
                    version: self.version,
                    change: change.to_string(),
                    at_ns: now.as_nanos(),
                    before,
                    after,
                    live: 0,
                    moved: 0,
                    on_removed: 0,
                });
            }
        }
    }

    /// Routing acted on `what` at `now`: a new epoch of underlay groups (several elements at
    /// once make one).
    pub(super) fn routing_changed(&mut self, now: SimTime, what: &str, fabric: &Fabric) {
        if !self.spread {
            return;
        }
        let full = self.routing.len() >= ROUTING_EPOCHS_MAX;
        let changed_before = self.routing.len() > 1;
        match self.routing.last_mut() {
            Some(epoch) if full => {
                epoch.table = fabric.routing().clone();
                epoch.merged += 1;
            }
            Some(epoch) if epoch.at_ns == now.as_nanos() && changed_before => {
                epoch.table = fabric.routing().clone();
                epoch.what.push_str(", ");
                epoch.what.push_str(what);
            }
            _ => self.routing.push(Epoch {
                table: fabric.routing().clone(),
                what: what.to_string(),
                at_ns: now.as_nanos(),
                merged: 0,
            }),
        }
    }

    /// Whether NAT findings are recorded (for the nat check).
    pub(super) fn tracks_nat(&self) -> bool {
        self.nat
    }

    /// Whether availability gaps are tracked (for the isolation check).
    pub(super) fn tracks_gaps(&self) -> bool {
        self.isolation
    }

    /// A request of flow `flow` (traffic `traffic`, to `target` on `target_port`) was delivered
    /// to pod `to` as `tuple` at `now`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn delivered(
        &mut self,
        now: SimTime,
        cluster: &Cluster,
        isolation: Isolation,
        traffic: (u32, &str),
        flow: u32,
        target: (std::net::Ipv4Addr, u16),
        service: bool,
        to: PodId,
        tuple: &FiveTuple,
    ) {
        if let Some((since, reason)) = self.open_gaps.remove(&flow) {
            self.results.gaps.push(Gap {
                traffic: traffic.1.to_string(),
                flow,
                from_ns: since.as_nanos(),
                duration_ns: (now - since).as_nanos(),
                reason,
                trace_flow: String::new(),
            });
        }
        if self.isolation {
            self.results.judged += 1;
            if let Err(cause) = self.verdict(cluster, isolation, tuple, to, target) {
                self.results.violations += 1;
                if self.results.violation_examples.len() < EXAMPLES_MAX {
                    self.results.violation_examples.push(Violation {
                        at_ns: now.as_nanos(),
                        flow: tuple.to_string(),
                        traffic: traffic.1.to_string(),
                        cause,
                        trace_flow: format!(
                            "{}:{}->{}:{}/{}",
                            tuple.src,
                            tuple.src_port,
                            target.0,
                            target.1,
                            if tuple.protocol == 17 { "udp" } else { "tcp" }
                        ),
                    });
                }
            }
        }
        if self.spread && service {
            self.reached(now, traffic.0, flow, to, tuple.dst_port);
        }
        if self.nat && service {
            match self.translated.insert(*tuple, flow) {
                Some(other) if other != flow => {
                    self.results.nat_collisions += 1;
                    if self.results.first_collision.is_none() {
                        self.results.first_collision =
                            Some(Finding { at_ns: now.as_nanos(), flow, trace_flow: String::new() });
                    }
                }
                _ => {}
            }
        }
    }

    /// Service flow `flow` of traffic entry `traffic` reached backend `to` on `port`. Its backend
    /// is compared with the one before only once the changes of the cluster have settled (hosts
    /// learn of a change over a while, and flows move when theirs does): across a change of its
    /// service's backends it is a live flow of that change (the last such change counts);
    /// otherwise it had no reason to move.
    fn reached(&mut self, now: SimTime, traffic: u32, flow: u32, to: PodId, port: u16) {
        let index = flow as usize;
        if self.backends.len() <= index {
            self.backends.resize(index + 1, None);
        }
        let Some(backend) = &mut self.backends[index] else {
            self.backends[index] = Some(FlowBackend { current: to, port, stable: to, version: self.version });
            *self.per_backend.entry((traffic, to)).or_default() += 1;
            return;
        };
        backend.current = to;
        backend.port = port;
        if now < self.settles_at {
            return;
        }
        let (before, version) = (backend.stable, backend.version);
        backend.stable = to;
        backend.version = self.version;
        let change = self
            .service_changes
            .iter_mut()
            .rev()
            .take_while(|c| c.version > version)
            .find(|c| c.traffic == traffic);
        match change {
            Some(change) => {
                change.live += 1;
                change.moved += u64::from(before != to);
                change.on_removed += u64::from(!change.after.contains(&before));
            }
            None => self.results.affinity_breaks += u64::from(before != to),
        }
    }

    /// A reply of flow `flow`, sent at `sent`, was delivered from another address or port than
    /// its request targeted; `trace_flow` is the reply as its server sent it.
    pub(super) fn misaddressed_reply(&mut self, sent: SimTime, flow: u32, trace_flow: String) {
        if self.results.first_misaddressed.is_none() {
            self.results.first_misaddressed = Some(Finding { at_ns: sent.as_nanos(), flow, trace_flow });
        }
    }

    /// The oracle on a flow from pod `from` to pod `to` (for a service: a backend) on `port`
    /// of `protocol`, calling `target`: may it pass?
    #[allow(clippy::too_many_arguments)] // the oracle's inputs, each needed
    pub(super) fn permits(
        &mut self,
        cluster: &Cluster,
        isolation: Isolation,
        from: std::net::Ipv4Addr,
        to: PodId,
        target: (std::net::Ipv4Addr, u16),
        port: u16,
        protocol: u8,
    ) -> bool {
        let tuple = FiveTuple { src: from, dst: cluster.pod(to).ip, protocol, src_port: 0, dst_port: port };
        self.verdict(cluster, isolation, &tuple, to, target).is_ok()
    }

    /// The oracle: may the packet `tuple`, delivered to `to`, pass?
    fn verdict(
        &mut self,
        cluster: &Cluster,
        isolation: Isolation,
        tuple: &FiveTuple,
        to: PodId,
        target: (std::net::Ipv4Addr, u16),
    ) -> Result<(), String> {
        let Some(from) = cluster.pod_by_ip(tuple.src) else { return Ok(()) };
        let protocol = match tuple.protocol {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            132 => Protocol::Sctp,
            _ => return Ok(()),
        };
        // NetworkPolicy judges the pod and port reached (after NAT); the uses model judges what
        // the client called (a service's ClusterIP, or a pod).
        let port = match isolation {
            Isolation::NetworkPolicy => tuple.dst_port,
            Isolation::UsesLabels => target.1,
        };
        self.verdicts
            .entry((from, to, port, tuple.protocol, target.0))
            .or_insert_with(|| match isolation {
                Isolation::NetworkPolicy => {
                    let verdict = netpol::evaluate(
                        cluster.policies(),
                        &netpol::Endpoint::Pod(cluster.view(from)),
                        &netpol::Endpoint::Pod(cluster.view(to)),
                        port,
                        protocol,
                    );
                    if verdict.allowed() { Ok(()) } else { Err(format!("NetworkPolicy: {verdict:?}")) }
                }
                Isolation::UsesLabels => {
                    let verdict = labels::evaluate(cluster, from, target.0, port, protocol);
                    if verdict.allowed() { Ok(()) } else { Err(format!("uses labels: {verdict:?}")) }
                }
            })
            .clone()
    }

    /// A request of flow `flow` was dropped for `reason` at `now`; `permitted` says whether the
    /// oracle lets its flow pass at all (dropping forbidden traffic is no gap, nor a loss).
    #[allow(clippy::too_many_arguments)] // a drop's circumstances, each needed
    pub(super) fn dropped(
        &mut self,
        now: SimTime,
        flow: u32,
        reason: &'static str,
        windows: &[FailureWindow],
        backend_live: Option<bool>,
        permitted: bool,
        to_removed_backend: bool,
    ) {
        if reason == "policy" || !permitted {
            return;
        }
        if self.isolation {
            self.open_gaps.entry(flow).or_insert((now, reason));
        }
        if self.nat {
            let settled = !windows.iter().any(|w| within(w, now));
            if (reason == "pod_deleted" || to_removed_backend) && settled {
                self.results.stale_backend_packets += 1;
                if self.results.first_stale.is_none() {
                    self.results.first_stale =
                        Some(Finding { at_ns: now.as_nanos(), flow, trace_flow: String::new() });
                }
            }
            let in_churn = windows.iter().any(|w| within(w, now) && is_change(w));
            if in_churn && backend_live == Some(true) && reason != "pod_deleted" {
                self.results.established_broken += 1;
                if self.results.first_broken.is_none() {
                    self.results.first_broken =
                        Some(Finding { at_ns: now.as_nanos(), flow, trace_flow: String::new() });
                }
            }
        }
        if self.convergence {
            if self.losses.len() < windows.len() {
                self.losses.resize(windows.len(), (0, None));
            }
            for (index, window) in windows.iter().enumerate() {
                if within(window, now) {
                    self.losses[index].0 += 1;
                    self.losses[index].1 = Some(now);
                }
            }
        }
    }

    /// The backend flow `flow` last reached, if any.
    pub(super) fn backend_of(&self, flow: u32) -> Option<PodId> {
        self.backend(flow).map(|b| b.current)
    }

    /// The backend flow `flow` last reached and the port its request arrived on, if any.
    pub(super) fn backend_port_of(&self, flow: u32) -> Option<(PodId, u16)> {
        self.backend(flow).map(|b| (b.current, b.port))
    }

    fn backend(&self, flow: u32) -> Option<&FlowBackend> {
        self.backends.get(flow as usize).and_then(Option::as_ref)
    }

    /// A frame of flow `flow` (with the reply bit for replies) leaves a host or switch as
    /// `transmit`: the member it took there.
    /// `tuple` is the fingerprint of the frame's 5-tuple ([`hop_tag`]).
    pub(super) fn hop(&mut self, fabric: &Fabric, transmit: &Transmit, flow: u32, tuple: u16) {
        let node = transmit.from.0 as usize;
        let (members, chosen) = (transmit.ecmp.members, transmit.ecmp.chosen);
        let index = 2 * (flow & !crate::traffic::REPLY_BIT) as usize
            + usize::from(flow & crate::traffic::REPLY_BIT != 0);
        // At most ROUTING_EPOCHS_MAX epochs: an index fits 16 bits.
        let epoch = self.routing.len().saturating_sub(1) as u16;
        let last = std::mem::replace(
            self.underlay_members.member_mut(index, node as u32),
            Member { link: transmit.link.0, epoch, tuple },
        );
        if last.link == Member::UNSEEN.link {
            if members >= 2 {
                let counts = self
                    .underlay
                    .entry((node as u32, members))
                    .or_insert_with(|| vec![0; usize::from(members)]);
                counts[usize::from(chosen)] += 1;
                self.polarize(fabric, index, transmit, tuple);
            }
        } else if last.tuple != tuple {
            // Another underlay flow now (the overlay flow moved): nothing to compare.
        } else if last.epoch == epoch {
            self.results.underlay_affinity_breaks += u64::from(last.link != transmit.link.0);
        } else {
            self.crossed(fabric, transmit, last, epoch);
        }
        if members >= 2 {
            if self.last_choice.len() <= index {
                self.last_choice.resize(index + 1, LastChoice::default());
            }
            self.last_choice[index] = LastChoice { node: node as u32, members, chosen, tuple };
        }
    }

    /// A flow direction's first choice at a node: with the choice before it on its path, one
    /// more flow in their tiers' table.
    fn polarize(&mut self, fabric: &Fabric, index: usize, transmit: &Transmit, tuple: u16) {
        let Some(&LastChoice { node, members: before, chosen: before_chosen, .. }) = self
            .last_choice
            .get(index)
            .filter(|c| c.members >= 2 && c.node != transmit.from.0 && c.tuple == tuple)
        else {
            return;
        };
        let topology = fabric.topology();
        let key =
            ((topology.kind(NodeId(node)), before), (topology.kind(transmit.from), transmit.ecmp.members));
        let width = usize::from(transmit.ecmp.members);
        let cells = self.polarization.entry(key).or_insert_with(|| vec![0; usize::from(before) * width]);
        cells[usize::from(before_chosen) * width + usize::from(transmit.ecmp.chosen)] += 1;
    }

    /// A flow direction's packet at a node whose routing changed since its last one there.
    fn crossed(&mut self, fabric: &Fabric, transmit: &Transmit, last: Member, epoch: u16) {
        let Some(destination) =
            FiveTuple::from_ethernet(&transmit.frame).and_then(|t| fabric.host_for(t.dst))
        else {
            return;
        };
        let topology = fabric.topology();
        let links = |table: &RoutingTable| -> Vec<u32> {
            let ports = topology.ports(transmit.from);
            table
                .next_hops(transmit.from, destination)
                .iter()
                .map(|&p| ports[usize::from(p)].link.0)
                .collect()
        };
        let before = links(&self.routing[usize::from(last.epoch)].table);
        let after = links(fabric.routing());
        if before == after {
            // Its group here did not change: the member should not have either.
            self.results.underlay_affinity_breaks += u64::from(last.link != transmit.link.0);
            return;
        }
        if before.len().max(after.len()) < 2 {
            return;
        }
        let added = after.iter().filter(|l| !before.contains(l)).count();
        let key = (epoch, topology.kind(transmit.from), before.len() as u16, after.len() as u16);
        let totals = self.tier_totals.entry(key).or_default();
        totals.live += 1;
        totals.moved += u64::from(last.link != transmit.link.0);
        totals.on_removed += u64::from(!after.contains(&last.link));
        totals.needed += added as f64 / after.len() as f64;
    }

    /// Closes open gaps at the end of the run and assembles the findings.
    pub(super) fn finish(
        mut self,
        end: SimTime,
        windows: &[FailureWindow],
        traffic_names: &[String],
        flow_traffic: impl Fn(u32) -> usize,
        node_name: impl Fn(u32) -> String,
        trace_flow: impl Fn(u32) -> String,
    ) -> Judgements {
        for (flow, (since, reason)) in std::mem::take(&mut self.open_gaps) {
            self.results.gaps.push(Gap {
                traffic: traffic_names[flow_traffic(flow)].clone(),
                flow,
                from_ns: since.as_nanos(),
                duration_ns: end.saturating_since(since).as_nanos(),
                reason,
                trace_flow: String::new(),
            });
        }
        for gap in &mut self.results.gaps {
            gap.trace_flow = trace_flow(gap.flow);
        }
        let findings = [
            &mut self.results.first_stale,
            &mut self.results.first_collision,
            &mut self.results.first_broken,
        ];
        for finding in findings.into_iter().flatten() {
            finding.trace_flow = trace_flow(finding.flow);
        }
        self.results.gaps.sort_by_key(|g| (g.from_ns, g.flow));
        let mut services: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        for (&(traffic, _), &count) in &self.per_backend {
            services.entry(traffic).or_default().push(count);
        }
        for (traffic, flows) in services {
            self.results
                .spreads
                .push(Spread { group: format!("service {}", traffic_names[traffic as usize]), flows });
        }
        for ((node, members), flows) in self.underlay {
            self.results
                .spreads
                .push(Spread { group: format!("{} ({members} next hops)", node_name(node)), flows });
        }
        for change in &self.service_changes {
            let added = change.after.iter().filter(|p| !change.before.contains(p)).count() as u64;
            let needed = (change.live * added).div_ceil(change.after.len().max(1) as u64);
            self.results.disruptions.push(disruption(
                (change.change.clone(), change.at_ns),
                format!("service {}", traffic_names[change.traffic as usize]),
                false,
                (change.before.len(), change.after.len()),
                (change.live, change.moved, change.on_removed, needed),
            ));
        }
        for (&(epoch, kind, before, after), totals) in &self.tier_totals {
            let epoch = &self.routing[usize::from(epoch)];
            let later = match epoch.merged {
                0 => String::new(),
                n => format!(" and {n} later changes"),
            };
            let (what, at_ns) = (format!("routing: {}{later}", epoch.what), epoch.at_ns);
            // Rounded to the nearest flow first: the shares are sums of fractions.
            let needed = (totals.needed * 1e9).round() / 1e9;
            self.results.disruptions.push(disruption(
                (what, at_ns),
                tier_name(kind).to_string(),
                true,
                (usize::from(before), usize::from(after)),
                (totals.live, totals.moved, totals.on_removed, needed.ceil() as u64),
            ));
        }
        self.results.disruptions.sort_by_key(|d| (d.at_ns, d.underlay));
        for (((first, first_members), (second, second_members)), cells) in self.polarization {
            let width = usize::from(second_members);
            self.results.polarization.push(Polarization {
                tiers: format!(
                    "{} ({first_members} next hops) -> {} ({second_members} next hops)",
                    tier_name(first),
                    tier_name(second)
                ),
                flows: cells.chunks(width).map(<[u64]>::to_vec).collect(),
            });
        }
        if self.convergence {
            self.losses.resize(windows.len(), (0, None));
            self.results.disturbances = windows
                .iter()
                .zip(&self.losses)
                .map(|(window, &(lost, last))| Disturbance {
                    target: window.target.clone(),
                    from_ns: window.from_ns,
                    lost,
                    recovered_after_ns: last.map_or(0, |t| t.as_nanos().saturating_sub(window.from_ns)),
                })
                .collect();
        }
        self.results
    }
}

/// A disruption record from its totals: (live, moved, on removed members, share new members
/// needed).
fn disruption(
    (change, at_ns): (String, u64),
    group: String,
    underlay: bool,
    (before, after): (usize, usize),
    (live, moved, on_removed, needed): (u64, u64, u64, u64),
) -> Disruption {
    let minimum = on_removed.max(needed).min(live);
    let fraction = |n: u64| if live == 0 { 0.0 } else { n as f64 / live as f64 };
    Disruption {
        change,
        at_ns,
        group,
        underlay,
        members_before: before as u32,
        members_after: after as u32,
        live_flows: live,
        moved,
        on_removed,
        minimum,
        moved_fraction: fraction(moved),
        minimum_fraction: fraction(minimum),
        ratio: (minimum > 0).then(|| moved as f64 / minimum as f64),
    }
}

/// A tier of the underlay, by the kind of its nodes.
fn tier_name(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::Host => "hosts",
        NodeKind::Leaf => "leaves",
        NodeKind::Spine => "spines",
    }
}

fn within(window: &FailureWindow, now: SimTime) -> bool {
    let now = now.as_nanos();
    window.from_ns <= now && window.until_ns.is_none_or(|until| now <= until)
}

/// Whether a window is a change of the cluster (not a fabric fault).
fn is_change(window: &FailureWindow) -> bool {
    ["scale ", "delete ", "restart ", "drain ", "apply "].iter().any(|verb| window.target.starts_with(verb))
}

#[cfg(test)]
mod tests {
    use super::*;
    use netsim_fabric::{EcmpSeeding, Element, FabricConfig, Forward};

    fn recorder() -> Judge {
        Judge { spread: true, ..Judge::default() }
    }

    fn finish(judge: Judge) -> Judgements {
        judge.finish(
            SimTime(1_000_000_000),
            &[],
            &["web".to_string()],
            |_| 0,
            |node| format!("node-{node}"),
            |flow| format!("flow-{flow}"),
        )
    }

    fn pods(ids: &[u32]) -> Vec<PodId> {
        ids.iter().map(|&id| PodId(id)).collect()
    }

    #[test]
    fn the_minimum_is_the_removed_flows_or_the_share_new_members_need() {
        let check = |members, (live, moved, on_removed, needed), minimum, ratio: Option<f64>| {
            let d =
                disruption(("c".into(), 0), "g".into(), false, members, (live, moved, on_removed, needed));
            assert_eq!((d.minimum, d.ratio), (minimum, ratio), "{d:?}");
        };
        // 4 -> 3: the removed member's 25 flows had to move; modulo hashing moved 75.
        check((4, 3), (100, 75, 25, 0), 25, Some(3.0));
        // 3 -> 4: a quarter of the flows, for an even spread; pinned flows moved none.
        check((3, 4), (100, 0, 0, 25), 25, Some(0.0));
        // A member replaced: its flows can fill the new one, so the larger of the two.
        check((4, 4), (100, 20, 20, 25), 25, Some(0.8));
        // Nothing had to move: no ratio (a move then is judged as unnecessary).
        check((4, 4), (0, 0, 0, 0), 0, None);
    }

    #[test]
    fn a_service_flow_is_compared_across_a_change_once_it_has_settled() {
        let mut judge = recorder();
        judge.members.insert(0, pods(&[1, 2, 3, 4]));
        let ms = |ms: u64| SimTime(ms * 1_000_000);
        // Eight flows, two per backend.
        for flow in 0..8 {
            judge.reached(ms(1), 0, flow, PodId(flow % 4 + 1), 8080);
        }
        judge.cluster_changed(ms(10), ms(20), "scale web to 3", vec![(0, pods(&[1, 2, 3]))]);
        // While hosts learn of it, flows may move back and forth: not judged yet.
        judge.reached(ms(15), 0, 0, PodId(3), 8080);
        // Settled: pod 4's flows (3 and 7) went to pod 1, and flow 1 left pod 2 needlessly.
        for flow in 0..8 {
            let to = match flow {
                3 | 7 => 1,
                1 => 3,
                other => other % 4 + 1,
            };
            judge.reached(ms(25), 0, flow, PodId(to), 8080);
        }
        // A change of another service's backends leaves this one's: moving is breaking affinity.
        judge.cluster_changed(ms(30), ms(40), "restart other", vec![(0, pods(&[1, 2, 3]))]);
        judge.reached(ms(45), 0, 2, PodId(1), 8080);
        let results = finish(judge);
        assert_eq!(results.affinity_breaks, 1);
        let [d] = results.disruptions.as_slice() else { panic!("{:?}", results.disruptions) };
        assert_eq!((d.change.as_str(), d.group.as_str()), ("scale web to 3", "service web"));
        assert_eq!((d.members_before, d.members_after), (4, 3));
        assert_eq!((d.live_flows, d.moved, d.on_removed, d.minimum), (8, 3, 2, 2));
        assert_eq!(d.ratio, Some(1.5));
    }

    /// A small fabric: four hosts on `uplinks` uplinks, two leaves per uplink, four spines.
    fn fabric(seeding: EcmpSeeding, uplinks: u32) -> Fabric {
        let config = FabricConfig {
            hosts: 4,
            leaves: 2 * uplinks,
            spines: 4,
            uplinks_per_host: uplinks,
            ecmp_seeding: seeding,
            ..FabricConfig::default()
        };
        Fabric::new(&config).expect("valid")
    }

    fn udp(fabric: &Fabric, from: u32, to: u32, port: u16) -> Vec<u8> {
        let topology = fabric.topology();
        let builder = etherparse::PacketBuilder::ethernet2([0; 6], [0; 6])
            .ipv4(topology.host_ip(NodeId(from)).octets(), topology.host_ip(NodeId(to)).octets(), 64)
            .udp(port, 5001);
        let mut bytes = Vec::new();
        builder.write(&mut bytes, &[0; 20]).expect("writing to a Vec cannot fail");
        bytes
    }

    /// Sends flow `flow` from host 0 to host 3 at `at`, recording its hops; returns the link it
    /// left its leaf by.
    fn send(judge: &mut Judge, fabric: &mut Fabric, flow: u32, at: SimTime) -> u32 {
        let frame = udp(fabric, 0, 3, 10_000 + flow as u16);
        let Forward::Transmit(first) = fabric.send(at, NodeId(0), frame) else { panic!("sent") };
        judge.hop(fabric, &first, flow, fingerprint(&first.frame));
        let Forward::Transmit(second) = fabric.arrive(first.arrive_at, first) else { panic!("forwarded") };
        judge.hop(fabric, &second, flow, fingerprint(&second.frame));
        second.link.0
    }

    #[test]
    fn an_underlay_change_is_measured_against_routing_before_and_after() {
        let mut fabric = fabric(EcmpSeeding::PerSwitch, 1);
        let mut judge = recorder();
        judge.start(&fabric, Vec::new());
        let spine = (0..fabric.topology().node_count() as u32)
            .map(NodeId)
            .find(|&n| fabric.topology().kind(n) == NodeKind::Spine)
            .expect("a spine");
        let flows = 400;
        let at = |flow: u32, round: u64| SimTime(round * 100_000_000 + u64::from(flow) * 10_000);
        let before: Vec<u32> =
            (0..flows).map(|flow| send(&mut judge, &mut fabric, flow, at(flow, 0))).collect();
        // The spine fails; routing acts on it after the detection delay.
        fabric.fail(SimTime(50_000_000), Element::Node(spine));
        fabric.handle_timeout(SimTime(100_000_000));
        while fabric.poll_event().is_some() {}
        judge.routing_changed(SimTime(100_000_000), "spine down", &fabric);
        let after: Vec<u32> =
            (0..flows).map(|flow| send(&mut judge, &mut fabric, flow, at(flow, 2))).collect();
        let gone: Vec<u32> = fabric.topology().ports(spine).iter().map(|p| p.link.0).collect();
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count() as u64;
        let on_removed = before.iter().filter(|b| gone.contains(b)).count() as u64;
        let results = finish(judge);
        assert_eq!(results.underlay_affinity_breaks, 0);
        let [d] = results.disruptions.as_slice() else { panic!("{:?}", results.disruptions) };
        assert_eq!(
            (d.group.as_str(), d.change.as_str(), d.underlay),
            ("leaves", "routing: spine down", true)
        );
        assert_eq!((d.members_before, d.members_after, d.live_flows), (4, 3, u64::from(flows)));
        assert_eq!((d.moved, d.on_removed, d.minimum), (moved, on_removed, on_removed));
        // Hashing modulo the group size: a flow stays only where 4 and 3 members agree.
        assert!(d.ratio.is_some_and(|r| (2.0..4.0).contains(&r)), "{d:?}");
    }

    #[test]
    fn one_hash_seed_everywhere_polarizes_consecutive_tiers() {
        for (seeding, polarized) in [(EcmpSeeding::Uniform, true), (EcmpSeeding::PerSwitch, false)] {
            let mut fabric = fabric(seeding, 2);
            let mut judge = recorder();
            judge.start(&fabric, Vec::new());
            for flow in 0..2000 {
                send(&mut judge, &mut fabric, flow, SimTime(u64::from(flow) * 10_000));
            }
            let results = finish(judge);
            let [table] = results.polarization.as_slice() else { panic!("{:?}", results.polarization) };
            assert_eq!(table.tiers, "hosts (2 next hops) -> leaves (4 next hops)");
            let (p, v) = crate::checks::chi_square_independence(&table.flows);
            // Uniform seeding: the host's hash mod 2 fixes the leaf's hash mod 4 to two spines.
            assert_eq!(
                table.flows.iter().flatten().filter(|&&n| n == 0).count() == 4,
                polarized,
                "{table:?}"
            );
            assert_eq!(p < 1e-6, polarized, "p = {p}, V = {v}, {table:?}");
            assert_eq!(v > 0.9, polarized, "p = {p}, V = {v}, {table:?}");
        }
    }

    #[test]
    fn hop_records_keep_every_node_of_a_flow_past_the_inline_ones() {
        let mut records = HopRecords::default();
        let nodes = (0..FlowNodes::INLINE as u32 + 3).map(|n| 100 + 7 * n).collect::<Vec<_>>();
        for (flow, direction) in [(3, 0), (3, 1), (40, 0)] {
            let index = 2 * flow + direction;
            for &node in &nodes {
                let record = records.member_mut(index, node);
                assert_eq!(record.link, Member::UNSEEN.link, "flow {index} at {node} is new");
                *record = Member { link: node + index as u32, epoch: 1, tuple: node as u16 };
            }
        }
        for (flow, direction) in [(3, 0), (3, 1), (40, 0)] {
            let index = 2 * flow + direction;
            for &node in nodes.iter().rev() {
                let record = *records.member_mut(index, node);
                assert_eq!(
                    (record.link, record.tuple),
                    (node + index as u32, node as u16),
                    "flow {index} at {node}"
                );
            }
        }
        assert_eq!(records.spilled.len(), 3 * 3, "three nodes past the inline ones, for each of three flows");
        assert_eq!(
            records.member_mut(5, 100).link,
            Member::UNSEEN.link,
            "another flow at a known node is new"
        );
    }
}
