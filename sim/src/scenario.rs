//! Scenario files: what a run simulates, loaded from TOML and validated before anything runs.
//!
//! Loading has two stages. Parsing (serde, `deny_unknown_fields`) turns the text into the file
//! structs below and reports syntax errors, unknown keys and malformed quantities. Validation
//! then resolves names (`host-7`, `leaf-3:spine-1`) against the fabric the file describes and
//! checks the whole file, collecting every problem rather than stopping at the first. Each
//! problem is a [`Diagnostic`] naming file, line and column.
//!
//! The reference for the format is the book's "Scenario files" chapter.

use std::fmt;
use std::path::{Path, PathBuf};

use netsim_control::cluster::{Cluster, ClusterConfig, PodId};
use netsim_control::ipam::IpamMode;
use netsim_control::k8s::{Objects, manifest};
use netsim_control::network_manager::Isolation;
use netsim_core::{SimDuration, SimTime};
use netsim_fabric::{EcmpSeeding, Element, FabricConfig, NodeId, NodeKind, Topology};
use netsim_vrouter::calico::CalicoEncapsulation;
use netsim_vrouter::overlay::Encapsulation;
use serde::Deserialize;
use toml::Spanned;

use crate::report::cost::CostModel;
use crate::units::{Bandwidth, ByteSize, Duration, PacketRate};

/// The smallest IP packet a traffic entry may send: IPv4 (20) + UDP (8) + netsim's probe
/// payload (magic, flow, sequence, send time: 24).
pub const PACKET_BYTES_MIN: u64 = 52;
/// Default bound on the events one run may execute.
pub const EVENTS_MAX_DEFAULT: u64 = 1_000_000_000;
/// Default bound of the `ecmp` check on flows moved by a change of a service's backends, over
/// the fewest that had to move. Connection-pinning data planes move exactly the flows of removed
/// backends (ratio 1); hashing modulo the member count without pinning moves about n - 1 times
/// that when one of n members goes, so 1.5 separates the two for every group of three or more.
pub const DISRUPTION_RATIO_MAX_DEFAULT: f64 = 1.5;

/// One problem found in a scenario file, with its location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, 0 when the problem concerns the whole file.
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub column: usize,
    /// What is wrong, and where possible how to fix it.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: error: {}", self.file.display(), self.message)
        } else if self.column == 0 {
            write!(f, "{}:{}: error: {}", self.file.display(), self.line, self.message)
        } else {
            write!(f, "{}:{}:{}: error: {}", self.file.display(), self.line, self.column, self.message)
        }
    }
}

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{}: error: cannot read: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file was read but is not a valid scenario.
    #[error("{}", render(diagnostics))]
    Invalid {
        /// Every problem found, in file order.
        diagnostics: Vec<Diagnostic>,
    },
}

fn render(diagnostics: &[Diagnostic]) -> String {
    let lines: Vec<String> = diagnostics.iter().map(|d| d.to_string()).collect();
    lines.join("\n")
}

// ---------------------------------------------------------------------------------------------
// The file as written.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    name: Spanned<String>,
    #[serde(default = "default_seed")]
    seed: u64,
    duration: Spanned<Duration>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    events_max: Option<Spanned<u64>>,
    #[serde(default)]
    dataplane: Option<Spanned<DataplaneName>>,
    #[serde(default)]
    manifests: Vec<Spanned<String>>,
    #[serde(default)]
    isolation: Option<Spanned<IsolationName>>,
    #[serde(default)]
    fabric: Option<Spanned<FabricSection>>,
    #[serde(default)]
    cluster: Option<Spanned<ClusterSection>>,
    #[serde(default)]
    overlay: Option<Spanned<OverlaySection>>,
    #[serde(default)]
    calico: Option<Spanned<CalicoSection>>,
    #[serde(default)]
    traffic: Vec<Spanned<TrafficSection>>,
    #[serde(default, rename = "event")]
    events: Vec<Spanned<EventSection>>,
    #[serde(default, rename = "check")]
    checks: Vec<Spanned<CheckSection>>,
    #[serde(default)]
    captures: Vec<Spanned<String>>,
    #[serde(default, rename = "churn")]
    churn_rates: Vec<Spanned<ChurnRateSection>>,
    #[serde(default)]
    cost: Option<Spanned<CostSection>>,
}

/// `[cost]`: the report's cost model (see [`CostModel`] for each field and its default).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CostSection {
    stack_ns_per_packet: Option<f64>,
    ns_per_byte: Option<f64>,
    overlay_ns_per_packet: Option<f64>,
    calico_ns_per_packet: Option<f64>,
    encapsulation_ns_per_packet: Option<f64>,
    cores: Option<u32>,
    link_speeds: Option<Vec<Bandwidth>>,
    mtus: Option<Vec<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChurnRateSection {
    action: Action,
    pods: Spanned<String>,
    rate: Spanned<PacketRate>,
    #[serde(default)]
    start: Option<Duration>,
    #[serde(default)]
    stop: Option<Duration>,
}

