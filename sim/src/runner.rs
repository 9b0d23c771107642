//! The runner: builds a simulation from a scenario and drives it to the end.
//!
//! One run is single-threaded and deterministic: the event loop pops the earliest event, hands
//! inputs to the sans-IO fabric, and schedules whatever comes back. Parallelism lives above this
//! level (many runs at once), never inside one.
//!
//! A run has two phases. Until the scenario's `duration`, traffic is generated and scheduled
//! failures happen. After it, nothing new starts, and the frames still on the wire are drained
//! so that every packet sent ends up delivered or dropped (with a reason): nothing is lost from
//! the accounting.

mod calico;
mod judge;
mod tracer;

use std::collections::{BTreeMap, BTreeSet};

use hdrhistogram::Histogram;
use std::net::Ipv4Addr;

use netsim_core::{SimDuration, SimTime, packet::FiveTuple};
use netsim_fabric::{Element, Fabric, FabricEvent, Forward, Hop, NodeId, Transmit};
use netsim_vrouter::overlay::{VROUTER_MAC, Vrouter, VrouterConfig};
use netsim_vrouter::{DataPlane, Forward as VrouterForward, InterfaceId, Port};
use rand_chacha::ChaCha8Rng;
use rand_core::Rng;

use crate::agent::Agent;
use crate::control_channel::{self, ControlPacket};
use crate::engine::{EventQueue, RngStreams, Slot, TraceHash};
use crate::scenario::{
    Change, ChurnRate, ClusterSpec, Dataplane, Endpoints, FailureWindow, FaultAction, Pattern, PodTarget,
    Scenario, TrafficSpec,
};
use crate::traffic::{Flow, FlowAddresses, Probe, REPLY_BIT, TcpFlags, build_frame_into, unit_interval};
use netsim_control::cluster::{Cluster, PodId};
use netsim_control::network_manager::{AgentMessage, NetworkManager, OverlayPlan};

pub use calico::BgpCounts;
pub use judge::{Disruption, Disturbance, Finding, Gap, Judgements, Polarization, Spread, Violation};

/// How many examples of unexplained drops a report keeps.
const DROP_EXAMPLES_MAX: usize = 10;
/// Most frame buffers kept for reuse.
const POOL_BUFFERS_MAX: usize = 4096;
/// How often (in events) the progress callback is called.
const PROGRESS_EVERY: u64 = 1 << 16;

/// What to record beyond the summary.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Record the fate of every packet (for exactly-once tests; costs memory per packet).
    pub record_fates: bool,
    /// Fabric ports to capture (`host-7:uplink0`), both directions; validated by the caller
    /// with [`resolve_capture`].
    pub captures: Vec<String>,
    /// Known bugs to plant (tests of the checks only).
    pub planted: netsim_core::planted::PlantedBugs,
    /// Follow one packet across every layer (`netsim trace`); the run stops at its fate.
    pub trace: Option<crate::trace::TraceRequest>,
}

/// Most frames kept per capture; later ones are counted, not kept.
pub const CAPTURE_FRAMES_MAX: usize = 20_000;

/// The frames seen on one port.
#[derive(Clone, Debug, Default)]
pub struct Capture {
    /// The port's name.
    pub port: String,
    /// (time, frame), in the order seen.
    pub frames: Vec<(SimTime, Vec<u8>)>,
    /// Frames not kept because the capture was full.
    pub truncated: u64,
}

/// What a capture name refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureTarget {
    /// A fabric port: a node and the port's index there (both directions of its link).
    Port(NodeId, u16),
    /// A pod's interface (`pod:NAMESPACE/NAME`): what the pod sends and receives.
    Pod(InterfaceId),
}

/// The port or pod a capture name refers to, or an error saying what can be captured.
pub fn resolve_capture(scenario: &Scenario, name: &str) -> Result<CaptureTarget, String> {
    if let Some(pod) = name.strip_prefix("pod:") {
        let Some(overlay) = scenario.dataplane.cluster_spec() else {
            return Err(format!("`{name}`: pods exist only with `dataplane = \"overlay\"` or `\"calico\"`"));
        };
        let (namespace, pod) = pod.split_once('/').unwrap_or(("default", pod));
        return overlay
            .cluster
            .pod_by_name(namespace, pod)
            .map(|id| CaptureTarget::Pod(InterfaceId(id.0)))
            .ok_or_else(|| format!("`{name}`: no pod `{namespace}/{pod}` in the manifests"));
    }
    let topology = netsim_fabric::Topology::build(&scenario.fabric).map_err(|e| e.to_string())?;
    topology.port_by_name(name).map(|(node, port)| CaptureTarget::Port(node, port)).ok_or_else(|| {
        format!("no port `{name}` in this fabric: write e.g. `host-7:uplink0`, `leaf-0:spine-1` or `pod:NAMESPACE/NAME`")
    })
}

/// Where a capture records frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tap {
    Link(NodeId, netsim_fabric::LinkId),
    Pod(InterfaceId),
}

/// Replies of a traffic entry whose pods answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplyCounts {
    /// Replies sent (one per delivered request).
    pub sent: u64,
    /// Replies delivered to the requesting pod.
    pub delivered: u64,
    /// Replies delivered from another address or port than the request targeted (for a
    /// service: not from its ClusterIP and port — a NAT fault).
    pub misaddressed: u64,
}

/// What became of one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fate {
    /// Delivered to its destination host.
    Delivered,
    /// Dropped, with the reason's name.
    Dropped(&'static str),
}

/// Packet counts of a run or of one traffic entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PacketCounts {
    /// Packets originated.
    pub sent: u64,
    /// Packets that reached their destination.
    pub delivered: u64,
    /// Packets dropped, by reason name (only reasons that occurred).
    pub dropped: BTreeMap<&'static str, u64>,
}

impl PacketCounts {
    /// Total packets dropped.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }
}

/// One-way latency of delivered packets, in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct LatencySummary {
    /// Smallest.
    pub min: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

/// Packets of one slice of simulated time, for plots over time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TimelineBucket {
    /// Start of the slice, in nanoseconds.
    pub from_ns: u64,
    /// Packets sent in it.
    pub sent: u64,
    /// Packets delivered in it.
    pub delivered: u64,
    /// Packets dropped in it.
    pub dropped: u64,
}

/// Slices of the run's duration in the timeline (the drain phase counts in the last).
pub const TIMELINE_BUCKETS: u64 = 100;

/// Quantiles at which the latency distribution is reported.
pub const LATENCY_QUANTILES: [f64; 13] =
    [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0];

/// A dropped packet outside every failure window: evidence for a failing check.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DropRecord {
    /// When, in nanoseconds.
    pub at_ns: u64,
    /// Why.
    pub reason: &'static str,
    /// Which layer dropped it: `fabric` or `vrouter`.
    pub layer: &'static str,
    /// Where.
    pub node: String,
    /// The packet's flow, as `src:port > dst:port proto`.
    pub flow: String,
}

/// A routing change the fabric acted on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RoutingChange {
    /// When routing acted, in nanoseconds.
    pub at_ns: u64,
    /// The element, by name.
    pub element: String,
    /// Its state as routing now sees it.
    pub up: bool,
}

