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

use std::collections::{BTreeMap, BTreeSet};

use hdrhistogram::Histogram;
use netsim_core::{SimDuration, SimTime, packet::FiveTuple};
use netsim_fabric::{DropReason, Element, Fabric, FabricEvent, Forward, Transmit};
use rand_chacha::ChaCha8Rng;
use rand_core::Rng;

use crate::engine::{EventQueue, RngStreams, TraceHash};
use crate::scenario::{Action, FailureWindow, Pattern, Scenario};
use crate::traffic::{Flow, Probe, unit_interval};

/// How many examples of unexplained drops a report keeps.
const DROP_EXAMPLES_MAX: usize = 10;
/// How often (in events) the progress callback is called.
const PROGRESS_EVERY: u64 = 1 << 16;

/// What to record beyond the summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Record the fate of every packet (for exactly-once tests; costs memory per packet).
    pub record_fates: bool,
}

/// What became of one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fate {
    /// Delivered to its destination host.
    Delivered,
    /// Dropped, with the reason.
    Dropped(DropReason),
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

/// A dropped packet outside every failure window: evidence for a failing check.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DropRecord {
    /// When, in nanoseconds.
    pub at_ns: u64,
    /// Why.
    pub reason: &'static str,
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
    /// With [`RunOptions::record_fates`]: `(flow, seq, fate)` of every packet, in fate order.
    pub fates: Vec<(u32, u64, Fate)>,
}

enum Event {
    Generate(u32),
    Arrive(Transmit),
    Fault(u32),
    FabricTimer,
}

