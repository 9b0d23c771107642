//! The runs behind a report: the scenario under both data planes over a sweep of seeds, the
//! fault kinds derived from its workload, and small synthetic scenarios for what the scenario
//! itself cannot show (goodput at line rate, ECMP balance, cluster sizes it does not have).
//!
//! Every run is an ordinary [`runner::run`] of a [`Scenario`]; they are independent, so they
//! run in parallel on a rayon pool and come back in the order they were listed.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path as FilePath;
use std::time::Instant;

use netsim_control::cluster::{Cluster, ClusterConfig, PodId};
use netsim_control::felix::Felix;
use netsim_control::ipam::IpamMode;
use netsim_control::k8s::{Objects, manifest};
use netsim_control::network_manager::{self, AgentMessage, Isolation};
use netsim_core::{SimDuration, SimTime};
use netsim_fabric::{Element, FabricConfig, NodeId, NodeKind, Topology};
use netsim_vrouter::calico::CalicoEncapsulation;
use netsim_vrouter::overlay::Encapsulation;
use rayon::prelude::*;

use super::cost::{Path, Plane, WIRE_EXTRA_BYTES};
use crate::checks::{self, CheckResult};
use crate::runner::{self, RunOptions, RunReport};
use crate::scenario::{
    BgpTopology, CalicoSettings, Change, ChurnSpec, ClusterSpec, Dataplane, Endpoints, FaultAction,
    FaultSpec, Pattern, PodTarget, Scenario, TrafficSpec,
};
use crate::units::PacketRate;

/// Simulated length of a fault-kind run: fault at a third, recovery at two thirds.
pub const FAULT_RUN: SimDuration = SimDuration::from_millis(300);
/// Simulated length of a line-rate goodput run.
pub const WIRE_RUN: SimDuration = SimDuration::from_millis(10);
/// Flows of the many-flow goodput and ECMP balance runs.
pub const MANY_FLOWS: u32 = 256;
/// IP size of the ECMP balance runs' packets.
pub const BALANCE_PACKET_BYTES: u32 = 200;
/// Simulated length of a cluster-size run (a pod restart at 10 ms, then quiet).
pub const SCALE_RUN: SimDuration = SimDuration::from_millis(60);
/// Pods per host of the cluster-size runs' synthetic workload (`web` 2 per host, `db` 1).
pub const SCALE_PODS_PER_HOST: u32 = 3;

/// The scenario on both data planes, and how alike the two are.
#[derive(Clone, Debug)]
pub struct Pair {
    /// The overlay variant.
    pub overlay: Scenario,
    /// The Calico variant.
    pub calico: Scenario,
    /// Where the two differ beyond the data plane.
    pub notes: Vec<String>,
}

impl Pair {
    /// The variant of `plane`.
    pub fn get(&self, plane: Plane) -> &Scenario {
        match plane {
            Plane::Overlay => &self.overlay,
            Plane::Calico => &self.calico,
        }
    }
}

/// Both variants of a cluster scenario; `None` for an underlay-only one.
pub fn pair(scenario: &Scenario) -> Option<Pair> {
    let spec = scenario.dataplane.cluster_spec()?;
    let mut notes = Vec::new();
    let mut variants = Vec::new();
    for plane in Plane::BOTH {
        let mut spec = spec.clone();
        let ipam = match plane {
            Plane::Overlay => IpamMode::ClusterWide,
            Plane::Calico => IpamMode::HostBlocks { prefix_len: 26 },
        };
        if spec.cluster.config().ipam != ipam {
            match rebuild(&spec, ipam) {
                Ok(cluster) => spec.cluster = cluster,
                Err(message) => notes.push(format!(
                    "{}: kept the scenario's IPAM ({message}); pod addresses are the same on both planes",
                    plane.name()
                )),
            }
        }
        let mut variant = scenario.clone();
        variant.dataplane = match plane {
            Plane::Overlay => Dataplane::Overlay(Box::new(spec)),
            Plane::Calico => Dataplane::Calico(Box::new(spec)),
        };
        variants.push(variant);
    }
    let calico = variants.pop().expect("two variants");
    let overlay = variants.pop().expect("two variants");
    Some(Pair { overlay, calico, notes })
}