/// Everything a run measured.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// Hash of every executed event; equal runs have equal hashes.
    pub trace_hash: String,
    /// Time of the last executed event.
    pub sim_time: SimTime,
    /// Events executed.
    pub events: u64,
    /// Whether the run stopped at its event bound instead of finishing.
    pub stopped_at_events_max: bool,
    /// Packet counts of the whole run.
    pub packets: PacketCounts,
    /// Packet counts per traffic entry, in scenario order.
    pub per_traffic: Vec<(String, PacketCounts)>,
    /// Latency of delivered packets.
    pub latency: LatencySummary,
    /// Windows in which losses are explained by failures.
    pub windows: Vec<FailureWindow>,
    /// Drops inside some failure window.
    pub drops_in_windows: u64,
    /// Drops outside every failure window.
    pub drops_outside_windows: u64,
    /// The first few drops outside every window.
    pub drop_examples: Vec<DropRecord>,
    /// Routing changes, in order.
    pub routing_changes: Vec<RoutingChange>,
    /// With [`RunOptions::record_fates`]: `(flow, seq, fate)` of every packet, in fate order
    /// (a reply's flow has [`crate::traffic::REPLY_BIT`] set).
    pub fates: Vec<(u32, u64, Fate)>,
    /// Replies per traffic entry (`None` for entries without replies).
    pub replies: Vec<Option<ReplyCounts>>,
    /// Drops by layer (`fabric`, `vrouter`) and reason.
    pub drops_by_layer: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
    /// Captured frames, one per requested port.
    pub captures: Vec<Capture>,
    /// Forwarding state when traffic ended: (routes, flow entries) summed over vrouters.
    pub overlay_state: Option<(usize, usize)>,
    /// The control channel's counters (overlay only).
    pub control: Option<ControlCounts>,
    /// BGP and felix counters (Calico only).
    pub bgp: Option<BgpCounts>,
    /// Sent, delivered and dropped packets per slice of the duration.
    pub timeline: Vec<TimelineBucket>,
    /// Latency at each of [`LATENCY_QUANTILES`] (empty if nothing was delivered), in ns.
    pub latency_quantiles: Vec<(f64, u64)>,
    /// What the isolation, ECMP, NAT and convergence checks judge (recorded only for the
    /// checks the scenario has).
    pub judgements: Judgements,
    /// With [`RunOptions::trace`]: the traced packet's steps and fate.
    pub trace: Option<crate::trace::PacketTrace>,
}

enum Event {
    Generate(u32),
    Arrive(Transmit),
    Fault(u32),
    FabricTimer,
    VrouterTimer(u32),
    Churn(u32),
    ChurnRate(u32),
    ControlSend(u32),
    BgpTimer(u32),
    FelixApply(u32),
    /// The traced packet is sent (`netsim trace` only).
    Trace,
}

/// Trace kinds: part of the trace hash definition.
mod kind {
    pub const GENERATE: u64 = 1;
    pub const ARRIVE: u64 = 2;
    pub const FAULT: u64 = 3;
    pub const FABRIC_TIMER: u64 = 4;
    pub const VROUTER_TIMER: u64 = 5;
    pub const CHURN: u64 = 6;
    pub const CONTROL_UPDATE: u64 = 7;
    pub const CHURN_RATE: u64 = 8;
    pub const BGP_TIMER: u64 = 9;
    pub const FELIX_APPLY: u64 = 10;
}

/// One update on the control channel.
struct Update {
    host: u32,
    /// Its place in the host's sequence: agents apply updates in order.
    sequence: u32,
    payload: Vec<u8>,
    /// Index into the control nodes of the one sending it.
    owner: usize,
    acked: bool,
    /// Whether its agent has all of it (acknowledged or not yet).
    received: bool,
    attempts: u32,
    /// The change that caused it.
    created: SimTime,
}

/// An agent's updates: the sequence number it applies next, and received updates waiting for
/// their predecessors, by sequence number (with the time of the change that caused each).
type AgentQueue = (u32, BTreeMap<u32, (Vec<AgentMessage>, SimTime)>);

/// Retransmission timeout of the control channel.
const CONTROL_RTO: SimDuration = SimDuration::from_millis(5);

/// Control-channel counters for results.json.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ControlCounts {
    /// Updates sent (one per host per change).
    pub updates: u64,
    /// Agent messages carried.
    pub messages: u64,
    /// Datagrams sent, retransmissions included.
    pub datagrams: u64,
    /// Bytes of update payload sent, retransmissions included.
    pub bytes: u64,
    /// Datagrams sent again because no acknowledgement came in time.
    pub retransmissions: u64,
    /// Control datagrams the fabric lost.
    pub lost: u64,
    /// Updates taken over by another control node because theirs was down.
    pub failovers: u64,
    /// Updates applied by their agents.
    pub applied: u64,
    /// Longest time from a change to its application at a host, in nanoseconds.
    pub convergence_ns_max: u64,
}

/// The overlay's per-run state: a vrouter and an agent per host, the cluster as it changes,
/// and the control plane's programming in flight.
struct Overlay {
    vrouters: Vec<Vrouter>,
    agents: Vec<Agent>,
    /// Scheduled timer of each vrouter, if any.
    timers: Vec<Option<SimTime>>,
    /// Host, address and MAC of each pod, by pod id.
    pods: Vec<(NodeId, Ipv4Addr, [u8; 6])>,
    /// The cluster now (churn changes it).
    cluster: Cluster,
    manager: NetworkManager,
    /// The programming every host is converging to.
    plan: OverlayPlan,
    host_ips: Vec<Ipv4Addr>,
    /// The hosts running the control nodes, in order of preference.
    control_nodes: Vec<NodeId>,
    /// Every update sent to an agent, by id.
    updates: Vec<Update>,
    /// Chunks received so far, by update id.
    reassembly: BTreeMap<u32, Vec<Option<Vec<u8>>>>,
    /// Per host: the next update sequence number to apply, and complete updates waiting for
    /// their predecessors (by sequence number).
    agent_queues: Vec<AgentQueue>,
    /// Per host: the sequence number of the next update to send.
    next_sequence: Vec<u32>,
    control: ControlCounts,
    /// Draws of the per-host propagation jitter.
    jitter: ChaCha8Rng,
    /// The Calico data plane and its control plane, instead of vrouters and agents.
    calico: Option<calico::CalicoState>,
    /// The MAC pods send to: their gateway's.
    gateway_mac: [u8; 6],
    /// The layer name of the hosts' drops: `vrouter` or `calico`.
    layer: &'static str,
}

impl Overlay {
    /// The data plane of `host`.
    fn plane(&mut self, host: usize) -> &mut dyn DataPlane {
        match &mut self.calico {
            Some(calico) => calico::plane(calico, host),
            None => &mut self.vrouters[host],
        }
    }
}

struct Simulation<'a> {
    scenario: &'a Scenario,
    options: RunOptions,
    fabric: Fabric,
    queue: EventQueue<Event>,
    flows: Vec<Flow>,
    arrivals: Vec<ChaCha8Rng>,
    timers: BTreeSet<SimTime>,
    pool: Vec<Vec<u8>>,
    trace: TraceHash,
    now: SimTime,
    end: SimTime,
    packets: PacketCounts,
    per_traffic: Vec<PacketCounts>,
    latency: Histogram<u64>,
    windows: Vec<FailureWindow>,
    drops_in_windows: u64,
    drops_outside_windows: u64,
    drop_examples: Vec<DropRecord>,
    routing_changes: Vec<RoutingChange>,
    fates: Vec<(u32, u64, Fate)>,
    events: u64,
    overlay: Option<Overlay>,
    replies: Vec<Option<ReplyCounts>>,
    drops_by_layer: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
    captures: Vec<(Tap, Capture)>,
    overlay_state: Option<(usize, usize)>,
    churn_streams: Vec<ChaCha8Rng>,
    timeline: Vec<TimelineBucket>,
    judge: judge::Judge,
    tracer: Option<tracer::Tracer>,
}

/// The gap to a churn process's next event: exponential with its mean.
fn churn_gap(churn: &ChurnRate, stream: &mut ChaCha8Rng) -> SimDuration {
    // Validated positive.
    let mean = churn.rate.interval_ns().expect("a positive churn rate") as f64;
    SimDuration::from_nanos(libm::round(-libm::log(unit_interval(stream.next_u64())) * mean) as u64)
}