fn default_seed() -> u64 {
    1
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum DataplaneName {
    Underlay,
    Overlay,
    Calico,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum IsolationName {
    UsesLabels,
    NetworkPolicy,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ClusterSection {
    pod_cidr: Option<String>,
    service_cidr: Option<String>,
    pods_per_host: Option<u32>,
    propagation_delay: Option<Duration>,
    propagation_jitter: Option<Duration>,
    control_nodes: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OverlaySection {
    encapsulation: Option<EncapsulationName>,
    flows_max: Option<u64>,
    flow_idle_timeout: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CalicoSection {
    encapsulation: Option<CalicoEncapsulationName>,
    bgp: Option<BgpName>,
    keepalive: Option<Duration>,
    hold_time: Option<Duration>,
    conntrack_max: Option<u64>,
    conntrack_idle_timeout: Option<Duration>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum CalicoEncapsulationName {
    None,
    Ipip,
    Vxlan,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum BgpName {
    FullMesh,
    RouteReflectors,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum EncapsulationName {
    MplsOverUdp,
    MplsOverGre,
    Vxlan,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum ProtocolName {
    Udp,
    Tcp,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FabricSection {
    hosts: Option<u32>,
    leaves: Option<u32>,
    spines: Option<u32>,
    uplinks_per_host: Option<u32>,
    mtu: Option<ByteSize>,
    detection_delay: Option<Duration>,
    ecmp_seeding: Option<EcmpSeedingName>,
    #[serde(default)]
    host_link: LinkSection,
    #[serde(default)]
    fabric_link: LinkSection,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum EcmpSeedingName {
    PerSwitch,
    Uniform,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LinkSection {
    bandwidth: Option<Bandwidth>,
    latency: Option<Duration>,
    mtu: Option<ByteSize>,
    queue: Option<ByteSize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrafficSection {
    name: Option<String>,
    from: Spanned<HostSelector>,
    to: Spanned<HostSelector>,
    #[serde(default)]
    pattern: Pattern,
    rate: Spanned<PacketRate>,
    #[serde(default = "default_size")]
    size: Spanned<ByteSize>,
    #[serde(default = "default_flows")]
    flows: Spanned<u32>,
    #[serde(default)]
    start: Option<Spanned<Duration>>,
    #[serde(default)]
    stop: Option<Spanned<Duration>>,
    #[serde(default = "default_port")]
    port: u16,
    #[serde(default)]
    protocol: Option<ProtocolName>,
    #[serde(default)]
    reply_size: Option<Spanned<ByteSize>>,
}

fn default_size() -> Spanned<ByteSize> {
    Spanned::new(0..0, ByteSize(1000))
}
fn default_flows() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}
fn default_port() -> u16 {
    5001
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum HostSelector {
    One(String),
    Many(Vec<String>),
}

/// How a traffic entry spaces its packets.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pattern {
    /// Evenly spaced, each flow starting at a random phase.
    #[default]
    Constant,
    /// Exponentially distributed gaps (a Poisson process) with the same mean rate.
    Poisson,
    /// Exactly one packet per flow, at `start` (a probe; TCP probes are SYNs). `rate` is
    /// ignored.
    Once,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventSection {
    at: Spanned<Duration>,
    action: Action,
    link: Option<Spanned<String>>,
    switch: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
    pod: Option<Spanned<String>>,
    workload: Option<Spanned<String>>,
    replicas: Option<u32>,
    manifest: Option<Spanned<String>>,
    policy: Option<Spanned<String>>,
    service: Option<Spanned<String>>,
}

/// What a scheduled event does to its element.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The element fails.
    Fail,
    /// The element comes back.
    Recover,
    /// A workload is scaled to `replicas` (overlay).
    Scale,
    /// A pod is deleted (overlay); a workload's controller replaces it.
    Delete,
    /// A pod is restarted (overlay): replaced, rescheduled and readdressed.
    Restart,
    /// A host is drained (overlay): cordoned, its pods deleted, workloads' pods recreated
    /// elsewhere.
    Drain,
    /// More Kubernetes objects are applied (overlay): new pods, services or policies.
    Apply,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckSection {
    kind: CheckKindName,
    name: Option<String>,
    min: Option<Spanned<f64>>,
    max: Option<Spanned<f64>>,
    traffic: Option<Spanned<String>>,
    max_violations: Option<u64>,
    max_gap: Option<Duration>,
    min_p_value: Option<Spanned<f64>>,
    max_ratio: Option<Spanned<f64>>,
    max_disruption_ratio: Option<Spanned<f64>>,
    max_underlay_disruption_ratio: Option<Spanned<f64>>,
    within: Option<Duration>,
    max_lost: Option<u64>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum CheckKindName {
    DeliveryRatio,
    LossOnlyInFailureWindows,
    RepliesFromTarget,
    Isolation,
    Ecmp,
    Nat,
    Convergence,
}

// ---------------------------------------------------------------------------------------------
// The validated scenario.

/// A validated scenario, with every name resolved: ready to run.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The file it came from.
    pub path: PathBuf,
    /// Its name; results go to `out/<name>/` by default.
    pub name: String,
    /// Free text describing it.
    pub description: Option<String>,
    /// The seed all randomness derives from.
    pub seed: u64,
    /// Simulated time traffic and events run for.
    pub duration: SimDuration,
    /// Bound on executed events; reaching it stops the run and fails it.
    pub events_max: u64,
    /// The underlay.
    pub fabric: FabricConfig,
    /// What carries pod traffic.
    pub dataplane: Dataplane,
    /// Traffic entries.
    pub traffic: Vec<TrafficSpec>,
    /// Scheduled failures and recoveries, sorted by time (stable for equal times).
    pub events: Vec<FaultSpec>,
    /// Scheduled changes of the cluster (churn), sorted by time.
    pub churn: Vec<ChurnSpec>,
    /// Changes of the cluster at a rate (`[[churn]]`).
    pub churn_rates: Vec<ChurnRate>,
    /// Checks judged after the run.
    pub checks: Vec<CheckSpec>,
    /// Fabric ports captured to pcap files (`host-7:uplink0`).
    pub captures: Vec<String>,
    /// The cost model `netsim report` sets beside the measurements (`[cost]`).
    pub cost: CostModel,
}

/// What carries the traffic of a scenario.
#[derive(Clone, Debug)]
pub enum Dataplane {
    /// Hosts send plain UDP over the underlay: the fabric alone.
    Underlay,
    /// Pods send through each host's overlay vrouter, programmed by the network manager.
    Overlay(Box<ClusterSpec>),
    /// Pods send through each host's Calico data plane: routed IP, BGP, felix, kube-proxy.
    Calico(Box<ClusterSpec>),
}

impl Dataplane {
    /// The cluster and its settings, for the data planes that have pods.
    pub fn cluster_spec(&self) -> Option<&ClusterSpec> {
        match self {
            Dataplane::Underlay => None,
            Dataplane::Overlay(spec) | Dataplane::Calico(spec) => Some(spec),
        }
    }

    /// The data plane's name in scenario files and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Dataplane::Underlay => "underlay",
            Dataplane::Overlay(_) => "overlay",
            Dataplane::Calico(_) => "calico",
        }
    }
}

/// How Calico hosts exchange routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BgpTopology {
    /// Every host peers with every other (Calico's default node-to-node mesh).
    FullMesh,
    /// Hosts peer with the route reflectors (the control nodes), which peer with each other.
    RouteReflectors,
}

/// Calico's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CalicoSettings {
    /// Encapsulation between hosts.
    pub encapsulation: CalicoEncapsulation,
    /// Full mesh or route reflectors.
    pub bgp: BgpTopology,
    /// BGP keepalive interval.
    pub keepalive: SimDuration,
    /// BGP hold time: a peer silent this long is declared down and its routes withdrawn.
    pub hold_time: SimDuration,
}

/// The cluster and the overlay's settings.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// The cluster built from the manifests.
    pub cluster: Cluster,
    /// The manifest files, as resolved.
    pub manifests: Vec<PathBuf>,
    /// Tunnel encapsulation.
    pub encapsulation: Encapsulation,
    /// Flow table bound per vrouter.
    pub flows_max: usize,
    /// Idle flow timeout.
    pub flow_idle_timeout: SimDuration,
    /// How pods are isolated.
    pub isolation: Isolation,
    /// Time from a change of the cluster until a host's vrouter is programmed for it.
    pub propagation_delay: SimDuration,
    /// Extra delay per host, drawn uniformly from [0, jitter): hosts learn at different times.
    pub propagation_jitter: SimDuration,
    /// Hosts running the control nodes, in order of preference (Calico: the route reflectors).
    pub control_nodes: Vec<u32>,
    /// Calico's settings (used with `dataplane = "calico"`).
    pub calico: CalicoSettings,
}

/// Who a traffic entry's flows run between.
#[derive(Clone, Debug)]
pub enum Endpoints {
    /// Underlay hosts (a flow never goes to its own source).
    Hosts {
        /// Hosts flows start from.
        from: Vec<NodeId>,
        /// Hosts flows go to.
        to: Vec<NodeId>,
    },
    /// Pods, to a service or to other pods.
    Pods {
        /// Pods flows start from.
        from: Vec<PodId>,
        /// Where they go.
        to: PodTarget,
    },
}

/// The destination of pod traffic.
#[derive(Clone, Debug)]
pub enum PodTarget {
    /// A service's ClusterIP and port.
    Service {
        /// Index in the cluster's services.
        service: usize,
    },
    /// Pods' own addresses.
    Pods(Vec<PodId>),
}

/// A traffic entry: `flows` flows between its endpoints.
#[derive(Clone, Debug)]
pub struct TrafficSpec {
    /// Its name (given, or `traffic-<index>`).
    pub name: String,
    /// Between whom.
    pub endpoints: Endpoints,
    /// IP protocol of the packets (UDP or TCP).
    pub protocol: u8,
    /// If set, every delivered packet is answered with a reply of this IP size.
    pub reply_size: Option<u32>,
    /// Spacing of packets.
    pub pattern: Pattern,
    /// Aggregate rate of the whole entry, shared evenly by its flows.
    pub rate: PacketRate,
    /// IP packet size in bytes.
    pub size_bytes: u32,
    /// Number of flows (distinct 5-tuples).
    pub flows: u32,
    /// When sending starts.
    pub start: SimTime,
    /// When sending stops.
    pub stop: SimTime,
    /// Destination port (for a service, the service's port).
    pub port: u16,
}

/// What a fault event does to its element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum FaultAction {
    /// The element fails.
    Fail,
    /// The element comes back.
    Recover,
}

/// A scheduled failure or recovery.
#[derive(Clone, Debug)]
pub struct FaultSpec {
    /// When.
    pub at: SimTime,
    /// Fail or recover.
    pub action: FaultAction,
    /// The element.
    pub element: Element,
    /// The element's name as written, for reports.
    pub target: String,
}

/// A scheduled change of the cluster.
#[derive(Clone, Debug)]
pub struct ChurnSpec {
    /// When.
    pub at: SimTime,
    /// What changes.
    pub change: Change,
}

/// Pods deleted or restarted at random, at a mean rate (a Poisson process).
#[derive(Clone, Debug)]
pub struct ChurnRate {
    /// Restart (replace) or delete the chosen pods.
    pub restart: bool,
    /// Which pods may be chosen: `pods:[NAMESPACE/]KEY=VALUE[,...]`, matched when the event fires.
    pub pods: String,
    /// Mean events per second.
    pub rate: PacketRate,
    /// When the process starts.
    pub start: SimTime,
    /// When it stops.
    pub stop: SimTime,
}

/// A change of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Scale a workload.
    Scale {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The new replica count.
        replicas: u32,
    },
    /// Delete a pod (a workload's controller replaces it).
    DeletePod {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// Restart a pod.
    RestartPod {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// Drain a host.
    Drain {
        /// The host's index.
        host: u32,
        /// Its name, for reports.
        name: String,
    },
    /// Delete a NetworkPolicy.
    DeletePolicy {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// Delete a Service. Traffic addressed to its ClusterIP keeps being sent (clients hold the
    /// address) and is dropped once the hosts learn of the deletion.
    DeleteService {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// Apply the objects of a manifest file (as `kubectl apply`: new objects are created,
    /// existing policies and services of the same name edited).
    Apply {
        /// The file, for reports.
        file: String,
        /// Its objects.
        objects: Box<Objects>,
    },
}

impl std::fmt::Display for Change {
    /// What the change does, as failure windows and findings name it (`scale default/frontend
    /// to 3`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Scale { namespace, name, replicas } => {
                write!(f, "scale {namespace}/{name} to {replicas}")
            }
            Change::DeletePod { namespace, name } => write!(f, "delete {namespace}/{name}"),
            Change::DeletePolicy { namespace, name } => write!(f, "delete policy {namespace}/{name}"),
            Change::DeleteService { namespace, name } => write!(f, "delete service {namespace}/{name}"),
            Change::RestartPod { namespace, name } => write!(f, "restart {namespace}/{name}"),
            Change::Drain { name, .. } => write!(f, "drain {name}"),
            Change::Apply { file, .. } => write!(f, "apply {file}"),
        }
    }
}

/// A check to judge after the run.
#[derive(Clone, Debug)]
pub struct CheckSpec {
    /// Its name in results.
    pub name: String,
    /// What it checks.
    pub kind: CheckKind,
}

/// The kinds of checks a foundation scenario can carry.
#[derive(Clone, Debug, PartialEq)]
pub enum CheckKind {
    /// Delivered / sent packets (of one traffic entry, or all) is at least `min` and at most
    /// `max` (a `max` of 0 asserts isolation: nothing gets through).
    DeliveryRatio {
        /// Lowest acceptable ratio, in [0, 1].
        min: f64,
        /// Highest acceptable ratio, in [0, 1].
        max: f64,
        /// Index of the traffic entry, or `None` for all traffic.
        traffic: Option<usize>,
    },
    /// Every dropped packet was dropped inside a failure window: from an element's failure
    /// until routing has learnt of its recovery.
    LossOnlyInFailureWindows,
    /// Every reply a pod receives comes from exactly the address and port its request went to
    /// (for a service, the ClusterIP and service port: NAT's reverse translation works), and
    /// some replies were received.
    RepliesFromTarget,
    /// Every packet delivered to a pod is one the isolation oracle (NetworkPolicy or the uses
    /// labels, on the cluster as it is at that instant) permits: at most `max_violations` are
    /// not. Permitted flows dropped are availability gaps; with `max_gap`, none may last longer.
    Isolation {
        /// Forbidden deliveries tolerated (default 0).
        max_violations: u64,
        /// Longest tolerated gap in a permitted flow, if bounded.
        max_gap: Option<SimDuration>,
    },
    /// Flows spread evenly over each service's backends and over each underlay ECMP group
    /// (chi-square p-value at least `min_p_value`, busiest over idlest member at most
    /// `max_ratio`), no flow changes member while its group is stable, a change of members
    /// moves at most `max_disruption_ratio` times the fewest flows it could have moved, and the
    /// underlay's choices at consecutive tiers are independent (no hash polarization).
    Ecmp {
        /// Smallest acceptable p-value of the chi-square tests of uniformity and of independence
        /// between tiers.
        min_p_value: f64,
        /// Largest acceptable ratio of the busiest member's flows to the idlest's.
        max_ratio: Option<f64>,
        /// Largest acceptable ratio of flows moved to the minimum possible, on a change of a
        /// service's backends (default [`DISRUPTION_RATIO_MAX_DEFAULT`]).
        max_disruption_ratio: f64,
        /// The same for underlay ECMP groups on a routing change; unbounded (reported only)
        /// unless set: the fabric hashes modulo the group size, as commodity switches do.
        max_underlay_disruption_ratio: Option<f64>,
    },
    /// Service NAT is correct: replies come from the VIP and port targeted, no two connections
    /// share a translated tuple, no request reaches a removed backend after the change that
    /// removed it has settled, and connections to live backends survive churn.
    Nat,
    /// Every fault or change is recovered from `within` a bound: the last loss it causes comes
    /// at most that long after it starts, and (with `max_lost`) it costs at most that many packets.
    Convergence {
        /// Longest acceptable time from a disturbance to its last loss.
        within: SimDuration,
        /// Most packets a disturbance may cost.
        max_lost: Option<u64>,
    },
}

/// A window in which losses are explained by a failure.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FailureWindow {
    /// The failed element, as named in the scenario.
    pub target: String,
    /// The failure.
    pub from_ns: u64,
    /// The recovery plus the detection delay, or `None` if it never recovers.
    pub until_ns: Option<u64>,
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, LoadError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| LoadError::Io { path: path.to_path_buf(), source })?;
        Scenario::parse(path, &text)
    }

    /// Validates scenario `text`, reporting problems against `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Scenario, LoadError> {
        let mut report = Reporter { path, text, diagnostics: Vec::new() };
        let file: ScenarioFile = match toml::from_str(text) {
            Ok(file) => file,
            Err(error) => {
                report.at(error.span(), error.message().trim_end().to_string());
                return Err(LoadError::Invalid { diagnostics: report.diagnostics });
            }
        };
        let scenario = validate(file, &mut report);
        if report.diagnostics.is_empty() {
            // Validation reports a problem whenever it cannot build a part.
            Ok(scenario.expect("a scenario without diagnostics is complete"))
        } else {
            report.diagnostics.sort_by_key(|d| (d.line, d.column));
            Err(LoadError::Invalid { diagnostics: report.diagnostics })
        }
    }

    /// The windows in which losses are explained by failures (one per failure, in time order),
    /// then by changes of the cluster.
    pub fn failure_windows(&self) -> Vec<FailureWindow> {
        let detection = self.fabric.detection_delay.as_nanos();
        let mut windows: Vec<FailureWindow> = Vec::new();
        for event in &self.events {
            match event.action {
                FaultAction::Fail => windows.push(FailureWindow {
                    target: event.target.clone(),
                    from_ns: event.at.as_nanos(),
                    until_ns: None,
                }),
                FaultAction::Recover => {
                    // Validation guarantees a recover follows a fail of the same element.
                    if let Some(window) =
                        windows.iter_mut().rev().find(|w| w.target == event.target && w.until_ns.is_none())
                    {
                        window.until_ns = Some(event.at.as_nanos() + detection);
                    }
                }
            }
        }
        // A change of the cluster disturbs traffic until every host has learnt of it (plus a
        // millisecond for packets already on their way).
        if let Some(overlay) = self.dataplane.cluster_spec() {
            let settle =
                overlay.propagation_delay.as_nanos() + overlay.propagation_jitter.as_nanos() + 1_000_000;
            for churn in &self.churn {
                windows.push(FailureWindow {
                    target: churn.change.to_string(),
                    from_ns: churn.at.as_nanos(),
                    until_ns: Some(churn.at.as_nanos() + settle),
                });
            }
        }
        windows
    }
}

struct Reporter<'a> {
    path: &'a Path,
    text: &'a str,
    diagnostics: Vec<Diagnostic>,
}

impl Reporter<'_> {
    /// Records a problem at a byte span of the file (the whole file when `None` or empty).
    fn at(&mut self, span: Option<std::ops::Range<usize>>, message: String) {
        let (line, column) = match span {
            Some(span) if span != (0..0) => {
                let start = span.start.min(self.text.len());
                let before = &self.text[..start];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                (line, column)
            }
            _ => (0, 0),
        };
        self.diagnostics.push(Diagnostic { file: self.path.to_path_buf(), line, column, message });
    }

    fn spanned<T>(&mut self, value: &Spanned<T>, message: String) {
        self.at(Some(value.span()), message);
    }
}

fn validate(file: ScenarioFile, report: &mut Reporter<'_>) -> Option<Scenario> {
    if file.name.get_ref().trim().is_empty() {
        report.spanned(&file.name, "`name` must not be empty".into());
    }
    let duration = file.duration.get_ref().0;
    if duration == SimDuration::ZERO {
        report.spanned(&file.duration, "`duration` must be positive".into());
    }
    let events_max = match &file.events_max {
        Some(value) if *value.get_ref() == 0 => {
            report.spanned(value, "`events_max` must be positive".into());
            EVENTS_MAX_DEFAULT
        }
        Some(value) => *value.get_ref(),
        None => EVENTS_MAX_DEFAULT,
    };
    let fabric = fabric_config(file.fabric.as_ref(), report)?;
    let topology = match Topology::build(&fabric) {
        Ok(topology) => topology,
        Err(error) => {
            let span = file.fabric.as_ref().map(|f| f.span());
            report.at(span, format!("[fabric]: {error}"));
            return None;
        }
    };
    let dataplane = dataplane_spec(&file, &topology, report)?;
    let cluster = dataplane.cluster_spec().map(|spec| &spec.cluster);
    let end = SimTime::ZERO + duration;
    let traffic: Vec<TrafficSpec> = file
        .traffic
        .iter()
        .enumerate()
        .filter_map(|(index, section)| traffic_spec(index, section, &topology, cluster, end, report))
        .collect();
    let mut names = std::collections::BTreeSet::new();
    for (spec, section) in traffic.iter().zip(&file.traffic) {
        if !names.insert(spec.name.clone()) {
            report.spanned(section, format!("traffic name `{}` is used twice", spec.name));
        }
    }
    let mut churn_rates = Vec::new();
    for section in &file.churn_rates {
        let churn = section.get_ref();
        let Some(cluster) = cluster else {
            report.spanned(
                section,
                "[[churn]] needs `dataplane = \"overlay\"` or `\"calico\"`, and `manifests`".into(),
            );
            continue;
        };
        let restart = match churn.action {
            Action::Restart => true,
            Action::Delete => false,
            _ => {
                report.spanned(section, "[[churn]] `action` is \"restart\" or \"delete\"".into());
                continue;
            }
        };
        match select_pods(cluster, churn.pods.get_ref()) {
            Ok(pods) if !pods.is_empty() => {}
            Ok(_) => report.spanned(&churn.pods, format!("`{}` selects no pod", churn.pods.get_ref())),
            Err(message) => report.spanned(&churn.pods, message),
        }
        if churn.rate.get_ref().interval_ns().is_none() {
            report.spanned(&churn.rate, "[[churn]] `rate` must be positive".into());
        }
        let start = SimTime::ZERO + churn.start.map_or(SimDuration::ZERO, |d| d.0);
        let stop = churn.stop.map_or(end, |d| SimTime::ZERO + d.0).min(end);
        churn_rates.push(ChurnRate {
            restart,
            pods: churn.pods.get_ref().clone(),
            rate: *churn.rate.get_ref(),
            start,
            stop,
        });
    }
    let mut captures = Vec::new();
    for capture in &file.captures {
        if topology.port_by_name(capture.get_ref()).is_some() {
            captures.push(capture.get_ref().clone());
        } else {
            report.spanned(
                capture,
                format!("capture `{}`: no such port (write e.g. `host-7:uplink0`)", capture.get_ref()),
            );
        }
    }
    let (churn_sections, fault_sections): (Vec<_>, Vec<_>) = file.events.iter().partition(|s| {
        matches!(
            s.get_ref().action,
            Action::Scale | Action::Delete | Action::Restart | Action::Drain | Action::Apply
        )
    });
    let mut churn: Vec<ChurnSpec> =
        churn_sections.iter().filter_map(|section| churn_spec(section, cluster, end, report)).collect();
    churn.sort_by_key(|c| c.at);
    let mut events: Vec<FaultSpec> =
        fault_sections.iter().filter_map(|section| fault_spec(section, &topology, end, report)).collect();
    events.sort_by_key(|event| event.at);
    check_fault_order(&events, &file.events, report);
    let checks: Vec<CheckSpec> =
        file.checks.iter().filter_map(|section| check_spec(section, &traffic, report)).collect();
    let mut check_names = std::collections::BTreeSet::new();
    for (check, section) in checks.iter().zip(&file.checks) {
        if !check_names.insert(check.name.clone()) {
            report.spanned(section, format!("check name `{}` is used twice (give one a `name`)", check.name));
        }
    }
    let cost = cost_model(file.cost.as_ref(), report);
    Some(Scenario {
        path: report.path.to_path_buf(),
        name: file.name.into_inner(),
        description: file.description,
        seed: file.seed,
        duration,
        events_max,
        fabric,
        dataplane,
        traffic,
        events,
        churn,
        churn_rates,
        checks,
        captures,
        cost,
    })
}

/// The `[cost]` section over the defaults: costs finite and not negative, at least one core,
/// one to eight link speeds and MTUs.
fn cost_model(section: Option<&Spanned<CostSection>>, report: &mut Reporter<'_>) -> CostModel {
    let mut model = CostModel::default();
    let Some(section) = section else { return model };
    let cost = section.get_ref();
    for (value, target, field) in [
        (cost.stack_ns_per_packet, &mut model.stack_ns_per_packet, "stack_ns_per_packet"),
        (cost.ns_per_byte, &mut model.ns_per_byte, "ns_per_byte"),
        (cost.overlay_ns_per_packet, &mut model.overlay_ns_per_packet, "overlay_ns_per_packet"),
        (cost.calico_ns_per_packet, &mut model.calico_ns_per_packet, "calico_ns_per_packet"),
        (
            cost.encapsulation_ns_per_packet,
            &mut model.encapsulation_ns_per_packet,
            "encapsulation_ns_per_packet",
        ),
    ] {
        match value {
            Some(value) if value.is_finite() && (0.0..=1e9).contains(&value) => *target = value,
            Some(value) => {
                report.spanned(section, format!("[cost] {field}: {value} must be between 0 and 1e9"))
            }
            None => {}
        }
    }
    match cost.cores {
        Some(cores) if (1..=4096).contains(&cores) => model.cores = cores,
        Some(cores) => report.spanned(section, format!("[cost] cores: {cores} must be between 1 and 4096")),
        None => {}
    }
    if let Some(speeds) = &cost.link_speeds {
        if (1..=8).contains(&speeds.len()) && speeds.iter().all(|s| s.0 > 0) {
            model.link_speeds_bps = speeds.iter().map(|s| s.0).collect();
        } else {
            report.spanned(
                section,
                "[cost] link_speeds: one to eight positive speeds, e.g. [\"10Gbps\"]".into(),
            );
        }
    }
    if let Some(mtus) = &cost.mtus {
        if (1..=8).contains(&mtus.len()) && mtus.iter().all(|m| (576..=65_535).contains(m)) {
            model.mtus = mtus.clone();
        } else {
            report.spanned(section, "[cost] mtus: one to eight MTUs between 576 and 65535 bytes".into());
        }
    }
    model
}

fn fabric_config(
    section: Option<&Spanned<FabricSection>>,
    report: &mut Reporter<'_>,
) -> Option<FabricConfig> {
    let mut config = FabricConfig::default();
    let Some(section) = section else {
        return Some(config);
    };
    let fabric = section.get_ref();
    config.hosts = fabric.hosts.unwrap_or(config.hosts);
    config.leaves = fabric.leaves.unwrap_or(config.leaves);
    config.spines = fabric.spines.unwrap_or(config.spines);
    config.uplinks_per_host = fabric.uplinks_per_host.unwrap_or(config.uplinks_per_host);
    if let Some(delay) = fabric.detection_delay {
        config.detection_delay = delay.0;
    }
    config.ecmp_seeding = match fabric.ecmp_seeding {
        Some(EcmpSeedingName::Uniform) => EcmpSeeding::Uniform,
        Some(EcmpSeedingName::PerSwitch) | None => EcmpSeeding::PerSwitch,
    };
    let fabric_mtu = match fabric.mtu {
        Some(mtu) => Some(mtu_bytes(mtu, "mtu", section, report)?),
        None => None,
    };
    let mut ok = true;
    for (name, link, target) in [
        ("host_link", &fabric.host_link, &mut config.host_link),
        ("fabric_link", &fabric.fabric_link, &mut config.fabric_link),
    ] {
        if let Some(bandwidth) = link.bandwidth {
            target.bandwidth_bps = bandwidth.0;
        }
        if let Some(latency) = link.latency {
            target.latency = latency.0;
        }
        if let Some(queue) = link.queue {
            target.queue_bytes_max = queue.0;
        }
        let mtu = match link.mtu {
            Some(mtu) => mtu_bytes(mtu, name, section, report),
            None => fabric_mtu,
        };
        match mtu {
            Some(mtu) => target.mtu_bytes = mtu,
            None => ok &= link.mtu.is_none(),
        }
    }
    ok.then_some(config)
}

/// An MTU within what IPv4 allows, or a reported problem.
fn mtu_bytes(
    mtu: ByteSize,
    field: &str,
    section: &Spanned<FabricSection>,
    report: &mut Reporter<'_>,
) -> Option<u32> {
    match u32::try_from(mtu.0) {
        Ok(mtu) if (68..=65_535).contains(&mtu) => Some(mtu),
        _ => {
            report.spanned(section, format!("[fabric] {field}: MTU {mtu} must be between 68B and 65535B"));
            None
        }
    }
}

/// Resolves `host-7`, `host-0..9` (inclusive) and `all` into hosts.
fn resolve_hosts(
    selector: &Spanned<HostSelector>,
    topology: &Topology,
    report: &mut Reporter<'_>,
) -> Vec<NodeId> {
    let items: Vec<&str> = match selector.get_ref() {
        HostSelector::One(item) => vec![item.as_str()],
        HostSelector::Many(items) => items.iter().map(String::as_str).collect(),
    };
    let mut hosts = Vec::new();
    for item in items {
        if item == "all" {
            hosts.extend((0..topology.host_count()).map(NodeId));
            continue;
        }
        if let Some((first, last)) = item.split_once("..") {
            let last_name = format!("host-{last}");
            match (topology.node_by_name(first), topology.node_by_name(&last_name)) {
                (Some(a), Some(b)) if topology.kind(a) == NodeKind::Host && a <= b => {
                    hosts.extend((a.0..=b.0).map(NodeId));
                }
                _ => report.spanned(
                    selector,
                    format!(
                        "`{item}` is not a host range: write `host-A..B` (A through B) with 0 <= A <= B < {}",
                        topology.host_count()
                    ),
                ),
            }
            continue;
        }
        match topology.node_by_name(item) {
            Some(node) if topology.kind(node) == NodeKind::Host => hosts.push(node),
            _ => report.spanned(
                selector,
                format!(
                    "`{item}` is not a host: write `host-N` (0 <= N < {}), `host-A..B` or `all`",
                    topology.host_count()
                ),
            ),
        }
    }
    hosts.sort();
    hosts.dedup();
    hosts
}

fn traffic_spec(
    index: usize,
    section: &Spanned<TrafficSection>,
    topology: &Topology,
    cluster: Option<&Cluster>,
    end: SimTime,
    report: &mut Reporter<'_>,
) -> Option<TrafficSpec> {
    let traffic = section.get_ref();
    let before = report.diagnostics.len();
    let name = traffic.name.clone().unwrap_or_else(|| format!("traffic-{index}"));
    let pod_traffic = selector_items(&traffic.from).iter().any(|item| item.starts_with("pods:"));
    let endpoints = if pod_traffic {
        pod_endpoints(&name, traffic, cluster, report)
    } else {
        let from = resolve_hosts(&traffic.from, topology, report);
        let to = resolve_hosts(&traffic.to, topology, report);
        if report.diagnostics.len() == before
            && (from.is_empty() || to.is_empty() || (from.len() == 1 && from == to))
        {
            report.spanned(
                section,
                format!("traffic `{name}`: `from` and `to` must allow a flow between two different hosts"),
            );
        }
        Some(Endpoints::Hosts { from, to })
    };
    let protocol = match traffic.protocol {
        Some(ProtocolName::Tcp) => netsim_core::packet::IP_PROTO_TCP,
        Some(ProtocolName::Udp) => netsim_core::packet::IP_PROTO_UDP,
        // Services are TCP unless they say otherwise; plain host traffic is UDP.
        None if pod_traffic => netsim_core::packet::IP_PROTO_TCP,
        None => netsim_core::packet::IP_PROTO_UDP,
    };
    let probe_min = PACKET_BYTES_MIN + if protocol == netsim_core::packet::IP_PROTO_TCP { 12 } else { 0 };
    let reply_size = match &traffic.reply_size {
        Some(size) if !(probe_min..=65_535).contains(&size.get_ref().0) => {
            report.spanned(
                size,
                format!("traffic `{name}`: `reply_size` must be between {probe_min}B and 65535B"),
            );
            None
        }
        Some(size) if !pod_traffic => {
            report
                .spanned(size, format!("traffic `{name}`: replies need pod traffic (`from = \"pods:...\"`)"));
            None
        }
        Some(size) => Some(size.get_ref().0 as u32),
        None => None,
    };
    let rate = *traffic.rate.get_ref();
    let flows = *traffic.flows.get_ref();
    if !(1..=1_000_000).contains(&flows) {
        report.spanned(&traffic.flows, format!("traffic `{name}`: `flows` must be between 1 and 1000000"));
    } else if rate.split(flows).per_megasecond == 0 {
        report.spanned(
            &traffic.rate,
            format!("traffic `{name}`: rate {rate} shared by {flows} flows leaves each flow no packets"),
        );
    }
    let size = traffic.size.get_ref().0;
    if !(probe_min..=65_535).contains(&size) {
        let message = format!(
            "traffic `{name}`: `size` {size}B must be between {probe_min}B (headers and probe payload) and 65535B"
        );
        report.at(Some(traffic.size.span()).filter(|s| *s != (0..0)).or(Some(section.span())), message);
    }
    let start = SimTime::ZERO + traffic.start.as_ref().map_or(SimDuration::ZERO, |s| s.get_ref().0);
    let stop = traffic.stop.as_ref().map_or(end, |s| SimTime::ZERO + s.get_ref().0);
    if let Some(stop_field) = &traffic.stop
        && stop > end
    {
        report.spanned(
            stop_field,
            format!("traffic `{name}`: `stop` {} is after the scenario's duration", stop_field.get_ref()),
        );
    }
    if start >= stop {
        let field = traffic.start.as_ref().map_or(section.span(), |s| s.span());
        report.at(Some(field), format!("traffic `{name}`: `start` must be before `stop` (and the duration)"));
    }
    let endpoints = endpoints?;
    (report.diagnostics.len() == before).then_some(TrafficSpec {
        name,
        endpoints,
        protocol,
        reply_size,
        pattern: traffic.pattern,
        rate,
        size_bytes: size as u32,
        flows,
        start,
        stop,
        port: traffic.port,
    })
}

fn selector_items(selector: &Spanned<HostSelector>) -> Vec<&str> {
    match selector.get_ref() {
        HostSelector::One(item) => vec![item.as_str()],
        HostSelector::Many(items) => items.iter().map(String::as_str).collect(),
    }
}

/// Pods matching `pods:[NAMESPACE/]KEY=VALUE[,KEY=VALUE...]`.
pub(crate) fn select_pods(cluster: &Cluster, selector: &str) -> Result<Vec<PodId>, String> {
    let body = selector.strip_prefix("pods:").unwrap_or(selector);
    let (namespace, terms) = match body.split_once('/') {
        Some((namespace, terms)) => (Some(namespace), terms),
        None => (None, body),
    };
    let mut labels = Vec::new();
    for term in terms.split(',') {
        let (key, value) = term
            .split_once('=')
            .ok_or_else(|| format!("`{selector}`: write pods:[NAMESPACE/]KEY=VALUE[,KEY=VALUE...]"))?;
        labels.push((key.trim(), value.trim()));
    }
    Ok(cluster
        .pods()
        .iter()
        .enumerate()
        .filter(|(_, p)| namespace.is_none_or(|n| p.pod.namespace == n))
        .filter(|(_, p)| {
            labels.iter().all(|(k, v)| p.pod.template.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(i, _)| PodId(i as u32))
        .collect())
}

fn pod_endpoints(
    name: &str,
    traffic: &TrafficSection,
    cluster: Option<&Cluster>,
    report: &mut Reporter<'_>,
) -> Option<Endpoints> {
    let Some(cluster) = cluster else {
        report.spanned(
            &traffic.from,
            format!("traffic `{name}`: pod traffic needs `dataplane = \"overlay\"` or `\"calico\"`, and `manifests`"),
        );
        return None;
    };
    let mut from = Vec::new();
    for item in selector_items(&traffic.from) {
        match select_pods(cluster, item) {
            Ok(pods) if !pods.is_empty() => from.extend(pods),
            Ok(_) => report.spanned(&traffic.from, format!("traffic `{name}`: `{item}` selects no pod")),
            Err(message) => report.spanned(&traffic.from, format!("traffic `{name}`: {message}")),
        }
    }
    from.sort();
    from.dedup();
    let targets = selector_items(&traffic.to);
    let [target] = targets.as_slice() else {
        report.spanned(
            &traffic.to,
            format!("traffic `{name}`: pod traffic goes to one `service:NAME` or `pods:...`"),
        );
        return None;
    };
    let to = if let Some(service) = target.strip_prefix("service:") {
        let (namespace, service) = service.split_once('/').unwrap_or(("default", service));
        let found = cluster.services().iter().position(|s| {
            s.service.namespace == namespace && s.service.name == service && s.cluster_ip.is_some()
        });
        match found {
            Some(index) => {
                let state = &cluster.services()[index];
                if !state.service.ports.iter().any(|p| p.port == traffic.port) {
                    let ports: Vec<String> = state.service.ports.iter().map(|p| p.port.to_string()).collect();
                    report.spanned(&traffic.to, format!("traffic `{name}`: service `{namespace}/{service}` has no port {} (it has {}); set `port`", traffic.port, ports.join(", ")));
                }
                PodTarget::Service { service: index }
            }
            None => {
                report.spanned(&traffic.to, format!("traffic `{name}`: no service `{namespace}/{service}` with a ClusterIP in the manifests"));
                return None;
            }
        }
    } else {
        match select_pods(cluster, target) {
            Ok(pods) if !pods.is_empty() => PodTarget::Pods(pods),
            Ok(_) => {
                report.spanned(&traffic.to, format!("traffic `{name}`: `{target}` selects no pod"));
                return None;
            }
            Err(message) => {
                report.spanned(&traffic.to, format!("traffic `{name}`: {message} (or service:NAME)"));
                return None;
            }
        }
    };
    if let PodTarget::Pods(pods) = &to
        && pods.len() == 1
        && from == *pods
    {
        report.spanned(&traffic.to, format!("traffic `{name}`: a pod cannot be its own only destination"));
    }
    (!from.is_empty()).then_some(Endpoints::Pods { from, to })
}

/// The data plane, the manifests and the cluster they build.
fn dataplane_spec(file: &ScenarioFile, topology: &Topology, report: &mut Reporter<'_>) -> Option<Dataplane> {
    let name = file.dataplane.as_ref().map_or(DataplaneName::Underlay, |d| *d.get_ref());
    if name == DataplaneName::Underlay {
        for (present, what) in [
            (!file.manifests.is_empty(), "`manifests`"),
            (file.overlay.is_some(), "[overlay]"),
            (file.calico.is_some(), "[calico]"),
            (file.cluster.is_some(), "[cluster]"),
            (file.isolation.is_some(), "`isolation`"),
        ] {
            if present {
                report.at(None, format!("{what} needs `dataplane = \"overlay\"` or `\"calico\"`"));
                return None;
            }
        }
        return Some(Dataplane::Underlay);
    }
    if name == DataplaneName::Calico {
        if let Some(section) = &file.overlay {
            report.spanned(
                section,
                "[overlay] settings need `dataplane = \"overlay\"`; this scenario is calico".into(),
            );
            return None;
        }
    } else if let Some(section) = &file.calico {
        report.spanned(section, "[calico] settings need `dataplane = \"calico\"`".into());
        return None;
    }
    let mut config = ClusterConfig { hosts: topology.host_count(), ..ClusterConfig::default() };
    if name == DataplaneName::Calico {
        // Calico's IPAM: per-host /26 blocks, which BGP announces.
        config.ipam = IpamMode::HostBlocks { prefix_len: 26 };
    }
    if let Some(section) = &file.cluster {
        let cluster = section.get_ref();
        for (value, target, field) in [
            (&cluster.pod_cidr, &mut config.pod_cidr, "pod_cidr"),
            (&cluster.service_cidr, &mut config.service_cidr, "service_cidr"),
        ] {
            if let Some(text) = value {
                match text.parse() {
                    Ok(net) => *target = net,
                    Err(_) => {
                        report.spanned(section, format!("[cluster] {field}: `{text}` is not an IPv4 CIDR"));
                        return None;
                    }
                }
            }
        }
        if let Some(pods) = cluster.pods_per_host {
            config.pods_per_host_max = pods;
        }
    }
    let base = report.path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut objects = Objects::default();
    let mut manifests = Vec::new();
    for entry in &file.manifests {
        let path = base.join(entry.get_ref());
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) => {
                report.spanned(entry, format!("cannot read manifest {}: {error}", path.display()));
                continue;
            }
        };
        match manifest::parse(&path.display().to_string(), &text) {
            Ok((parsed, _warnings)) => objects.extend(parsed),
            Err(errors) => {
                for error in errors {
                    report.diagnostics.push(Diagnostic {
                        file: path.clone(),
                        line: error.line.unwrap_or(0),
                        column: 0,
                        message: match &error.object {
                            Some(object) => {
                                format!("document {} ({object}): {}", error.document, error.message)
                            }
                            None => format!("document {}: {}", error.document, error.message),
                        },
                    });
                }
            }
        }
        manifests.push(path);
    }
    if file.manifests.is_empty() {
        report.at(None, "a cluster data plane needs `manifests` (Kubernetes YAML files)".into());
        return None;
    }
    let cluster = match Cluster::build(config, objects) {
        Ok(cluster) => cluster,
        Err(errors) => {
            for error in errors {
                report.spanned(&file.manifests[0], format!("{error}"));
            }
            return None;
        }
    };
    let hosts = topology.host_count();
    let control_nodes = match file.cluster.as_ref().and_then(|c| c.get_ref().control_nodes.as_ref()) {
        // Two control nodes on the last two hosts, as in a small OpenContrail deployment.
        None => (hosts.saturating_sub(2)..hosts).rev().collect(),
        Some(names) => {
            let mut nodes = Vec::new();
            for name in names {
                match topology.node_by_name(name.get_ref()).filter(|n| topology.kind(*n) == NodeKind::Host) {
                    Some(node) => nodes.push(node.0),
                    None => report.spanned(
                        name,
                        format!("control node `{}` is not a host of this fabric", name.get_ref()),
                    ),
                }
            }
            if nodes.is_empty() {
                report.at(None, "[cluster] control_nodes: at least one host".into());
                return None;
            }
            nodes
        }
    };
    let section = file.overlay.as_ref().map(|o| o.get_ref());
    let encapsulation = match section.and_then(|o| o.encapsulation) {
        None | Some(EncapsulationName::MplsOverUdp) => Encapsulation::MplsOverUdp,
        Some(EncapsulationName::MplsOverGre) => Encapsulation::MplsOverGre,
        Some(EncapsulationName::Vxlan) => Encapsulation::Vxlan,
    };
    let calico_section = file.calico.as_ref().map(|c| c.get_ref());
    let calico = CalicoSettings {
        encapsulation: match calico_section.and_then(|c| c.encapsulation) {
            None | Some(CalicoEncapsulationName::None) => CalicoEncapsulation::None,
            Some(CalicoEncapsulationName::Ipip) => CalicoEncapsulation::IpIp,
            Some(CalicoEncapsulationName::Vxlan) => CalicoEncapsulation::Vxlan,
        },
        bgp: match calico_section.and_then(|c| c.bgp) {
            None | Some(BgpName::FullMesh) => BgpTopology::FullMesh,
            Some(BgpName::RouteReflectors) => BgpTopology::RouteReflectors,
        },
        keepalive: calico_section.and_then(|c| c.keepalive).map_or(SimDuration::from_secs(1), |d| d.0),
        hold_time: calico_section.and_then(|c| c.hold_time).map_or(SimDuration::from_secs(3), |d| d.0),
    };
    if calico.keepalive.as_nanos() == 0 || calico.hold_time < calico.keepalive {
        let span = file.calico.as_ref().map(|c| c.span());
        report.at(span, "[calico] keepalive must be positive and at most hold_time".into());
        return None;
    }
    let (flows_max, flow_idle_timeout) = match name {
        DataplaneName::Calico => (
            calico_section.and_then(|c| c.conntrack_max),
            calico_section.and_then(|c| c.conntrack_idle_timeout),
        ),
        _ => (section.and_then(|o| o.flows_max), section.and_then(|o| o.flow_idle_timeout)),
    };
    let spec = Box::new(ClusterSpec {
        cluster,
        manifests,
        encapsulation,
        flows_max: flows_max.unwrap_or(512 * 1024) as usize,
        flow_idle_timeout: flow_idle_timeout.map_or(SimDuration::from_secs(60), |d| d.0),
        isolation: match file.isolation.as_ref().map(|i| *i.get_ref()) {
            None if name == DataplaneName::Calico => Isolation::NetworkPolicy,
            None | Some(IsolationName::UsesLabels) => Isolation::UsesLabels,
            Some(IsolationName::NetworkPolicy) => Isolation::NetworkPolicy,
        },
        propagation_delay: file
            .cluster
            .as_ref()
            .and_then(|c| c.get_ref().propagation_delay)
            .map_or(SimDuration::from_millis(20), |d| d.0),
        propagation_jitter: file
            .cluster
            .as_ref()
            .and_then(|c| c.get_ref().propagation_jitter)
            .map_or(SimDuration::from_millis(10), |d| d.0),
        control_nodes,
        calico,
    });
    Some(match name {
        DataplaneName::Calico => Dataplane::Calico(spec),
        _ => Dataplane::Overlay(spec),
    })
}

/// An event's time, which must lie before the end of the run.
fn event_time(event: &EventSection, end: SimTime, report: &mut Reporter<'_>) -> Option<SimTime> {
    let at = SimTime::ZERO + event.at.get_ref().0;
    if at >= end {
        report.spanned(
            &event.at,
            format!("event at {} is not before the scenario's duration", event.at.get_ref()),
        );
        return None;
    }
    Some(at)
}

fn churn_spec(
    section: &Spanned<EventSection>,
    cluster: Option<&Cluster>,
    end: SimTime,
    report: &mut Reporter<'_>,
) -> Option<ChurnSpec> {
    let event = section.get_ref();
    let at = event_time(event, end, report)?;
    let Some(cluster) = cluster else {
        report.spanned(
            section,
            "pod and workload events need `dataplane = \"overlay\"` and `manifests`".into(),
        );
        return None;
    };
    let split = |name: &str| -> (String, String) {
        match name.split_once('/') {
            Some((namespace, name)) => (namespace.to_string(), name.to_string()),
            None => ("default".to_string(), name.to_string()),
        }
    };
    let fabric_target = event.link.is_some() || event.switch.is_some();
    if event.action == Action::Apply {
        let (Some(manifest), None, None, None, None, false) =
            (&event.manifest, &event.workload, &event.pod, event.replicas, &event.host, fabric_target)
        else {
            report.spanned(section, "an `apply` event names the `manifest` (and nothing else)".into());
            return None;
        };
        let path = report.path.parent().map(Path::to_path_buf).unwrap_or_default().join(manifest.get_ref());
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) => {
                report.spanned(manifest, format!("cannot read manifest {}: {error}", path.display()));
                return None;
            }
        };
        let objects = match manifest::parse(&path.display().to_string(), &text) {
            Ok((objects, _)) => objects,
            Err(errors) => {
                for error in errors {
                    report.spanned(manifest, error.to_string());
                }
                return None;
            }
        };
        // Probe on a copy: the objects must fit the cluster as the manifests leave it.
        if let Err(errors) = cluster.clone().apply(objects.clone()) {
            for error in errors {
                report.spanned(manifest, error.to_string());
            }
            return None;
        }
        return Some(ChurnSpec {
            at,
            change: Change::Apply { file: manifest.get_ref().clone(), objects: Box::new(objects) },
        });
    }
    if let Some(policy) = &event.policy {
        let (Action::Delete, None, None, None, None, false) =
            (event.action, &event.workload, &event.pod, event.replicas, &event.host, fabric_target)
        else {
            report.spanned(
                section,
                "a `policy` event deletes it: `action = \"delete\"` and nothing else".into(),
            );
            return None;
        };
        let (namespace, name) = split(policy.get_ref());
        if !cluster.policies().iter().any(|p| p.namespace == namespace && p.name == name) {
            report.spanned(policy, format!("no NetworkPolicy `{namespace}/{name}` in the manifests"));
            return None;
        }
        return Some(ChurnSpec { at, change: Change::DeletePolicy { namespace, name } });
    }
    if let Some(service) = &event.service {
        let (Action::Delete, None, None, None, None, false) =
            (event.action, &event.workload, &event.pod, event.replicas, &event.host, fabric_target)
        else {
            report.spanned(
                section,
                "a `service` event deletes it: `action = \"delete\"` and nothing else".into(),
            );
            return None;
        };
        let (namespace, name) = split(service.get_ref());
        if !cluster.live_services().any(|s| s.service.namespace == namespace && s.service.name == name) {
            report.spanned(service, format!("no Service `{namespace}/{name}` in the manifests"));
            return None;
        }
        return Some(ChurnSpec { at, change: Change::DeleteService { namespace, name } });
    }
    let change = match (event.action, &event.workload, &event.pod, event.replicas, &event.host) {
        (Action::Scale, Some(workload), None, Some(replicas), None) if !fabric_target => {
            let (namespace, name) = split(workload.get_ref());
            // Probe the name on a copy: scaling a clone checks the workload exists.
            if let Err(message) = cluster.clone().scale(&namespace, &name, replicas) {
                report.spanned(workload, message);
                return None;
            }
            Change::Scale { namespace, name, replicas }
        }
        (Action::Delete | Action::Restart, None, Some(pod), None, None) if !fabric_target => {
            let (namespace, name) = split(pod.get_ref());
            if cluster.pod_by_name(&namespace, &name).is_none() {
                report.spanned(pod, format!("no pod `{namespace}/{name}` in the manifests"));
                return None;
            }
            if event.action == Action::Delete {
                Change::DeletePod { namespace, name }
            } else {
                Change::RestartPod { namespace, name }
            }
        }
        (Action::Drain, None, None, None, Some(host)) if !fabric_target => {
            let name = host.get_ref().clone();
            let Some(index) = name
                .strip_prefix("host-")
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|&h| h < cluster.config().hosts)
            else {
                report.spanned(host, format!("host `{name}` does not exist in this fabric"));
                return None;
            };
            Change::Drain { host: index, name }
        }
        (Action::Scale, ..) => {
            report.spanned(
                section,
                "a `scale` event names `workload` and `replicas` (and nothing else)".into(),
            );
            return None;
        }
        (Action::Drain, ..) => {
            report.spanned(section, "a `drain` event names the `host` (and nothing else)".into());
            return None;
        }
        _ => {
            report
                .spanned(section, "a `delete` or `restart` event names the `pod` (and nothing else)".into());
            return None;
        }
    };
    Some(ChurnSpec { at, change })
}

