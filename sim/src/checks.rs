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
            CheckKind::DeliveryRatio { min, max, traffic } => {
                delivery_ratio(&check.name, *min, *max, *traffic, report)
            }
            CheckKind::LossOnlyInFailureWindows => loss_only_in_failure_windows(&check.name, report),
            CheckKind::RepliesFromTarget => replies_from_target(&check.name, report),
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

fn delivery_ratio(name: &str, min: f64, max: f64, traffic: Option<usize>, report: &RunReport) -> CheckResult {
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
    let passed = ratio >= min && ratio <= max;
    let bounds = match (min > 0.0, max < 1.0) {
        (true, true) => format!("in [{min}, {max}]"),
        (false, true) => format!("<= {max}"),
        _ => format!(">= {min}"),
    };
    let verdict = if passed { "" } else { "not " };
    let mut reasons: Vec<String> = counts.dropped.iter().map(|(r, n)| format!("{r} {n}")).collect();
    reasons.truncate(4);
    let dropped =
        if reasons.is_empty() { String::new() } else { format!(" (dropped: {})", reasons.join(", ")) };
    CheckResult {
        name: name.into(),
        kind: "delivery_ratio",
        passed,
        detail: format!(
            "{scope}: {} of {} delivered, ratio {ratio:.6} {verdict}{bounds}{dropped}",
            counts.delivered, counts.sent
        ),
        metrics,
    }
}

fn replies_from_target(name: &str, report: &RunReport) -> CheckResult {
    let totals = report
        .replies
        .iter()
        .flatten()
        .fold((0, 0, 0), |(s, d, m), r| (s + r.sent, d + r.delivered, m + r.misaddressed));
    let (sent, delivered, misaddressed) = totals;
    let passed = delivered > 0 && misaddressed == 0;
    let detail = if delivered == 0 {
        "no reply was delivered: nothing to judge (does a traffic entry set `reply_size`?)".to_string()
    } else {
        format!(
            "{delivered} of {sent} replies delivered, {misaddressed} from another address or port than the request targeted"
        )
    };
    CheckResult {
        name: name.into(),
        kind: "replies_from_target",
        passed,
        detail,
        metrics: BTreeMap::from([
            ("sent", sent as f64),
            ("delivered", delivered as f64),
            ("misaddressed", misaddressed as f64),
        ]),
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