/// Runs `scenario` to completion. `progress` is called now and then with the simulated time
/// reached (for progress bars; it cannot influence the run).
pub fn run(scenario: &Scenario, options: RunOptions, progress: &mut dyn FnMut(SimTime)) -> RunReport {
    let streams = RngStreams::new(scenario.seed);
    let mut fabric_config = scenario.fabric.clone();
    fabric_config.seed = streams.seed_for("fabric/ecmp");
    // The scenario was validated against this very configuration.
    let fabric = Fabric::new(&fabric_config).expect("validated fabric configuration builds");
    let mut simulation = Simulation {
        scenario,
        options,
        fabric,
        queue: EventQueue::new(),
        flows: Vec::new(),
        arrivals: Vec::new(),
        timers: BTreeSet::new(),
        pool: Vec::new(),
        trace: TraceHash::default(),
        now: SimTime::ZERO,
        end: SimTime::ZERO + scenario.duration,
        packets: PacketCounts::default(),
        per_traffic: vec![PacketCounts::default(); scenario.traffic.len()],
        // 1 ns to 1 hour at 3 significant digits: bounded memory whatever the run.
        latency: Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds"),
        windows: scenario.failure_windows(),
        drops_in_windows: 0,
        drops_outside_windows: 0,
        drop_examples: Vec::new(),
        routing_changes: Vec::new(),
        fates: Vec::new(),
        events: 0,
        overlay: None,
        replies: scenario.traffic.iter().map(|t| t.reply_size.map(|_| ReplyCounts::default())).collect(),
        drops_by_layer: BTreeMap::new(),
        captures: Vec::new(),
        overlay_state: None,
        churn_streams: Vec::new(),
        judge: judge::Judge::new(scenario),
        tracer: None,
        timeline: (0..TIMELINE_BUCKETS)
            .map(|i| TimelineBucket {
                from_ns: scenario.duration.as_nanos() / TIMELINE_BUCKETS * i,
                ..TimelineBucket::default()
            })
            .collect(),
    };
    for name in &simulation.options.captures.clone() {
        // The caller validated the names.
        let tap = match resolve_capture(scenario, name).expect("a validated capture port") {
            CaptureTarget::Port(node, port) => {
                Tap::Link(node, simulation.fabric.topology().ports(node)[usize::from(port)].link)
            }
            CaptureTarget::Pod(interface) => Tap::Pod(interface),
        };
        simulation.captures.push((tap, Capture { port: name.clone(), ..Capture::default() }));
    }
    match &scenario.dataplane {
        Dataplane::Overlay(spec) => {
            let mut overlay = build_overlay(spec, &simulation.fabric, &streams, true);
            for vrouter in &mut overlay.vrouters {
                vrouter.plant(simulation.options.planted);
            }
            simulation.overlay = Some(overlay)
        }
        Dataplane::Calico(spec) => {
            let mut overlay = build_overlay(spec, &simulation.fabric, &streams, false);
            overlay.calico =
                Some(calico::build(spec, &mut simulation.fabric, &streams, simulation.options.planted));
            overlay.gateway_mac = netsim_vrouter::calico::CALICO_GATEWAY_MAC;
            overlay.layer = "calico";
            simulation.overlay = Some(overlay);
            simulation.start_bgp();
        }
        Dataplane::Underlay => {}
    }
    let members = simulation.service_members();
    simulation.judge.start(&simulation.fabric, members);
    simulation.tracer = simulation.options.trace.take().map(tracer::Tracer::new);
    simulation.schedule_trace();
    simulation.schedule_traffic(&streams);
    for (index, event) in scenario.events.iter().enumerate() {
        simulation.queue.push(event.at, Event::Fault(index as u32));
    }
    for (index, churn) in scenario.churn.iter().enumerate() {
        simulation.queue.push(churn.at, Event::Churn(index as u32));
    }
    for (index, churn) in scenario.churn_rates.iter().enumerate() {
        let mut stream = streams.stream(&format!("churn/{index}"));
        let first = churn.start + churn_gap(churn, &mut stream);
        simulation.churn_streams.push(stream);
        if first < churn.stop {
            simulation.queue.push(first, Event::ChurnRate(index as u32));
        }
    }
    let stopped = simulation.run_loop(progress);
    simulation.report(stopped)
}

