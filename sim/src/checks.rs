//! Checks: the verdicts a scenario asks for, judged from what a run measured.
//!
//! Every check result carries numbers (`metrics`), not only pass or fail, so that a failing CI
//! run says by how much it failed.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::runner::RunReport;
use crate::scenario::{CheckKind, Scenario};
use netsim_core::SimDuration;

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
            CheckKind::Isolation { max_violations, max_gap } => {
                isolation(&check.name, *max_violations, *max_gap, &scenario.path, report)
            }
            CheckKind::Ecmp { min_p_value, max_ratio } => ecmp(&check.name, *min_p_value, *max_ratio, report),
            CheckKind::Nat => nat(&check.name, &scenario.path, report),
            CheckKind::Convergence { within, max_lost } => {
                convergence(&check.name, *within, *max_lost, report)
            }
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

fn isolation(
    name: &str,
    max_violations: u64,
    max_gap: Option<SimDuration>,
    path: &std::path::Path,
    report: &RunReport,
) -> CheckResult {
    let judged = &report.judgements;
    let longest = judged.gaps.iter().map(|g| g.duration_ns).max().unwrap_or(0);
    let gaps_ok = max_gap.is_none_or(|bound| longest <= bound.as_nanos());
    let passed = judged.violations <= max_violations && gaps_ok && judged.judged > 0;
    let mut detail = if judged.judged == 0 {
        "no request reached a pod: nothing to judge".to_string()
    } else {
        format!(
            "{} of {} delivered requests forbidden by the oracle (at most {max_violations}); {} availability gaps, longest {}",
            judged.violations,
            judged.judged,
            judged.gaps.len(),
            SimDuration(longest)
        )
    };
    if let Some(bound) = max_gap.filter(|_| !gaps_ok) {
        detail += &format!(" (more than {bound})");
    }
    if let Some(first) = judged.violation_examples.first() {
        detail += &format!(
            "; first violation at {}: {} ({}): {}",
            SimDuration(first.at_ns),
            first.flow,
            first.traffic,
            first.cause
        );
        // The packet at the moment it was delivered: its trace meets the state it met.
        let at = netsim_core::SimTime(first.at_ns);
        detail += &format!("; reproduce: {}", crate::trace::command(path, &first.trace_flow, at));
    }
    if let Some(gap) =
        judged.gaps.iter().max_by_key(|g| (g.duration_ns, std::cmp::Reverse(g.from_ns))).filter(|_| !gaps_ok)
    {
        detail += &format!(
            "; longest gap: {} ({}) from {} for {} ({}): trace its first loss with {}",
            gap.trace_flow,
            gap.traffic,
            SimDuration(gap.from_ns),
            SimDuration(gap.duration_ns),
            gap.reason,
            crate::trace::command(path, &gap.trace_flow, netsim_core::SimTime(gap.from_ns))
        );
    }
    CheckResult {
        name: name.into(),
        kind: "isolation",
        passed,
        detail,
        metrics: BTreeMap::from([
            ("judged", judged.judged as f64),
            ("violations", judged.violations as f64),
            ("gaps", judged.gaps.len() as f64),
            ("longest_gap_ns", longest as f64),
        ]),
    }
}

fn ecmp(name: &str, min_p_value: f64, max_ratio: Option<f64>, report: &RunReport) -> CheckResult {
    let judged = &report.judgements;
    let mut worst: Option<(f64, f64, &str)> = None;
    let mut failing = Vec::new();
    for spread in &judged.spreads {
        let total: u64 = spread.flows.iter().sum();
        // Too few flows per member for the test to mean anything: five expected per member.
        if spread.flows.len() < 2 || total < 5 * spread.flows.len() as u64 {
            continue;
        }
        let p = chi_square_uniform_p(&spread.flows);
        let (max, min) = (*spread.flows.iter().max().unwrap_or(&0), *spread.flows.iter().min().unwrap_or(&0));
        let ratio = if min == 0 { f64::INFINITY } else { max as f64 / min as f64 };
        if worst.is_none_or(|(worst_p, _, _)| p < worst_p) {
            worst = Some((p, ratio, &spread.group));
        }
        if p < min_p_value || max_ratio.is_some_and(|bound| ratio > bound) {
            failing
                .push(format!("{}: flows {:?}, p = {p:.3e}, max/min {ratio:.2}", spread.group, spread.flows));
        }
    }
    let groups = judged.spreads.len();
    let passed = worst.is_some() && failing.is_empty() && judged.affinity_breaks == 0;
    let detail = match worst {
        None => "no service or ECMP group carried enough flows to judge".to_string(),
        Some((p, ratio, group)) => {
            let mut text = format!(
                "{groups} groups; least uniform {group}: p = {p:.3e}, max/min {ratio:.2}; {} flows changed backend while backends were stable",
                judged.affinity_breaks
            );
            if !failing.is_empty() {
                text += &format!("; {} groups unbalanced, e.g. {}", failing.len(), failing[0]);
            }
            text
        }
    };
    CheckResult {
        name: name.into(),
        kind: "ecmp",
        passed,
        detail,
        metrics: BTreeMap::from([
            ("groups", groups as f64),
            ("unbalanced_groups", failing.len() as f64),
            ("min_p_value", worst.map_or(1.0, |w| w.0)),
            ("affinity_breaks", judged.affinity_breaks as f64),
        ]),
    }
}

