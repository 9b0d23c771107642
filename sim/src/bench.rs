//! `netsim bench`: the performance figures of the project's targets, measured on this machine.
//!
//! Four parts, each a few figures with their target beside them:
//! - **petstore**: `scenarios/petstore.toml` under the overlay and under Calico, the same
//!   workload, seed and faults ([`measure::pair`] builds the two variants, as `netsim report`
//!   does); wall time per plane and in total, packets (requests and replies) and packets per
//!   second.
//! - **e2e**: packets carried end to end (the sender's data plane, every fabric hop, the
//!   receiver's data plane, real bytes) per second of wall time, on one thread: the petstore
//!   runs, and `scenarios/fabric-failover.toml` (underlay only: fabric hops alone).
//! - **scale**: a generated cluster ([`ScaleSpec`]: by default 5,000 hosts and 150,000 pods)
//!   converging and then running churn for a simulated second, per data plane. The manifest and
//!   scenarios are written to the output directory and run by a child `netsim run`, so the wall
//!   time and the peak memory measured are the command's own, as a user would see them.
//! - **sweep**: `netsim sweep` of a scenario over some seeds with `--jobs 1` and `--jobs 2`, as
//!   child processes; the speedup, and whether every seed's trace hash is the same both times.
//!
//! Wall time is the only thing here that is not a function of the inputs: every figure is
//! measured, never simulated, and varies by about ±30 % on shared machines. A missed target is
//! reported (`MISS`) and exits 0, unless `--strict`.

pub mod data_path;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::checks;
use crate::cli::{EXIT_CHECK_FAILED, EXIT_INVALID, EXIT_PASS};
use crate::report::cost::Plane;
use crate::report::measure;
use crate::runner::{self, RunOptions, RunReport};
use crate::scenario::Scenario;

/// Hosts of the scale part by default: Kubernetes' largest supported cluster.
pub const HOSTS_DEFAULT: u32 = 5000;
/// Pods per host of the scale part by default (150,000 pods on 5,000 hosts).
pub const PODS_PER_HOST_DEFAULT: u32 = 30;
/// Hosts per leaf switch of the generated fabric (the leaf count rounded up to an even number:
/// hosts are dual-homed to a leaf pair).
pub const HOSTS_PER_LEAF: u32 = 40;
/// Spine switches of the generated fabric.
pub const SPINES: u32 = 8;
/// Fewest hosts of a generated cluster: the churn touches applications 1 to 3.
pub const HOSTS_MIN: u32 = 4;
/// Most hosts of a generated cluster.
pub const HOSTS_MAX: u32 = 100_000;
/// Most pods per host of a generated cluster (the scheduler's limit is set to twice this).
pub const PODS_PER_HOST_MAX: u32 = 250;
/// Flows of the data-path figure: each vrouter's flow table holds their pairs.
pub const DATA_PATH_FLOWS: usize = 1000;
/// Packets of one data-path run (about half a second).
pub const DATA_PATH_PACKETS: u64 = 1_000_000;
/// Seeds of the sweep part by default.
pub const SWEEP_SEEDS_DEFAULT: u32 = 8;
/// Most seeds of the sweep part.
pub const SWEEP_SEEDS_MAX: u32 = 1000;
/// How long a scale run may take before it is stopped, by default (seconds).
pub const SCALE_TIMEOUT_DEFAULT_S: u64 = 600;
/// How much memory a scale run may hold before it is stopped, by default (GiB; at most half of
/// this machine's memory): past the target, the figure misses anyway, and a shared machine
/// without swap would start killing processes.
pub const SCALE_MEMORY_MAX_DEFAULT_GIB: f64 = 10.0;
/// Most repetitions of the in-process runs.
pub const REPEAT_MAX: u32 = 100;

/// The targets (issue 8), for a release build on the project's 2-core machine.
pub mod target {
    /// The petstore on both data planes, total wall time, seconds.
    pub const PETSTORE_WALL_S: f64 = 2.0;
    /// Packets carried end to end per second of wall time on one core.
    pub const E2E_PACKETS_PER_S: f64 = 2e6;
    /// The scale run (converging, then a simulated second of churn), wall time, seconds.
    pub const SCALE_WALL_S: f64 = 60.0;
    /// The scale run's peak memory, bytes.
    pub const SCALE_PEAK_BYTES: f64 = 8.0 * 1024.0 * 1024.0 * 1024.0;
    /// `netsim sweep --jobs 2` against `--jobs 1`.
    pub const SWEEP_SPEEDUP: f64 = 1.8;
}

/// A part of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// The petstore on both data planes.
    Petstore,
    /// End-to-end packets per second per core.
    E2e,
    /// A generated 5,000-host cluster converging and churning.
    Scale,
    /// `netsim sweep` on one thread and on two.
    Sweep,
}

impl Part {
    /// Every part, in the order they run.
    pub const ALL: [Part; 4] = [Part::Petstore, Part::E2e, Part::Scale, Part::Sweep];

    /// The name of `--only`.
    pub fn name(self) -> &'static str {
        match self {
            Part::Petstore => "petstore",
            Part::E2e => "e2e",
            Part::Scale => "scale",
            Part::Sweep => "sweep",
        }
    }
}

/// What `netsim bench` was asked.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The parts to run, in [`Part::ALL`] order.
    pub parts: Vec<Part>,
    /// The data planes of the petstore and scale parts (and, with the overlay, the e2e part's
    /// data path alone).
    pub planes: Vec<Plane>,
    /// Hosts of the generated cluster.
    pub hosts: u32,
    /// Pods per host of the generated cluster (one application of this many replicas per host).
    pub pods_per_host: u32,
    /// The petstore scenario.
    pub petstore: PathBuf,
    /// The underlay scenario of the e2e part.
    pub underlay: PathBuf,
    /// The scenario the sweep part sweeps.
    pub sweep_scenario: PathBuf,
    /// Seeds of the sweep part.
    pub sweep_seeds: u32,
    /// Runs of each in-process scenario; the fastest counts.
    pub repeat: u32,
    /// A scale run still going after this long is stopped (and misses its target).
    pub scale_timeout: Duration,
    /// A scale run holding more resident memory than this is stopped (and misses its target);
    /// `None` for the default ([`scale_memory_max_default`]).
    pub scale_memory_max: Option<u64>,
    /// Where to write the generated files, the child runs' results and `bench.json`.
    pub out: PathBuf,
    /// Print JSON instead of the table.
    pub json: bool,
    /// Exit 1 when a target is missed.
    pub strict: bool,
}

// ---------------------------------------------------------------------------------------------
// Figures.

/// How a figure compares with its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// The target is met.
    #[serde(rename = "PASS")]
    Pass,
    /// The target is missed.
    #[serde(rename = "MISS")]
    Miss,
    /// No target: a figure for the record.
    #[serde(rename = "INFO")]
    Info,
    /// The measurement could not be made (a child run failed).
    #[serde(rename = "ERROR")]
    Error,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Miss => "MISS",
            Verdict::Info => "",
            Verdict::Error => "ERROR",
        }
    }
}

/// What a figure counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Seconds of wall time.
    Seconds,
    /// A count of packets.
    Packets,
    /// Packets per second of wall time.
    PacketsPerSecond,
    /// Bytes of memory.
    Bytes,
    /// A ratio (speedup).
    Ratio,
    /// 1 for yes, 0 for no.
    Boolean,
}