impl Simulation<'_> {
    fn schedule_traffic(&mut self, streams: &RngStreams) {
        for (index, spec) in self.scenario.traffic.iter().enumerate() {
            let mut pairs = streams.stream(&format!("traffic/{}/pairs", spec.name));
            let mut arrivals = streams.stream(&format!("traffic/{}/arrivals", spec.name));
            // Validation guarantees a positive per-flow rate.
            let interval_ns = spec.rate.split(spec.flows).interval_ns().expect("positive per-flow rate");
            for _ in 0..spec.flows {
                let id = self.flows.len() as u32;
                let src_port = 10_000 + (id % 50_000) as u16;
                let flow = self.new_flow(index, spec, &mut pairs, src_port, interval_ns);
                let first = match spec.pattern {
                    Pattern::Once => spec.start,
                    Pattern::Constant => {
                        spec.start + SimDuration::from_nanos(arrivals.next_u64() % interval_ns)
                    }
                    Pattern::Poisson => spec.start + flow.gap(unit_interval(arrivals.next_u64())),
                };
                if first < flow.stop {
                    self.queue.push(first, Event::Generate(id));
                }
                self.flows.push(flow);
            }
            self.arrivals.push(arrivals);
        }
    }

    /// A flow of traffic entry `index` between endpoints drawn from `pairs`.
    fn new_flow(
        &self,
        index: usize,
        spec: &TrafficSpec,
        pairs: &mut ChaCha8Rng,
        src_port: u16,
        interval_ns: u64,
    ) -> Flow {
        let pick = |pairs: &mut ChaCha8Rng, len: usize| (pairs.next_u64() % len as u64) as usize;
        let (src, dst, interface, addresses) = match &spec.endpoints {
            Endpoints::Hosts { from, to } => {
                let mut src_index = pick(pairs, from.len());
                let mut dst_index = pick(pairs, to.len());
                if from[src_index] == to[dst_index] {
                    // Host lists are sorted and distinct, so the neighbour in a list of two or
                    // more differs; validation guarantees one of the lists has two.
                    if to.len() > 1 {
                        dst_index = (dst_index + 1) % to.len();
                    } else {
                        src_index = (src_index + 1) % from.len();
                    }
                }
                let (src, dst) = (from[src_index], to[dst_index]);
                debug_assert_ne!(src, dst);
                let topology = self.fabric.topology();
                let addresses = FlowAddresses {
                    src_mac: [0; 6],
                    dst_mac: [0; 6],
                    src_ip: topology.host_ip(src),
                    dst_ip: topology.host_ip(dst),
                    src_port,
                    dst_port: spec.port,
                    protocol: spec.protocol,
                };
                (src, Some(dst), None, addresses)
            }
            Endpoints::Pods { from, to } => {
                let overlay = self.overlay.as_ref().expect("pod traffic is validated to have an overlay");
                let pod = from[pick(pairs, from.len())];
                let (host, ip, mac) = overlay.pods[pod.0 as usize];
                let dst_ip = match to {
                    PodTarget::Service { service } => {
                        let spec = self.scenario.dataplane.cluster_spec().expect("checked above");
                        spec.cluster.services()[*service]
                            .cluster_ip
                            .expect("validated: the service has a ClusterIP")
                    }
                    PodTarget::Pods(pods) => {
                        let mut target = pods[pick(pairs, pods.len())];
                        if target == pod {
                            // Validated: not the only destination.
                            target = *pods.iter().find(|&&p| p != pod).unwrap_or(&target);
                        }
                        overlay.pods[target.0 as usize].1
                    }
                };
                let addresses = FlowAddresses {
                    src_mac: mac,
                    dst_mac: overlay.gateway_mac,
                    src_ip: ip,
                    dst_ip,
                    src_port,
                    dst_port: spec.port,
                    protocol: spec.protocol,
                };
                (host, None, Some(InterfaceId(pod.0)), addresses)
            }
        };
        Flow::new(
            index as u32,
            src,
            dst,
            interface,
            addresses,
            spec.size_bytes,
            spec.pattern,
            interval_ns,
            spec.stop,
        )
    }

    // ANCHOR: event_loop
    /// Pops and executes events until none is left; `true` if it stopped at the event bound.
    fn run_loop(&mut self, progress: &mut dyn FnMut(SimTime)) -> bool {
        while let Some((time, slot)) = self.queue.pop_slot() {
            if self.events == self.scenario.events_max {
                self.queue.release(slot);
                return true;
            }
            self.events += 1;
            self.now = time;
            // Most events are frames reaching the end of a link: handled where they wait.
            let event = if self.tracer.is_none() && matches!(self.queue.get_mut(slot), Event::Arrive(_)) {
                self.arrive_in_place(time, slot);
                None
            } else {
                Some(self.queue.release(slot))
            };
            if let Some(event) = event {
                self.dispatch(time, event);
            }
            if let Some(tracer) = &self.tracer
                && tracer.done()
            {
                break;
            }
            if self.overlay_state.is_none() && time >= self.end {
                self.record_overlay_state();
            }
            if self.events.is_multiple_of(PROGRESS_EVERY) {
                progress(self.now.min(self.end));
            }
        }
        progress(self.end);
        if self.overlay_state.is_none() {
            self.record_overlay_state();
        }
        false
    }

    /// A frame reaches the end of its link: the same `Transmit`, left in its slot of the
    /// queue, goes on to its next link (and is scheduled again), or out of the fabric.
    /// [`Simulation::dispatch`]'s `Event::Arrive` does the same with a frame it owns.
    fn arrive_in_place(&mut self, time: SimTime, slot: Slot) {
        let Event::Arrive(transmit) = self.queue.get_mut(slot) else {
            unreachable!("called for arrivals only")
        };
        note_arrival(&mut self.captures, &mut self.trace, time, transmit);
        match self.fabric.forward(time, transmit) {
            Hop::Transmit => {
                note_departure(&mut self.judge, &self.fabric, &mut self.captures, time, transmit);
                let at = transmit.arrive_at;
                self.queue.requeue(slot, at);
            }
            hop => {
                let Event::Arrive(transmit) = self.queue.release(slot) else {
                    unreachable!("the slot held an arrival")
                };
                self.handle(transmit.into_forward(hop));
            }
        }
    }

    /// Executes an event taken out of the queue.
    fn dispatch(&mut self, time: SimTime, event: Event) {
        match event {
            Event::Generate(flow) => self.generate(flow),
            Event::Arrive(transmit) => {
                note_arrival(&mut self.captures, &mut self.trace, time, &transmit);
                let forward = self.fabric.arrive(time, transmit);
                self.handle(forward);
            }
            Event::Fault(index) => {
                self.trace.record(time, kind::FAULT, &[u64::from(index)]);
                let fault = &self.scenario.events[index as usize];
                match fault.action {
                    FaultAction::Fail => self.fabric.fail(time, fault.element),
                    FaultAction::Recover => self.fabric.recover(time, fault.element),
                }
                self.calico_fault(fault.element, fault.action == FaultAction::Recover);
                self.schedule_fabric_timer();
            }
            Event::FabricTimer => {
                self.trace.record(time, kind::FABRIC_TIMER, &[]);
                self.timers.remove(&time);
                self.fabric.handle_timeout(time);
                self.drain_fabric_events();
                self.schedule_fabric_timer();
            }
            Event::Churn(index) => {
                self.trace.record(time, kind::CHURN, &[u64::from(index)]);
                let change = self.scenario.churn[index as usize].change.clone();
                self.apply_change(&change);
            }
            Event::ChurnRate(index) => {
                self.trace.record(time, kind::CHURN_RATE, &[u64::from(index)]);
                self.churn_at_rate(index as usize);
            }
            Event::ControlSend(update) => {
                self.trace.record(time, kind::CONTROL_UPDATE, &[u64::from(update)]);
                self.send_update(update);
            }
            Event::VrouterTimer(host) => {
                self.trace.record(time, kind::VROUTER_TIMER, &[u64::from(host)]);
                if let Some(overlay) = &mut self.overlay {
                    overlay.timers[host as usize] = None;
                    overlay.plane(host as usize).handle_timeout(time);
                }
                self.schedule_vrouter_timer(host);
            }
            Event::BgpTimer(host) => self.bgp_timer(host),
            Event::FelixApply(update) => self.felix_apply(update),
            Event::Trace => self.inject_trace(),
        }
    }

    fn record_overlay_state(&mut self) {
        if let Some(calico) = self.overlay.as_ref().and_then(|o| o.calico.as_ref()) {
            self.overlay_state = Some(calico::state_size(calico));
        } else if let Some(overlay) = &self.overlay {
            let routes = overlay.vrouters.iter().map(Vrouter::route_count).sum();
            let flows = overlay.vrouters.iter().map(|v| v.flows().len()).sum();
            self.overlay_state = Some((routes, flows));
        }
    }
    // ANCHOR_END: event_loop

    /// Sends the next packet of `flow` and schedules the one after.
    fn generate(&mut self, id: u32) {
        let now = self.now;
        if let Some(interface) = self.flows[id as usize].interface
            && self.pod_deleted(interface)
        {
            // A deleted pod sends nothing more: its flows end.
            self.trace.record(now, kind::GENERATE, &[u64::from(id), u64::MAX]);
            return;
        }
        let mut frame = self.pool.pop().unwrap_or_default();
        let flow = &mut self.flows[id as usize];
        let seq = flow.sent;
        flow.next_packet(id, now, &mut frame);
        let (src, traffic, interface) = (flow.src, flow.traffic as usize, flow.interface);
        let gap = match flow.pattern {
            Pattern::Once => SimDuration::from_nanos(u64::MAX / 2),
            Pattern::Constant => flow.gap(1.0),
            Pattern::Poisson => flow.gap(unit_interval(self.arrivals[traffic].next_u64())),
        };
        let next = now + gap;
        let more = next < flow.stop && next < self.end;
        self.trace.record(now, kind::GENERATE, &[u64::from(id), seq]);
        self.packets.sent += 1;
        self.bucket().sent += 1;
        self.per_traffic[traffic].sent += 1;
        if more {
            self.queue.push(next, Event::Generate(id));
        }
        match interface {
            // A pod on a failed host is down with it: what it would send is lost there.
            Some(_) if !self.fabric.is_up(Element::Node(src)) => {
                self.record_drop("fabric", "node_down", src, frame)
            }
            Some(interface) => self.send_from_pod(src, interface, frame),
            None => {
                let forward = self.fabric.send(now, src, frame);
                self.handle(forward);
            }
        }
    }

    /// A pod on `host` sends `frame` through its interface.
    fn send_from_pod(&mut self, host: NodeId, interface: InterfaceId, frame: Vec<u8>) {
        self.capture_pod(interface, &frame);
        if self.tracer.is_some() {
            self.trace_plane(host, Port::Interface(interface), &frame);
        }
        let overlay = self.overlay.as_mut().expect("pods exist only with an overlay");
        let forward =
            overlay.plane(host.0 as usize).handle_packet(self.now, Port::Interface(interface), frame);
        self.schedule_vrouter_timer(host.0);
        self.handle_vrouter(host, forward);
    }

    /// Acts on the fate a host's vrouter gave a frame.
    fn handle_vrouter(&mut self, host: NodeId, forward: VrouterForward) {
        if self.tracer.is_some() {
            self.trace_plane_fate(host, &forward);
        }
        match forward {
            VrouterForward::Fabric(frame) => {
                let forward = self.fabric.send(self.now, host, frame);
                self.handle(forward);
            }
            VrouterForward::Interface(interface, frame) => self.deliver_to_pod(interface, frame),
            VrouterForward::Host(frame) => {
                // The host's own stack: a delivery, but nobody answers.
                if let Some(probe) = Probe::read(&frame)
                    && let Some(flow) = self.flows.get((probe.flow & !REPLY_BIT) as usize)
                {
                    let traffic = flow.traffic as usize;
                    self.count_delivery(&probe, traffic);
                }
                self.recycle(frame);
            }
            VrouterForward::Drop { reason, frame } => {
                let layer = self.overlay.as_ref().map_or("vrouter", |o| o.layer);
                self.record_drop(layer, reason.as_str(), host, frame)
            }
        }
    }

    /// A pod receives `frame`: the packet is delivered; a request is answered if its traffic
    /// entry asks for replies.
    fn deliver_to_pod(&mut self, interface: InterfaceId, frame: Vec<u8>) {
        self.capture_pod(interface, &frame);
        if self.tracer.is_some() && self.trace_delivery(interface, &frame) {
            self.recycle(frame);
            return;
        }
        if self.pod_deleted(interface) {
            // The vrouter has not yet learnt that the pod is gone: the packet is lost with it.
            let host =
                self.overlay.as_ref().expect("pods exist only with an overlay").pods[interface.0 as usize].0;
            self.record_drop("pod", "pod_deleted", host, frame);
            return;
        }
        let Some(probe) = Probe::read(&frame) else {
            self.recycle(frame);
            return;
        };
        let is_reply = probe.flow & REPLY_BIT != 0;
        let flow_id = probe.flow & !REPLY_BIT;
        let Some(flow) = self.flows.get(flow_id as usize) else {
            self.recycle(frame);
            return;
        };
        let traffic = flow.traffic as usize;
        let target = (flow.addresses.dst_ip, flow.addresses.dst_port);
        self.count_delivery(&probe, traffic);
        if !is_reply
            && self.judge.active()
            && let Some(spec) = self.scenario.dataplane.cluster_spec()
            && let Some(tuple) = FiveTuple::from_ethernet(&frame)
        {
            let overlay = self.overlay.as_ref().expect("pods exist only with a cluster");
            let service = matches!(
                self.scenario.traffic[traffic].endpoints,
                Endpoints::Pods { to: PodTarget::Service { .. }, .. }
            );
            self.judge.delivered(
                self.now,
                &overlay.cluster,
                spec.isolation,
                (traffic as u32, &self.scenario.traffic[traffic].name),
                flow_id,
                target,
                service,
                PodId(interface.0),
                &tuple,
            );
        }
        if is_reply {
            // The reply must come from exactly where the request went.
            let from_target = FiveTuple::from_ethernet(&frame).is_some_and(|t| (t.src, t.src_port) == target);
            if let Some(replies) = &mut self.replies[traffic] {
                replies.delivered += 1;
                replies.misaddressed += u64::from(!from_target);
            }
            if !from_target && self.judge.tracks_nat() {
                // The reply as its server sent it: from the backend its request reached (else
                // the pod it targeted) back to the client.
                let cluster = &self.overlay.as_ref().expect("pods exist only with an overlay").cluster;
                let server = match self.judge.backend_port_of(flow_id) {
                    Some((pod, port)) => (cluster.pod(pod).ip, port),
                    None => target,
                };
                let a = &self.flows[flow_id as usize].addresses;
                let protocol = if a.protocol == 17 { "udp" } else { "tcp" };
                let reply = format!("{}:{}->{}:{}/{protocol}", server.0, server.1, a.src_ip, a.src_port);
                self.judge.misaddressed_reply(probe.sent_at, flow_id, reply);
            }
            self.recycle(frame);
            return;
        }
        let Some(reply_size) = self.scenario.traffic[traffic].reply_size else {
            self.recycle(frame);
            return;
        };
        // The answering pod swaps the request's addresses and ports.
        let Some(tuple) = FiveTuple::from_ethernet(&frame) else {
            self.recycle(frame);
            return;
        };
        let overlay = self.overlay.as_ref().expect("pods exist only with an overlay");
        let (host, _, mac) = overlay.pods[interface.0 as usize];
        let addresses = FlowAddresses {
            src_mac: mac,
            dst_mac: overlay.gateway_mac,
            src_ip: tuple.dst,
            dst_ip: tuple.src,
            src_port: tuple.dst_port,
            dst_port: tuple.src_port,
            protocol: tuple.protocol,
        };
        let reply_probe = Probe { flow: flow_id | REPLY_BIT, seq: probe.seq, sent_at: self.now };
        let mut reply = self.pool.pop().unwrap_or_default();
        build_frame_into(&mut reply, &addresses, reply_size as usize, &reply_probe, false, TcpFlags::AckPsh);
        self.recycle(frame);
        self.packets.sent += 1;
        self.bucket().sent += 1;
        self.per_traffic[traffic].sent += 1;
        if let Some(replies) = &mut self.replies[traffic] {
            replies.sent += 1;
        }
        self.send_from_pod(host, interface, reply);
    }

    /// Whether the isolation oracle lets flow `id` (from the pod on `interface`) reach what it
    /// calls: a pod, or a service through `backend` (the one it last reached, else any live one).
    fn flow_permitted(&mut self, id: u32, interface: InterfaceId, backend: Option<PodId>) -> bool {
        if !self.judge.tracks_gaps() {
            return true;
        }
        let (Some(spec), Some(overlay)) = (self.scenario.dataplane.cluster_spec(), self.overlay.as_ref())
        else {
            return true;
        };
        let flow = &self.flows[id as usize];
        let cluster = &overlay.cluster;
        let from = cluster.pod(PodId(interface.0)).ip;
        let target = (flow.addresses.dst_ip, flow.addresses.dst_port);
        let protocol = flow.addresses.protocol;
        let candidates: Vec<(PodId, u16)> = match cluster.pod_by_ip(target.0) {
            Some(pod) => vec![(pod, target.1)],
            None => cluster
                .service_by_ip(target.0)
                .and_then(|service| {
                    let (index, _) =
                        service.service.ports.iter().enumerate().find(|(_, p)| p.port == target.1)?;
                    Some(service.backends[index].iter().map(|b| (b.pod, b.port)).collect())
                })
                .unwrap_or_default(),
        };
        // The backend it last reached, if it still is one; else any current backend.
        let last: Vec<(PodId, u16)> =
            candidates.iter().copied().filter(|&(p, _)| Some(p) == backend).collect();
        let chosen = if last.is_empty() { candidates } else { last };
        chosen
            .into_iter()
            .any(|(pod, port)| self.judge.permits(cluster, spec.isolation, from, pod, target, port, protocol))
    }

    /// Each traffic entry that calls a service, with the service's backends for its port now
    /// (sorted): the groups whose member changes the `ecmp` check measures.
    fn service_members(&self) -> Vec<(u32, Vec<PodId>)> {
        let Some(overlay) = &self.overlay else { return Vec::new() };
        let services = overlay.cluster.services();
        self.scenario
            .traffic
            .iter()
            .enumerate()
            .filter_map(|(index, spec)| {
                let Endpoints::Pods { to: PodTarget::Service { service }, .. } = &spec.endpoints else {
                    return None;
                };
                let state = services.get(*service)?;
                let port = state.service.ports.iter().position(|p| p.port == spec.port)?;
                let mut pods: Vec<PodId> = state.backends.get(port)?.iter().map(|b| b.pod).collect();
                pods.sort();
                pods.dedup();
                Some((index as u32, pods))
            })
            .collect()
    }

    fn pod_deleted(&self, interface: InterfaceId) -> bool {
        self.overlay.as_ref().is_some_and(|o| o.cluster.is_deleted(PodId(interface.0)))
    }

    /// Applies a change to the cluster: the network manager re-plans, and each host whose
    /// programming changes is sent the difference, arriving after the propagation delay (plus a
    /// per-host jitter: hosts learn at different times, so transient states exist).
    /// Picks a live pod of a `[[churn]]` process at random, restarts or deletes it (opening a
    /// loss window, as a scheduled change does), and schedules the process's next event.
    fn churn_at_rate(&mut self, index: usize) {
        let churn = &self.scenario.churn_rates[index];
        let stream = &mut self.churn_streams[index];
        let next = self.now + churn_gap(churn, stream);
        let overlay = self.overlay.as_ref().expect("churn is validated to need an overlay");
        let candidates = crate::scenario::select_pods(&overlay.cluster, &churn.pods).unwrap_or_default();
        if !candidates.is_empty() {
            let pod = overlay.cluster.pod(candidates[(stream.next_u64() % candidates.len() as u64) as usize]);
            let (namespace, name) = (pod.pod.namespace.clone(), pod.pod.name.clone());
            let change = if churn.restart {
                Change::RestartPod { namespace: namespace.clone(), name: name.clone() }
            } else {
                Change::DeletePod { namespace: namespace.clone(), name: name.clone() }
            };
            let spec = self.scenario.dataplane.cluster_spec().expect("churn needs a cluster");
            let settle = spec.propagation_delay.as_nanos() + spec.propagation_jitter.as_nanos() + 1_000_000;
            let verb = if churn.restart { "restart" } else { "delete" };
            self.windows.push(FailureWindow {
                target: format!("{verb} {namespace}/{name}"),
                from_ns: self.now.as_nanos(),
                until_ns: Some(self.now.as_nanos() + settle),
            });
            self.apply_change(&change);
        }
        if next < churn.stop {
            self.queue.push(next, Event::ChurnRate(index as u32));
        }
    }

    fn apply_change(&mut self, change: &Change) {
        let Some(spec) = self.scenario.dataplane.cluster_spec() else { return };
        let overlay = self.overlay.as_mut().expect("churn is validated to need an overlay");
        let result = match change {
            Change::Scale { namespace, name, replicas } => {
                overlay.cluster.scale(namespace, name, *replicas).map(|_| ())
            }
            Change::DeletePod { namespace, name } => match overlay.cluster.pod_by_name(namespace, name) {
                // As in Kubernetes, a workload's controller replaces a deleted pod.
                Some(id) => {
                    overlay.cluster.delete_pod(id).and_then(|()| overlay.cluster.reconcile().map(|_| ()))
                }
                None => Err(format!("pod {namespace}/{name} no longer exists")),
            },
            Change::RestartPod { namespace, name } => match overlay.cluster.pod_by_name(namespace, name) {
                Some(id) => overlay.cluster.restart_pod(id).map(|_| ()),
                None => Err(format!("pod {namespace}/{name} no longer exists")),
            },
            Change::Drain { host, .. } => overlay.cluster.drain(*host).map(|_| ()),
            Change::DeletePolicy { namespace, name } => overlay.cluster.delete_policy(namespace, name),
            Change::DeleteService { namespace, name } => overlay.cluster.delete_service(namespace, name),
            Change::Apply { objects, .. } => overlay
                .cluster
                .apply((**objects).clone())
                .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")),
        };
        if result.is_err() {
            // A change that no longer applies (the pod went earlier) changes nothing.
            return;
        }
        overlay.pods = overlay
            .cluster
            .pods()
            .iter()
            .map(|p| (NodeId(p.host), p.ip, netsim_control::network_manager::pod_mac(p.ip)))
            .collect();
        // Only the ecmp and nat checks measure member changes: plain runs skip the work.
        let members = if self.judge.records_hops() { self.service_members() } else { Vec::new() };
        let settle = spec.propagation_delay + spec.propagation_jitter + SimDuration::from_millis(1);
        self.judge.cluster_changed(self.now, self.now + settle, &change.to_string(), members);
        let overlay = self.overlay.as_mut().expect("checked above");
        if overlay.calico.is_some() {
            self.calico_plan_change(spec);
            return;
        }
        let plan = overlay.manager.plan(&overlay.cluster, &overlay.host_ips, spec.isolation);
        let changed = OverlayPlan::changed_networks(&overlay.plan, &plan);
        let mut sends = Vec::new();
        for host in 0..plan.host_count() {
            let messages = OverlayPlan::diff(&overlay.plan, &plan, host, &changed);
            if messages.is_empty() {
                continue;
            }
            // The control node's work before the update leaves: the propagation delay, with a
            // per-host jitter.
            let jitter = match spec.propagation_jitter.as_nanos() {
                0 => 0,
                range => overlay.jitter.next_u64() % range,
            };
            let at = self.now + spec.propagation_delay + SimDuration::from_nanos(jitter);
            let sequence = overlay.next_sequence[host];
            overlay.next_sequence[host] += 1;
            overlay.updates.push(Update {
                host: host as u32,
                sequence,
                payload: control_channel::encode(&messages),
                owner: 0,
                acked: false,
                received: false,
                attempts: 0,
                created: self.now,
            });
            overlay.control.updates += 1;
            overlay.control.messages += messages.len() as u64;
            sends.push((at, (overlay.updates.len() - 1) as u32));
        }
        overlay.plan = plan;
        for (at, update) in sends {
            self.queue.push(at, Event::ControlSend(update));
        }
    }

    /// Sends (or resends) an update from the first control node that is up, and arms its
    /// retransmission timer; an acknowledged update is done.
    fn send_update(&mut self, id: u32) {
        let overlay = self.overlay.as_mut().expect("updates exist only with an overlay");
        let update = &mut overlay.updates[id as usize];
        // Nothing new starts after the run's duration: an update still unacknowledged then (its
        // host is down, say) is abandoned, and the drain phase ends.
        if update.acked || self.now >= self.end {
            return;
        }
        let nodes = overlay.control_nodes.len();
        let alive = (0..nodes)
            .map(|step| (update.owner + step) % nodes)
            .find(|&index| self.fabric.is_up(Element::Node(overlay.control_nodes[index])));
        let Some(owner) = alive else {
            // Every control node is down: try again later; the routes already programmed stay.
            self.queue.push(self.now + CONTROL_RTO, Event::ControlSend(id));
            return;
        };
        if owner != update.owner {
            update.owner = owner;
            overlay.control.failovers += 1;
        }
        let from = overlay.control_nodes[owner];
        let to = NodeId(update.host);
        let topology = self.fabric.topology();
        let frames =
            control_channel::data_frames(topology.host_ip(from), topology.host_ip(to), id, &update.payload);
        if update.attempts > 0 {
            overlay.control.retransmissions += frames.len() as u64;
        }
        update.attempts += 1;
        overlay.control.datagrams += frames.len() as u64;
        overlay.control.bytes += update.payload.len() as u64;
        self.queue.push(self.now + CONTROL_RTO, Event::ControlSend(id));
        for frame in frames {
            if from == to {
                // A control node's own host: no fabric in between.
                self.receive_control(to, frame);
            } else {
                let forward = self.fabric.send(self.now, from, frame);
                self.handle(forward);
            }
        }
    }

    /// A control datagram reaches `host`: an agent collects an update's chunks, applies
    /// complete updates in order and acknowledges them; a control node records acknowledgements.
    fn receive_control(&mut self, host: NodeId, frame: Vec<u8>) {
        let packet = control_channel::parse(&frame);
        let source = FiveTuple::from_ethernet(&frame).map(|t| t.src);
        self.recycle(frame);
        let overlay = self.overlay.as_mut().expect("control traffic exists only with an overlay");
        let id = match packet {
            Some(ControlPacket::Ack { update }) => {
                if let Some(update) = overlay.updates.get_mut(update as usize) {
                    update.acked = true;
                }
                return;
            }
            Some(ControlPacket::Data { update: id, index, count, bytes }) => {
                let Some(update) = overlay.updates.get_mut(id as usize) else { return };
                if update.host != host.0 {
                    return;
                }
                // A retransmission of an update already received is only acknowledged again.
                if !update.received {
                    let chunks =
                        overlay.reassembly.entry(id).or_insert_with(|| vec![None; usize::from(count)]);
                    if let Some(slot) = chunks.get_mut(usize::from(index)) {
                        *slot = Some(bytes);
                    }
                    if !chunks.iter().all(Option::is_some) {
                        return;
                    }
                    let chunks = overlay.reassembly.remove(&id).unwrap_or_default();
                    let payload: Vec<u8> = chunks.into_iter().flatten().flatten().collect();
                    update.received = true;
                    // The control node encoded these messages itself.
                    let messages = control_channel::decode(&payload).expect("a complete update decodes");
                    let (sequence, created) = (update.sequence, update.created);
                    overlay.agent_queues[host.0 as usize].1.insert(sequence, (messages, created));
                    self.apply_ready_updates(host);
                }
                id
            }
            None => return,
        };
        let Some(source) = source else { return };
        let topology = self.fabric.topology();
        let ack = control_channel::ack_frame(topology.host_ip(host), source, id);
        match topology.host_by_ip(source) {
            Some(node) if node == host => self.receive_control(host, ack),
            _ => {
                let forward = self.fabric.send(self.now, host, ack);
                self.handle(forward);
            }
        }
    }

    /// Applies, in order, every received update of `host` whose predecessors are applied.
    fn apply_ready_updates(&mut self, host: NodeId) {
        let overlay = self.overlay.as_mut().expect("updates exist only with an overlay");
        loop {
            let queue = &mut overlay.agent_queues[host.0 as usize];
            let Some((messages, created)) = queue.1.remove(&queue.0) else { break };
            queue.0 += 1;
            // The network manager's diffs refer only to what its plans created.
            overlay.agents[host.0 as usize]
                .apply(&mut overlay.vrouters[host.0 as usize], self.now, &messages)
                .expect("the network manager's update is consistent");
            overlay.control.applied += 1;
            let latency = (self.now - created).as_nanos();
            overlay.control.convergence_ns_max = overlay.control.convergence_ns_max.max(latency);
        }
        self.schedule_vrouter_timer(host.0);
    }

    /// Returns a frame's buffer to the pool, which keeps at most [`POOL_BUFFERS_MAX`]: enough
    /// for the frames in flight at once, without growing with every packet ever built.
    fn recycle(&mut self, frame: Vec<u8>) {
        if self.pool.len() < POOL_BUFFERS_MAX {
            self.pool.push(frame);
        }
    }

    /// The timeline slice of now.
    fn bucket(&mut self) -> &mut TimelineBucket {
        let width = (self.scenario.duration.as_nanos() / TIMELINE_BUCKETS).max(1);
        let index = (self.now.as_nanos() / width).min(TIMELINE_BUCKETS - 1);
        &mut self.timeline[index as usize]
    }

    /// Counts a delivered packet (request or reply) for its traffic entry.
    fn count_delivery(&mut self, probe: &Probe, traffic: usize) {
        self.packets.delivered += 1;
        self.bucket().delivered += 1;
        self.per_traffic[traffic].delivered += 1;
        // Clamped into the histogram's range, so recording cannot fail.
        let latency = (self.now - probe.sent_at).as_nanos().clamp(1, 3_600_000_000_000);
        self.latency.record(latency).expect("latency within histogram bounds");
        if self.options.record_fates {
            self.fates.push((probe.flow, probe.seq, Fate::Delivered));
        }
    }

    /// Makes sure a timer event is queued for a vrouter's next deadline within the run.
    fn schedule_vrouter_timer(&mut self, host: u32) {
        let Some(overlay) = &mut self.overlay else { return };
        let Some(at) = overlay.plane(host as usize).poll_timeout() else { return };
        let scheduled = &mut overlay.timers[host as usize];
        if at <= self.end && scheduled.is_none_or(|s| at < s) {
            *scheduled = Some(at);
            self.queue.push(at, Event::VrouterTimer(host));
        }
    }

    fn capture_pod(&mut self, interface: InterfaceId, frame: &[u8]) {
        for (tap, capture) in &mut self.captures {
            if *tap == Tap::Pod(interface) {
                record_frame(capture, self.now, frame);
            }
        }
    }

    /// Acts on the fate the fabric gave a frame.
    fn handle(&mut self, forward: Forward) {
        match forward {
            Forward::Transmit(mut transmit) => {
                if self.tracer.is_some() && self.trace_transmit(&transmit) {
                    self.queue.push(transmit.arrive_at, Event::Arrive(transmit));
                    return;
                }
                note_departure(&mut self.judge, &self.fabric, &mut self.captures, self.now, &mut transmit);
                self.queue.push(transmit.arrive_at, Event::Arrive(transmit));
            }
            Forward::Deliver { host, frame } => {
                if self.overlay.as_ref().is_some_and(|o| o.calico.is_some()) && calico::is_bgp(&frame) {
                    self.receive_bgp(host, frame);
                    return;
                }
                if self.overlay.is_some() && control_channel::parse(&frame).is_some() {
                    self.receive_control(host, frame);
                    return;
                }
                if self.overlay.is_some() {
                    if self.tracer.is_some() {
                        self.trace_plane(host, Port::Fabric, &frame);
                    }
                    let overlay = self.overlay.as_mut().expect("checked");
                    let forward = overlay.plane(host.0 as usize).handle_packet(self.now, Port::Fabric, frame);
                    self.schedule_vrouter_timer(host.0);
                    self.handle_vrouter(host, forward);
                    return;
                }
                if let Some(probe) = Probe::read(&frame) {
                    let traffic = self.flows[(probe.flow & !REPLY_BIT) as usize].traffic as usize;
                    self.count_delivery(&probe, traffic);
                }
                self.recycle(frame);
            }
            Forward::Drop { reason, node, frame } => {
                if let Some(calico) = self.overlay.as_mut().and_then(|o| o.calico.as_mut())
                    && calico::is_bgp(&frame)
                {
                    // BGP is not traffic of the scenario: counted apart.
                    calico.counts.lost += 1;
                    self.recycle(frame);
                    return;
                }
                if let Some(overlay) = &mut self.overlay
                    && control_channel::parse(&frame).is_some()
                {
                    // Control traffic is not traffic of the scenario: counted apart.
                    overlay.control.lost += 1;
                    self.recycle(frame);
                    return;
                }
                self.record_drop("fabric", reason.as_str(), node, frame)
            }
        }
    }

    /// Accounts for a dropped frame: by reason, by layer, by traffic entry, and against the
    /// failure windows.
    fn record_drop(&mut self, layer: &'static str, name: &'static str, node: NodeId, frame: Vec<u8>) {
        if self.tracer.is_some() && self.trace_drop(layer, name, node, &frame) {
            // The traced packet is not traffic of the scenario.
            self.recycle(frame);
            return;
        }
        *self.packets.dropped.entry(name).or_default() += 1;
        self.bucket().dropped += 1;
        *self.drops_by_layer.entry(layer).or_default().entry(name).or_default() += 1;
        if let Some(probe) = Probe::find(&frame) {
            if let Some(flow) = self.flows.get((probe.flow & !REPLY_BIT) as usize) {
                *self.per_traffic[flow.traffic as usize].dropped.entry(name).or_default() += 1;
                if probe.flow & REPLY_BIT == 0
                    && let Some(interface) = flow.interface
                {
                    let backend = self.judge.backend_of(probe.flow);
                    let live = backend.map(|pod| !self.pod_deleted(InterfaceId(pod.0)));
                    let permitted = self.flow_permitted(probe.flow, interface, backend);
                    // Sent to a pod that is gone (kube-proxy translated to a removed backend)?
                    let to_removed = self.judge.tracks_nat()
                        && FiveTuple::from_ethernet(&frame).is_some_and(|t| {
                            self.overlay
                                .as_ref()
                                .is_some_and(|o| o.cluster.pods().iter().any(|p| p.deleted && p.ip == t.dst))
                        });
                    self.judge.dropped(
                        self.now,
                        probe.flow,
                        name,
                        &self.windows,
                        live,
                        permitted,
                        to_removed,
                    );
                }
            }
            if self.options.record_fates {
                self.fates.push((probe.flow, probe.seq, Fate::Dropped(name)));
            }
        }
        let now = self.now.as_nanos();
        let explained =
            self.windows.iter().any(|w| w.from_ns <= now && w.until_ns.is_none_or(|until| now <= until));
        if explained {
            self.drops_in_windows += 1;
        } else {
            self.drops_outside_windows += 1;
            if self.drop_examples.len() < DROP_EXAMPLES_MAX {
                let flow =
                    FiveTuple::from_ethernet(&frame).map_or_else(|| "?".to_string(), |t| t.to_string());
                let node = self.fabric.topology().node_name(node).to_string();
                self.drop_examples.push(DropRecord { at_ns: now, reason: name, layer, node, flow });
            }
        }
        self.recycle(frame);
    }

    /// Makes sure a timer event is queued for the fabric's next deadline within the run.
    fn schedule_fabric_timer(&mut self) {
        if let Some(at) = self.fabric.poll_timeout()
            && at <= self.end
            && self.timers.insert(at)
        {
            self.queue.push(at, Event::FabricTimer);
        }
    }

    fn drain_fabric_events(&mut self) {
        while let Some(event) = self.fabric.poll_event() {
            let FabricEvent::RoutingUpdated { element, up } = event;
            let topology = self.fabric.topology();
            let element = match element {
                Element::Node(node) => topology.node_name(node).to_string(),
                Element::Link(link) => {
                    let [(node, port), _] = topology.link_ends(link);
                    topology.port_name(node, port)
                }
            };
            let what = format!("{element} {}", if up { "up" } else { "down" });
            self.judge.routing_changed(self.now, &what, &self.fabric);
            self.routing_changes.push(RoutingChange { at_ns: self.now.as_nanos(), element, up });
        }
    }

    fn report(mut self, stopped_at_events_max: bool) -> RunReport {
        let latency = if self.latency.is_empty() {
            LatencySummary::default()
        } else {
            LatencySummary {
                min: self.latency.min(),
                p50: self.latency.value_at_quantile(0.5),
                p99: self.latency.value_at_quantile(0.99),
                max: self.latency.max(),
                mean: self.latency.mean(),
            }
        };
        let traffic_names: Vec<String> = self.scenario.traffic.iter().map(|t| t.name.clone()).collect();
        let flow_traffic: Vec<u32> = self.flows.iter().map(|f| f.traffic).collect();
        let topology = self.fabric.topology();
        let node_names: Vec<String> =
            (0..topology.node_count() as u32).map(|n| topology.node_name(NodeId(n)).to_string()).collect();
        let flows = &self.flows;
        let judgements = std::mem::take(&mut self.judge).finish(
            self.end,
            &self.windows,
            &traffic_names,
            |flow| flow_traffic[(flow & !REPLY_BIT) as usize] as usize,
            |node| node_names[node as usize].clone(),
            |flow| {
                let a = &flows[(flow & !REPLY_BIT) as usize].addresses;
                let protocol = if a.protocol == 17 { "udp" } else { "tcp" };
                format!("{}:{}->{}:{}/{protocol}", a.src_ip, a.src_port, a.dst_ip, a.dst_port)
            },
        );
        let latency_quantiles = if self.latency.is_empty() {
            Vec::new()
        } else {
            LATENCY_QUANTILES.iter().map(|&q| (q, self.latency.value_at_quantile(q))).collect()
        };
        let per_traffic =
            self.scenario.traffic.iter().map(|t| t.name.clone()).zip(self.per_traffic).collect();
        RunReport {
            trace_hash: self.trace.hex(),
            sim_time: self.now,
            events: self.events,
            stopped_at_events_max,
            packets: self.packets,
            per_traffic,
            latency,
            windows: self.windows,
            drops_in_windows: self.drops_in_windows,
            drops_outside_windows: self.drops_outside_windows,
            drop_examples: self.drop_examples,
            routing_changes: self.routing_changes,
            fates: self.fates,
            replies: self.replies,
            drops_by_layer: self.drops_by_layer,
            captures: self.captures.into_iter().map(|(_, capture)| capture).collect(),
            overlay_state: self.overlay_state,
            bgp: self.overlay.as_ref().and_then(|o| o.calico.as_ref()).map(Simulation::bgp_counts),
            control: self.overlay.filter(|o| o.calico.is_none()).map(|o| o.control),
            timeline: self.timeline,
            latency_quantiles,
            judgements,
            trace: self.tracer.map(tracer::Tracer::finish),
        }
    }
}