/// The scenario's cluster rebuilt from its manifests with `ipam`, if the pods land on the same
/// hosts (each data plane addresses pods its own way: the overlay from one cluster-wide pool,
/// Calico from per-host /26 blocks that BGP announces).
fn rebuild(spec: &ClusterSpec, ipam: IpamMode) -> Result<Cluster, String> {
    let mut objects = Objects::default();
    for path in &spec.manifests {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let (parsed, _) = manifest::parse(&path.display().to_string(), &text)
            .map_err(|_| format!("{} does not parse", path.display()))?;
        objects.extend(parsed);
    }
    let config = ClusterConfig { ipam, ..spec.cluster.config().clone() };
    let cluster = Cluster::build(config, objects).map_err(|_| "the manifests do not build".to_string())?;
    let same = cluster.pods().len() == spec.cluster.pods().len()
        && cluster.pods().iter().zip(spec.cluster.pods()).all(|(a, b)| a.host == b.host && a.pod == b.pod);
    if same { Ok(cluster) } else { Err("pods would be placed differently".into()) }
}

/// What a run is, for finding its outcome.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// The scenario as written on a plane, with a seed of the sweep.
    Main(Plane, u64),
    /// A derived fault kind (index into the kinds) on a plane, with a seed.
    Fault(usize, Plane, u64),
    /// Line-rate goodput: path index, underlay MTU, flows.
    Wire(usize, u32, u32),
    /// ECMP balance over uplinks and spines: path index.
    Balance(usize),
    /// Service backends' share of requests: plane.
    Service(Plane),
    /// A synthetic cluster of some hosts; with a pod restart or without.
    Scale(Plane, u32, bool),
}

/// One run to do.
#[derive(Clone, Debug)]
pub struct Job {
    /// What it is.
    pub key: Key,
    /// The scenario to run.
    pub scenario: Scenario,
    /// Ports or pods to count frames on.
    pub captures: Vec<String>,
}

/// Frames seen on one captured port or pod.
#[derive(Clone, Debug, Default)]
pub struct PortCount {
    /// The port's name.
    pub port: String,
    /// Frames of at least the data packets' size (control traffic left out).
    pub data_frames: u64,
    /// Frame lengths of the kept frames, with their counts.
    pub lengths: BTreeMap<usize, u64>,
}

/// Forwarding rules one host is programmed with, by the plane's control plane.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rules {
    /// Mean over hosts.
    pub mean: f64,
    /// The most on one host.
    pub max: u64,
}

/// A finished run.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// What it was.
    pub key: Key,
    /// What it measured (captures emptied: counted in `ports`).
    pub report: RunReport,
    /// Its checks.
    pub checks: Vec<CheckResult>,
    /// Frames per captured port.
    pub ports: Vec<PortCount>,
    /// Rules per host, for cluster-size runs.
    pub rules: Option<Rules>,
    /// Wall-clock time of the run, ms (reported in the wall-time section only).
    pub wall_ms: u64,
}

/// Runs every job on `pool`; outcomes come back in job order whatever the number of threads.
pub fn run_all(jobs: Vec<Job>, pool: &rayon::ThreadPool) -> Vec<Outcome> {
    pool.install(|| jobs.into_par_iter().map(run_one).collect())
}

