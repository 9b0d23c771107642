//! What the conformance checks need, recorded as packets are delivered and dropped: the
//! isolation oracle's verdict on every delivered request, which backend each service flow
//! reached, which member each underlay ECMP group gave each flow, NAT's translated tuples, and
//! the losses each disturbance caused.
//!
//! Recording is on only for the checks a scenario asks for, so plain runs pay nothing.

use std::collections::BTreeMap;

use netsim_control::cluster::{Cluster, PodId};
use netsim_control::k8s::Protocol;
use netsim_control::network_manager::Isolation;
use netsim_control::{labels, netpol};
use netsim_core::{FiveTuple, SimTime};
use serde::Serialize;

use crate::scenario::{CheckKind, FailureWindow, Scenario};

/// Most examples of each kind of finding kept.
const EXAMPLES_MAX: usize = 10;

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
    /// Two connections sharing one translated tuple.
    pub nat_collisions: u64,
    /// Requests that reached (or were sent to) a removed backend after the change settled.
    pub stale_backend_packets: u64,
    /// The first of them: (time in ns, flow id, and the flow for `netsim trace --flow`).
    pub first_stale: Option<(u64, u32, String)>,
    /// Requests of connections to live backends lost during churn.
    pub established_broken: u64,
    /// Losses per disturbance.
    pub disturbances: Vec<Disturbance>,
}

/// (source, destination, port, protocol, address called): what an oracle verdict depends on.
type VerdictKey = (PodId, PodId, u16, u8, std::net::Ipv4Addr);

/// The recorder.
#[derive(Default)]
pub(super) struct Judge {
    isolation: bool,
    spread: bool,
    nat: bool,
    convergence: bool,
    /// Oracle verdicts for (source, destination, port, protocol), valid until the cluster changes.
    verdicts: BTreeMap<VerdictKey, Result<(), String>>,
    /// Open gaps: flow → (since, reason).
    open_gaps: BTreeMap<u32, (SimTime, &'static str)>,
    /// Each service flow's backend, and the cluster version when it last reached it.
    backends: BTreeMap<u32, (PodId, u64)>,
    /// Changes of the cluster so far.
    version: u64,
    /// Flows per (traffic entry, backend).
    per_backend: BTreeMap<(u32, PodId), u64>,
    /// Per node, a bit per flow direction already counted there (indexed as
    /// `2 * flow + reply`), and flows per member of each (node, group size).
    underlay_seen: Vec<Vec<u64>>,
    underlay: BTreeMap<(u32, u16), Vec<u64>>,
    /// Translated tuples of delivered requests and their flow.
    translated: BTreeMap<FiveTuple, u32>,
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

    /// The cluster changed: cached verdicts are stale.
    pub(super) fn cluster_changed(&mut self) {
        self.verdicts.clear();
        self.version += 1;
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
            match self.backends.insert(flow, (to, self.version)) {
                None => *self.per_backend.entry((traffic.0, to)).or_default() += 1,
                // A move is legitimate only if the cluster changed since the flow's last packet.
                Some((before, version)) if before != to && version == self.version => {
                    self.results.affinity_breaks += 1
                }
                Some(_) => {}
            }
        }
        if self.nat && service {
            match self.translated.insert(*tuple, flow) {
                Some(other) if other != flow => self.results.nat_collisions += 1,
                _ => {}
            }
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
                    self.results.first_stale = Some((now.as_nanos(), flow, String::new()));
                }
            }
            let in_churn = windows.iter().any(|w| within(w, now) && is_change(w));
            if in_churn && backend_live == Some(true) && reason != "pod_deleted" {
                self.results.established_broken += 1;
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
        self.backends.get(&flow).map(|&(pod, _)| pod)
    }

    /// A frame of flow `flow` left switch or host `node` by member `chosen` of `members`.
    pub(super) fn hop(&mut self, node: u32, flow: u32, members: u16, chosen: u16) {
        if members < 2 {
            return;
        }
        let index = 2 * (flow & !crate::traffic::REPLY_BIT) as usize
            + usize::from(flow & crate::traffic::REPLY_BIT != 0);
        if self.underlay_seen.len() <= node as usize {
            self.underlay_seen.resize(node as usize + 1, Vec::new());
        }
        let seen = &mut self.underlay_seen[node as usize];
        if seen.len() <= index / 64 {
            seen.resize(index / 64 + 1, 0);
        }
        let bit = 1u64 << (index % 64);
        let first = seen[index / 64] & bit == 0;
        seen[index / 64] |= bit;
        if first {
            let counts =
                self.underlay.entry((node, members)).or_insert_with(|| vec![0; usize::from(members)]);
            counts[usize::from(chosen)] += 1;
        }
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
        if let Some((_, flow, text)) = &mut self.results.first_stale {
            *text = trace_flow(*flow);
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

fn within(window: &FailureWindow, now: SimTime) -> bool {
    let now = now.as_nanos();
    window.from_ns <= now && window.until_ns.is_none_or(|until| now <= until)
}

/// Whether a window is a change of the cluster (not a fabric fault).
fn is_change(window: &FailureWindow) -> bool {
    ["scale ", "delete ", "restart ", "drain ", "apply "].iter().any(|verb| window.target.starts_with(verb))
}