/// Trace kinds: part of the trace hash definition.
mod kind {
    pub const GENERATE: u64 = 1;
    pub const ARRIVE: u64 = 2;
    pub const FAULT: u64 = 3;
    pub const FABRIC_TIMER: u64 = 4;
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
    };
    simulation.schedule_traffic(&streams);
    for (index, event) in scenario.events.iter().enumerate() {
        simulation.queue.push(event.at, Event::Fault(index as u32));
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
                let mut src_index = (pairs.next_u64() % spec.from.len() as u64) as usize;
                let mut dst_index = (pairs.next_u64() % spec.to.len() as u64) as usize;
                if spec.from[src_index] == spec.to[dst_index] {
                    // Host lists are sorted and distinct, so the neighbour in a list of two or
                    // more differs; validation guarantees one of the lists has two.
                    if spec.to.len() > 1 {
                        dst_index = (dst_index + 1) % spec.to.len();
                    } else {
                        src_index = (src_index + 1) % spec.from.len();
                    }
                }
                let (src, dst) = (spec.from[src_index], spec.to[dst_index]);
                debug_assert_ne!(src, dst);
                let id = self.flows.len() as u32;
                let src_port = 10_000 + (id % 50_000) as u16;
                let flow = Flow::new(
                    self.fabric.topology(),
                    index as u32,
                    src,
                    dst,
                    src_port,
                    spec.port,
                    spec.size_bytes,
                    spec.pattern,
                    interval_ns,
                    spec.stop,
                );
                let first = match spec.pattern {
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

    // ANCHOR: event_loop
    /// Pops and executes events until none is left; `true` if it stopped at the event bound.
    fn run_loop(&mut self, progress: &mut dyn FnMut(SimTime)) -> bool {
        while let Some((time, event)) = self.queue.pop() {
            if self.events == self.scenario.events_max {
                return true;
            }
            self.events += 1;
            self.now = time;
            match event {
                Event::Generate(flow) => self.generate(flow),
                Event::Arrive(transmit) => {
                    let ident = ip_ident(&transmit.frame);
                    let link = (u64::from(transmit.link.0) << 1) | u64::from(transmit.direction);
                    self.trace.record(time, kind::ARRIVE, &[link, transmit.frame.len() as u64, ident]);
                    let forward = self.fabric.arrive(time, transmit);
                    self.handle(forward);
                }
                Event::Fault(index) => {
                    self.trace.record(time, kind::FAULT, &[u64::from(index)]);
                    let fault = &self.scenario.events[index as usize];
                    match fault.action {
                        Action::Fail => self.fabric.fail(time, fault.element),
                        Action::Recover => self.fabric.recover(time, fault.element),
                    }
                    self.schedule_fabric_timer();
                }
                Event::FabricTimer => {
                    self.trace.record(time, kind::FABRIC_TIMER, &[]);
                    self.timers.remove(&time);
                    self.fabric.handle_timeout(time);
                    self.drain_fabric_events();
                    self.schedule_fabric_timer();
                }
            }
            if self.events.is_multiple_of(PROGRESS_EVERY) {
                progress(self.now.min(self.end));
            }
        }
        progress(self.end);
        false
    }
    // ANCHOR_END: event_loop

    /// Sends the next packet of `flow` and schedules the one after.
    fn generate(&mut self, id: u32) {
        let now = self.now;
        let mut frame = self.pool.pop().unwrap_or_default();
        let flow = &mut self.flows[id as usize];
        let seq = flow.sent;
        flow.next_packet(id, now, &mut frame);
        let (src, traffic) = (flow.src, flow.traffic as usize);
        let gap = match flow.pattern {
            Pattern::Constant => flow.gap(1.0),
            Pattern::Poisson => flow.gap(unit_interval(self.arrivals[traffic].next_u64())),
        };
        let next = now + gap;
        let more = next < flow.stop && next < self.end;
        self.trace.record(now, kind::GENERATE, &[u64::from(id), seq]);
        self.packets.sent += 1;
        self.per_traffic[traffic].sent += 1;
        if more {
            self.queue.push(next, Event::Generate(id));
        }
        let forward = self.fabric.send(now, src, frame);
        self.handle(forward);
    }

    /// Acts on the fate the fabric gave a frame.
    fn handle(&mut self, forward: Forward) {
        match forward {
            Forward::Transmit(transmit) => self.queue.push(transmit.arrive_at, Event::Arrive(transmit)),
            Forward::Deliver { frame, .. } => {
                if let Some(probe) = Probe::read(&frame) {
                    let traffic = self.flows[probe.flow as usize].traffic as usize;
                    self.packets.delivered += 1;
                    self.per_traffic[traffic].delivered += 1;
                    // Clamped into the histogram's range, so recording cannot fail.
                    let latency = (self.now - probe.sent_at).as_nanos().clamp(1, 3_600_000_000_000);
                    self.latency.record(latency).expect("latency within histogram bounds");
                    if self.options.record_fates {
                        self.fates.push((probe.flow, probe.seq, Fate::Delivered));
                    }
                }
                self.pool.push(frame);
            }
            Forward::Drop { reason, node, frame } => {
                let name = reason.as_str();
                *self.packets.dropped.entry(name).or_default() += 1;
                let probe = Probe::read(&frame);
                if let Some(probe) = probe {
                    let traffic = self.flows[probe.flow as usize].traffic as usize;
                    *self.per_traffic[traffic].dropped.entry(name).or_default() += 1;
                    if self.options.record_fates {
                        self.fates.push((probe.flow, probe.seq, Fate::Dropped(reason)));
                    }
                }
                let now = self.now.as_nanos();
                let explained = self
                    .windows
                    .iter()
                    .any(|w| w.from_ns <= now && w.until_ns.is_none_or(|until| now <= until));
                if explained {
                    self.drops_in_windows += 1;
                } else {
                    self.drops_outside_windows += 1;
                    if self.drop_examples.len() < DROP_EXAMPLES_MAX {
                        let flow = FiveTuple::from_ethernet(&frame)
                            .map_or_else(|| "?".to_string(), |t| t.to_string());
                        let node = self.fabric.topology().node_name(node).to_string();
                        self.drop_examples.push(DropRecord { at_ns: now, reason: name, node, flow });
                    }
                }
                self.pool.push(frame);
            }
        }
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
            self.routing_changes.push(RoutingChange { at_ns: self.now.as_nanos(), element, up });
        }
    }

    fn report(self, stopped_at_events_max: bool) -> RunReport {
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
        }
    }
}

/// The IPv4 identification of a frame (0 if it has none): part of an arrival's trace key.
fn ip_ident(frame: &[u8]) -> u64 {
    frame.get(18..20).map_or(0, |b| u64::from(u16::from_be_bytes([b[0], b[1]])))
}