fn fault_spec(
    section: &Spanned<EventSection>,
    topology: &Topology,
    end: SimTime,
    report: &mut Reporter<'_>,
) -> Option<FaultSpec> {
    let event = section.get_ref();
    let at = event_time(event, end, report)?;
    let targets: Vec<(&str, &Spanned<String>)> =
        [("link", &event.link), ("switch", &event.switch), ("host", &event.host)]
            .into_iter()
            .filter_map(|(kind, target)| target.as_ref().map(|t| (kind, t)))
            .collect();
    let [(kind, target)] = targets.as_slice() else {
        report.spanned(section, "an event names exactly one of `link`, `switch` or `host`".into());
        return None;
    };
    if event.pod.is_some() || event.workload.is_some() || event.replicas.is_some() || event.manifest.is_some()
    {
        report.spanned(
            section,
            "`fail` and `recover` name a `link`, `switch` or `host`, not pods, workloads or manifests".into(),
        );
        return None;
    }
    let name = target.get_ref().as_str();
    let element = match *kind {
        "link" => topology
            .port_by_name(name)
            .map(|(node, port)| Element::Link(topology.ports(node)[usize::from(port)].link)),
        "switch" => {
            topology.node_by_name(name).filter(|n| topology.kind(*n) != NodeKind::Host).map(Element::Node)
        }
        _ => topology.node_by_name(name).filter(|n| topology.kind(*n) == NodeKind::Host).map(Element::Node),
    };
    let Some(element) = element else {
        let hint = match *kind {
            "link" => format!("a port name such as `{}`", topology.example_port_names().join("` or `")),
            "switch" => "`leaf-N` or `spine-N`".to_string(),
            _ => "`host-N`".to_string(),
        };
        report.spanned(target, format!("{kind} `{name}` does not exist in this fabric: write {hint}"));
        return None;
    };
    let action = if event.action == Action::Recover { FaultAction::Recover } else { FaultAction::Fail };
    Some(FaultSpec { at, action, element, target: name.to_string() })
}

