//! The `netsim` command line.
//!
//! Exit codes are a contract CI relies on: 0 when every check passes, 1 when a check fails,
//! 2 when the input is invalid (a scenario that does not load, bad arguments) or the results
//! cannot be written.

use std::io::IsTerminal;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use netsim_control::network_manager::Isolation;
use netsim_core::{SimDuration, SimTime};

use crate::checks;
use crate::reach;
use crate::results::Results;
use crate::runner::{self, RunOptions};
use crate::scenario::Scenario;
use crate::suite::{self, CheckOptions, Shard};
use crate::sweep::{self, Seeds, SweepOptions};

/// A deterministic packet-level simulator of Kubernetes pod networking.
#[derive(Parser, Debug)]
#[command(name = "netsim", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a scenario, print a summary and write DIR/results.json.
    Run {
        /// The scenario file (TOML).
        scenario: PathBuf,
        /// Use this seed instead of the scenario's.
        #[arg(long)]
        seed: Option<u64>,
        /// Where to write results.json [default: out/<scenario name>].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Print nothing but errors; no progress bar.
        #[arg(long)]
        quiet: bool,
        /// Capture a fabric port (e.g. host-7:uplink0) to DIR/<port>.pcap; repeatable.
        #[arg(long, value_name = "PORT")]
        pcap: Vec<String>,
    },
    /// Probe every pod pair of Kubernetes manifests through a data plane; print the
    /// reachability matrix and check it against the reference NetworkPolicy semantics.
    Reach {
        /// Kubernetes YAML manifests (multi-document).
        #[arg(required = true)]
        manifests: Vec<PathBuf>,
        /// The data plane to probe.
        #[arg(long, value_enum, default_value = "overlay")]
        dataplane: DataplaneArg,
        /// The isolation model: Kubernetes NetworkPolicy, or the seeds' name/uses labels.
        #[arg(long, value_enum, default_value = "network-policy")]
        isolation: IsolationArg,
        /// Print JSON: {"dataplane", "isolation", "probes": [{from, to, port, protocol, result, expected}]}.
        #[arg(long)]
        json: bool,
        /// Also probe these manifests and show which probes the change opens and closes.
        #[arg(long, value_name = "AFTER", num_args = 1..)]
        compare: Vec<PathBuf>,
    },
    /// Run a suite of scenarios in parallel for CI: a table, JUnit XML and a markdown summary.
    Check {
        /// Scenario files, or directories searched recursively for *.toml.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Threads to run scenarios on [default: the available parallelism].
        #[arg(long, value_name = "N", value_parser = suite::parse_jobs)]
        jobs: Option<NonZeroUsize>,
        /// Run only part K of N of the sorted suite (1 <= K <= N); the N parts partition it.
        #[arg(long, value_name = "K/N")]
        shard: Option<Shard>,
        /// Write a JUnit XML report: a testsuite per scenario, a testcase per check.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Write a markdown summary for a pull-request comment.
        #[arg(long, value_name = "FILE")]
        markdown: Option<PathBuf>,
        /// Where to write <scenario stem>/results.json.
        #[arg(long, value_name = "DIR", default_value = "out/check")]
        out: PathBuf,
        /// No progress lines and no table: only failures and the final count.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        minimize: MinimizeArgs,
    },
    /// Run one scenario over a range of seeds in parallel; show each number's distribution.
    Sweep {
        /// The scenario file (TOML).
        scenario: PathBuf,
        /// The seeds: A..B (both included) or a single seed A.
        #[arg(long, value_name = "A..B")]
        seeds: Seeds,
        /// Threads to run seeds on [default: the available parallelism].
        #[arg(long, value_name = "N", value_parser = suite::parse_jobs)]
        jobs: Option<NonZeroUsize>,
        /// Run only part K of N of the seeds (by position in the range).
        #[arg(long, value_name = "K/N")]
        shard: Option<Shard>,
        /// Where to write seed-N/results.json [default: out/sweep/<scenario name>].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Write the distributions and a row per seed as JSON.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// No progress lines.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        minimize: MinimizeArgs,
    },
    /// Compare the overlay and Calico on scenarios: run each under both data planes (same seed,
    /// workload and faults) and write OUT/index.md, OUT/index.html and SVG/PNG plots.
    Report {
        /// Scenario files (TOML). An underlay-only scenario gets the sections that need no pods.
        #[arg(required = true, value_name = "SCENARIO")]
        scenarios: Vec<PathBuf>,
        /// Where to write the report [default: reports/<scenario name>]; with several scenarios,
        /// the parent of one directory per scenario.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Seeds per data plane for the fault sweeps (the scenario's seed and the next N-1).
        #[arg(long, value_name = "N", default_value_t = crate::report::SEEDS_DEFAULT)]
        seeds: u32,
        /// Cluster sizes (hosts) to simulate for the scaling curves; the model goes to 5000.
        #[arg(long, value_name = "N,N,...", default_value = "10,30,100", value_parser = crate::report::parse_sizes)]
        // Spelled out so that clap takes one comma-separated value, not a repeated option.
        sizes: std::vec::Vec<u32>,
        /// Threads to run simulations on [default: the available parallelism].
        #[arg(long, value_name = "N", value_parser = suite::parse_jobs)]
        jobs: Option<NonZeroUsize>,
        /// Print nothing but errors.
        #[arg(long)]
        quiet: bool,
    },
    /// Follow one packet across every layer: run the scenario up to TIME, send one packet of
    /// the flow from its source pod, and print each step (data plane lookups, NAT, policy,
    /// encapsulation, every fabric hop with its ECMP choice) and its fate. Exits 0 if it is
    /// delivered, 1 if dropped, 2 on bad input.
    Trace {
        /// The scenario file (TOML).
        scenario: PathBuf,
        /// SRC[:SPORT]->DST:PORT[/PROTO]: SRC a pod (`ns/name`, `name` or its IP), DST a pod,
        /// an address or `service:NAME`; PROTO tcp (default) or udp.
        #[arg(long, value_name = "SRC->DST:PORT/PROTO")]
        flow: String,
        /// When the packet is sent, e.g. 250ms [default: half the scenario's duration].
        #[arg(long, value_name = "TIME")]
        at: Option<crate::units::Duration>,
        /// Use this seed instead of the scenario's.
        #[arg(long)]
        seed: Option<u64>,
        /// Print the trace as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Measure the performance targets on this machine: the petstore on both data planes,
    /// end-to-end packets per second per core, a generated 5,000-host cluster converging and
    /// churning (wall time and peak memory, in a child `netsim run`), and `netsim sweep` on one
    /// thread against two. Prints a table (or JSON) of figure, measured, target and verdict.
    Bench(BenchArgs),
    /// Parse and validate scenario files without running them.
    Validate {
        /// Scenario files (TOML).
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
    },
}

