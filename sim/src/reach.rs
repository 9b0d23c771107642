//! `netsim reach`: what can talk to what, measured with real probes through a data plane and
//! judged against the reference.
//!
//! The manifests are loaded into the default 100-host cluster; after the control plane has
//! programmed the data plane, every pod sends one real probe (a TCP SYN, or a UDP datagram) to
//! every other pod on every port and protocol the destination's containers declare. Under the
//! seeds' label model, whose point is which services a collection may use, every pod also
//! probes every service's ClusterIP on each of the service's ports that has a backend (without
//! one nothing could receive the probe, whatever the policy). A probe is *allowed* when
//! it is delivered to the destination pod (for a service: to any backend). Each result is
//! compared with the reference evaluator of the isolation model (NetworkPolicy or the seeds'
//! labels), which is the contract the data planes are held to.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use netsim_control::cluster::{Cluster, ClusterConfig, PodId};
use netsim_control::k8s::{Objects, Protocol, manifest};
use netsim_control::network_manager::Isolation;
use netsim_control::{labels, netpol};
use netsim_core::{SimDuration, SimTime};
use netsim_fabric::FabricConfig;
use netsim_vrouter::calico::CalicoEncapsulation;
use netsim_vrouter::overlay::Encapsulation;
use serde::Serialize;

use crate::runner::{self, RunOptions};
use crate::scenario::{
    BgpTopology, CalicoSettings, ClusterSpec, Dataplane, EVENTS_MAX_DEFAULT, Endpoints, Pattern, PodTarget,
    Scenario, TrafficSpec,
};
use crate::units::PacketRate;

/// Time between successive probes: long enough that they never queue behind each other.
const PROBE_SPACING: SimDuration = SimDuration::from_micros(2);

/// One probe and its outcome.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ProbeResult {
    /// Source pod, `namespace/name`.
    pub from: String,
    /// Destination pod, `namespace/name`, or a service, `service:namespace/name`.
    pub to: String,
    /// Destination port.
    pub port: u16,
    /// `TCP` or `UDP`.
    pub protocol: &'static str,
    /// `allowed` (delivered to the destination pod) or `denied`.
    pub result: &'static str,
    /// What the reference evaluator says.
    pub expected: &'static str,
}

/// The outcome of `netsim reach` for one set of manifests.
#[derive(Clone, Debug, Serialize)]
pub struct Reach {
    /// The data plane probed.
    pub dataplane: &'static str,
    /// The isolation model.
    pub isolation: &'static str,
    /// Every probe, sorted.
    pub probes: Vec<ProbeResult>,
    /// Destination ports of SCTP, which netsim does not probe yet.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_probed: Vec<String>,
}

impl Reach {
    /// Probes whose result differs from the reference.
    pub fn mismatches(&self) -> impl Iterator<Item = &ProbeResult> {
        self.probes.iter().filter(|p| p.result != p.expected)
    }
}

/// Loads and merges manifest files into objects; every problem of every file is reported.
pub fn load_manifests(paths: &[PathBuf]) -> Result<Objects, Vec<String>> {
    let mut objects = Objects::default();
    let mut errors = Vec::new();
    for path in paths {
        match std::fs::read_to_string(path) {
            Ok(text) => match manifest::parse(&path.display().to_string(), &text) {
                Ok((parsed, warnings)) => {
                    for warning in warnings {
                        eprintln!("{warning}");
                    }
                    objects.extend(parsed);
                }
                Err(found) => errors.extend(found.iter().map(ToString::to_string)),
            },
            Err(error) => errors.push(format!("{}: error: cannot read: {error}", path.display())),
        }
    }
    if errors.is_empty() { Ok(objects) } else { Err(errors) }
}

/// What a probe is sent to.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// A pod's own address.
    Pod(PodId),
    /// A service's ClusterIP (index in the cluster's services).
    Service(usize),
}

/// The data planes `reach` can probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReachPlane {
    /// The OpenContrail-style overlay (either isolation model).
    Overlay,
    /// Calico (either isolation model).
    Calico,
}

