//! Checks: the verdicts a scenario asks for, judged from what a run measured.
//!
//! Every check result carries numbers (`metrics`), not only pass or fail, so that a failing CI
//! run says by how much it failed.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::runner::{Disruption, Polarization, RunReport};
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
    /// The `ecmp` check's member changes, one per change and group: flows moved against the
    /// fewest that had to move.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub disruptions: Vec<Disruption>,
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
            CheckKind::Ecmp {
                min_p_value,
                max_ratio,
                max_disruption_ratio,
                max_underlay_disruption_ratio,
            } => {
                let bounds = EcmpBounds {
                    min_p_value: *min_p_value,
                    max_ratio: *max_ratio,
                    max_disruption_ratio: *max_disruption_ratio,
                    max_underlay_disruption_ratio: *max_underlay_disruption_ratio,
                };
                ecmp(&check.name, bounds, report)
            }
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
            disruptions: Vec::new(),
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
            disruptions: Vec::new(),
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
        disruptions: Vec::new(),
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
        disruptions: Vec::new(),
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
        disruptions: Vec::new(),
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
        disruptions: Vec::new(),
    }
}

/// The `ecmp` check's bounds.
#[derive(Clone, Copy, Debug)]
struct EcmpBounds {
    min_p_value: f64,
    max_ratio: Option<f64>,
    max_disruption_ratio: f64,
    max_underlay_disruption_ratio: Option<f64>,
}

fn ecmp(name: &str, bounds: EcmpBounds, report: &RunReport) -> CheckResult {
    let EcmpBounds { min_p_value, max_ratio, .. } = bounds;
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
    let disruption = judge_disruptions(&judged.disruptions, bounds);
    let polarization = judge_polarization(&judged.polarization, min_p_value);
    let groups = judged.spreads.len();
    let affinity_breaks = judged.affinity_breaks + judged.underlay_affinity_breaks;
    let passed = worst.is_some()
        && failing.is_empty()
        && affinity_breaks == 0
        && disruption.failing == 0
        && polarization.failing.is_none();
    let detail = match worst {
        None => "no service or ECMP group carried enough flows to judge".to_string(),
        Some((p, ratio, group)) => {
            let mut text = format!(
                "{groups} groups; least uniform {group}: p = {p:.3e}, max/min {ratio:.2}; {} flows changed backend while backends were stable",
                judged.affinity_breaks
            );
            if judged.underlay_affinity_breaks > 0 {
                text += &format!(
                    ", {} changed next hop while their underlay group was stable",
                    judged.underlay_affinity_breaks
                );
            }
            if !failing.is_empty() {
                text += &format!("; {} groups unbalanced, e.g. {}", failing.len(), failing[0]);
            }
            text += &disruption.detail;
            text += &polarization.detail;
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
            ("underlay_affinity_breaks", judged.underlay_affinity_breaks as f64),
            ("member_changes", judged.disruptions.len() as f64),
            ("disruptive_changes", disruption.failing as f64),
            ("disruption_ratio_max", disruption.service_ratio_max),
            ("underlay_disruption_ratio_max", disruption.underlay_ratio_max),
            ("polarized_tiers", polarization.failing.map_or(0.0, |_| 1.0)),
            ("polarization_p_value_min", polarization.p_min),
            ("polarization_cramers_v_max", polarization.v_max),
        ]),
        disruptions: judged.disruptions.clone(),
    }
}

/// The verdict on member changes: how many moved more flows than their bound allows, the
/// largest ratios seen, and the text for the detail.
struct DisruptionVerdict {
    failing: usize,
    service_ratio_max: f64,
    underlay_ratio_max: f64,
    detail: String,
}