/// `netsim bench`'s options.
#[derive(clap::Args, Debug)]
struct BenchArgs {
    /// Run only these parts (comma-separated or repeated).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "PART")]
    only: Vec<crate::bench::Part>,
    /// Leave out the scale part (the longest).
    #[arg(long)]
    skip_scale: bool,
    /// The data planes of the petstore and scale parts.
    #[arg(long, value_enum, default_value = "both")]
    dataplane: BenchPlaneArg,
    /// Hosts of the generated cluster (40 per leaf, 8 spines).
    #[arg(long, value_name = "N", default_value_t = crate::bench::HOSTS_DEFAULT)]
    hosts: u32,
    /// Pods per host of the generated cluster: one application of this many replicas per host.
    #[arg(long, value_name = "N", default_value_t = crate::bench::PODS_PER_HOST_DEFAULT)]
    pods_per_host: u32,
    /// Stop a scale run still going after this many seconds (it then misses its target).
    #[arg(long, value_name = "SECONDS", default_value_t = crate::bench::SCALE_TIMEOUT_DEFAULT_S)]
    scale_timeout: u64,
    /// Stop a scale run holding more than this much memory (it then misses its target)
    /// [default: 10 GiB, or half this machine's memory if less].
    #[arg(long, value_name = "GIB")]
    scale_memory_max: Option<f64>,
    /// The petstore scenario, run under both data planes.
    #[arg(long, value_name = "FILE", default_value = "scenarios/petstore.toml")]
    petstore: PathBuf,
    /// The underlay scenario of the end-to-end part.
    #[arg(long, value_name = "FILE", default_value = "scenarios/fabric-failover.toml")]
    underlay: PathBuf,
    /// The scenario the sweep part sweeps.
    #[arg(long, value_name = "FILE", default_value = "scenarios/petstore-overlay.toml")]
    sweep_scenario: PathBuf,
    /// Seeds of the sweep part (1..N).
    #[arg(long, value_name = "N", default_value_t = crate::bench::SWEEP_SEEDS_DEFAULT)]
    sweep_seeds: u32,
    /// Run each petstore and end-to-end scenario N times and keep the fastest.
    #[arg(long, value_name = "N", default_value_t = 1)]
    repeat: u32,
    /// Where to write the generated cluster, the child runs' results and bench.json.
    #[arg(long, value_name = "DIR", default_value = "out/bench")]
    out: PathBuf,
    /// Print the figures and runs as JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Exit 1 when a target is missed (the default exits 0: the figures are for the record).
    #[arg(long)]
    strict: bool,
}