/// Each element's events must alternate fail, recover, fail, ... starting with fail.
fn check_fault_order(events: &[FaultSpec], sections: &[Spanned<EventSection>], report: &mut Reporter<'_>) {
    let mut failed = std::collections::BTreeSet::new();
    for event in events {
        let consistent = match event.action {
            FaultAction::Fail => failed.insert(event.element),
            FaultAction::Recover => failed.remove(&event.element),
        };
        if !consistent {
            let state = if event.action == FaultAction::Fail { "already failed" } else { "not failed" };
            let section = sections.iter().find(|s| SimTime::ZERO + s.get_ref().at.get_ref().0 == event.at);
            report.at(
                section.map(|s| s.span()),
                format!("{:?} of `{}` at {}: it is {state} then", event.action, event.target, event.at)
                    .to_lowercase(),
            );
        }
    }
}

fn check_spec(
    section: &Spanned<CheckSection>,
    traffic: &[TrafficSpec],
    report: &mut Reporter<'_>,
) -> Option<CheckSpec> {
    let check = section.get_ref();
    let traffic_index = match &check.traffic {
        Some(name) => match traffic.iter().position(|t| &t.name == name.get_ref()) {
            Some(index) => Some(index),
            None => {
                report.spanned(name, format!("no traffic entry is named `{}`", name.get_ref()));
                return None;
            }
        },
        None => None,
    };
    let (kind, default_name) = match check.kind {
        CheckKindName::DeliveryRatio => {
            if check.min.is_none() && check.max.is_none() {
                report.spanned(
                    section,
                    "a `delivery_ratio` check needs `min` (e.g. min = 0.99) or `max`".into(),
                );
                return None;
            }
            for bound in [&check.min, &check.max].into_iter().flatten() {
                if !(0.0..=1.0).contains(bound.get_ref()) {
                    report.spanned(bound, "`min` and `max` are ratios between 0 and 1".into());
                    return None;
                }
            }
            let name = match traffic_index {
                Some(index) => format!("delivery_ratio[{}]", traffic[index].name),
                None => "delivery_ratio".to_string(),
            };
            let min = check.min.as_ref().map_or(0.0, |m| *m.get_ref());
            let max = check.max.as_ref().map_or(1.0, |m| *m.get_ref());
            (CheckKind::DeliveryRatio { min, max, traffic: traffic_index }, name)
        }
        CheckKindName::RepliesFromTarget => {
            for bound in [&check.min, &check.max].into_iter().flatten() {
                report.spanned(bound, "`replies_from_target` takes no `min` or `max`".into());
            }
            if let Some(name) = &check.traffic {
                report.spanned(name, "`replies_from_target` applies to all traffic; remove `traffic`".into());
            }
            (CheckKind::RepliesFromTarget, "replies_from_target".to_string())
        }
        CheckKindName::LossOnlyInFailureWindows => {
            for bound in [&check.min, &check.max].into_iter().flatten() {
                report.spanned(bound, "`loss_only_in_failure_windows` takes no `min` or `max`".into());
            }
            if let Some(name) = &check.traffic {
                report.spanned(
                    name,
                    "`loss_only_in_failure_windows` applies to all traffic; remove `traffic`".into(),
                );
            }
            (CheckKind::LossOnlyInFailureWindows, "loss_only_in_failure_windows".to_string())
        }
        CheckKindName::Isolation => (
            CheckKind::Isolation {
                max_violations: check.max_violations.unwrap_or(0),
                max_gap: check.max_gap.map(|d| d.0),
            },
            "isolation".to_string(),
        ),
        CheckKindName::Ecmp => {
            let min_p_value = check.min_p_value.as_ref().map_or(0.001, |p| *p.get_ref());
            if let Some(p) = &check.min_p_value
                && !(0.0..=1.0).contains(p.get_ref())
            {
                report.spanned(p, "`min_p_value` is a probability between 0 and 1".into());
                return None;
            }
            if let Some(ratio) = &check.max_ratio
                && *ratio.get_ref() < 1.0
            {
                report.spanned(ratio, "`max_ratio` is at least 1 (busiest over idlest)".into());
                return None;
            }
            for bound in
                [&check.max_disruption_ratio, &check.max_underlay_disruption_ratio].into_iter().flatten()
            {
                if bound.get_ref().is_nan() || *bound.get_ref() < 1.0 {
                    report.spanned(
                        bound,
                        "a disruption ratio bound is at least 1 (flows moved over the fewest that had to move)"
                            .into(),
                    );
                    return None;
                }
            }
            (
                CheckKind::Ecmp {
                    min_p_value,
                    max_ratio: check.max_ratio.as_ref().map(|r| *r.get_ref()),
                    max_disruption_ratio: check
                        .max_disruption_ratio
                        .as_ref()
                        .map_or(DISRUPTION_RATIO_MAX_DEFAULT, |r| *r.get_ref()),
                    max_underlay_disruption_ratio: check
                        .max_underlay_disruption_ratio
                        .as_ref()
                        .map(|r| *r.get_ref()),
                },
                "ecmp".to_string(),
            )
        }
        CheckKindName::Nat => (CheckKind::Nat, "nat".to_string()),
        CheckKindName::Convergence => {
            let Some(within) = check.within else {
                report.spanned(
                    section,
                    "a `convergence` check needs `within` (e.g. within = \"100ms\")".into(),
                );
                return None;
            };
            (CheckKind::Convergence { within: within.0, max_lost: check.max_lost }, "convergence".to_string())
        }
    };
    Some(CheckSpec { name: check.name.clone().unwrap_or(default_name), kind })
}

#[cfg(test)]
mod tests;