fn run_one(job: Job) -> Outcome {
    // Wall time is measured outside the simulation: it is reported, never simulated.
    #[allow(clippy::disallowed_methods, reason = "the report's wall-time section")]
    let started = Instant::now();
    let options = RunOptions { captures: job.captures.clone(), ..RunOptions::default() };
    let mut report = runner::run(&job.scenario, options, &mut |_| {});
    let wall_ms = started.elapsed().as_millis() as u64;
    let checks = checks::evaluate(&job.scenario, &report);
    let smallest = job.scenario.traffic.iter().map(|t| t.size_bytes).min().unwrap_or(0) as usize;
    let ports = std::mem::take(&mut report.captures)
        .into_iter()
        .map(|capture| {
            let mut count = PortCount { port: capture.port, ..PortCount::default() };
            for (_, frame) in &capture.frames {
                if frame.len() >= smallest + 14 {
                    count.data_frames += 1;
                    *count.lengths.entry(frame.len()).or_default() += 1;
                }
            }
            // Frames past the capture's bound are counted, not kept: all are data frames in
            // the runs that capture (their control traffic is a handful of frames).
            count.data_frames += capture.truncated;
            count
        })
        .collect();
    let rules = match job.key {
        Key::Scale(plane, _, false) => Some(rules_per_host(&job.scenario, plane)),
        _ => None,
    };
    Outcome { key: job.key, report, checks, ports, rules, wall_ms }
}

/// The outcome of `key`. Every key looked up was listed as a job.
pub fn find<'a>(outcomes: &'a [Outcome], key: &Key) -> Option<&'a Outcome> {
    outcomes.iter().find(|o| &o.key == key)
}

/// The traffic entries the scenario expects to be blocked (a `delivery_ratio` check with
/// `max = 0`): their deliveries are isolation violations, their drops are not losses.
pub fn isolation_entries(scenario: &Scenario) -> Vec<usize> {
    let mut entries: Vec<usize> = scenario
        .checks
        .iter()
        .filter_map(|check| match check.kind {
            crate::scenario::CheckKind::DeliveryRatio { max: 0.0, traffic: Some(index), .. } => Some(index),
            _ => None,
        })
        .collect();
    entries.sort_unstable();
    entries.dedup();
    entries
}

/// Packets of the workload (isolation probes left out) lost in a run.
pub fn lost(report: &RunReport, isolation: &[usize]) -> u64 {
    report
        .per_traffic
        .iter()
        .enumerate()
        .filter(|(index, _)| !isolation.contains(index))
        .map(|(_, (_, counts))| counts.dropped_total())
        .sum()
}

/// Timeline slices in which the workload lost packets: more drops than the isolation probes'
/// steady share explains (their mean per slice plus three standard deviations, plus one).
pub fn loss_slices(report: &RunReport, isolation: &[usize]) -> Vec<bool> {
    let probes: u64 = isolation
        .iter()
        .filter_map(|&i| report.per_traffic.get(i))
        .map(|(_, counts)| counts.dropped_total())
        .sum();
    let slices = report.timeline.len().max(1) as f64;
    let baseline = probes as f64 / slices;
    let threshold = baseline + 3.0 * baseline.sqrt() + 1.0;
    report.timeline.iter().map(|bucket| bucket.dropped as f64 > threshold).collect()
}

/// The simulated time during which the workload lost packets, ns (slices of 1% of the run).
pub fn loss_time_ns(report: &RunReport, isolation: &[usize], duration: SimDuration) -> u64 {
    let slice = duration.as_nanos() / report.timeline.len().max(1) as u64;
    loss_slices(report, isolation).iter().filter(|&&lossy| lossy).count() as u64 * slice
}

/// A fault kind the report measures.
#[derive(Clone, Debug)]
pub struct FaultKind {
    /// Short name.
    pub name: String,
    /// What happens, in words.
    pub description: String,
    /// `None`: the scenario's own faults (its main runs); otherwise the derived scenario's
    /// events and changes.
    pub derived: Option<(Vec<FaultSpec>, Vec<ChurnSpec>)>,
}