impl Unit {
    fn show(self, value: f64) -> String {
        match self {
            Unit::Seconds if value < 10.0 => format!("{value:.3} s"),
            Unit::Seconds => format!("{value:.1} s"),
            Unit::Packets => thousands(value.round() as u64),
            Unit::PacketsPerSecond => format!("{:.2} M/s", value / 1e6),
            Unit::Bytes if value >= 1024.0 * 1024.0 * 1024.0 => {
                format!("{:.2} GiB", value / (1024.0 * 1024.0 * 1024.0))
            }
            Unit::Bytes => format!("{:.1} MiB", value / (1024.0 * 1024.0)),
            Unit::Ratio => format!("{value:.2}x"),
            Unit::Boolean => (if value == 1.0 { "yes" } else { "no" }).into(),
        }
    }
}

/// A bound a figure should keep.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Target {
    /// `<=` or `>=`.
    pub op: &'static str,
    /// The bound, in the figure's unit.
    pub value: f64,
}

impl Target {
    fn at_most(value: f64) -> Target {
        Target { op: "<=", value }
    }

    fn at_least(value: f64) -> Target {
        Target { op: ">=", value }
    }

    fn holds(&self, measured: f64) -> bool {
        if self.op == "<=" { measured <= self.value } else { measured >= self.value }
    }
}

/// One figure: what was measured, against what.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    /// The part it belongs to.
    pub part: Part,
    /// What it is, e.g. `petstore overlay: wall`.
    pub name: String,
    /// The measured value, in `unit`.
    pub measured: f64,
    /// Its unit.
    pub unit: Unit,
    /// The target, if the figure has one.
    pub target: Option<Target>,
    /// The verdict.
    pub verdict: Verdict,
    /// Whether `measured` is only a lower bound: the run was stopped at a limit before it ended.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unfinished: bool,
    /// How it was measured, in a few words.
    pub detail: String,
}

impl Figure {
    fn new(part: Part, name: impl Into<String>, measured: f64, unit: Unit, target: Option<Target>) -> Figure {
        let verdict = match target {
            None => Verdict::Info,
            Some(target) if target.holds(measured) => Verdict::Pass,
            Some(_) => Verdict::Miss,
        };
        Figure {
            part,
            name: name.into(),
            measured,
            unit,
            target,
            verdict,
            unfinished: false,
            detail: String::new(),
        }
    }

    fn detail(mut self, detail: impl Into<String>) -> Figure {
        self.detail = detail.into();
        self
    }

    fn error(
        part: Part,
        name: impl Into<String>,
        unit: Unit,
        target: Option<Target>,
        detail: String,
    ) -> Figure {
        Figure {
            part,
            name: name.into(),
            measured: 0.0,
            unit,
            target,
            verdict: Verdict::Error,
            unfinished: false,
            detail,
        }
    }
}

/// One simulation the figures come from.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunRecord {
    /// The part.
    pub part: String,
    /// The scenario's name.
    pub scenario: String,
    /// The scenario file.
    pub file: String,
    /// `underlay`, `overlay` or `calico`.
    pub dataplane: String,
    /// Wall time of the measured run, seconds (the fastest of `--repeat`).
    pub wall_s: f64,
    /// CPU time (user and system) of that run, seconds, where it can be measured. Well below
    /// `wall_s` for a one-thread run, it says the machine was busy with something else.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_s: Option<f64>,
    /// Packets sent, replies included.
    pub packets_sent: u64,
    /// Packets delivered end to end.
    pub packets_delivered: u64,
    /// Events executed.
    pub events: u64,
    /// The trace hash.
    pub trace_hash: String,
    /// Checks that passed, of `checks`.
    pub checks_passed: usize,
    /// Checks judged.
    pub checks: usize,
    /// Child runs only: the peak resident memory of the process, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_bytes: Option<u64>,
    /// Child runs only: the wall time of the simulation itself (results.json's `wall_ms`),
    /// seconds; the rest of `wall_s` is loading and building the cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_wall_s: Option<f64>,
    /// The command that repeats the run.
    pub reproduce: String,
}

/// Everything `netsim bench` measured; `--json` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// netsim's version.
    pub netsim_version: &'static str,
    /// `release` or `debug` (the targets are for a release build).
    pub build: &'static str,
    /// Threads this machine offers.
    pub cpus: usize,
    /// The load average over the minute before the benchmark started (Linux), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_average: Option<f64>,
    /// Warnings about the measurement itself (a debug build, a busy machine).
    pub warnings: Vec<String>,
    /// The parts that ran.
    pub parts: Vec<Part>,
    /// The figures, in part order.
    pub figures: Vec<Figure>,
    /// The runs behind them.
    pub runs: Vec<RunRecord>,
    /// Files written: the generated manifest and scenarios, and this report.
    pub files: Vec<String>,
    /// Whether every figure with a target met it.
    pub all_targets_met: bool,
}

// ---------------------------------------------------------------------------------------------
// The command.

/// `netsim bench`: 0 when it measured everything (whatever the verdicts, unless `--strict`),
/// 1 with `--strict` when a target is missed, 2 on bad input or when a run could not be made.
pub fn bench_command(options: &BenchOptions) -> u8 {
    if let Err(message) = validate(options) {
        eprintln!("error: {message}");
        return EXIT_INVALID;
    }
    let load_average = load_average();
    let mut warnings = Vec::new();
    if cfg!(debug_assertions) {
        warnings
            .push("a debug build: the targets are for a release build (cargo build --release)".to_string());
    }
    if let Some(load) = load_average.filter(|&load| load > 0.5 * cpus() as f64) {
        warnings.push(format!(
            "the machine was busy before the benchmark (load average {load:.1} on {} CPUs): wall times will be \
             longer than on a quiet machine",
            cpus()
        ));
    }
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
    let mut bench =
        Bench { options, figures: Vec::new(), runs: Vec::new(), files: Vec::new(), failed: false };
    let wants = |part| options.parts.contains(&part);
    if wants(Part::Petstore) || wants(Part::E2e) {
        let runs = match bench.petstore_runs() {
            Ok(runs) => runs,
            Err(message) => {
                eprintln!("error: {message}");
                return EXIT_INVALID;
            }
        };
        if wants(Part::Petstore) {
            bench.petstore_figures(&runs);
        }
        if wants(Part::E2e) {
            let underlay = match bench.underlay_run() {
                Ok(run) => run,
                Err(message) => {
                    eprintln!("error: {message}");
                    return EXIT_INVALID;
                }
            };
            bench.e2e_figures(&runs, &underlay);
            if options.planes.contains(&Plane::Overlay)
                && let Err(message) = bench.data_path_figure()
            {
                eprintln!("error: {message}");
                return EXIT_INVALID;
            }
        }
    }
    if wants(Part::Scale)
        && let Err(message) = bench.scale()
    {
        eprintln!("error: {message}");
        return EXIT_INVALID;
    }
    if wants(Part::Sweep) {
        bench.sweep();
    }
    let Bench { figures, runs, mut files, failed, .. } = bench;
    // A one-thread run that spent well under its wall time on a CPU shared the machine.
    let starved: Vec<String> = runs
        .iter()
        .filter(|run| run.part != Part::Sweep.name())
        .filter_map(|run| run.cpu_s.map(|cpu| (run, cpu / run.wall_s.max(1e-9))))
        .filter(|(_, share)| *share < CPU_SHARE_MIN)
        .map(|(run, share)| format!("{} ({}) {:.0} %", run.scenario, run.dataplane, share * 100.0))
        .collect();
    if !starved.is_empty() {
        let warning = format!(
            "runs that were on a CPU for less than {:.0} % of their wall time (the machine was busy; their wall \
             times overstate the cost): {}",
            CPU_SHARE_MIN * 100.0,
            starved.join(", ")
        );
        eprintln!("warning: {warning}");
        warnings.push(warning);
    }
    let all_targets_met = figures.iter().all(|f| f.verdict != Verdict::Miss && f.verdict != Verdict::Error);
    let json_file = options.out.join("bench.json");
    files.push(json_file.display().to_string());
    let report = BenchReport {
        netsim_version: env!("CARGO_PKG_VERSION"),
        build: if cfg!(debug_assertions) { "debug" } else { "release" },
        cpus: cpus(),
        load_average,
        warnings,
        parts: options.parts.clone(),
        figures,
        runs,
        files,
        all_targets_met,
    };
    // Plain structs of strings and numbers serialize.
    let json = serde_json::to_string_pretty(&report).expect("serializable") + "\n";
    let mut code = EXIT_PASS;
    if let Err(message) = crate::suite::write_file(&json_file, &json) {
        eprintln!("{message}");
        code = EXIT_INVALID;
    }
    if options.json {
        print!("{json}");
    } else {
        print!("{}", render(&report));
    }
    if failed {
        code = EXIT_INVALID;
    } else if code == EXIT_PASS && options.strict && !report.all_targets_met {
        code = EXIT_CHECK_FAILED;
    }
    code
}