/// A member change fails when it moved more than its bound times the fewest flows that had to
/// move — or moved any when none had to. Underlay changes are judged only under a bound.
fn judge_disruptions(disruptions: &[Disruption], bounds: EcmpBounds) -> DisruptionVerdict {
    let ratio = |d: &Disruption| match d.ratio {
        Some(ratio) => ratio,
        None if d.moved > 0 => f64::INFINITY,
        None => 0.0,
    };
    let bound = |d: &Disruption| {
        if d.underlay { bounds.max_underlay_disruption_ratio } else { Some(bounds.max_disruption_ratio) }
    };
    let failing: Vec<&Disruption> =
        disruptions.iter().filter(|d| bound(d).is_some_and(|bound| ratio(d) > bound)).collect();
    let largest =
        |underlay: bool| disruptions.iter().filter(|d| d.underlay == underlay).map(ratio).fold(0.0, f64::max);
    let describe = |d: &Disruption| {
        let verdict = match (d.ratio, bound(d)) {
            (Some(ratio), Some(bound)) => format!("ratio {ratio:.2} (bound {bound})"),
            (Some(ratio), None) => format!("ratio {ratio:.2}"),
            (None, _) if d.moved > 0 => "although none had to".to_string(),
            (None, _) => "none had to".to_string(),
        };
        format!(
            "{} at {} ({}, {} -> {} members): {} of {} live flows moved, at least {} had to: {verdict}",
            d.group,
            SimDuration(d.at_ns),
            d.change,
            d.members_before,
            d.members_after,
            d.moved,
            d.live_flows,
            d.minimum
        )
    };
    // The change to show: the first failing one, else the most disruptive.
    let shown = failing.first().copied().or_else(|| {
        disruptions.iter().filter(|d| d.live_flows > 0).max_by(|a, b| ratio(a).total_cmp(&ratio(b)))
    });
    let detail = match shown {
        None => String::new(),
        Some(d) if !failing.is_empty() => {
            format!(
                "; {} of {} member changes too disruptive, e.g. {}",
                failing.len(),
                disruptions.len(),
                describe(d)
            )
        }
        Some(d) => format!("; {} member changes, most disruptive {}", disruptions.len(), describe(d)),
    };
    DisruptionVerdict {
        failing: failing.len(),
        service_ratio_max: largest(false),
        underlay_ratio_max: largest(true),
        detail,
    }
}

/// The verdict on hash polarization: the first pair of tiers whose choices depend on each
/// other, the smallest p-value and the largest Cramér's V of the tables judged, and the text.
struct PolarizationVerdict {
    failing: Option<String>,
    p_min: f64,
    v_max: f64,
    detail: String,
}

/// Tiers polarize when a flow's choice at one tier tells its choice at the next: Pearson's
/// chi-square test of independence on the table of (first choice, second choice), judged with
/// at least five flows expected per cell; Cramér's V says how strongly (0: independent, 1: the
/// one determines the other).
fn judge_polarization(tables: &[Polarization], min_p_value: f64) -> PolarizationVerdict {
    let mut verdict = PolarizationVerdict { failing: None, p_min: 1.0, v_max: 0.0, detail: String::new() };
    let mut judged = Vec::new();
    for table in tables {
        let cells: usize = table.flows.iter().map(Vec::len).sum();
        let total: u64 = table.flows.iter().flatten().sum();
        if cells < 4 || total < 5 * cells as u64 {
            continue;
        }
        let (p, v) = chi_square_independence(&table.flows);
        verdict.p_min = verdict.p_min.min(p);
        verdict.v_max = verdict.v_max.max(v);
        let text = format!("{}: p = {p:.3e}, Cramér's V {v:.2}", table.tiers);
        if p < min_p_value && verdict.failing.is_none() {
            verdict.failing = Some(format!("{text}, flows {:?}", table.flows));
        }
        judged.push(text);
    }
    verdict.detail = match (&verdict.failing, judged.first()) {
        (Some(failing), _) => format!("; hash polarization across tiers: {failing}"),
        (None, Some(_)) => format!("; tiers hash independently ({})", judged.join("; ")),
        (None, None) => String::new(),
    };
    verdict
}

/// Pearson's chi-square test of independence of a table's rows and columns: its p-value (the
/// upper tail with (rows - 1)(columns - 1) degrees of freedom, over the rows and columns that
/// have flows) and Cramér's V.
pub fn chi_square_independence(table: &[Vec<u64>]) -> (f64, f64) {
    let columns = table.iter().map(Vec::len).max().unwrap_or(0);
    let rows: Vec<u64> = table.iter().map(|r| r.iter().sum()).collect();
    let cols: Vec<u64> =
        (0..columns).map(|c| table.iter().map(|r| r.get(c).copied().unwrap_or(0)).sum()).collect();
    let total: u64 = rows.iter().sum();
    let (r, c) = (rows.iter().filter(|&&n| n > 0).count(), cols.iter().filter(|&&n| n > 0).count());
    if r < 2 || c < 2 || total == 0 {
        return (1.0, 0.0);
    }
    let mut statistic = 0.0;
    for (i, row) in table.iter().enumerate() {
        for (j, &observed) in row.iter().enumerate() {
            let expected = rows[i] as f64 * cols[j] as f64 / total as f64;
            if expected > 0.0 {
                statistic += (observed as f64 - expected).powi(2) / expected;
            }
        }
    }
    let df = ((r - 1) * (c - 1)) as f64;
    let v = libm::sqrt(statistic / (total as f64 * (r.min(c) - 1) as f64));
    (upper_regularized_gamma(df / 2.0, statistic / 2.0), v.min(1.0))
}