/// The data planes `netsim bench` measures.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum BenchPlaneArg {
    /// The OpenContrail-style overlay.
    Overlay,
    /// Calico.
    Calico,
    /// Both, overlay first.
    Both,
}

impl BenchArgs {
    fn options(self) -> crate::bench::BenchOptions {
        use crate::bench::Part;
        use crate::report::cost::Plane;
        let parts = Part::ALL
            .into_iter()
            .filter(|part| self.only.is_empty() || self.only.contains(part))
            .filter(|part| !(self.skip_scale && *part == Part::Scale))
            .collect();
        let planes = match self.dataplane {
            BenchPlaneArg::Overlay => vec![Plane::Overlay],
            BenchPlaneArg::Calico => vec![Plane::Calico],
            BenchPlaneArg::Both => Plane::BOTH.to_vec(),
        };
        crate::bench::BenchOptions {
            parts,
            planes,
            hosts: self.hosts,
            pods_per_host: self.pods_per_host,
            petstore: self.petstore,
            underlay: self.underlay,
            sweep_scenario: self.sweep_scenario,
            sweep_seeds: self.sweep_seeds,
            repeat: self.repeat,
            scale_timeout: std::time::Duration::from_secs(self.scale_timeout),
            // Checked by bench: at least 64 MiB (a negative or NaN size becomes 0 here).
            scale_memory_max: self.scale_memory_max.map(|gib| (gib * 1024.0 * 1024.0 * 1024.0) as u64),
            out: self.out,
            json: self.json,
            strict: self.strict,
        }
    }
}

/// `--minimize` and its bound, for `check` and `sweep`.
#[derive(clap::Args, Debug)]
struct MinimizeArgs {
    /// On a failure, write a minimal reproduction (OUT/<stem>[-seed-N].min.toml): the scenario
    /// shrunk by delta debugging to the fewest events, traffic and churn entries that still fail.
    #[arg(long)]
    minimize: bool,
    /// Most runs one minimization may do.
    #[arg(long, value_name = "N", default_value_t = MINIMIZE_RUNS_DEFAULT, requires = "minimize")]
    minimize_runs: NonZeroUsize,
}

// Evaluated at compile time: a default of 0 would not compile.
const MINIMIZE_RUNS_DEFAULT: NonZeroUsize = NonZeroUsize::new(crate::shrink::RUNS_MAX_DEFAULT).unwrap();

impl MinimizeArgs {
    /// The bound on runs when `--minimize` is given.
    fn runs_max(&self) -> Option<usize> {
        self.minimize.then_some(self.minimize_runs.get())
    }
}

/// Data planes `netsim reach` can probe.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum DataplaneArg {
    /// The OpenContrail-style overlay.
    Overlay,
    /// Calico: routed IP, felix's policy chains, kube-proxy.
    Calico,
}

/// Isolation models.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum IsolationArg {
    /// Kubernetes NetworkPolicy: open by default, isolated by policy.
    NetworkPolicy,
    /// The seeds' labels: a collection per `name`, reaching the services it `uses`.
    UsesLabels,
}

/// Exit code: every check passed.
pub const EXIT_PASS: u8 = 0;
/// Exit code: a check failed.
pub const EXIT_CHECK_FAILED: u8 = 1;
/// Exit code: invalid input, or results could not be written.
pub const EXIT_INVALID: u8 = 2;