/// Checks the options before anything runs, so that a typo costs nothing.
fn validate(options: &BenchOptions) -> Result<(), String> {
    if options.parts.is_empty() {
        return Err("nothing to do: --only names no part, or --skip-scale left none".into());
    }
    if options.planes.is_empty() {
        return Err("--dataplane: name at least one data plane".into());
    }
    if !(1..=REPEAT_MAX).contains(&options.repeat) {
        return Err(format!("--repeat must be between 1 and {REPEAT_MAX}"));
    }
    if options.parts.contains(&Part::Scale) {
        ScaleSpec::new(options.hosts, options.pods_per_host)?;
        if options.scale_timeout.is_zero() {
            return Err("--scale-timeout must be at least 1 second".into());
        }
        if options.scale_memory_max.is_some_and(|bytes| bytes < 64 << 20) {
            return Err("--scale-memory-max must be at least 0.0625 GiB (64 MiB)".into());
        }
    }
    if options.parts.contains(&Part::Sweep) && !(1..=SWEEP_SEEDS_MAX).contains(&options.sweep_seeds) {
        return Err(format!("--sweep-seeds must be between 1 and {SWEEP_SEEDS_MAX}"));
    }
    let mut files = Vec::new();
    if options.parts.contains(&Part::Petstore) || options.parts.contains(&Part::E2e) {
        files.push(("--petstore", &options.petstore));
    }
    if options.parts.contains(&Part::E2e) {
        files.push(("--underlay", &options.underlay));
    }
    if options.parts.contains(&Part::Sweep) {
        files.push(("--sweep-scenario", &options.sweep_scenario));
    }
    for (option, file) in files {
        if !file.is_file() {
            return Err(format!(
                "{option}: {} is not a file (run from the root of a netsim checkout, or give {option} FILE)",
                file.display()
            ));
        }
    }
    Ok(())
}

/// The benchmark in progress.
struct Bench<'a> {
    options: &'a BenchOptions,
    figures: Vec<Figure>,
    runs: Vec<RunRecord>,
    files: Vec<String>,
    /// A run could not be made (the exit code is 2).
    failed: bool,
}

/// An in-process run: the fastest of `--repeat`, and what it measured.
struct Timed {
    plane: &'static str,
    wall: Duration,
    /// CPU time of the process during the run (one thread runs), if known.
    cpu: Option<Duration>,
    /// The scenario's simulated duration.
    simulated: netsim_core::SimDuration,
    report: RunReport,
}