/// The fault kinds: the scenario's own faults if it has any, then a host link, a host and a
/// pod restart, each aimed at the busiest service's first backend.
pub fn fault_kinds(pair: &Pair) -> Vec<FaultKind> {
    let scenario = &pair.overlay;
    let mut kinds = Vec::new();
    if !scenario.events.is_empty() || !scenario.churn.is_empty() || !scenario.churn_rates.is_empty() {
        let mut parts: Vec<String> = scenario
            .events
            .iter()
            .map(|e| {
                let action = if e.action == FaultAction::Fail { "fails" } else { "recovers" };
                format!("{} {action} at {}", e.target, e.at)
            })
            .collect();
        parts.extend(scenario.churn.iter().map(|c| format!("{} at {}", describe(&c.change), c.at)));
        parts.extend(scenario.churn_rates.iter().map(|c| format!("pods {} at {}", c.pods, c.rate)));
        kinds.push(FaultKind {
            name: "scenario".into(),
            description: format!("the scenario's own: {}", parts.join(", ")),
            derived: None,
        });
    }
    let Some((host, pod)) = busiest_backend(scenario) else { return kinds };
    let Ok(topology) = Topology::build(&scenario.fabric) else { return kinds };
    let spec = scenario.dataplane.cluster_spec().expect("a pair has clusters");
    let state = spec.cluster.pod(pod);
    let host_name = format!("host-{host}");
    let third = SimTime::ZERO + SimDuration::from_nanos(FAULT_RUN.as_nanos() / 3);
    let two_thirds = SimTime::ZERO + SimDuration::from_nanos(FAULT_RUN.as_nanos() / 3 * 2);
    let fail_and_recover = |element: Element, target: String| {
        vec![
            FaultSpec { at: third, action: FaultAction::Fail, element, target: target.clone() },
            FaultSpec { at: two_thirds, action: FaultAction::Recover, element, target },
        ]
    };
    let uplink = format!("{host_name}:uplink0");
    if let Some((node, port)) = topology.port_by_name(&uplink) {
        let link = topology.ports(node)[usize::from(port)].link;
        kinds.push(FaultKind {
            name: "host link".into(),
            description: format!(
                "{uplink} (under a backend of the busiest service) fails at {third} and recovers at {two_thirds}"
            ),
            derived: Some((fail_and_recover(Element::Link(link), uplink.clone()), Vec::new())),
        });
    }
    kinds.push(FaultKind {
        name: "host".into(),
        description: format!(
            "{host_name} (running {}) fails at {third} and recovers at {two_thirds}; neither plane moves the \
             service's traffic off a failed host (Kubernetes would, once the node is declared not ready), and on \
             Calico the host's BGP daemon restarts with it and must re-establish its sessions (connect retry {}) \
             before the host has routes again",
            state.key(),
            netsim_control::bgp::BgpConfig::new(Ipv4Addr::UNSPECIFIED, [0; 6]).connect_retry
        ),
        derived: Some((fail_and_recover(Element::Node(NodeId(host)), host_name.clone()), Vec::new())),
    });
    let restart = Change::RestartPod { namespace: state.pod.namespace.clone(), name: state.pod.name.clone() };
    kinds.push(FaultKind {
        name: "pod restart".into(),
        description: format!("{} restarts at {third} (new address, re-programmed everywhere)", state.key()),
        derived: Some((Vec::new(), vec![ChurnSpec { at: third, change: restart }])),
    });
    kinds
}

fn describe(change: &Change) -> String {
    change.to_string()
}

/// The host and pod of the first backend of the service the most traffic goes to.
pub fn busiest_backend(scenario: &Scenario) -> Option<(u32, PodId)> {
    let spec = scenario.dataplane.cluster_spec()?;
    let isolation = isolation_entries(scenario);
    let (_, traffic) = scenario
        .traffic
        .iter()
        .enumerate()
        .filter(|(index, _)| !isolation.contains(index))
        .filter(|(_, t)| matches!(t.endpoints, Endpoints::Pods { to: PodTarget::Service { .. }, .. }))
        .max_by_key(|(index, t)| (t.rate.per_megasecond, std::cmp::Reverse(*index)))?;
    let Endpoints::Pods { to: PodTarget::Service { service }, .. } = &traffic.endpoints else { return None };
    let state = &spec.cluster.services()[*service];
    let backends =
        state.service.ports.iter().position(|p| p.port == traffic.port).map(|i| &state.backends[i])?;
    let backend = backends.first()?;
    Some((spec.cluster.pod(backend.pod).host, backend.pod))
}

