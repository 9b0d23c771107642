//! Checks: the verdicts a scenario asks for, judged from what a run measured.
//!
//! Every check result carries numbers (`metrics`), not only pass or fail, so that a failing CI
//! run says by how much it failed.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::runner::RunReport;
use crate::scenario::{CheckKind, Scenario};

/// The verdict of one check.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckResult {
    /// The check's name (unique within a scenario).
    pub name: String,
    /// The check's kind, as written in the scenario.
    pub kind: &'static str,
    /// Whether it holds.
    pub passed: bool,
    /// One line saying what was measured against what.
    pub detail: String,
    /// The measured numbers.
    pub metrics: BTreeMap<&'static str, f64>,
}

/// Judges every check of `scenario` against `report`. A run stopped by its event bound adds a
/// failing `events_max` check: its other numbers are incomplete.
pub fn evaluate(scenario: &Scenario, report: &RunReport) -> Vec<CheckResult> {
    let mut results: Vec<CheckResult> = scenario
        .checks
        .iter()
        .map(|check| match &check.kind {
            CheckKind::DeliveryRatio { min, traffic } => delivery_ratio(&check.name, *min, *traffic, report),
            CheckKind::LossOnlyInFailureWindows => loss_only_in_failure_windows(&check.name, report),
        })
        .collect();
    if report.stopped_at_events_max {
        results.push(CheckResult {
            name: "events_max".into(),
            kind: "events_max",
            passed: false,
            detail: format!(
                "the run stopped after {} events (events_max) at {}: results are incomplete",
                report.events, report.sim_time
            ),
            metrics: BTreeMap::from([("events", report.events as f64)]),
        });
    }
    results
}

fn delivery_ratio(name: &str, min: f64, traffic: Option<usize>, report: &RunReport) -> CheckResult {
    let (scope, counts) = match traffic {
        Some(index) => (format!("traffic `{}`", report.per_traffic[index].0), &report.per_traffic[index].1),
        None => ("all traffic".to_string(), &report.packets),
    };
    let metrics =
        BTreeMap::from([("sent", counts.sent as f64), ("delivered", counts.delivered as f64), ("min", min)]);
    if counts.sent == 0 {
        return CheckResult {
            name: name.into(),
            kind: "delivery_ratio",
            passed: false,
            detail: format!("{scope} sent no packets: nothing to judge"),
            metrics,
        };
    }
    let ratio = counts.delivered as f64 / counts.sent as f64;
    let mut metrics = metrics;
    metrics.insert("ratio", ratio);
    let passed = ratio >= min;
    CheckResult {
        name: name.into(),
        kind: "delivery_ratio",
        passed,
        detail: format!(
            "{scope}: {} of {} delivered, ratio {ratio:.6} {} {min}",
            counts.delivered,
            counts.sent,
            if passed { ">=" } else { "<" }
        ),
        metrics,
    }
}

fn loss_only_in_failure_windows(name: &str, report: &RunReport) -> CheckResult {
    let outside = report.drops_outside_windows;
    let detail = if outside == 0 {
        format!("all {} drops fell inside {} failure windows", report.drops_in_windows, report.windows.len())
    } else {
        let example = report
            .drop_examples
            .first()
            .map(|d| format!("; first at {}ns: {} at {} ({})", d.at_ns, d.reason, d.node, d.flow))
            .unwrap_or_default();
        format!("{outside} drops outside every failure window{example}")
    };
    CheckResult {
        name: name.into(),
        kind: "loss_only_in_failure_windows",
        passed: outside == 0,
        detail,
        metrics: BTreeMap::from([
            ("drops_in_windows", report.drops_in_windows as f64),
            ("drops_outside_windows", outside as f64),
            ("windows", report.windows.len() as f64),
        ]),
    }
}