impl Bench<'_> {
    /// Runs `scenario` `--repeat` times on this thread; keeps the fastest, and checks that every
    /// repetition had the same trace hash.
    fn timed(&mut self, part: Part, scenario: &Scenario, plane: &'static str) -> Result<Timed, String> {
        let repeat = self.options.repeat;
        progress(&format!("{}: {} ({plane}) x{repeat} ...", part.name(), scenario.name));
        let mut best: Option<Timed> = None;
        for _ in 0..repeat {
            // Wall time is measured outside the simulation: it is what this command reports.
            #[allow(clippy::disallowed_methods, reason = "netsim bench measures wall time")]
            let started = Instant::now();
            let cpu_started = cpu_time();
            let report = runner::run(scenario, RunOptions::default(), &mut |_| {});
            let wall = started.elapsed();
            let cpu = cpu_time().zip(cpu_started).map(|(end, start)| end.saturating_sub(start));
            if let Some(best) = &best
                && best.report.trace_hash != report.trace_hash
            {
                return Err(format!(
                    "{} ({plane}): two runs of the same scenario and seed differ (trace {} and {}): a \
                     determinism bug, please report it",
                    scenario.name, best.report.trace_hash, report.trace_hash
                ));
            }
            if best.as_ref().is_none_or(|best| wall < best.wall) {
                best = Some(Timed { plane, wall, cpu, simulated: scenario.duration, report });
            }
        }
        let best = best.expect("--repeat is at least 1");
        let checks = checks::evaluate(scenario, &best.report);
        progress(&format!(
            "{}: {} ({plane}) {:.3} s, {} packets, trace {}",
            part.name(),
            scenario.name,
            best.wall.as_secs_f64(),
            best.report.packets.sent,
            best.report.trace_hash
        ));
        self.runs.push(RunRecord {
            part: part.name().into(),
            scenario: scenario.name.clone(),
            file: scenario.path.display().to_string(),
            dataplane: plane.into(),
            wall_s: best.wall.as_secs_f64(),
            cpu_s: best.cpu.map(|cpu| cpu.as_secs_f64()),
            packets_sent: best.report.packets.sent,
            packets_delivered: best.report.packets.delivered,
            events: best.report.events,
            trace_hash: best.report.trace_hash.clone(),
            checks_passed: checks.iter().filter(|c| c.passed).count(),
            checks: checks.len(),
            peak_bytes: None,
            run_wall_s: None,
            reproduce: reproduce_run(scenario, plane),
        });
        Ok(best)
    }

    /// The petstore under each data plane asked for.
    fn petstore_runs(&mut self) -> Result<Vec<Timed>, String> {
        let scenario = Scenario::load(&self.options.petstore).map_err(|e| e.to_string())?;
        let pair = measure::pair(&scenario).ok_or_else(|| {
            format!(
                "--petstore {}: an underlay-only scenario; the petstore part needs pods (`dataplane = \"overlay\"` \
                 or `\"calico\"` with manifests)",
                self.options.petstore.display()
            )
        })?;
        for note in &pair.notes {
            progress(&format!("petstore: {note}"));
        }
        // The runs serve the end-to-end figures too; they are the petstore part's if it is asked.
        let part = if self.options.parts.contains(&Part::Petstore) { Part::Petstore } else { Part::E2e };
        let mut runs = Vec::new();
        for &plane in &self.options.planes {
            runs.push(self.timed(part, pair.get(plane), plane.name())?);
        }
        Ok(runs)
    }

    fn petstore_figures(&mut self, runs: &[Timed]) {
        let part = Part::Petstore;
        for run in runs {
            let wall = run.wall.as_secs_f64();
            let packets = run.report.packets.sent;
            let events = run.report.events;
            self.figures.push(
                Figure::new(part, format!("petstore {}: wall", run.plane), wall, Unit::Seconds, None)
                    .detail(format!("{} events, trace {}", thousands(events), run.report.trace_hash)),
            );
            self.figures.push(
                Figure::new(
                    part,
                    format!("petstore {}: packets (requests + replies)", run.plane),
                    packets as f64,
                    Unit::Packets,
                    None,
                )
                .detail(format!("{} delivered", thousands(run.report.packets.delivered))),
            );
            self.figures.push(
                Figure::new(
                    part,
                    format!("petstore {}: packets per second", run.plane),
                    packets as f64 / wall.max(1e-9),
                    Unit::PacketsPerSecond,
                    None,
                )
                .detail("packets sent / wall, one thread"),
            );
        }
        let total: f64 = runs.iter().map(|r| r.wall.as_secs_f64()).sum();
        let planes: Vec<&str> = runs.iter().map(|r| r.plane).collect();
        let name = if runs.len() == 2 {
            "petstore both planes: wall".to_string()
        } else {
            format!("petstore {}: wall (one plane only)", planes.join(", "))
        };
        let packets: u64 = runs.iter().map(|r| r.report.packets.sent).sum();
        let figure =
            Figure::new(part, name, total, Unit::Seconds, Some(Target::at_most(target::PETSTORE_WALL_S)))
                .detail(format!(
                    "{} packets in all, {} simulated per plane, one thread",
                    thousands(packets),
                    runs.first().map_or(String::new(), |r| r.simulated.to_string())
                ));
        self.figures.push(figure);
    }

    fn underlay_run(&mut self) -> Result<Timed, String> {
        let scenario = Scenario::load(&self.options.underlay).map_err(|e| e.to_string())?;
        let plane = scenario.dataplane.name();
        self.timed(Part::E2e, &scenario, plane)
    }

    fn e2e_figures(&mut self, petstore: &[Timed], underlay: &Timed) {
        let mut delivered = 0;
        let mut wall = 0.0;
        for (run, what) in petstore.iter().map(|r| (r, "petstore")).chain([(underlay, "underlay")]) {
            let rate = run.report.packets.delivered as f64 / run.wall.as_secs_f64().max(1e-9);
            let name = match what {
                "petstore" => format!("e2e packets/s per core: petstore {}", run.plane),
                _ => format!(
                    "e2e packets/s per core: {} ({})",
                    underlay_name(&self.options.underlay),
                    run.plane
                ),
            };
            let path = if run.plane == "underlay" {
                "fabric hops only: an underlay scenario has no data plane"
            } else {
                "sender's data plane, fabric hops, receiver's data plane"
            };
            self.figures.push(
                Figure::new(
                    Part::E2e,
                    name,
                    rate,
                    Unit::PacketsPerSecond,
                    Some(Target::at_least(target::E2E_PACKETS_PER_S)),
                )
                .detail(format!(
                    "{} delivered in {:.3} s{}; {path}",
                    thousands(run.report.packets.delivered),
                    run.wall.as_secs_f64(),
                    run.cpu.map_or(String::new(), |cpu| format!(
                        " ({:.2} M/s per CPU second)",
                        run.report.packets.delivered as f64 / cpu.as_secs_f64().max(1e-9) / 1e6
                    ))
                )),
            );
            if run.plane != "underlay" {
                delivered += run.report.packets.delivered;
                wall += run.wall.as_secs_f64();
            }
        }
        if petstore.len() > 1 {
            self.figures.push(
                Figure::new(
                    Part::E2e,
                    "e2e packets/s per core: petstore, both planes",
                    delivered as f64 / f64::max(wall, 1e-9),
                    Unit::PacketsPerSecond,
                    Some(Target::at_least(target::E2E_PACKETS_PER_S)),
                )
                .detail(format!("{} delivered in {wall:.3} s", thousands(delivered))),
            );
        }
    }

    /// The overlay's data path alone ([`data_path`]): the fastest of `--repeat` runs.
    fn data_path_figure(&mut self) -> Result<(), String> {
        progress(&format!("{}: data path alone (overlay) x{} ...", Part::E2e.name(), self.options.repeat));
        let mut path = data_path::DataPath::new(DATA_PATH_FLOWS)?;
        let mut best: Option<data_path::Measured> = None;
        for _ in 0..self.options.repeat {
            let run = path.run(DATA_PATH_PACKETS)?;
            if best.is_none_or(|best| run.wall < best.wall) {
                best = Some(run);
            }
        }
        let run = best.expect("--repeat is at least 1");
        self.figures.push(
            Figure::new(
                Part::E2e,
                "e2e packets/s per core: overlay data path alone",
                run.packets as f64 / run.wall.as_secs_f64().max(1e-9),
                Unit::PacketsPerSecond,
                Some(Target::at_least(target::E2E_PACKETS_PER_S)),
            )
            .detail(format!(
                "{} packets of {DATA_PATH_FLOWS} flows pod to pod in {:.3} s, {} fabric hops each: sending vrouter \
                 (flow hit, MPLS-over-UDP), fabric, receiving vrouter (decapsulation, NAT); no event queue, \
                 traffic generator or checks",
                thousands(run.packets),
                run.wall.as_secs_f64(),
                run.hops / run.packets.max(1)
            )),
        );
        Ok(())
    }

    /// Generates the cluster, writes it, and runs it under each plane in a child `netsim run`.
    fn scale(&mut self) -> Result<(), String> {
        let spec = ScaleSpec::new(self.options.hosts, self.options.pods_per_host)?;
        let out = &self.options.out;
        let files = spec.write(out, &self.options.planes)?;
        self.files.push(out.join(spec.manifest_file()).display().to_string());
        for (plane, file) in files {
            self.files.push(file.display().to_string());
            self.scale_run(&spec, plane, &file);
        }
        Ok(())
    }

    fn scale_run(&mut self, spec: &ScaleSpec, plane: Plane, file: &Path) {
        let part = Part::Scale;
        let size = format!("{} hosts, {} pods", spec.hosts, thousands(spec.pods()));
        let label = format!("scale {}: {size}", plane.name());
        let wall_name = format!("scale {}: wall (load, converge, 1 s of churn)", plane.name());
        let peak_name = format!("scale {}: peak memory", plane.name());
        let wall_target = Some(Target::at_most(target::SCALE_WALL_S));
        let peak_target = Some(Target::at_most(target::SCALE_PEAK_BYTES));
        let dir = self.options.out.join(format!("run-{}", spec.name(plane)));
        let _ = std::fs::remove_file(dir.join("results.json"));
        let stderr_file = self.options.out.join(format!("{}.stderr", spec.name(plane)));
        let args = ["run".to_string(), display(file), "--out".into(), display(&dir), "--quiet".into()];
        progress(&format!("{label}: netsim {} ...", args.join(" ")));
        let limits = Limits {
            time: self.options.scale_timeout,
            memory_bytes: Some(self.options.scale_memory_max.unwrap_or_else(scale_memory_max_default)),
        };
        let child = match run_child(&args, &stderr_file, limits, &label) {
            Ok(child) => child,
            Err(message) => {
                self.failed = true;
                self.figures.push(Figure::error(
                    part,
                    wall_name,
                    Unit::Seconds,
                    wall_target,
                    message.clone(),
                ));
                self.figures.push(Figure::error(part, peak_name, Unit::Bytes, peak_target, message));
                return;
            }
        };
        let wall = child.wall.as_secs_f64();
        let mut record = RunRecord {
            part: part.name().into(),
            scenario: spec.name(plane),
            file: display(file),
            dataplane: plane.name().into(),
            wall_s: wall,
            cpu_s: child.cpu.map(|cpu| cpu.as_secs_f64()),
            peak_bytes: child.peak_bytes,
            reproduce: format!("netsim run {}", crate::suite::shell_quote(&display(file))),
            ..RunRecord::default()
        };
        let outcome = match child.end {
            ChildEnd::Exited(code) if code == EXIT_PASS || code == EXIT_CHECK_FAILED => {
                read_results(&dir.join("results.json")).map(|results| {
                    record.packets_sent = results.sent;
                    record.packets_delivered = results.delivered;
                    record.events = results.events;
                    record.trace_hash = results.trace_hash.clone();
                    record.checks_passed = results.checks_passed;
                    record.checks = results.checks;
                    record.run_wall_s = Some(results.wall_ms as f64 / 1000.0);
                    format!(
                        "{size}; load and build {:.1} s + run {:.1} s; {} events, {} packets, checks {}/{}, trace {}",
                        wall - results.wall_ms as f64 / 1000.0,
                        results.wall_ms as f64 / 1000.0,
                        thousands(results.events),
                        thousands(results.sent),
                        results.checks_passed,
                        results.checks,
                        results.trace_hash
                    )
                })
            }
            ChildEnd::Exited(code) => Err(format!(
                "netsim run exited with {code}: {}",
                tail(&stderr_file).unwrap_or_else(|| "no message".into())
            )),
            ChildEnd::Signalled(signal) => Err(format!(
                "netsim run was killed by signal {signal} (out of memory?): {}",
                tail(&stderr_file).unwrap_or_else(|| "no message".into())
            )),
            ChildEnd::Stopped(Limit::Time) => Ok(format!(
                "{size}; stopped after {} s, unfinished (--scale-timeout)",
                self.options.scale_timeout.as_secs()
            )),
            ChildEnd::Stopped(Limit::Memory(bytes)) => Ok(format!(
                "{size}; stopped after {wall:.1} s holding {} resident, unfinished (--scale-memory-max)",
                Unit::Bytes.show(bytes as f64)
            )),
        };
        let detail = match outcome {
            Ok(detail) => detail,
            Err(message) => {
                self.failed = true;
                let message = format!("{label}: {message}");
                progress(&message);
                self.figures.push(Figure::error(
                    part,
                    wall_name,
                    Unit::Seconds,
                    wall_target,
                    message.clone(),
                ));
                self.figures.push(Figure::error(part, peak_name, Unit::Bytes, peak_target, message));
                self.runs.push(record);
                return;
            }
        };
        progress(&format!(
            "{label}: {wall:.1} s wall, peak {}",
            child.peak_bytes.map_or("unknown".into(), |b| Unit::Bytes.show(b as f64))
        ));
        let mut wall_figure = Figure::new(part, wall_name, wall, Unit::Seconds, wall_target).detail(detail);
        if matches!(child.end, ChildEnd::Stopped(_)) {
            wall_figure.verdict = Verdict::Miss;
            wall_figure.unfinished = true;
        }
        self.figures.push(wall_figure);
        let peak = match child.peak_bytes {
            Some(bytes) => {
                let mut figure = Figure::new(part, peak_name, bytes as f64, Unit::Bytes, peak_target)
                    .detail("the child netsim run's peak resident set (wait4 ru_maxrss)");
                if let ChildEnd::Stopped(Limit::Memory(_)) = child.end {
                    figure.verdict = Verdict::Miss;
                    figure.unfinished = true;
                    figure.detail = "at least this: the run was stopped at --scale-memory-max".into();
                }
                figure
            }
            None => Figure::error(
                part,
                peak_name,
                Unit::Bytes,
                peak_target,
                "peak memory is measured on Unix only".into(),
            ),
        };
        self.figures.push(peak);
        self.runs.push(record);
    }

    /// `netsim sweep` with one thread, then two; the speedup and whether the seeds agree.
    fn sweep(&mut self) {
        let part = Part::Sweep;
        let scenario = &self.options.sweep_scenario;
        let seeds = format!("1..{}", self.options.sweep_seeds);
        let mut walls = Vec::new();
        let mut hashes: Vec<BTreeMap<u64, String>> = Vec::new();
        for jobs in [1, 2] {
            let dir = self.options.out.join(format!("sweep-jobs-{jobs}"));
            let json = dir.join("sweep.json");
            let _ = std::fs::remove_file(&json);
            let args = [
                "sweep".to_string(),
                display(scenario),
                "--seeds".into(),
                seeds.clone(),
                "--jobs".into(),
                jobs.to_string(),
                "--out".into(),
                display(&dir),
                "--json".into(),
                display(&json),
                "--quiet".into(),
            ];
            let label = format!("sweep --jobs {jobs}");
            progress(&format!("{label}: netsim {} ...", args.join(" ")));
            let stderr_file = self.options.out.join(format!("sweep-jobs-{jobs}.stderr"));
            let limits = Limits { time: Duration::from_secs(24 * 3600), memory_bytes: None };
            let result = run_child(&args, &stderr_file, limits, &label).and_then(|child| match child.end {
                ChildEnd::Exited(code) if code == EXIT_PASS || code == EXIT_CHECK_FAILED => {
                    Ok((child.wall, child.cpu, read_sweep(&json)?))
                }
                ChildEnd::Exited(code) => Err(format!(
                    "netsim sweep exited with {code}: {}",
                    tail(&stderr_file).unwrap_or_else(|| "no message".into())
                )),
                ChildEnd::Signalled(signal) => Err(format!("netsim sweep was killed by signal {signal}")),
                ChildEnd::Stopped(_) => Err("netsim sweep did not finish".into()),
            });
            match result {
                Ok((wall, cpu, seed_hashes)) => {
                    let cpu = cpu.map_or(String::new(), |cpu| format!(", {:.3} s CPU", cpu.as_secs_f64()));
                    progress(&format!("{label}: {:.3} s{cpu}", wall.as_secs_f64()));
                    self.figures.push(
                        Figure::new(
                            part,
                            format!("sweep --jobs {jobs}: wall"),
                            wall.as_secs_f64(),
                            Unit::Seconds,
                            None,
                        )
                        .detail(format!(
                            "netsim sweep {} --seeds {seeds} --jobs {jobs}{cpu}",
                            crate::suite::shell_quote(&display(scenario))
                        )),
                    );
                    walls.push(wall.as_secs_f64());
                    hashes.push(seed_hashes);
                }
                Err(message) => {
                    self.failed = true;
                    progress(&format!("{label}: {message}"));
                    self.figures.push(Figure::error(
                        part,
                        "sweep --jobs 2: speedup over --jobs 1",
                        Unit::Ratio,
                        Some(Target::at_least(target::SWEEP_SPEEDUP)),
                        format!("{label}: {message}"),
                    ));
                    return;
                }
            }
        }
        let speedup = walls[0] / walls[1].max(1e-9);
        self.figures.push(
            Figure::new(
                part,
                "sweep --jobs 2: speedup over --jobs 1",
                speedup,
                Unit::Ratio,
                Some(Target::at_least(target::SWEEP_SPEEDUP)),
            )
            .detail(format!("{} seeds; {} threads available", self.options.sweep_seeds, cpus())),
        );
        let differing: Vec<u64> = hashes[0]
            .iter()
            .filter(|(seed, hash)| hashes[1].get(seed) != Some(hash))
            .map(|(seed, _)| *seed)
            .collect();
        let same = hashes[0].len() == hashes[1].len() && differing.is_empty();
        let detail = if same {
            format!("the trace hashes of all {} seeds are equal", hashes[0].len())
        } else {
            format!("seeds whose trace hashes differ: {differing:?}")
        };
        self.figures.push(
            Figure::new(
                part,
                "sweep: same results with --jobs 1 and 2",
                if same { 1.0 } else { 0.0 },
                Unit::Boolean,
                Some(Target::at_least(1.0)),
            )
            .detail(detail),
        );
    }
}

