//! `netsim sweep`: one scenario over a range of seeds, in parallel, with the distribution of
//! every number across the seeds and the command that reproduces each failing seed.
//!
//! Each seed's run is the run `netsim run SCENARIO --seed N` does (default options: no packet
//! fates kept), written to `OUT/seed-N/results.json`; only a small row of numbers per seed is
//! kept in memory. The rows are aggregated in seed order, so every figure but the wall time is
//! the same whatever the number of threads.
//!
//! With `--minimize`, the first [`SEEDS_MINIMIZED_MAX`] failing seeds (in seed order) are each
//! shrunk to a minimal reproduction ([`crate::shrink`]), `OUT/<stem>-seed-N.min.toml`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use serde::Serialize;

use crate::cli::{EXIT_CHECK_FAILED, EXIT_INVALID, EXIT_PASS};
use crate::results::Results;
use crate::scenario::Scenario;
use crate::shrink;
use crate::suite::{self, Shard, reproduce};

/// Most seeds one sweep runs.
pub const SEEDS_MAX: u64 = 100_000;
/// Failing seeds `--minimize` shrinks: the first ones, in seed order.
pub const SEEDS_MINIMIZED_MAX: usize = 3;

/// An inclusive range of seeds: `A..B` (or `A..=B`), or one seed `A`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seeds {
    /// The first seed.
    pub first: u64,
    /// The last seed, included.
    pub last: u64,
}

impl FromStr for Seeds {
    type Err = String;

    fn from_str(text: &str) -> Result<Seeds, String> {
        let usage = "write A..B (both included) or a single seed A";
        let number = |part: &str| {
            part.trim().parse::<u64>().map_err(|_| format!("`{text}` is not a seed range: {usage}"))
        };
        let (first, last) = match text.split_once("..") {
            Some((a, b)) => (number(a)?, number(b.strip_prefix('=').unwrap_or(b))?),
            None => {
                let seed = number(text)?;
                (seed, seed)
            }
        };
        if first > last {
            return Err(format!(
                "seeds `{text}`: the first seed {first} is greater than the last {last}; {usage}"
            ));
        }
        if last - first >= SEEDS_MAX {
            return Err(format!("seeds `{text}`: more than {SEEDS_MAX} seeds; split the sweep"));
        }
        Ok(Seeds { first, last })
    }
}

impl fmt::Display for Seeds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}..{}", self.first, self.last)
        }
    }
}

/// What `netsim sweep` was asked to do.
#[derive(Clone, Debug)]
pub struct SweepOptions {
    /// The scenario file.
    pub scenario: PathBuf,
    /// The seeds.
    pub seeds: Seeds,
    /// Threads; `None` for the available parallelism.
    pub jobs: Option<NonZeroUsize>,
    /// The part of the seeds to run (by position in the range).
    pub shard: Shard,
    /// Where to write `seed-N/results.json` [default: out/sweep/<scenario name>].
    pub out: Option<PathBuf>,
    /// Where to write the JSON report.
    pub json: Option<PathBuf>,
    /// No progress lines.
    pub quiet: bool,
    /// Shrink the first failing seeds to minimal reproductions, with at most this many runs each.
    pub minimize: Option<usize>,
}

/// The numbers kept of one seed's run.
#[derive(Clone, Debug, Serialize)]
pub struct SeedRow {
    /// The seed.
    pub seed: u64,
    /// The run's trace hash.
    pub trace_hash: String,
    /// Whether every check passed.
    pub passed: bool,
    /// Checks that passed.
    pub checks_passed: usize,
    /// Checks judged.
    pub checks: usize,
    /// The failing checks' names.
    pub failed_checks: Vec<String>,
    /// Packets sent.
    pub sent: u64,
    /// Packets delivered.
    pub delivered: u64,
    /// Delivered / sent, absent when nothing was sent.
    pub delivery_ratio: Option<f64>,
    /// Median one-way latency.
    pub latency_p50_ns: u64,
    /// 99th percentile one-way latency.
    pub latency_p99_ns: u64,
    /// Events executed.
    pub events: u64,
    /// Wall-clock time of the run.
    pub wall_ms: u64,
    /// The reproduction command.
    pub reproduce: String,
    /// With `--minimize`: the minimal reproduction written for this seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimized: Option<String>,
    /// `(check, detail)` of the failing checks.
    #[serde(skip)]
    pub failures: Vec<(String, String)>,
    /// `check.<name>.<metric>` and its value, for every check metric.
    #[serde(skip)]
    pub metrics: Vec<(String, f64)>,
    /// Why results.json could not be written, if it could not.
    #[serde(skip)]
    pub unwritten: Option<String>,
}