/// Parses the arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run { scenario, seed, out, quiet, pcap } => run(&scenario, seed, out, quiet, pcap),
        Command::Validate { scenarios } => validate(&scenarios),
        Command::Bench(args) => crate::bench::bench_command(&args.options()),
        Command::Trace { scenario, flow, at, seed, json } => trace(&scenario, &flow, at, seed, json),
        Command::Report { scenarios, out, seeds, sizes, jobs, quiet } => {
            let options = crate::report::ReportOptions { scenarios, out, seeds, sizes, jobs, quiet };
            crate::report::report_command(&options)
        }
        Command::Check { paths, jobs, shard, junit, markdown, out, quiet, minimize } => {
            let shard = shard.unwrap_or(Shard::ALL);
            let minimize = minimize.runs_max();
            suite::check_command(&CheckOptions { paths, jobs, shard, junit, markdown, out, quiet, minimize })
        }
        Command::Sweep { scenario, seeds, jobs, shard, out, json, quiet, minimize } => {
            let shard = shard.unwrap_or(Shard::ALL);
            let minimize = minimize.runs_max();
            sweep::sweep_command(&SweepOptions { scenario, seeds, jobs, shard, out, json, quiet, minimize })
        }
        Command::Reach { manifests, dataplane, isolation, json, compare } => {
            let plane = match dataplane {
                DataplaneArg::Overlay => reach::ReachPlane::Overlay,
                DataplaneArg::Calico => reach::ReachPlane::Calico,
            };
            let isolation = match isolation {
                IsolationArg::NetworkPolicy => Isolation::NetworkPolicy,
                IsolationArg::UsesLabels => Isolation::UsesLabels,
            };
            reach_command(&manifests, plane, isolation, json, &compare)
        }
    };
    ExitCode::from(code)
}

fn run(path: &Path, seed: Option<u64>, out: Option<PathBuf>, quiet: bool, pcap: Vec<String>) -> u8 {
    let mut scenario = match Scenario::load(path) {
        Ok(scenario) => scenario,
        Err(error) => {
            eprintln!("{error}");
            return EXIT_INVALID;
        }
    };
    if let Some(seed) = seed {
        scenario.seed = seed;
    }
    let mut captures = scenario.captures.clone();
    captures.extend(pcap);
    for name in &captures {
        if let Err(message) = runner::resolve_capture(&scenario, name) {
            eprintln!("error: --pcap: {message}");
            return EXIT_INVALID;
        }
    }
    let show_progress = !quiet && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    let bar = if show_progress {
        let bar = ProgressBar::new(scenario.duration.as_nanos());
        let style =
            ProgressStyle::with_template("{spinner} {msg} [{bar:40}] {percent}% simulated, {elapsed} wall")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style.progress_chars("=> "));
        bar.set_message(scenario.name.clone());
        bar
    } else {
        ProgressBar::hidden()
    };
    // Wall time is measured here, outside the simulation: it is reported, never simulated.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let options = RunOptions { captures, ..RunOptions::default() };
    let mut report = runner::run(&scenario, options, &mut |now| bar.set_position(now.as_nanos()));
    let captures = std::mem::take(&mut report.captures);
    let wall_ms = started.elapsed().as_millis() as u64;
    bar.finish_and_clear();
    let checks = checks::evaluate(&scenario, &report);
    let results = Results::new(&scenario, report, checks, wall_ms);
    let dir = out.unwrap_or_else(|| Path::new("out").join(file_safe(&scenario.name)));
    let written = match results.write(&dir) {
        Ok(path) => path,
        Err(error) => {
            eprintln!("error: cannot write {}: {error}", dir.join("results.json").display());
            return EXIT_INVALID;
        }
    };
    for capture in &captures {
        let file = dir.join(format!("{}.pcap", file_safe(&capture.port)));
        let written = std::fs::File::create(&file)
            .and_then(|f| crate::pcap::write(std::io::BufWriter::new(f), &capture.frames));
        if let Err(error) = written {
            eprintln!("error: cannot write {}: {error}", file.display());
            return EXIT_INVALID;
        }
        if !quiet {
            let note = if capture.truncated > 0 {
                format!(" ({} more not kept)", capture.truncated)
            } else {
                String::new()
            };
            println!(
                "capture   {} frames of {} in {}{note}",
                capture.frames.len(),
                capture.port,
                file.display()
            );
        }
    }
    if !quiet {
        println!("{}", results.summary());
        println!("results   {}", written.display());
    }
    if results.passed() { EXIT_PASS } else { EXIT_CHECK_FAILED }
}