/// The busiest service's backends, as capture names (`pod:NAMESPACE/NAME`).
pub fn busiest_service_backends(scenario: &Scenario) -> (String, Vec<String>) {
    let Some(spec) = scenario.dataplane.cluster_spec() else { return (String::new(), Vec::new()) };
    let Some((_, pod)) = busiest_backend(scenario) else { return (String::new(), Vec::new()) };
    for state in spec.cluster.services() {
        for backends in &state.backends {
            if backends.iter().any(|b| b.pod == pod) {
                let mut pods: Vec<String> =
                    backends.iter().map(|b| format!("pod:{}", spec.cluster.pod(b.pod).key())).collect();
                pods.dedup();
                return (state.key(), pods);
            }
        }
    }
    (String::new(), Vec::new())
}

/// `scenario` reduced to a fault-kind run: [`FAULT_RUN`] long, the isolation probes left out,
/// with `events` and `churn` instead of its own.
pub fn derive_fault_run(
    scenario: &Scenario,
    events: &[FaultSpec],
    churn: &[ChurnSpec],
    seed: u64,
) -> Scenario {
    let mut derived = scenario.clone();
    let end = SimTime::ZERO + FAULT_RUN;
    let isolation = isolation_entries(scenario);
    derived.seed = seed;
    derived.duration = FAULT_RUN;
    derived.traffic = scenario
        .traffic
        .iter()
        .enumerate()
        .filter(|(index, t)| !isolation.contains(index) && t.start < end)
        .map(|(_, t)| {
            // Traffic that runs to the scenario's end runs to the derived run's.
            let stop = if t.stop >= SimTime::ZERO + scenario.duration { end } else { t.stop.min(end) };
            TrafficSpec { stop, ..t.clone() }
        })
        .collect();
    derived.events = events.to_vec();
    derived.churn = churn.to_vec();
    derived.churn_rates = Vec::new();
    derived.checks = Vec::new();
    derived.captures = Vec::new();
    derived
}

/// The default cluster settings of synthetic scenarios: the scenario's own when it has a
/// cluster (propagation delays, BGP timers), the scenario-file defaults otherwise.
fn settings_like(scenario: &Scenario) -> ClusterSpec {
    let defaults = ClusterSpec {
        cluster: Cluster::new(ClusterConfig::default()),
        manifests: Vec::new(),
        encapsulation: Encapsulation::MplsOverUdp,
        flows_max: 512 * 1024,
        flow_idle_timeout: SimDuration::from_secs(60),
        isolation: Isolation::NetworkPolicy,
        propagation_delay: SimDuration::from_millis(20),
        propagation_jitter: SimDuration::from_millis(10),
        control_nodes: Vec::new(),
        calico: CalicoSettings {
            encapsulation: CalicoEncapsulation::None,
            bgp: BgpTopology::FullMesh,
            keepalive: SimDuration::from_secs(1),
            hold_time: SimDuration::from_secs(3),
        },
    };
    match scenario.dataplane.cluster_spec() {
        Some(spec) => ClusterSpec { isolation: Isolation::NetworkPolicy, ..spec.clone() },
        None => defaults,
    }
}