fn nat(name: &str, path: &std::path::Path, report: &RunReport) -> CheckResult {
    let judged = &report.judgements;
    let misaddressed: u64 = report.replies.iter().flatten().map(|r| r.misaddressed).sum();
    let replies: u64 = report.replies.iter().flatten().map(|r| r.delivered).sum();
    let replies_sent: u64 = report.replies.iter().flatten().map(|r| r.sent).sum();
    let problems =
        misaddressed + judged.nat_collisions + judged.stale_backend_packets + judged.established_broken;
    CheckResult {
        name: name.into(),
        kind: "nat",
        passed: problems == 0 && replies > 0,
        detail: format!(
            "{replies} of {replies_sent} replies delivered, {misaddressed} not from the address and port targeted; {} translated tuples shared; {} requests to removed backends after the change settled; {} packets of connections to live backends lost in churn{}",
            judged.nat_collisions,
            judged.stale_backend_packets,
            judged.established_broken,
            judged
                .first_stale
                .as_ref()
                .map(|(at, _, flow)| format!(
                    "; first to a removed backend: {}",
                    crate::trace::command(path, flow, netsim_core::SimTime(*at))
                ))
                .unwrap_or_default()
        ),
        metrics: BTreeMap::from([
            ("replies", replies as f64),
            ("replies_sent", replies_sent as f64),
            ("misaddressed_replies", misaddressed as f64),
            ("collisions", judged.nat_collisions as f64),
            ("stale_backend_packets", judged.stale_backend_packets as f64),
            ("established_broken", judged.established_broken as f64),
        ]),
    }
}

fn convergence(name: &str, within: SimDuration, max_lost: Option<u64>, report: &RunReport) -> CheckResult {
    let disturbances = &report.judgements.disturbances;
    let slowest = disturbances.iter().max_by_key(|d| d.recovered_after_ns);
    let costliest = disturbances.iter().map(|d| d.lost).max().unwrap_or(0);
    let late: Vec<_> = disturbances.iter().filter(|d| d.recovered_after_ns > within.as_nanos()).collect();
    let costly = max_lost.map_or(0, |bound| disturbances.iter().filter(|d| d.lost > bound).count());
    let passed = late.is_empty() && costly == 0;
    let detail = match slowest {
        None => "no fault or change happened: nothing to converge from".to_string(),
        Some(d) => format!(
            "{} disturbances; slowest {} recovered after {} (bound {within}), losing {}; most lost by one: {costliest}{}",
            disturbances.len(),
            d.target,
            SimDuration(d.recovered_after_ns),
            d.lost,
            max_lost.map(|b| format!(" (bound {b})")).unwrap_or_default()
        ),
    };
    CheckResult {
        name: name.into(),
        kind: "convergence",
        passed,
        detail,
        metrics: BTreeMap::from([
            ("disturbances", disturbances.len() as f64),
            ("slowest_ns", slowest.map_or(0.0, |d| d.recovered_after_ns as f64)),
            ("most_lost", costliest as f64),
            ("late", late.len() as f64),
        ]),
    }
}

/// The p-value of Pearson's chi-square test that `counts` come from a uniform distribution over
/// their members: the upper tail of chi-square with `n - 1` degrees of freedom.
pub fn chi_square_uniform_p(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    if counts.len() < 2 || total == 0 {
        return 1.0;
    }
    let expected = total as f64 / counts.len() as f64;
    let statistic: f64 = counts.iter().map(|&c| (c as f64 - expected).powi(2) / expected).sum();
    upper_regularized_gamma((counts.len() - 1) as f64 / 2.0, statistic / 2.0)
}

/// Q(s, x) = Γ(s, x) / Γ(s), by its series below s + 1 and its continued fraction above
/// (Numerical Recipes, 6.2); libm's lgamma keeps it identical on every platform.
fn upper_regularized_gamma(s: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let log_prefix = s * libm::log(x) - x - libm::lgamma(s);
    if x < s + 1.0 {
        let (mut term, mut sum, mut a) = (1.0 / s, 1.0 / s, s);
        for _ in 0..500 {
            a += 1.0;
            term *= x / a;
            sum += term;
            if term.abs() < sum.abs() * 1e-15 {
                break;
            }
        }
        (1.0 - sum * libm::exp(log_prefix)).clamp(0.0, 1.0)
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - s;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..500 {
            let an = -(i as f64) * (i as f64 - s);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let step = d * c;
            h *= step;
            if (step - 1.0).abs() < 1e-15 {
                break;
            }
        }
        (libm::exp(log_prefix) * h).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod statistics_tests {
    use super::*;

    /// Reference values of the chi-square upper tail (R: `pchisq(x, df, lower.tail = FALSE)`).
    #[test]
    fn chi_square_tail_matches_reference_values() {
        let cases = [
            (1.0, 3.841_459, 0.05),
            (3.0, 7.814_728, 0.05),
            (3.0, 11.344_87, 0.01),
            (9.0, 21.665_99, 0.01),
            (2.0, 2.0, 0.367_879_4),
        ];
        for (df, x, p) in cases {
            let q = upper_regularized_gamma(df / 2.0, x / 2.0);
            assert!((q - p).abs() < 1e-6, "df {df}, x {x}: {q} vs {p}");
        }
        assert_eq!(chi_square_uniform_p(&[25, 25, 25, 25]), 1.0);
        assert!(chi_square_uniform_p(&[100, 0, 0, 0]) < 1e-30);
    }
}