impl SeedRow {
    fn new(path: &Path, results: &Results, unwritten: Option<String>) -> SeedRow {
        let p = &results.packets;
        let failed: Vec<_> = results.checks.iter().filter(|c| !c.passed).collect();
        let mut metrics = Vec::new();
        for check in &results.checks {
            for (metric, value) in &check.metrics {
                metrics.push((format!("check.{}.{metric}", check.name), *value));
            }
        }
        SeedRow {
            seed: results.seed,
            trace_hash: results.trace_hash.clone(),
            passed: failed.is_empty(),
            checks_passed: results.checks.len() - failed.len(),
            checks: results.checks.len(),
            failed_checks: failed.iter().map(|c| c.name.clone()).collect(),
            sent: p.sent,
            delivered: p.delivered,
            delivery_ratio: (p.sent > 0).then(|| p.delivered as f64 / p.sent as f64),
            latency_p50_ns: results.latency_ns.p50,
            latency_p99_ns: results.latency_ns.p99,
            events: results.events,
            wall_ms: results.wall_ms,
            reproduce: reproduce(path, results.seed),
            minimized: None,
            failures: failed.iter().map(|c| (c.name.clone(), c.detail.clone())).collect(),
            metrics,
            unwritten,
        }
    }
}

/// The distribution of one number across the seeds (percentiles by nearest rank: always a
/// value some seed produced).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Distribution {
    /// `packets.sent`, `latency_ns.p99`, `check.<name>.<metric>`, ...
    pub metric: String,
    /// Seeds that produced it.
    pub samples: usize,
    /// Smallest.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// Largest.
    pub max: f64,
}

impl Distribution {
    /// The distribution of `values` (in seed order; at least one).
    pub fn of(metric: &str, values: &[f64]) -> Distribution {
        assert!(!values.is_empty(), "a distribution of no values");
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let index = (p * sorted.len() as f64).ceil() as usize;
            sorted[index.clamp(1, sorted.len()) - 1]
        };
        Distribution {
            metric: metric.to_string(),
            samples: values.len(),
            min: sorted[0],
            mean: values.iter().sum::<f64>() / values.len() as f64,
            p50: rank(0.5),
            p90: rank(0.9),
            max: sorted[sorted.len() - 1],
        }
    }
}

/// The distributions of the rows' numbers: packets, latency, events, every check metric, and
/// last the wall time (the one that varies between equal runs).
pub fn distributions(rows: &[SeedRow]) -> Vec<Distribution> {
    let mut series: Vec<(String, Vec<f64>)> = Vec::new();
    let mut add = |name: &str, value: Option<f64>| {
        let Some(value) = value else { return };
        match series.iter_mut().find(|(n, _)| n == name) {
            Some((_, values)) => values.push(value),
            None => series.push((name.to_string(), vec![value])),
        }
    };
    for row in rows {
        add("packets.sent", Some(row.sent as f64));
        add("packets.delivered", Some(row.delivered as f64));
        add("packets.delivery_ratio", row.delivery_ratio);
        add("latency_ns.p50", Some(row.latency_p50_ns as f64));
        add("latency_ns.p99", Some(row.latency_p99_ns as f64));
        add("events", Some(row.events as f64));
    }
    let mut checks: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for row in rows {
        for (name, value) in &row.metrics {
            checks.entry(name).or_default().push(*value);
        }
    }
    let wall: Vec<f64> = rows.iter().map(|r| r.wall_ms as f64).collect();
    series
        .iter()
        .map(|(name, values)| Distribution::of(name, values))
        .chain(checks.iter().map(|(name, values)| Distribution::of(name, values)))
        .chain((!wall.is_empty()).then(|| Distribution::of("wall_ms", &wall)))
        .collect()
}

