//! `results.json`: the machine-readable outcome of a run, and the summary table people read.
//!
//! Everything in it except `wall_ms` is a function of the scenario and the seed. It is written
//! atomically (a temporary file in the same directory, then a rename), so a reader never sees a
//! half-written file and an interrupted run never leaves one behind.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::checks::CheckResult;
use std::collections::BTreeMap;

use crate::runner::{
    BgpCounts, ControlCounts, DropRecord, LatencySummary, PacketCounts, ReplyCounts, RoutingChange, RunReport,
};
use crate::scenario::{FailureWindow, Scenario};

/// The contents of `results.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    /// netsim's version.
    pub netsim_version: &'static str,
    /// The scenario's name.
    pub scenario: String,
    /// The scenario file.
    pub file: String,
    /// The seed the run used.
    pub seed: u64,
    /// Hash of every executed event; equal for equal scenario and seed.
    pub trace_hash: String,
    /// Simulated time of the last event, drain phase included.
    pub sim_time_ns: u64,
    /// The scenario's duration.
    pub duration_ns: u64,
    /// Events executed.
    pub events: u64,
    /// Whether the run stopped at its event bound.
    pub stopped_at_events_max: bool,
    /// Packet counts of the whole run.
    pub packets: PacketCounts,
    /// Packet counts per traffic entry.
    pub traffic: Vec<TrafficResult>,
    /// Drops by layer (`fabric`, `vrouter`) and reason.
    pub drops_by_layer: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
    /// Overlay forwarding state when traffic ended: routes and flow entries over all vrouters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlay_state: Option<OverlayState>,
    /// The control channel: updates, datagrams, retransmissions, losses, failovers, convergence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<ControlCounts>,
    /// Calico's BGP (sessions, messages, losses, convergence) and felix's updates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bgp: Option<BgpCounts>,
    /// The data plane: `underlay`, `overlay` or `calico`.
    pub dataplane: &'static str,
    /// One-way latency of delivered packets.
    pub latency_ns: LatencySummary,
    /// Windows in which losses are explained by failures.
    pub failure_windows: Vec<FailureWindow>,
    /// Drops inside failure windows.
    pub drops_in_failure_windows: u64,
    /// Drops outside every failure window.
    pub drops_outside_failure_windows: u64,
    /// The first drops outside every failure window.
    pub drop_examples: Vec<DropRecord>,
    /// Routing changes, in order.
    pub routing_changes: Vec<RoutingChange>,
    /// Check verdicts.
    pub checks: Vec<CheckResult>,
    /// Wall-clock time of the run, in milliseconds: the one field that varies between runs.
    pub wall_ms: u64,
}

/// Packet counts of one traffic entry.
#[derive(Clone, Debug, Serialize)]
pub struct TrafficResult {
    /// The entry's name.
    pub name: String,
    /// Its counts (replies included).
    #[serde(flatten)]
    pub packets: PacketCounts,
    /// Its replies, when its pods answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replies: Option<ReplyCounts>,
}

/// Overlay forwarding state.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct OverlayState {
    /// Routes over all VRFs of all vrouters.
    pub routes: usize,
    /// Flow entries over all vrouters.
    pub flows: usize,
}