/// A frame reaches the end of its link at `now`: captures of the link record it, and the
/// trace hash takes the arrival in.
fn note_arrival(captures: &mut [(Tap, Capture)], trace: &mut TraceHash, now: SimTime, transmit: &Transmit) {
    for (tap, capture) in captures {
        if *tap == Tap::Link(transmit.to, transmit.link) {
            record_frame(capture, now, &transmit.frame);
        }
    }
    let ident = ip_ident(&transmit.frame);
    let link = (u64::from(transmit.link.0) << 1) | u64::from(transmit.direction);
    trace.record(now, kind::ARRIVE, &[link, transmit.frame.len() as u64, ident]);
}

/// A frame leaves a node on a link at `now`: the ECMP judge records the member it took, and
/// captures of that link record the frame. A free function, so that the frame may stay in its
/// slot of the event queue meanwhile.
fn note_departure(
    judge: &mut judge::Judge,
    fabric: &Fabric,
    captures: &mut [(Tap, Capture)],
    now: SimTime,
    transmit: &mut Transmit,
) {
    if judge.records_hops() {
        if transmit.tag == 0 {
            transmit.tag = judge::hop_tag(&transmit.frame);
        }
        if let Some((flow, tuple)) = judge::read_hop_tag(transmit.tag) {
            judge.hop(fabric, transmit, flow, tuple);
        }
    }
    for (tap, capture) in captures {
        if *tap == Tap::Link(transmit.from, transmit.link) {
            record_frame(capture, now, &transmit.frame);
        }
    }
}