/// Probes every pod pair of `objects` through `plane` under `isolation`.
pub fn reach(
    objects: Objects,
    manifests: &[PathBuf],
    plane: ReachPlane,
    isolation: Isolation,
) -> Result<Reach, Vec<String>> {
    let fabric = FabricConfig::default();
    // Both data planes get the same addresses (cluster-wide IPAM; Calico then announces /32s),
    // so that address blocks in policies select the same pods and results compare.
    let cluster = Cluster::build(ClusterConfig { hosts: fabric.hosts, ..ClusterConfig::default() }, objects)
        .map_err(|errors| errors.iter().map(|e| format!("error: {e}")).collect::<Vec<_>>())?;
    let mut probes = Vec::new();
    let mut not_probed = Vec::new();
    for (to_index, to) in cluster.pods().iter().enumerate() {
        let mut ports: Vec<(u16, Protocol)> =
            to.pod.template.ports.iter().map(|p| (p.port, p.protocol)).collect();
        ports.sort();
        ports.dedup();
        for (port, protocol) in ports {
            if protocol == Protocol::Sctp {
                not_probed.push(format!("{}:{port}/SCTP", to.key()));
                continue;
            }
            for from in 0..cluster.pods().len() {
                if from != to_index {
                    probes.push((PodId(from as u32), Target::Pod(PodId(to_index as u32)), port, protocol));
                }
            }
        }
    }
    if isolation == Isolation::UsesLabels {
        for (index, service) in cluster.services().iter().enumerate() {
            if service.deleted || service.cluster_ip.is_none() {
                continue;
            }
            for (port, backends) in service.service.ports.iter().zip(&service.backends) {
                if port.protocol == Protocol::Sctp {
                    not_probed.push(format!("service:{}:{}/SCTP", service.key(), port.port));
                    continue;
                }
                if backends.is_empty() {
                    // Nothing could receive the probe, whatever the policy.
                    continue;
                }
                for from in 0..cluster.pods().len() {
                    probes.push((PodId(from as u32), Target::Service(index), port.port, port.protocol));
                }
            }
        }
    }
    let traffic: Vec<TrafficSpec> = probes
        .iter()
        .enumerate()
        .map(|(index, &(from, to, port, protocol))| {
            let start =
                SimTime::ZERO + SimDuration::from_nanos(PROBE_SPACING.as_nanos() * (index as u64 + 1));
            let to = match to {
                Target::Pod(pod) => PodTarget::Pods(vec![pod]),
                Target::Service(service) => PodTarget::Service { service },
            };
            TrafficSpec {
                name: format!("probe-{index}"),
                endpoints: Endpoints::Pods { from: vec![from], to },
                protocol: protocol.number(),
                reply_size: None,
                pattern: Pattern::Once,
                rate: PacketRate { per_megasecond: 1_000_000 },
                size_bytes: 64,
                flows: 1,
                start,
                stop: start + SimDuration::from_nanos(1),
                port,
            }
        })
        .collect();
    let duration = SimDuration::from_nanos(PROBE_SPACING.as_nanos() * (probes.len() as u64 + 2));
    let scenario = Scenario {
        path: manifests.first().cloned().unwrap_or_default(),
        name: "reach".into(),
        description: None,
        seed: 1,
        duration,
        events_max: EVENTS_MAX_DEFAULT,
        fabric,
        dataplane: (if plane == ReachPlane::Calico { Dataplane::Calico } else { Dataplane::Overlay })(
            Box::new(ClusterSpec {
                cluster,
                manifests: manifests.to_vec(),
                encapsulation: Encapsulation::MplsOverUdp,
                flows_max: 512 * 1024,
                flow_idle_timeout: SimDuration::from_secs(60),
                isolation,
                propagation_delay: SimDuration::ZERO,
                propagation_jitter: SimDuration::ZERO,
                control_nodes: vec![0],
                calico: CalicoSettings {
                    encapsulation: CalicoEncapsulation::None,
                    bgp: BgpTopology::FullMesh,
                    keepalive: SimDuration::from_secs(1),
                    hold_time: SimDuration::from_secs(3),
                },
            }),
        ),
        traffic,
        events: Vec::new(),
        churn: Vec::new(),
        churn_rates: Vec::new(),
        checks: Vec::new(),
        captures: Vec::new(),
        cost: Default::default(),
    };
    let report = runner::run(&scenario, RunOptions::default(), &mut |_| {});
    let spec = scenario.dataplane.cluster_spec().expect("built above");
    let cluster = &spec.cluster;
    let mut results: Vec<ProbeResult> = probes
        .iter()
        .zip(&report.per_traffic)
        .map(|(&(from, to, port, protocol), (_, counts))| {
            let expected = match (isolation, to) {
                (Isolation::NetworkPolicy, Target::Pod(to)) => {
                    let source = netpol::Endpoint::Pod(cluster.view(from));
                    let destination = netpol::Endpoint::Pod(cluster.view(to));
                    netpol::evaluate(cluster.policies(), &source, &destination, port, protocol).allowed()
                }
                (Isolation::UsesLabels, Target::Pod(to)) => {
                    labels::evaluate(cluster, from, cluster.pod(to).ip, port, protocol).allowed()
                }
                (_, Target::Service(service)) => {
                    // Probed under the label model only, which judges the ClusterIP called.
                    let address = cluster.services()[service].cluster_ip.expect("probed services have one");
                    labels::evaluate(cluster, from, address, port, protocol).allowed()
                }
            };
            ProbeResult {
                from: cluster.pod(from).key(),
                to: match to {
                    Target::Pod(to) => cluster.pod(to).key(),
                    Target::Service(service) => format!("service:{}", cluster.services()[service].key()),
                },
                port,
                protocol: protocol.as_str(),
                result: if counts.delivered > 0 { "allowed" } else { "denied" },
                expected: if expected { "allowed" } else { "denied" },
            }
        })
        .collect();
    results.sort();
    Ok(Reach {
        dataplane: scenario.dataplane.name(),
        isolation: match isolation {
            Isolation::NetworkPolicy => "network-policy",
            Isolation::UsesLabels => "uses-labels",
        },
        probes: results,
        not_probed,
    })
}