impl Results {
    /// Assembles the results of a run.
    pub fn new(scenario: &Scenario, report: RunReport, checks: Vec<CheckResult>, wall_ms: u64) -> Results {
        Results {
            netsim_version: env!("CARGO_PKG_VERSION"),
            scenario: scenario.name.clone(),
            file: scenario.path.display().to_string(),
            seed: scenario.seed,
            trace_hash: report.trace_hash,
            sim_time_ns: report.sim_time.as_nanos(),
            duration_ns: scenario.duration.as_nanos(),
            events: report.events,
            stopped_at_events_max: report.stopped_at_events_max,
            packets: report.packets,
            traffic: report
                .per_traffic
                .into_iter()
                .zip(report.replies)
                .map(|((name, packets), replies)| TrafficResult { name, packets, replies })
                .collect(),
            drops_by_layer: report.drops_by_layer,
            overlay_state: report.overlay_state.map(|(routes, flows)| OverlayState { routes, flows }),
            control: report.control,
            bgp: report.bgp,
            dataplane: scenario.dataplane.name(),
            latency_ns: report.latency,
            failure_windows: report.windows,
            drops_in_failure_windows: report.drops_in_windows,
            drops_outside_failure_windows: report.drops_outside_windows,
            drop_examples: report.drop_examples,
            routing_changes: report.routing_changes,
            checks,
            wall_ms,
        }
    }

    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// Writes `dir/results.json` atomically, creating `dir` if needed; returns the path.
    pub fn write(&self, dir: &Path) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("results.json");
        let temporary = dir.join(format!(".results.json.{}.tmp", std::process::id()));
        let result = (|| {
            let mut file = std::fs::File::create(&temporary)?;
            serde_json::to_writer_pretty(&mut file, self)?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        result.map(|()| path)
    }

    /// The summary table printed after a run.
    pub fn summary(&self) -> String {
        let mut lines = Vec::new();
        let p = &self.packets;
        lines.push(format!("scenario  {} (seed {})", self.scenario, self.seed));
        lines.push(format!(
            "run       {} simulated, {} events, {} ms wall, trace {}",
            netsim_core::SimDuration(self.sim_time_ns),
            self.events,
            self.wall_ms,
            self.trace_hash
        ));
        let ratio = if p.sent == 0 { 0.0 } else { 100.0 * p.delivered as f64 / p.sent as f64 };
        let reasons: Vec<String> = p.dropped.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let reasons = if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join(", ")) };
        lines.push(format!(
            "packets   sent {}, delivered {} ({ratio:.3}%), dropped {}{reasons}",
            p.sent,
            p.delivered,
            p.dropped_total()
        ));
        if p.delivered > 0 {
            let l = &self.latency_ns;
            lines.push(format!(
                "latency   p50 {}, p99 {}, max {}",
                netsim_core::SimDuration(l.p50),
                netsim_core::SimDuration(l.p99),
                netsim_core::SimDuration(l.max)
            ));
        }
        if let Some(control) = self.control.as_ref().filter(|c| c.updates > 0) {
            lines.push(format!(
                "control   {} updates ({} messages) in {} datagrams, {} retransmitted, {} lost, {} failovers; applied {}, slowest after {}",
                control.updates,
                control.messages,
                control.datagrams,
                control.retransmissions,
                control.lost,
                control.failovers,
                control.applied,
                netsim_core::SimDuration(control.convergence_ns_max)
            ));
        }
        if let Some(bgp) = &self.bgp {
            lines.push(format!(
                "bgp       {}: {} of {} sessions up, {} messages ({} updates), {} retransmitted, {} lost, {} session downs; {} route changes, slowest {} after a change",
                bgp.topology,
                bgp.sessions_established,
                bgp.sessions_configured,
                bgp.messages_sent,
                bgp.updates_sent,
                bgp.retransmissions,
                bgp.lost,
                bgp.session_downs,
                bgp.route_changes,
                netsim_core::SimDuration(bgp.convergence_ns_max)
            ));
        }
        for (index, check) in self.checks.iter().enumerate() {
            let label = if index == 0 { "checks   " } else { "         " };
            let verdict = if check.passed { "PASS" } else { "FAIL" };
            lines.push(format!("{label} {verdict} {}: {}", check.name, check.detail));
        }
        let failed = self.checks.iter().filter(|c| !c.passed).count();
        lines.push(match (self.checks.len(), failed) {
            (0, _) => "result    no checks".to_string(),
            (1, 0) => "result    PASS (1 check)".to_string(),
            (n, 0) => format!("result    PASS ({n} checks)"),
            (n, f) => format!("result    FAIL ({f} of {n} checks failed)"),
        });
        lines.join("\n")
    }
}