/// The `--json` report.
#[derive(Debug, Serialize)]
struct Report<'a> {
    netsim_version: &'static str,
    scenario: &'a str,
    file: String,
    seeds: String,
    shard: String,
    runs: usize,
    passed: usize,
    failed: usize,
    failing_seeds: Vec<u64>,
    distributions: &'a [Distribution],
    rows: &'a [SeedRow],
}

/// `netsim sweep`: returns the exit code.
pub fn sweep_command(options: &SweepOptions) -> u8 {
    let scenario = match Scenario::load(&options.scenario) {
        Ok(scenario) => scenario,
        Err(error) => {
            eprintln!("{error}");
            return EXIT_INVALID;
        }
    };
    let pool = match suite::pool(options.jobs) {
        Ok(pool) => pool,
        Err(error) => {
            eprintln!("{error}");
            return EXIT_INVALID;
        }
    };
    let out = options
        .out
        .clone()
        .unwrap_or_else(|| Path::new("out/sweep").join(crate::cli::file_safe(&scenario.name)));
    let seeds: Vec<u64> = (options.seeds.first..=options.seeds.last)
        .enumerate()
        .filter(|(i, _)| options.shard.keeps(*i))
        .map(|(_, seed)| seed)
        .collect();
    let total = seeds.len();
    let finished = AtomicUsize::new(0);
    let rows: Vec<SeedRow> = pool.install(|| {
        seeds
            .par_iter()
            // One run per task: runs are long and unequal, so every thread takes the next one.
            .with_max_len(1)
            .map(|&seed| {
                let mut scenario = scenario.clone();
                scenario.seed = seed;
                let results = suite::run_timed(&scenario);
                let dir = out.join(format!("seed-{seed}"));
                let unwritten = results.write(&dir).err().map(|error| {
                    format!("error: cannot write {}: {error}", dir.join("results.json").display())
                });
                let row = SeedRow::new(&options.scenario, &results, unwritten);
                let done = finished.fetch_add(1, Ordering::Relaxed) + 1;
                if !options.quiet {
                    let verdict = if row.passed { "PASS" } else { "FAIL" };
                    eprintln!(
                        "[{done}/{total}] {verdict} seed {seed}: {}/{} checks, trace {}, {} ms",
                        row.checks_passed, row.checks, row.trace_hash, row.wall_ms
                    );
                }
                row
            })
            .collect()
    });
    let mut rows = rows;
    let minimized = match options.minimize {
        Some(runs_max) => pool.install(|| minimize_seeds(&mut rows, &options.scenario, &out, runs_max)),
        None => Vec::new(),
    };
    let distributions = distributions(&rows);
    let failing: Vec<&SeedRow> = rows.iter().filter(|r| !r.passed).collect();
    let mut code = if failing.is_empty() { EXIT_PASS } else { EXIT_CHECK_FAILED };
    for row in &rows {
        if let Some(error) = &row.unwritten {
            eprintln!("{error}");
            code = EXIT_INVALID;
        }
    }
    let shard =
        if options.shard == Shard::ALL { String::new() } else { format!(", shard {}", options.shard) };
    println!(
        "sweep     {} ({}), seeds {}{shard}: {} run{}",
        scenario.name,
        options.scenario.display(),
        options.seeds,
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    );
    if !distributions.is_empty() {
        println!("{}", table(&distributions));
    }
    for row in &failing {
        for (check, detail) in &row.failures {
            println!("FAIL seed {} {check}: {detail}", row.seed);
        }
        println!("     reproduce: {}", row.reproduce);
        match minimized.iter().find(|(seed, _)| *seed == row.seed).map(|(_, m)| m) {
            Some(Ok(minimized)) => {
                println!("     minimized: {minimized}");
                println!("     reproduce: {}", minimized.command());
            }
            Some(Err(error)) => {
                eprintln!("{error}");
                code = EXIT_INVALID;
            }
            None => {}
        }
    }
    println!("{} seeds: {} passed, {} failed", rows.len(), rows.len() - failing.len(), failing.len());
    if let Some(file) = &options.json {
        let report = Report {
            netsim_version: env!("CARGO_PKG_VERSION"),
            scenario: &scenario.name,
            file: options.scenario.display().to_string(),
            seeds: options.seeds.to_string(),
            shard: options.shard.to_string(),
            runs: rows.len(),
            passed: rows.len() - failing.len(),
            failed: failing.len(),
            failing_seeds: failing.iter().map(|r| r.seed).collect(),
            distributions: &distributions,
            rows: &rows,
        };
        // Plain structs of strings and numbers serialize.
        let text = serde_json::to_string_pretty(&report).expect("serializable") + "\n";
        if let Err(error) = suite::write_file(file, &text) {
            eprintln!("{error}");
            code = EXIT_INVALID;
        }
    }
    code
}