fn nat(name: &str, path: &std::path::Path, report: &RunReport) -> CheckResult {
    let judged = &report.judgements;
    let misaddressed: u64 = report.replies.iter().flatten().map(|r| r.misaddressed).sum();
    let replies: u64 = report.replies.iter().flatten().map(|r| r.delivered).sum();
    let replies_sent: u64 = report.replies.iter().flatten().map(|r| r.sent).sum();
    let problems =
        misaddressed + judged.nat_collisions + judged.stale_backend_packets + judged.established_broken;
    // Each kind of finding with the command that traces its first packet.
    let reproduce = [
        ("first misaddressed reply", &judged.first_misaddressed),
        ("first shared translated tuple", &judged.first_collision),
        ("first to a removed backend", &judged.first_stale),
        ("first broken connection", &judged.first_broken),
    ]
    .into_iter()
    .filter_map(|(what, finding)| {
        let finding = finding.as_ref()?;
        Some(format!(
            "; {what}: {}",
            crate::trace::command(path, &finding.trace_flow, netsim_core::SimTime(finding.at_ns))
        ))
    })
    .collect::<String>();
    CheckResult {
        name: name.into(),
        kind: "nat",
        passed: problems == 0 && replies > 0,
        detail: format!(
            "{replies} of {replies_sent} replies delivered, {misaddressed} not from the address and port targeted; {} translated tuples shared; {} requests to removed backends after the change settled; {} packets of connections to live backends lost in churn{reproduce}",
            judged.nat_collisions, judged.stale_backend_packets, judged.established_broken,
        ),
        metrics: BTreeMap::from([
            ("replies", replies as f64),
            ("replies_sent", replies_sent as f64),
            ("misaddressed_replies", misaddressed as f64),
            ("collisions", judged.nat_collisions as f64),
            ("stale_backend_packets", judged.stale_backend_packets as f64),
            ("established_broken", judged.established_broken as f64),
        ]),
        disruptions: Vec::new(),
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
        disruptions: Vec::new(),
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

    /// Independence: df 1 (p = erfc(sqrt(x / 2))) and df 4 (p = e^(-x/2) (1 + x/2)), computed
    /// by hand; Cramér's V from 0 (independent) to 1 (one choice fixes the other).
    #[test]
    fn chi_square_independence_matches_reference_values() {
        let close = |(p, v): (f64, f64), (p_ref, v_ref): (f64, f64)| {
            assert!((p - p_ref).abs() < 1e-6 && (v - v_ref).abs() < 1e-6, "({p}, {v}) vs ({p_ref}, {v_ref})")
        };
        close(chi_square_independence(&[vec![12, 5], vec![7, 9]]), (0.118_989_2, 0.271_392_3));
        close(
            chi_square_independence(&[vec![10, 20, 30], vec![20, 20, 20], vec![30, 20, 10]]),
            (0.000_499_4, 0.235_702_3),
        );
        close(chi_square_independence(&[vec![25, 25], vec![25, 25]]), (1.0, 0.0));
        // The polarized fabric's table: uplink 0 reaches spines 0 and 2 only, uplink 1 the others.
        let (p, v) = chi_square_independence(&[vec![50, 0, 50, 0], vec![0, 50, 0, 50]]);
        assert!(p < 1e-30 && (v - 1.0).abs() < 1e-12, "({p}, {v})");
    }
}

#[cfg(test)]
mod nat_tests {
    use super::*;
    use crate::runner::Finding;

    /// A run's report (of a tiny underlay scenario) with the NAT findings of `judgements`.
    fn run_with(findings: impl FnOnce(&mut crate::runner::Judgements)) -> RunReport {
        let text = "name = \"tiny\"\nduration = \"1ms\"\n[[traffic]]\nname = \"t\"\nfrom = \"host-0\"\nto = \"host-1\"\nrate = \"10k/s\"\nflows = 1\n";
        let scenario = Scenario::parse(std::path::Path::new("tiny.toml"), text).expect("valid");
        let mut report = crate::runner::run(&scenario, crate::runner::RunOptions::default(), &mut |_| {});
        report.replies = vec![Some(crate::runner::ReplyCounts { sent: 10, delivered: 10, misaddressed: 1 })];
        findings(&mut report.judgements);
        report
    }

    #[test]
    fn every_kind_of_nat_finding_carries_the_command_that_traces_it() {
        let finding = |at_ns, flow: &str| Some(Finding { at_ns, flow: 0, trace_flow: flow.to_string() });
        let report = run_with(|j| {
            j.first_misaddressed = finding(1_000, "10.0.0.7:8080->10.0.0.9:10000/tcp");
            (j.nat_collisions, j.first_collision) = (1, finding(2_000, "10.0.0.9:10001->10.96.0.2:3000/tcp"));
            (j.stale_backend_packets, j.first_stale) =
                (1, finding(3_000, "10.0.0.9:10002->10.96.0.2:3000/tcp"));
            (j.established_broken, j.first_broken) =
                (1, finding(4_000, "10.0.0.9:10003->10.96.0.2:3000/tcp"));
        });
        let verdict = nat("nat", std::path::Path::new("s.toml"), &report);
        assert!(!verdict.passed);
        for expected in [
            "; first misaddressed reply: netsim trace s.toml --flow 10.0.0.7:8080->10.0.0.9:10000/tcp --at 1000ns",
            "; first shared translated tuple: netsim trace s.toml --flow 10.0.0.9:10001->10.96.0.2:3000/tcp --at 2000ns",
            "; first to a removed backend: netsim trace s.toml --flow 10.0.0.9:10002->10.96.0.2:3000/tcp --at 3000ns",
            "; first broken connection: netsim trace s.toml --flow 10.0.0.9:10003->10.96.0.2:3000/tcp --at 4000ns",
        ] {
            assert!(verdict.detail.contains(expected), "{expected}\nnot in\n{}", verdict.detail);
        }
        // A clean run names no command.
        let clean = nat("nat", std::path::Path::new("s.toml"), &run_with(|_| {}));
        assert!(!clean.detail.contains("netsim trace"), "{}", clean.detail);
    }
}

#[cfg(test)]
mod disruption_tests {
    use super::*;

    fn change(underlay: bool, live: u64, moved: u64, minimum: u64) -> Disruption {
        Disruption {
            change: "scale default/web to 3".into(),
            at_ns: 300_000_000,
            group: if underlay { "leaves".into() } else { "service web".into() },
            underlay,
            members_before: 4,
            members_after: 3,
            live_flows: live,
            moved,
            on_removed: minimum,
            minimum,
            moved_fraction: moved as f64 / live as f64,
            minimum_fraction: minimum as f64 / live as f64,
            ratio: (minimum > 0).then(|| moved as f64 / minimum as f64),
        }
    }

    fn bounds(underlay: Option<f64>) -> EcmpBounds {
        EcmpBounds {
            min_p_value: 0.001,
            max_ratio: None,
            max_disruption_ratio: crate::scenario::DISRUPTION_RATIO_MAX_DEFAULT,
            max_underlay_disruption_ratio: underlay,
        }
    }

    #[test]
    fn a_change_fails_when_it_moves_more_than_its_bound_times_the_minimum() {
        let check =
            |changes: &[Disruption], underlay: Option<f64>| judge_disruptions(changes, bounds(underlay));
        // Pinned flows: exactly the removed backend's flows moved.
        let minimal = check(&[change(false, 400, 100, 100)], None);
        assert_eq!((minimal.failing, minimal.service_ratio_max), (0, 1.0));
        assert!(
            minimal
                .detail
                .contains("100 of 400 live flows moved, at least 100 had to: ratio 1.00 (bound 1.5)")
        );
        // Modulo hashing: three times that.
        let rehashed = check(&[change(false, 400, 300, 100)], None);
        assert_eq!(rehashed.failing, 1);
        assert!(
            rehashed.detail.starts_with("; 1 of 1 member changes too disruptive, e.g. service web at 300ms")
        );
        // Moving flows when none had to is disruption too.
        let needless = check(&[change(false, 400, 5, 0)], None);
        assert_eq!(needless.failing, 1, "{}", needless.detail);
        assert!(needless.detail.contains("although none had to"), "{}", needless.detail);
        // The underlay's modulo hashing is reported, and judged only under its own bound.
        let underlay = [change(true, 800, 600, 200)];
        assert_eq!((check(&underlay, None).failing, check(&underlay, None).underlay_ratio_max), (0, 3.0));
        assert_eq!(check(&underlay, Some(2.0)).failing, 1);
        assert_eq!(check(&underlay, Some(3.5)).failing, 0);
    }
}