/// The command that repeats an in-process run of `scenario` under `plane`.
fn reproduce_run(scenario: &Scenario, plane: &str) -> String {
    let file = crate::suite::shell_quote(&scenario.path.display().to_string());
    let named = scenario.dataplane.name();
    if plane == named || plane == "underlay" {
        format!("netsim run {file}")
    } else {
        format!("netsim report {file}  # the {plane} variant of a {named} scenario")
    }
}

fn underlay_name(path: &Path) -> String {
    path.file_stem().map_or_else(|| display(path), |s| s.to_string_lossy().into_owned())
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// A progress line on stderr.
fn progress(line: &str) {
    eprintln!("bench     {line}");
}

/// `1234567` as `1,234,567`.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// The last lines of a child's stderr, on one line.
fn tail(file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return None;
    }
    Some(lines[lines.len().saturating_sub(5)..].join(" | "))
}

// ---------------------------------------------------------------------------------------------
// Child processes.

/// How a child process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChildEnd {
    /// With this exit code.
    Exited(u8),
    /// Killed by this signal.
    Signalled(i32),
    /// Stopped at a limit.
    Stopped(Limit),
}

/// A limit a child process reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Limit {
    /// Its time.
    Time,
    /// Its memory: it held this many bytes resident.
    Memory(u64),
}