/// A synthetic scenario on `fabric` with the pods of `yaml`, carried by `path`.
fn synthetic(
    base: &Scenario,
    name: &str,
    fabric: FabricConfig,
    yaml: &str,
    path: &Path,
    duration: SimDuration,
) -> Result<Scenario, String> {
    let (objects, _) =
        manifest::parse(name, yaml).map_err(|errors| format!("{name}: {} manifest errors", errors.len()))?;
    let ipam = match path.plane {
        Plane::Overlay => IpamMode::ClusterWide,
        Plane::Calico => IpamMode::HostBlocks { prefix_len: 26 },
    };
    let config =
        ClusterConfig { hosts: fabric.hosts, ipam, pods_per_host_max: 110, ..ClusterConfig::default() };
    let cluster =
        Cluster::build(config, objects).map_err(|_| format!("{name}: the cluster does not build"))?;
    let mut spec = settings_like(base);
    spec.cluster = cluster;
    spec.manifests = Vec::new();
    spec.control_nodes = (fabric.hosts.saturating_sub(2)..fabric.hosts).rev().collect();
    let dataplane = match path.plane {
        Plane::Overlay => {
            spec.encapsulation = match path.setting {
                "mpls-over-gre" => Encapsulation::MplsOverGre,
                "vxlan" => Encapsulation::Vxlan,
                _ => Encapsulation::MplsOverUdp,
            };
            Dataplane::Overlay(Box::new(spec))
        }
        Plane::Calico => {
            spec.calico.encapsulation = match path.setting {
                "ipip" => CalicoEncapsulation::IpIp,
                "vxlan" => CalicoEncapsulation::Vxlan,
                _ => CalicoEncapsulation::None,
            };
            Dataplane::Calico(Box::new(spec))
        }
    };
    Ok(Scenario {
        path: base.path.clone(),
        name: name.into(),
        description: None,
        seed: base.seed,
        duration,
        events_max: crate::scenario::EVENTS_MAX_DEFAULT,
        fabric,
        dataplane,
        traffic: Vec::new(),
        events: Vec::new(),
        churn: Vec::new(),
        churn_rates: Vec::new(),
        checks: Vec::new(),
        captures: Vec::new(),
        cost: base.cost.clone(),
    })
}

/// Two pods pinned to the first and the last host: an iperf client and server.
fn iperf_yaml(server_host: u32) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: client, labels: {{app: client}}}}\nspec:\n  nodeName: host-0\n  \
         containers: [{{name: client, image: iperf}}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: server, \
         labels: {{app: server}}}}\nspec:\n  nodeName: host-{server_host}\n  containers: [{{name: server, image: \
         iperf, ports: [{{containerPort: 5201}}]}}]\n"
    )
}

/// The fabric of `base` with every link's MTU set to `mtu`.
fn with_mtu(base: &FabricConfig, mtu: u32) -> FabricConfig {
    let mut fabric = base.clone();
    fabric.host_link.mtu_bytes = mtu;
    fabric.fabric_link.mtu_bytes = mtu;
    fabric
}

/// A run of `flows` UDP flows of full-size packets from host-0's pod to the last host's, offered
/// at 125% of what host-0's uplinks carry: the delivered rate is the wire's goodput.
pub fn wire_job(base: &Scenario, index: usize, path: &Path, mtu: u32, flows: u32) -> Result<Job, String> {
    let fabric = with_mtu(&base.fabric, mtu);
    let server = fabric.hosts - 1;
    let mut scenario = synthetic(base, "wire", fabric.clone(), &iperf_yaml(server), path, WIRE_RUN)?;
    let size = path.pod_mtu(mtu);
    let wire_bits = u64::from(mtu + 14 + WIRE_EXTRA_BYTES) * 8;
    let uplinks = u64::from(if flows > 1 { fabric.uplinks_per_host } else { 1 });
    let line_pps = fabric.host_link.bandwidth_bps * uplinks / wire_bits;
    let rate = PacketRate { per_megasecond: line_pps * 1_250_000 };
    scenario.traffic = vec![pod_traffic("wire", rate, size, flows, WIRE_RUN)];
    Ok(Job { key: Key::Wire(index, mtu, flows), scenario, captures: Vec::new() })
}