fn trace(path: &Path, flow: &str, at: Option<crate::units::Duration>, seed: Option<u64>, json: bool) -> u8 {
    let mut scenario = match Scenario::load(path) {
        Ok(scenario) => scenario,
        Err(error) => {
            eprintln!("{error}");
            return EXIT_INVALID;
        }
    };
    if let Some(seed) = seed {
        scenario.seed = seed;
    }
    let duration = scenario.duration;
    let at = at.map_or(SimDuration::from_nanos(duration.as_nanos() / 2), |at| at.0);
    if at >= duration {
        eprintln!("error: --at {at}: beyond the scenario's duration ({duration}): nothing is sent then");
        return EXIT_INVALID;
    }
    let request = match crate::trace::parse_flow(flow, SimTime::ZERO + at) {
        Ok(request) => request,
        Err(message) => {
            eprintln!("error: {message}");
            return EXIT_INVALID;
        }
    };
    let Some(spec) = scenario.dataplane.cluster_spec() else {
        eprintln!("error: {}: tracing needs pods: `dataplane = \"overlay\"` or `\"calico\"`", path.display());
        return EXIT_INVALID;
    };
    if let Err(message) = request.resolve(&spec.cluster) {
        eprintln!("error: {message} (in {})", path.display());
        return EXIT_INVALID;
    }
    let options = RunOptions { trace: Some(request), ..RunOptions::default() };
    let report = runner::run(&scenario, options, &mut |_| {});
    // Asked for, so present.
    let trace = report.trace.expect("a traced run reports its trace");
    if json {
        // Plain structs of strings and numbers serialize.
        println!("{}", serde_json::to_string_pretty(&trace).expect("serializable"));
    } else {
        print!("{}", trace.render());
    }
    if trace.delivered() { EXIT_PASS } else { EXIT_CHECK_FAILED }
}

fn reach_command(
    manifests: &[PathBuf],
    plane: reach::ReachPlane,
    isolation: Isolation,
    json: bool,
    compare: &[PathBuf],
) -> u8 {
    let probe = |paths: &[PathBuf]| match reach::reach_files(paths, plane, isolation) {
        Ok(result) => Some(result),
        Err(errors) => {
            for error in errors {
                eprintln!("{error}");
            }
            None
        }
    };
    let Some(before) = probe(manifests) else { return EXIT_INVALID };
    let after = if compare.is_empty() {
        None
    } else {
        match probe(compare) {
            Some(after) => Some(after),
            None => return EXIT_INVALID,
        }
    };
    if json {
        // Serializing plain structs of strings and numbers cannot fail.
        let text = match &after {
            None => serde_json::to_string_pretty(&before),
            Some(after) => {
                serde_json::to_string_pretty(&serde_json::json!({ "before": before, "after": after }))
            }
        };
        println!("{}", text.expect("serializable"));
    } else {
        println!("{}", reach::render(&before));
        if let Some(after) = &after {
            println!("\nafter the change:\n{}\n", reach::render(after));
            println!("{}", reach::compare(&before, after));
        }
    }
    let disagree = before.mismatches().count() + after.as_ref().map_or(0, |a| a.mismatches().count());
    if disagree == 0 { EXIT_PASS } else { EXIT_CHECK_FAILED }
}

fn validate(paths: &[PathBuf]) -> u8 {
    let mut invalid = 0;
    for path in paths {
        match Scenario::load(path) {
            Ok(scenario) => println!(
                "ok: {} ({}: {} hosts, {} traffic entries, {} events, {} checks)",
                path.display(),
                scenario.name,
                scenario.fabric.hosts,
                scenario.traffic.len(),
                scenario.events.len(),
                scenario.checks.len()
            ),
            Err(error) => {
                eprintln!("{error}");
                invalid += 1;
            }
        }
    }
    if invalid == 0 { EXIT_PASS } else { EXIT_INVALID }
}

/// A scenario name made safe as a directory name.
pub(crate) fn file_safe(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect();
    if safe.is_empty() || safe.starts_with('.') { format!("scenario{safe}") } else { safe }
}