/// Shrinks the first [`SEEDS_MINIMIZED_MAX`] failing rows' runs to `OUT/<stem>-seed-N.min.toml`,
/// in parallel; records each file in its row.
fn minimize_seeds(
    rows: &mut [SeedRow],
    scenario: &Path,
    out: &Path,
    runs_max: usize,
) -> Vec<(u64, Result<shrink::Minimized, String>)> {
    let stem = crate::cli::file_safe(&scenario.file_stem().map(|s| s.to_string_lossy()).unwrap_or_default());
    let chosen: Vec<&mut SeedRow> = rows.iter_mut().filter(|r| !r.passed).take(SEEDS_MINIMIZED_MAX).collect();
    chosen
        .into_par_iter()
        .with_max_len(1)
        .map(|row| {
            let failing: BTreeSet<String> = row.failed_checks.iter().cloned().collect();
            let file = out.join(format!("{stem}-seed-{}.min.toml", row.seed));
            let minimized = shrink::minimize(scenario, row.seed, &failing, &file, runs_max);
            if let Ok(minimized) = &minimized {
                row.minimized = Some(minimized.file.display().to_string());
            }
            (row.seed, minimized)
        })
        .collect()
}

/// The distributions as an aligned table.
pub fn table(distributions: &[Distribution]) -> String {
    let mut rows: Vec<[String; 7]> =
        vec![["metric", "n", "min", "mean", "p50", "p90", "max"].map(String::from)];
    for d in distributions {
        rows.push([
            d.metric.clone(),
            d.samples.to_string(),
            number(d.min),
            number(d.mean),
            number(d.p50),
            number(d.p90),
            number(d.max),
        ]);
    }
    let widths: Vec<usize> =
        (0..7).map(|column| rows.iter().map(|row| row[column].chars().count()).max().unwrap_or(0)).collect();
    let lines: Vec<String> = rows
        .iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(column, cell)| {
                    if column == 0 {
                        format!("{cell:<width$}", width = widths[column])
                    } else {
                        format!("{cell:>width$}", width = widths[column])
                    }
                })
                .collect();
            cells.join("  ")
        })
        .collect();
    lines.join("\n")
}

/// A number as the table shows it: whole numbers whole, others to a precision that fits.
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else if value.abs() >= 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.6}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ranges_parse() {
        assert_eq!("1..8".parse::<Seeds>(), Ok(Seeds { first: 1, last: 8 }));
        assert_eq!("1..=8".parse::<Seeds>(), Ok(Seeds { first: 1, last: 8 }));
        assert_eq!("7".parse::<Seeds>(), Ok(Seeds { first: 7, last: 7 }));
        assert_eq!("3..3".parse::<Seeds>(), Ok(Seeds { first: 3, last: 3 }));
        for bad in ["5..2", "a..b", "1..", "..4", "", "-1..2", "0..100000"] {
            assert!(bad.parse::<Seeds>().is_err(), "{bad}");
        }
        assert!("0..99999".parse::<Seeds>().is_ok());
        assert_eq!("1..8".parse::<Seeds>().unwrap().to_string(), "1..8");
    }

    #[test]
    fn distributions_use_nearest_rank() {
        let values: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        let d = Distribution::of("x", &values);
        assert_eq!((d.min, d.mean, d.p50, d.p90, d.max), (1.0, 5.5, 5.0, 9.0, 10.0));
        let one = Distribution::of("y", &[3.0]);
        assert_eq!((one.min, one.p50, one.p90, one.max), (3.0, 3.0, 3.0, 3.0));
    }

    #[test]
    fn numbers_print_compactly() {
        assert_eq!(number(1_000_000.0), "1000000");
        assert_eq!(number(0.999123456), "0.999123");
        assert_eq!(number(1234.56), "1234.6");
    }
}