/// [`MANY_FLOWS`] flows of small packets from host-0's pod to the last host's, counted on
/// host-0's uplinks and on its leaves' spine ports.
pub fn balance_job(base: &Scenario, index: usize, path: &Path) -> Result<Job, String> {
    let fabric = with_mtu(&base.fabric, 1500);
    let server = fabric.hosts - 1;
    let mut scenario = synthetic(base, "balance", fabric.clone(), &iperf_yaml(server), path, WIRE_RUN)?;
    let rate = PacketRate { per_megasecond: u64::from(MANY_FLOWS) * 2_000 * 1_000_000 };
    scenario.traffic = vec![pod_traffic("balance", rate, BALANCE_PACKET_BYTES, MANY_FLOWS, WIRE_RUN)];
    Ok(Job { key: Key::Balance(index), scenario, captures: balance_ports(&fabric) })
}

/// Host-0's uplinks, then the spine ports of the leaves they lead to.
pub fn balance_ports(fabric: &FabricConfig) -> Vec<String> {
    let Ok(topology) = Topology::build(fabric) else { return Vec::new() };
    let host = NodeId(0);
    let mut names: Vec<String> =
        (0..topology.ports(host).len()).map(|port| topology.port_name(host, port as u16)).collect();
    for port in topology.ports(host) {
        let leaf = port.peer;
        for (index, up) in topology.ports(leaf).iter().enumerate() {
            if topology.kind(up.peer) == NodeKind::Spine {
                names.push(topology.port_name(leaf, index as u16));
            }
        }
    }
    names
}

fn pod_traffic(name: &str, rate: PacketRate, size: u32, flows: u32, duration: SimDuration) -> TrafficSpec {
    TrafficSpec {
        name: name.into(),
        endpoints: Endpoints::Pods { from: vec![PodId(0)], to: PodTarget::Pods(vec![PodId(1)]) },
        protocol: netsim_core::packet::IP_PROTO_UDP,
        reply_size: None,
        pattern: Pattern::Constant,
        rate,
        size_bytes: size,
        flows,
        start: SimTime::ZERO,
        stop: SimTime::ZERO + duration,
        port: 5201,
    }
}

/// The delivered goodput of a wire run, bits/s: UDP payload delivered in the steady middle of
/// the run (slices 10 to 90 of 100).
pub fn wire_goodput_bps(outcome: &Outcome, size: u32) -> f64 {
    let timeline = &outcome.report.timeline;
    let slice_ns = WIRE_RUN.as_nanos() as f64 / timeline.len().max(1) as f64;
    let (from, to) = (timeline.len() / 10, timeline.len() * 9 / 10);
    let delivered: u64 = timeline[from..to].iter().map(|b| b.delivered).sum();
    let payload = f64::from(size.saturating_sub(28));
    delivered as f64 * payload * 8.0 / ((to - from) as f64 * slice_ns) * 1e9
}

/// The synthetic workload of the cluster-size runs: `web` (2 pods per host) and `db` (1 per
/// host) with a service each, and a NetworkPolicy admitting only `web` to `db`.
fn scale_yaml(hosts: u32) -> String {
    let deployment = |name: &str, replicas: u32, port: u16| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  \
             selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    \
             spec:\n      containers: [{{name: {name}, image: {name}, ports: [{{containerPort: {port}, name: \
             serve}}]}}]\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: \
             {name}}}\n  ports: [{{port: {port}, targetPort: serve}}]\n---\n"
        )
    };
    let mut yaml = deployment("web", 2 * hosts, 8080);
    yaml += &deployment("db", hosts, 5432);
    yaml += "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db-from-web}\nspec:\n  \
             podSelector: {matchLabels: {app: db}}\n  policyTypes: [Ingress]\n  ingress:\n  - from: [{podSelector: \
             {matchLabels: {app: web}}}]\n    ports: [{port: serve}]\n";
    yaml
}

/// A fabric of `hosts` dual-homed hosts, ten per leaf pair, with `base`'s links.
fn scaled_fabric(base: &FabricConfig, hosts: u32) -> FabricConfig {
    let mut fabric = base.clone();
    fabric.hosts = hosts;
    fabric.uplinks_per_host = 2;
    fabric.leaves = 2 * hosts.div_ceil(10).max(1);
    fabric.spines = base.spines.max(2);
    fabric
}