/// Keeps a copy of `frame` in `capture`, or counts it if the capture is full.
fn record_frame(capture: &mut Capture, now: SimTime, frame: &[u8]) {
    if capture.frames.len() < CAPTURE_FRAMES_MAX {
        capture.frames.push((now, frame.to_vec()));
    } else {
        capture.truncated += 1;
    }
}

/// Builds the per-run cluster state and, with `vrouters`, every host's vrouter programmed with
/// the network manager's plan (without: the Calico side is built apart).
fn build_overlay(spec: &ClusterSpec, fabric: &Fabric, streams: &RngStreams, vrouters: bool) -> Overlay {
    let topology = fabric.topology();
    let host_ips: Vec<Ipv4Addr> = (0..topology.host_count()).map(|h| topology.host_ip(NodeId(h))).collect();
    let hosts = host_ips.len();
    let mut manager = NetworkManager::default();
    let plan = if vrouters {
        manager.plan(&spec.cluster, &host_ips, spec.isolation)
    } else {
        OverlayPlan::default()
    };
    let entropy_seed = streams.seed_for("overlay/entropy");
    let mut agents: Vec<Agent> =
        if vrouters { host_ips.iter().map(|&ip| Agent::new(ip)).collect() } else { Vec::new() };
    let vrouters = host_ips
        .iter()
        .take(if vrouters { hosts } else { 0 })
        .enumerate()
        .map(|(host, &ip)| {
            let config = VrouterConfig {
                host_ip: ip,
                host_mac: topology.port_mac(NodeId(host as u32), 0),
                encapsulation: spec.encapsulation,
                flows_max: spec.flows_max,
                flow_idle_timeout: spec.flow_idle_timeout,
                underlay_mtu: topology.config().host_link.mtu_bytes,
                entropy_seed,
                planted: Default::default(),
            };
            let mut vrouter = Vrouter::new(config);
            // The plan refers only to the networks, interfaces and labels it creates itself.
            agents[host]
                .apply(&mut vrouter, SimTime::ZERO, &plan.messages(host))
                .expect("the network manager's plan is consistent");
            vrouter
        })
        .collect();
    let pods = spec
        .cluster
        .pods()
        .iter()
        .map(|p| (NodeId(p.host), p.ip, netsim_control::network_manager::pod_mac(p.ip)))
        .collect();
    Overlay {
        vrouters,
        agents,
        timers: vec![None; host_ips.len()],
        pods,
        cluster: spec.cluster.clone(),
        manager,
        plan,
        host_ips,
        control_nodes: spec.control_nodes.iter().map(|&h| NodeId(h)).collect(),
        updates: Vec::new(),
        reassembly: BTreeMap::new(),
        agent_queues: vec![(0, BTreeMap::new()); hosts],
        next_sequence: vec![0; hosts],
        control: ControlCounts::default(),
        jitter: streams.stream("control/propagation"),
        calico: None,
        gateway_mac: VROUTER_MAC,
        layer: "vrouter",
    }
}

/// The IPv4 identification of a frame (0 if it has none): part of an arrival's trace key.
fn ip_ident(frame: &[u8]) -> u64 {
    frame.get(18..20).map_or(0, |b| u64::from(u16::from_be_bytes([b[0], b[1]])))
}