/// One port's probes, by (source, destination).
type Matrix<'a> = BTreeMap<(&'a str, &'a str), &'a ProbeResult>;

/// The reachability matrices, one per port and protocol, as the upstream netpol tests print
/// them: rows are sources, columns destinations (pods, then services); `.` allowed, `X`
/// denied, `-` not probed. A cell that disagrees with the reference is followed by `!`.
pub fn render(reach: &Reach) -> String {
    let is_service = |name: &str| name.starts_with("service:");
    let mut pods: Vec<&str> = reach
        .probes
        .iter()
        .flat_map(|p| [p.from.as_str(), p.to.as_str()])
        .filter(|name| !is_service(name))
        .collect();
    pods.sort();
    pods.dedup();
    let mut services: Vec<&str> =
        reach.probes.iter().map(|p| p.to.as_str()).filter(|name| is_service(name)).collect();
    services.sort();
    services.dedup();
    let columns: Vec<&str> = pods.iter().chain(&services).copied().collect();
    let mut groups: BTreeMap<(&str, u16), Matrix<'_>> = BTreeMap::new();
    for probe in &reach.probes {
        groups.entry((probe.protocol, probe.port)).or_default().insert((&probe.from, &probe.to), probe);
    }
    let width = columns.iter().map(|p| p.len()).max().unwrap_or(0).max(4);
    let mut out = String::new();
    for ((protocol, port), cells) in &groups {
        let _ = writeln!(out, "{protocol}/{port} ({}, {})", reach.dataplane, reach.isolation);
        let _ = write!(out, "{:width$}", "");
        for to in &columns {
            let _ = write!(out, " {to:>width$}");
        }
        out.push('\n');
        for from in &pods {
            let _ = write!(out, "{from:width$}");
            for to in &columns {
                let cell = match cells.get(&(*from, *to)) {
                    None => "-".to_string(),
                    Some(probe) => {
                        let mark = if probe.result == "allowed" { "." } else { "X" };
                        if probe.result == probe.expected { mark.to_string() } else { format!("{mark}!") }
                    }
                };
                let _ = write!(out, " {cell:>width$}");
            }
            out.push('\n');
        }
        out.push('\n');
    }
    let allowed = reach.probes.iter().filter(|p| p.result == "allowed").count();
    let mismatches = reach.mismatches().count();
    let _ = write!(
        out,
        "{} probes: {allowed} allowed, {} denied; {}",
        reach.probes.len(),
        reach.probes.len() - allowed,
        if mismatches == 0 {
            "all agree with the reference".to_string()
        } else {
            format!("{mismatches} DISAGREE with the reference (marked !)")
        }
    );
    if !reach.not_probed.is_empty() {
        let _ = write!(out, "\nnot probed (SCTP): {}", reach.not_probed.join(", "));
    }
    out
}

/// The probes whose result differs between `before` and `after`: what a change of manifests
/// opens (`+`) and closes (`-`).
pub fn compare(before: &Reach, after: &Reach) -> String {
    let key = |p: &ProbeResult| (p.from.clone(), p.to.clone(), p.port, p.protocol);
    let old: BTreeMap<_, &str> = before.probes.iter().map(|p| (key(p), p.result)).collect();
    let mut out = String::new();
    let (mut opened, mut closed) = (0, 0);
    for probe in &after.probes {
        let was = old.get(&key(probe)).copied();
        let change = match (was, probe.result) {
            (Some("denied") | None, "allowed") => Some('+'),
            (Some("allowed"), "denied") => Some('-'),
            _ => None,
        };
        if let Some(sign) = change {
            if sign == '+' {
                opened += 1;
            } else {
                closed += 1;
            }
            let _ = writeln!(out, "{sign} {} -> {} {}/{}", probe.from, probe.to, probe.port, probe.protocol);
        }
    }
    let _ = write!(out, "{opened} probes opened, {closed} closed");
    out
}

/// `reach` from manifest files.
pub fn reach_files(paths: &[PathBuf], plane: ReachPlane, isolation: Isolation) -> Result<Reach, Vec<String>> {
    let objects = load_manifests(paths)?;
    reach(objects, paths, plane, isolation)
}