/// A synthetic cluster of `hosts` hosts on `plane` (the plane's default path), with a pod
/// restart at 10 ms or without.
pub fn scale_job(base: &Scenario, plane: Plane, hosts: u32, churn: bool) -> Result<Job, String> {
    let path = match plane {
        Plane::Overlay => Path::overlay(Encapsulation::MplsOverUdp),
        Plane::Calico => Path::calico(CalicoEncapsulation::None),
    };
    let fabric = scaled_fabric(&base.fabric, hosts);
    let mut scenario = synthetic(base, "scale", fabric, &scale_yaml(hosts), &path, SCALE_RUN)?;
    if churn {
        let change = Change::RestartPod { namespace: "default".into(), name: "db-0".into() };
        let spec = scenario.dataplane.cluster_spec().expect("synthetic scenarios have clusters");
        let name = spec
            .cluster
            .pods()
            .iter()
            .find(|p| p.pod.template.labels.get("app").map(String::as_str) == Some("db"))
            .map(|p| (p.pod.namespace.clone(), p.pod.name.clone()));
        let change = match name {
            Some((namespace, name)) => Change::RestartPod { namespace, name },
            None => change,
        };
        scenario.churn = vec![ChurnSpec { at: SimTime::ZERO + SimDuration::from_millis(10), change }];
    }
    Ok(Job { key: Key::Scale(plane, hosts, churn), scenario, captures: Vec::new() })
}

/// Policy, set and NAT rules each host is programmed with: for Calico, felix's chain rules,
/// IP-set members and kube-proxy's service backends; for the overlay, the ACL rules of the
/// networks and interfaces on the host and its floating-IP ports.
fn rules_per_host(scenario: &Scenario, plane: Plane) -> Rules {
    let Some(spec) = scenario.dataplane.cluster_spec() else { return Rules::default() };
    let hosts = scenario.fabric.hosts;
    let counts: Vec<u64> = match plane {
        Plane::Calico => Felix::default()
            .compile(&spec.cluster, hosts, spec.isolation)
            .iter()
            .map(|program| {
                let chains: usize = program.policies.values().map(|c| c.ingress.len() + c.egress.len()).sum();
                let sets: usize = program.ipsets.values().map(Vec::len).sum();
                let services: usize = program.services.values().map(|b| b.len()).sum();
                (chains + sets + services) as u64
            })
            .collect(),
        Plane::Overlay => {
            let Ok(topology) = Topology::build(&scenario.fabric) else { return Rules::default() };
            let host_ips: Vec<Ipv4Addr> = (0..hosts).map(|h| topology.host_ip(NodeId(h))).collect();
            let plan = network_manager::plan(&spec.cluster, &host_ips, spec.isolation);
            (0..plan.host_count())
                .map(|host| plan.messages(host))
                .map(|messages| {
                    messages
                        .iter()
                        .map(|message| match message {
                            AgentMessage::Network(network) => network.acl.rules.len(),
                            AgentMessage::InterfaceAcls { ingress, egress, .. } => {
                                ingress.as_ref().map_or(0, |a| a.rules.len())
                                    + egress.as_ref().map_or(0, |a| a.rules.len())
                            }
                            AgentMessage::FloatingIp { ports, .. } => ports.len(),
                            _ => 0,
                        })
                        .sum::<usize>() as u64
                })
                .collect()
        }
    };
    let total: u64 = counts.iter().sum();
    Rules { mean: total as f64 / f64::from(hosts.max(1)), max: counts.iter().copied().max().unwrap_or(0) }
}

/// A fabric of `hosts` hosts as the cluster-size runs build it (for the report's notes).
pub fn scaled_fabric_of(base: &FabricConfig, hosts: u32) -> FabricConfig {
    scaled_fabric(base, hosts)
}

/// Whether `path` names a file: scenario paths in the report are shown relative when they can be.
pub fn display_path(path: &FilePath) -> String {
    let text = path.display().to_string();
    text.strip_prefix("./").map(str::to_string).unwrap_or(text)
}