/// When a child is stopped.
#[derive(Clone, Copy, Debug)]
struct Limits {
    /// Wall time.
    time: Duration,
    /// Resident memory, where it can be read (Linux).
    memory_bytes: Option<u64>,
}

/// A finished child: how it ended, its wall time and its peak memory.
struct ChildRun {
    end: ChildEnd,
    wall: Duration,
    /// User and system CPU time, if known.
    cpu: Option<Duration>,
    peak_bytes: Option<u64>,
}

/// What waiting for a child tells: how it ended, its CPU time and its peak memory in bytes.
type Reaped = (ChildEnd, Option<Duration>, Option<u64>);

/// Runs this executable with `args` (stdout discarded, stderr to `stderr_file`), stopping it
/// at `limits`; prints a line after [`HEARTBEAT`], then at every doubling of the time.
fn run_child(args: &[String], stderr_file: &Path, limits: Limits, label: &str) -> Result<ChildRun, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the netsim executable: {e}"))?;
    if let Some(dir) = stderr_file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let stderr = std::fs::File::create(stderr_file)
        .map_err(|e| format!("cannot write {}: {e}", stderr_file.display()))?;
    // Wall time is measured outside any simulation: it is what this command reports.
    #[allow(clippy::disallowed_methods, reason = "netsim bench measures wall time")]
    let started = Instant::now();
    let mut child = Command::new(&exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let mut heartbeat = HEARTBEAT;
    loop {
        if let Some((end, cpu, peak_bytes)) = reap(&mut child, false)? {
            return Ok(ChildRun { end, wall: started.elapsed(), cpu, peak_bytes });
        }
        let elapsed = started.elapsed();
        let resident = resident_bytes(child.id());
        let limit = if elapsed >= limits.time {
            Some(Limit::Time)
        } else {
            resident.filter(|&bytes| limits.memory_bytes.is_some_and(|max| bytes > max)).map(Limit::Memory)
        };
        if let Some(limit) = limit {
            // The child is not reaped yet, so its process id is still its own.
            let _ = child.kill();
            let (_, cpu, peak_bytes) = reap(&mut child, true)?.expect("a blocking wait returns");
            return Ok(ChildRun { end: ChildEnd::Stopped(limit), wall: elapsed, cpu, peak_bytes });
        }
        if elapsed >= heartbeat {
            let memory = resident
                .map_or(String::new(), |bytes| format!(", {} resident", Unit::Bytes.show(bytes as f64)));
            progress(&format!("{label}: {} s{memory} ...", heartbeat.as_secs()));
            heartbeat *= 2;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The first progress line while a child runs comes after this long.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// The default of `--scale-memory-max`: [`SCALE_MEMORY_MAX_DEFAULT_GIB`], or half of this
/// machine's memory if that is less.
pub fn scale_memory_max_default() -> u64 {
    let default = (SCALE_MEMORY_MAX_DEFAULT_GIB * GIB) as u64;
    memory_total_bytes().map_or(default, |total| default.min(total / 2))
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// A `kB` field of a /proc status-like file, in bytes.
fn proc_kb_field(file: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().find(|line| line.starts_with(field))?;
    let kb: u64 = line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

/// This machine's memory (Linux's /proc/meminfo), if known.
fn memory_total_bytes() -> Option<u64> {
    proc_kb_field("/proc/meminfo", "MemTotal:")
}

/// A running process's resident memory (Linux's /proc/PID/status), if known.
fn resident_bytes(pid: u32) -> Option<u64> {
    proc_kb_field(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// Waits for `child` (`block`ing or not): how it ended and its peak resident memory in bytes,
/// or `None` if it is still running.
#[cfg(unix)]
fn reap(child: &mut std::process::Child, block: bool) -> Result<Option<Reaped>, String> {
    // std's `Child::wait` does not report resource usage; wait4 does, for this child alone.
    let pid = libc::pid_t::try_from(child.id()).map_err(|_| "a process id out of range".to_string())?;
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is a plain C struct of integers, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let flags = if block { 0 } else { libc::WNOHANG };
    let reaped = loop {
        // SAFETY: `pid` is our own child, not yet reaped (std never waits for it: we do not call
        // its wait methods); the pointers are to live locals for the duration of the call.
        let reaped = unsafe { libc::wait4(pid, &mut status, flags, &mut usage) };
        if reaped == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break reaped;
    };
    if reaped == 0 {
        return Ok(None);
    }
    if reaped == -1 {
        return Err(format!("cannot wait for the child process: {}", std::io::Error::last_os_error()));
    }
    // ru_maxrss is in kilobytes on Linux and the BSDs, in bytes on macOS.
    let unit = if cfg!(target_os = "macos") { 1 } else { 1024 };
    let peak = u64::try_from(usage.ru_maxrss).ok().map(|v| v * unit);
    let end = if libc::WIFEXITED(status) {
        ChildEnd::Exited(u8::try_from(libc::WEXITSTATUS(status)).unwrap_or(u8::MAX))
    } else {
        ChildEnd::Signalled(libc::WTERMSIG(status))
    };
    Ok(Some((end, Some(cpu_of(&usage)), peak)))
}

/// Waits for `child` (`block`ing or not); peak memory is not known off Unix.
#[cfg(not(unix))]
fn reap(child: &mut std::process::Child, block: bool) -> Result<Option<Reaped>, String> {
    let status = if block { child.wait().map(Some) } else { child.try_wait() }
        .map_err(|e| format!("cannot wait for the child process: {e}"))?;
    Ok(status.map(|s| (ChildEnd::Exited(s.code().map_or(u8::MAX, |c| c as u8)), None, None)))
}

/// User plus system time of a resource usage record.
#[cfg(unix)]
fn cpu_of(usage: &libc::rusage) -> Duration {
    let micros = |t: libc::timeval| {
        u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec).unwrap_or(0)
    };
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

/// This process's CPU time so far (all threads), if known.
#[cfg(unix)]
fn cpu_time() -> Option<Duration> {
    // SAFETY: `rusage` is a plain C struct of integers, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer is to a live local for the duration of the call.
    let done = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    (done == 0).then(|| cpu_of(&usage))
}

/// This process's CPU time: not measured off Unix.
#[cfg(not(unix))]
fn cpu_time() -> Option<Duration> {
    None
}

/// The load average over the last minute (Linux's /proc/loadavg), if known.
fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// A one-thread run on a CPU for less than this share of its wall time shared the machine.
const CPU_SHARE_MIN: f64 = 0.85;

/// The numbers bench keeps of a child's results.json.
struct ChildResults {
    sent: u64,
    delivered: u64,
    events: u64,
    trace_hash: String,
    checks_passed: usize,
    checks: usize,
    wall_ms: u64,
}

fn read_json(file: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", file.display()))
}

fn read_results(file: &Path) -> Result<ChildResults, String> {
    let json = read_json(file)?;
    let number = |pointer: &str| {
        json.pointer(pointer)
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| format!("{}: no number at {pointer}", file.display()))
    };
    let checks = json.get("checks").and_then(serde_json::Value::as_array).cloned().unwrap_or_default();
    Ok(ChildResults {
        sent: number("/packets/sent")?,
        delivered: number("/packets/delivered")?,
        events: number("/events")?,
        trace_hash: json.get("trace_hash").and_then(serde_json::Value::as_str).unwrap_or("").into(),
        checks_passed: checks
            .iter()
            .filter(|c| c.get("passed") == Some(&serde_json::Value::Bool(true)))
            .count(),
        checks: checks.len(),
        wall_ms: number("/wall_ms")?,
    })
}

/// The trace hash of every seed of a `netsim sweep --json` report.
fn read_sweep(file: &Path) -> Result<BTreeMap<u64, String>, String> {
    let json = read_json(file)?;
    let rows = json
        .get("rows")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| format!("{}: no rows", file.display()))?;
    rows.iter()
        .map(|row| {
            let seed = row.get("seed").and_then(serde_json::Value::as_u64);
            let hash = row.get("trace_hash").and_then(serde_json::Value::as_str);
            match (seed, hash) {
                (Some(seed), Some(hash)) => Ok((seed, hash.to_string())),
                _ => Err(format!("{}: a row without seed or trace_hash", file.display())),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The generated cluster.

/// The scale part's cluster: `hosts` hosts on a leaf-spine fabric ([`HOSTS_PER_LEAF`] hosts per
/// leaf, [`SPINES`] spines) and one application per host, each a Deployment of
/// `pods_per_host` replicas labelled `name: app-i, uses: app-(i+1)` (the last uses `app-0`)
/// with a Service `app-i` (port 80 to the pods' port 8080, named `http`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScaleSpec {
    /// Hosts.
    pub hosts: u32,
    /// Replicas per application.
    pub pods_per_host: u32,
}

impl ScaleSpec {
    /// A spec, if the numbers are within bounds.
    pub fn new(hosts: u32, pods_per_host: u32) -> Result<ScaleSpec, String> {
        if !(HOSTS_MIN..=HOSTS_MAX).contains(&hosts) {
            return Err(format!("--hosts must be between {HOSTS_MIN} and {HOSTS_MAX}"));
        }
        if !(1..=PODS_PER_HOST_MAX).contains(&pods_per_host) {
            return Err(format!("--pods-per-host must be between 1 and {PODS_PER_HOST_MAX}"));
        }
        let spec = ScaleSpec { hosts, pods_per_host };
        spec.pod_prefix_len()?;
        Ok(spec)
    }

    /// Applications: one per host.
    pub fn apps(&self) -> u32 {
        self.hosts
    }

    /// Pods before the churn.
    pub fn pods(&self) -> u64 {
        u64::from(self.apps()) * u64::from(self.pods_per_host)
    }

    /// Leaf switches: one per [`HOSTS_PER_LEAF`] hosts, rounded up to an even number.
    pub fn leaves(&self) -> u32 {
        let leaves = self.hosts.div_ceil(HOSTS_PER_LEAF).max(2);
        leaves + leaves % 2
    }

    /// The pod network's prefix length: room for every host's Calico /26 blocks (or every pod
    /// in one pool, for the overlay), with a quarter to spare for the churn; at least a /16.
    pub fn pod_prefix_len(&self) -> Result<u8, String> {
        let blocks_per_host = u64::from(self.pods_per_host).div_ceil(64);
        let needed = (u64::from(self.hosts) * 64 * blocks_per_host).max(self.pods()) * 5 / 4;
        let bits = 64 - (needed - 1).leading_zeros();
        let prefix = 32u32.saturating_sub(bits).min(16);
        // Below a /10, 10.0.0.0/N would reach the service network 10.96.0.0/12.
        if prefix < 10 {
            return Err(format!(
                "{} hosts of {} pods need more pod addresses than 10.0.0.0/10 holds",
                self.hosts, self.pods_per_host
            ));
        }
        Ok(prefix as u8)
    }

    /// The scenario's name under `plane`.
    pub fn name(&self, plane: Plane) -> String {
        format!("scale-{}-{}", self.hosts, plane.name())
    }

    /// The manifest's file name.
    pub fn manifest_file(&self) -> String {
        format!("scale-{}.yaml", self.hosts)
    }

    /// The Kubernetes manifest: a Deployment and a Service per application.
    pub fn manifest(&self) -> String {
        let mut yaml = format!(
            "# Generated by `netsim bench --hosts {} --pods-per-host {}`: {} applications of {} replicas.\n",
            self.hosts,
            self.pods_per_host,
            self.apps(),
            self.pods_per_host
        );
        for app in 0..self.apps() {
            let uses = (app + 1) % self.apps();
            let replicas = self.pods_per_host;
            let _ = write!(
                yaml,
                "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app-{app}}}\nspec:\n  replicas: \
                 {replicas}\n  selector: {{matchLabels: {{name: app-{app}}}}}\n  template:\n    metadata: {{labels: \
                 {{name: app-{app}, uses: app-{uses}}}}}\n    spec:\n      containers: [{{name: app, image: app, \
                 ports: [{{containerPort: 8080, name: http}}]}}]\n---\napiVersion: v1\nkind: Service\nmetadata: \
                 {{name: app-{app}, labels: {{name: app-{app}}}}}\nspec:\n  selector: {{name: app-{app}}}\n  ports: \
                 [{{port: 80, targetPort: http}}]\n"
            );
        }
        yaml
    }

    /// The scenario under `plane`, with the manifest at `manifest` (relative to the scenario).
    pub fn scenario(&self, plane: Plane, manifest: &str) -> String {
        let hosts = self.hosts;
        let replicas = self.pods_per_host;
        let prefix = self.pod_prefix_len().expect("checked by ScaleSpec::new");
        let (isolation, plane_section) = match plane {
            Plane::Overlay => ("uses-labels", "[overlay]\nencapsulation = \"mpls-over-udp\"\n"),
            Plane::Calico => ("network-policy", "[calico]\nbgp = \"route-reflectors\"\n"),
        };
        format!(
            r#"# Generated by `netsim bench --hosts {hosts} --pods-per-host {replicas}`; rerun with
# `netsim run` on this file. {apps} applications of {replicas} pods ({pods} pods) on {hosts}
# hosts; the cluster starts converged, then churns for a simulated second: scale events, a
# pod delete, and requests from app-0 to the service app-1, every one answered.
name = "{name}"
description = "{hosts} hosts, {pods} pods, {plane}: converge, then 1 s of churn"
seed = 1
duration = "1s"
dataplane = "{plane}"
manifests = ["{manifest}"]
isolation = "{isolation}"

[fabric]
hosts = {hosts}
leaves = {leaves}
spines = {spines}
uplinks_per_host = 2

[cluster]
pod_cidr = "10.0.0.0/{prefix}"
pods_per_host = {pods_max}

{plane_section}
[[traffic]]
name = "app-0-to-app-1"
from = "pods:name=app-0"
to = "service:app-1"
port = 80
rate = "100k/s"
size = "200B"
flows = 64
reply_size = "200B"

[[event]]
at = "200ms"
action = "scale"
workload = "app-2"
replicas = {double}

[[event]]
at = "400ms"
action = "delete"
pod = "app-1-0"

[[event]]
at = "600ms"
action = "scale"
workload = "app-3"
replicas = {half}

[[event]]
at = "800ms"
action = "scale"
workload = "app-2"
replicas = {replicas}

[[check]]
kind = "delivery_ratio"
traffic = "app-0-to-app-1"
min = 0.95

[[check]]
kind = "replies_from_target"
"#,
            apps = self.apps(),
            pods = self.pods(),
            name = self.name(plane),
            plane = plane.name(),
            leaves = self.leaves(),
            spines = SPINES,
            pods_max = (2 * replicas).max(110),
            double = 2 * replicas,
            half = (replicas / 2).max(1),
        )
    }

    /// Writes the manifest and a scenario per plane to `dir`; returns the scenario files.
    pub fn write(&self, dir: &Path, planes: &[Plane]) -> Result<Vec<(Plane, PathBuf)>, String> {
        let manifest = self.manifest_file();
        crate::suite::write_file(&dir.join(&manifest), &self.manifest())?;
        let mut files = Vec::new();
        for &plane in planes {
            let file = dir.join(format!("{}.toml", self.name(plane)));
            crate::suite::write_file(&file, &self.scenario(plane, &manifest))?;
            files.push((plane, file));
        }
        Ok(files)
    }
}

// ---------------------------------------------------------------------------------------------
// The table.

/// The report as people read it: a table of figures, then the runs behind them.
pub fn render(report: &BenchReport) -> String {
    let mut out = format!(
        "netsim bench: netsim {}, {} build, {} CPUs{}; wall times vary by about ±30 % on shared machines\n",
        report.netsim_version,
        report.build,
        report.cpus,
        report.load_average.map_or(String::new(), |load| format!(", load average {load:.1}"))
    );
    for warning in &report.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    out.push('\n');
    let mut rows: Vec<[String; 4]> = vec![["figure", "measured", "target", "verdict"].map(String::from)];
    for figure in &report.figures {
        let measured = match (figure.verdict, figure.unfinished) {
            (Verdict::Error, _) => "-".to_string(),
            // Stopped at a limit: the run would have taken more.
            (_, true) => format!("> {}", figure.unit.show(figure.measured)),
            (_, false) => figure.unit.show(figure.measured),
        };
        let target = match (figure.target, figure.unit) {
            (None, _) => String::new(),
            (Some(_), Unit::Boolean) => "yes".into(),
            (Some(target), unit) => format!("{} {}", target.op, unit.show(target.value)),
        };
        rows.push([figure.name.clone(), measured, target, figure.verdict.word().into()]);
    }
    let widths: Vec<usize> =
        (0..4).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    for row in &rows {
        let line = format!(
            "{:<w0$}  {:>w1$}  {:<w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str("\nhow\n");
    for figure in report.figures.iter().filter(|f| !f.detail.is_empty()) {
        let _ = writeln!(out, "  {}: {}", figure.name, figure.detail);
    }
    if !report.runs.is_empty() {
        out.push_str("\nruns\n");
        for run in &report.runs {
            let cpu = run.cpu_s.map_or(String::new(), |cpu| format!(" ({cpu:.3} s CPU)"));
            let _ = writeln!(
                out,
                "  {:<8} {} ({}): {:.3} s{cpu}, trace {}, checks {}/{}; {}",
                run.part,
                run.scenario,
                run.dataplane,
                run.wall_s,
                if run.trace_hash.is_empty() { "-" } else { &run.trace_hash },
                run.checks_passed,
                run.checks,
                run.reproduce
            );
        }
    }
    if !report.files.is_empty() {
        out.push_str("\nfiles\n");
        for file in &report.files {
            let _ = writeln!(out, "  {file}");
        }
    }
    let missed = report.figures.iter().filter(|f| f.verdict == Verdict::Miss).count();
    let errors = report.figures.iter().filter(|f| f.verdict == Verdict::Error).count();
    let targets = report.figures.iter().filter(|f| f.target.is_some()).count();
    let _ = writeln!(
        out,
        "\n{} of {targets} targets met{}{}",
        targets - missed - errors,
        if missed > 0 { format!(", {missed} missed") } else { String::new() },
        if errors > 0 { format!(", {errors} not measured") } else { String::new() }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use netsim_control::cluster::{Cluster, ClusterConfig};
    use netsim_control::k8s::manifest;

    #[test]
    fn the_manifest_has_one_application_per_host_with_its_labels_and_service() {
        let spec = ScaleSpec::new(12, 5).expect("in bounds");
        let (objects, _) = manifest::parse("scale", &spec.manifest()).expect("the manifest parses");
        let config = ClusterConfig { hosts: 12, ..ClusterConfig::default() };
        let cluster = Cluster::build(config, objects).expect("the cluster builds");
        assert_eq!(cluster.pods().len() as u64, spec.pods());
        assert_eq!(spec.pods(), 60);
        assert_eq!(cluster.services().len(), 12);
        for app in 0..12 {
            let name = format!("app-{app}");
            let uses = format!("app-{}", (app + 1) % 12);
            let pods: Vec<_> =
                cluster.pods().iter().filter(|p| p.pod.template.labels.get("name") == Some(&name)).collect();
            assert_eq!(pods.len(), 5, "{name}");
            for pod in &pods {
                assert_eq!(pod.pod.template.labels.get("uses"), Some(&uses), "{}", pod.pod.name);
            }
            let service =
                cluster.services().iter().find(|s| s.service.name == name).expect("a service per app");
            assert_eq!(service.service.ports.len(), 1);
            assert_eq!(service.service.ports[0].port, 80);
            assert_eq!(service.backends[0].len(), 5, "{name}: every replica backs its service");
        }
    }

    #[test]
    fn the_fabric_and_pod_network_grow_with_the_cluster() {
        let spec = |hosts, pods| ScaleSpec::new(hosts, pods).expect("in bounds");
        // 40 hosts per leaf, an even number of leaves (hosts are dual-homed to a pair).
        assert_eq!(spec(5000, 30).leaves(), 126);
        assert_eq!(spec(40, 30).leaves(), 2);
        assert_eq!(spec(100, 30).leaves(), 4);
        assert_eq!(spec(4, 1).leaves(), 2);
        // 5,000 Calico /26 blocks need more than a /14; a small cluster gets a /16.
        assert_eq!(spec(5000, 30).pod_prefix_len(), Ok(13));
        assert_eq!(spec(1000, 30).pod_prefix_len(), Ok(15));
        assert_eq!(spec(40, 30).pod_prefix_len(), Ok(16));
        assert_eq!(spec(5000, 30).pods(), 150_000);
        assert!(ScaleSpec::new(3, 30).is_err());
        assert!(ScaleSpec::new(100, 0).is_err());
        assert!(ScaleSpec::new(100_000, 250).is_err(), "beyond 10.0.0.0/10");
    }

    #[test]
    fn the_generated_scenarios_load() {
        let dir = std::env::temp_dir().join(format!("netsim-bench-unit-{}", std::process::id()));
        let spec = ScaleSpec::new(40, 4).expect("in bounds");
        let files = spec.write(&dir, &Plane::BOTH).expect("written");
        for (plane, file) in &files {
            let scenario = Scenario::load(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert_eq!(scenario.dataplane.name(), plane.name());
            assert_eq!(scenario.fabric.hosts, 40);
            assert_eq!(scenario.fabric.spines, SPINES);
            let cluster = &scenario.dataplane.cluster_spec().expect("a cluster").cluster;
            assert_eq!(cluster.pods().len(), 160);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn figures_judge_their_targets_and_numbers_read_well() {
        let pass = Figure::new(Part::Petstore, "x", 1.5, Unit::Seconds, Some(Target::at_most(2.0)));
        assert_eq!(pass.verdict, Verdict::Pass);
        let miss = Figure::new(Part::E2e, "y", 1.2e6, Unit::PacketsPerSecond, Some(Target::at_least(2e6)));
        assert_eq!(miss.verdict, Verdict::Miss);
        assert_eq!(Figure::new(Part::E2e, "z", 1.0, Unit::Packets, None).verdict, Verdict::Info);
        assert_eq!(thousands(1_002_905), "1,002,905");
        assert_eq!(thousands(999), "999");
        assert_eq!(Unit::PacketsPerSecond.show(1.234e6), "1.23 M/s");
        assert_eq!(Unit::Bytes.show(target::SCALE_PEAK_BYTES), "8.00 GiB");
        assert_eq!(Unit::Ratio.show(1.84), "1.84x");
    }
}
