//! `netsim check`: a suite of scenarios run in parallel, judged, and reported for CI.
//!
//! The steps, in order:
//! 1. [`discover`] the scenario files (`*.toml`, directories searched recursively), sorted by
//!    path and deduplicated;
//! 2. keep this [`Shard`]'s part of the sorted list (`i % N == K - 1`), so that shards
//!    partition the suite;
//! 3. load every scenario of the shard, reporting every one that does not load;
//! 4. run the others in parallel on a pool of `--jobs` threads ([`run_timed`]: one run is
//!    single-threaded and deterministic, so the results do not depend on the number of threads),
//!    writing `OUT/<stem>/results.json` for each;
//! 5. with `--minimize`, shrink every failing scenario to a minimal reproduction
//!    ([`crate::shrink`]), written to `OUT/<stem>.min.toml`;
//! 6. print the table in scenario order, and write the JUnit ([`crate::junit`]) and markdown
//!    ([`markdown`]) reports.
//!
//! Exit codes: 0 when every check passed, 1 when a check failed, 2 when a scenario did not load,
//! an argument was bad or a file (a minimal reproduction included) could not be written (2 wins
//! over 1: a broken file must not pass for a mere failing check).

use std::collections::BTreeSet;
use std::fmt;
use std::num::NonZeroUsize;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rayon::prelude::*;

use crate::checks;
use crate::cli::{EXIT_CHECK_FAILED, EXIT_INVALID, EXIT_PASS};
use crate::results::Results;
use crate::runner::{self, RunOptions};
use crate::scenario::Scenario;
use crate::shrink::{self, Minimized};

/// Most scenario files one `netsim check` collects.
pub const SCENARIOS_MAX: usize = 100_000;

/// One part of a suite: `K/N` keeps the items at positions `i` (0-based, in sorted order) with
/// `i % N == K - 1`. The N shards `1/N` .. `N/N` partition the suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// K, 1-based.
    pub index: usize,
    /// N, at least 1.
    pub count: usize,
}

impl Shard {
    /// The whole suite: `1/1`.
    pub const ALL: Shard = Shard { index: 1, count: 1 };

    /// Whether this shard keeps the item at 0-based `position`.
    pub fn keeps(&self, position: usize) -> bool {
        position % self.count == self.index - 1
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Shard, String> {
        let usage = "write K/N with 1 <= K <= N, e.g. 1/4";
        let (k, n) = text.split_once('/').ok_or_else(|| format!("`{text}` is not a shard: {usage}"))?;
        let number = |part: &str| {
            part.trim().parse::<usize>().map_err(|_| format!("`{text}` is not a shard: {usage}"))
        };
        let (index, count) = (number(k)?, number(n)?);
        if count == 0 {
            return Err(format!("shard `{text}`: N must be at least 1 ({usage})"));
        }
        if index == 0 || index > count {
            return Err(format!("shard `{text}`: K must be between 1 and N = {count} ({usage})"));
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Parses `--jobs`: a number of threads, at least 1.
pub fn parse_jobs(text: &str) -> Result<NonZeroUsize, String> {
    text.trim()
        .parse::<usize>()
        .ok()
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| format!("`{text}` is not a number of threads: write a whole number >= 1"))
}

/// A rayon pool of `jobs` threads (default: the available parallelism).
pub fn pool(jobs: Option<NonZeroUsize>) -> Result<rayon::ThreadPool, String> {
    let threads = jobs.or_else(|| std::thread::available_parallelism().ok()).map_or(1, NonZeroUsize::get);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("netsim-run-{i}"))
        .build()
        .map_err(|error| format!("error: cannot start {threads} threads: {error}"))
}

/// Runs `scenario` with default options (no fates, no captures: memory stays bounded by the
/// fabric, not by the packets), judges its checks and times it.
pub fn run_timed(scenario: &Scenario) -> Results {
    // Wall time is measured here, outside the simulation: it is reported, never simulated.
    #[allow(clippy::disallowed_methods, reason = "wall_ms reports how long a run took")]
    let started = Instant::now();
    let report = runner::run(scenario, RunOptions::default(), &mut |_| {});
    let wall_ms = started.elapsed().as_millis() as u64;
    let checks = checks::evaluate(scenario, &report);
    Results::new(scenario, report, checks, wall_ms)
}

/// The scenario files named by `paths`: files as given, directories searched recursively for
/// `*.toml` (symbolic links to directories are not followed). Sorted by path as a string and
/// deduplicated (two spellings of one file count once). Errors: paths that cannot be read, and
/// an empty result.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Vec<String>> {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match std::fs::metadata(path) {
            Ok(metadata) if metadata.is_dir() => walk(path, &mut found, &mut errors),
            Ok(_) => found.push(path.clone()),
            Err(error) => errors.push(format!("{}: error: cannot read: {error}", path.display())),
        }
        if found.len() > SCENARIOS_MAX {
            errors.push(format!("error: more than {SCENARIOS_MAX} scenario files: split the suite"));
            return Err(errors);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    found.sort_by_cached_key(|path| path.to_string_lossy().into_owned());
    let mut seen = BTreeSet::new();
    found.retain(|path| seen.insert(std::fs::canonicalize(path).unwrap_or_else(|_| normal(path))));
    if found.is_empty() {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(vec![format!("error: no scenario files (*.toml) in {}", names.join(", "))]);
    }
    Ok(found)
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>, errors: &mut Vec<String>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            errors.push(format!("{}: error: cannot read directory: {error}", dir.display()));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                errors.push(format!("{}: error: cannot read directory: {error}", dir.display()));
                continue;
            }
        };
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            walk(&path, found, errors);
        } else if path.extension().is_some_and(|e| e == "toml")
            && std::fs::metadata(&path).is_ok_and(|m| m.is_file())
        {
            found.push(path);
        }
        if found.len() > SCENARIOS_MAX {
            return;
        }
    }
}

/// `path` without `.` components.
fn normal(path: &Path) -> PathBuf {
    path.components().filter(|c| !matches!(c, Component::CurDir)).collect()
}

/// Directory names under `--out`, one per path: the file stem, or, for stems that occur more
/// than once, the whole path without its extension. Computed over the whole suite, before
/// sharding, so that a scenario's directory does not depend on the shard.
pub fn out_names(paths: &[PathBuf]) -> Vec<String> {
    let stem = |path: &Path| {
        crate::cli::file_safe(&path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default())
    };
    let stems: Vec<String> = paths.iter().map(|p| stem(p)).collect();
    stems
        .iter()
        .zip(paths)
        .map(|(name, path)| {
            if stems.iter().filter(|s| *s == name).count() == 1 {
                return name.clone();
            }
            let parts: Vec<String> = path
                .with_extension("")
                .components()
                .filter_map(|c| match c {
                    Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
                    _ => None,
                })
                .collect();
            crate::cli::file_safe(&parts.join("_"))
        })
        .collect()
}

/// What `netsim check` was asked to do.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Scenario files and directories.
    pub paths: Vec<PathBuf>,
    /// Threads; `None` for the available parallelism.
    pub jobs: Option<NonZeroUsize>,
    /// The part of the suite to run.
    pub shard: Shard,
    /// Where to write the JUnit XML report.
    pub junit: Option<PathBuf>,
    /// Where to write the markdown summary.
    pub markdown: Option<PathBuf>,
    /// Where to write `<stem>/results.json`.
    pub out: PathBuf,
    /// No progress lines and no table.
    pub quiet: bool,
    /// Shrink each failing scenario to a minimal reproduction, with at most this many runs.
    pub minimize: Option<usize>,
}

/// The outcome of one scenario of the suite.
#[derive(Clone, Debug)]
pub struct Case {
    /// The scenario file, as discovered.
    pub path: PathBuf,
    /// What happened.
    pub outcome: Outcome,
    /// With `--minimize`, for a scenario with failing checks: its minimal reproduction, or why
    /// there is none.
    pub minimized: Option<Result<Minimized, String>>,
}

/// What happened to one scenario.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// It did not load: every diagnostic, one per line, located.
    Invalid(String),
    /// It ran.
    Ran {
        /// Its results.
        results: Box<Results>,
        /// Where results.json was written, or why it could not be.
        written: Result<PathBuf, String>,
    },
}

impl Case {
    /// The scenario path as reports show it.
    pub fn label(&self) -> String {
        self.path.display().to_string()
    }
}

/// Counts over the cases.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Scenarios.
    pub scenarios: usize,
    /// Scenarios that did not load.
    pub invalid: usize,
    /// Results that could not be written.
    pub unwritten: usize,
    /// Checks judged.
    pub checks: usize,
    /// Checks that passed.
    pub passed: usize,
}

impl Tally {
    /// Counts `cases`.
    pub fn of(cases: &[Case]) -> Tally {
        let mut tally = Tally { scenarios: cases.len(), ..Tally::default() };
        for case in cases {
            match &case.outcome {
                Outcome::Invalid(_) => tally.invalid += 1,
                Outcome::Ran { results, written } => {
                    tally.unwritten += usize::from(written.is_err());
                    tally.checks += results.checks.len();
                    tally.passed += results.checks.iter().filter(|c| c.passed).count();
                }
            }
        }
        tally
    }

    /// Checks that failed.
    pub fn failed(&self) -> usize {
        self.checks - self.passed
    }

    /// The exit code.
    pub fn exit_code(&self) -> u8 {
        if self.invalid > 0 || self.unwritten > 0 {
            EXIT_INVALID
        } else if self.failed() > 0 {
            EXIT_CHECK_FAILED
        } else {
            EXIT_PASS
        }
    }

    /// `N scenarios, M checks: X passed, Y failed`, and what did not load or was not written.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{} scenario{}, {} check{}: {} passed, {} failed",
            self.scenarios,
            plural(self.scenarios),
            self.checks,
            plural(self.checks),
            self.passed,
            self.failed()
        );
        if self.invalid > 0 {
            line += &format!("; {} scenario{} did not load", self.invalid, plural(self.invalid));
        }
        if self.unwritten > 0 {
            line += &format!(
                "; {} results.json file{} could not be written",
                self.unwritten,
                plural(self.unwritten)
            );
        }
        line
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `netsim check`: returns the exit code.
pub fn check_command(options: &CheckOptions) -> u8 {
    let all = match discover(&options.paths) {
        Ok(all) => all,
        Err(errors) => {
            for error in errors {
                eprintln!("{error}");
            }
            return EXIT_INVALID;
        }
    };
    let names = out_names(&all);
    let selected: Vec<(PathBuf, String)> = all
        .into_iter()
        .zip(names)
        .enumerate()
        .filter(|(i, _)| options.shard.keeps(*i))
        .map(|(_, case)| case)
        .collect();
    let pool = match pool(options.jobs) {
        Ok(pool) => pool,
        Err(error) => {
            eprintln!("{error}");
            return EXIT_INVALID;
        }
    };
    // Load everything first: every broken file is reported before anything runs.
    let loaded: Vec<Result<Scenario, String>> = selected
        .iter()
        .map(|(path, _)| {
            Scenario::load(path).map_err(|error| {
                let message = error.to_string();
                eprintln!("{message}");
                message
            })
        })
        .collect();
    let total = selected.len();
    let finished = AtomicUsize::new(0);
    let cases: Vec<Case> = pool.install(|| {
        selected
            .par_iter()
            .zip(loaded.into_par_iter())
            // One run per task: runs are long and unequal, so every thread takes the next one.
            .with_max_len(1)
            .map(|((path, name), scenario)| {
                let outcome = match scenario {
                    Err(message) => Outcome::Invalid(message),
                    Ok(scenario) => {
                        let results = run_timed(&scenario);
                        let dir = options.out.join(name);
                        let written = results.write(&dir).map_err(|error| {
                            format!("error: cannot write {}: {error}", dir.join("results.json").display())
                        });
                        Outcome::Ran { results: Box::new(results), written }
                    }
                };
                let case = Case { path: path.clone(), outcome, minimized: None };
                let done = finished.fetch_add(1, Ordering::Relaxed) + 1;
                if !options.quiet {
                    eprintln!("[{done}/{total}] {}", progress_line(&case));
                }
                case
            })
            .collect()
    });
    let mut cases = cases;
    if let Some(runs_max) = options.minimize {
        let names: Vec<&String> = selected.iter().map(|(_, name)| name).collect();
        pool.install(|| minimize_cases(&mut cases, &names, &options.out, runs_max, options.quiet));
    }
    let tally = Tally::of(&cases);
    for case in &cases {
        if let Outcome::Ran { written: Err(error), .. } = &case.outcome {
            eprintln!("{error}");
        }
    }
    if !options.quiet {
        println!("{}", table(&cases));
    }
    let failures = failure_lines(&cases);
    if !failures.is_empty() {
        if !options.quiet {
            println!();
        }
        println!("{failures}");
    }
    let shard =
        if options.shard == Shard::ALL { String::new() } else { format!(" (shard {})", options.shard) };
    println!("{}{shard}", tally.line());
    let mut code = tally.exit_code();
    if cases.iter().any(|case| matches!(case.minimized, Some(Err(_)))) {
        code = EXIT_INVALID;
    }
    if let Some(file) = &options.junit
        && let Err(error) = write_file(file, &crate::junit::render(&cases))
    {
        eprintln!("{error}");
        code = EXIT_INVALID;
    }
    if let Some(file) = &options.markdown
        && let Err(error) = write_file(file, &markdown(&cases, options.shard))
    {
        eprintln!("{error}");
        code = EXIT_INVALID;
    }
    code
}

/// Shrinks every case with failing checks to `OUT/<name>.min.toml`, in parallel (each shrink
/// runs its candidates in parallel too).
fn minimize_cases(cases: &mut [Case], names: &[&String], out: &Path, runs_max: usize, quiet: bool) {
    cases.par_iter_mut().zip(names).with_max_len(1).for_each(|(case, name)| {
        let Outcome::Ran { results, .. } = &case.outcome else { return };
        let failing: BTreeSet<String> =
            results.checks.iter().filter(|c| !c.passed).map(|c| c.name.clone()).collect();
        if failing.is_empty() {
            return;
        }
        let file = out.join(format!("{name}.min.toml"));
        let minimized = shrink::minimize(&case.path, results.seed, &failing, &file, runs_max);
        match &minimized {
            Ok(minimized) if !quiet => eprintln!("minimized {}: {minimized}", case.label()),
            Ok(_) => {}
            Err(error) => eprintln!("{error}"),
        }
        case.minimized = Some(minimized);
    });
}

/// Writes `text` to `file` atomically (a temporary file in the same directory, then a rename),
/// creating the directory if needed.
pub fn write_file(file: &Path, text: &str) -> Result<(), String> {
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        std::fs::create_dir_all(dir)?;
        std::fs::write(&temporary, text)?;
        std::fs::rename(&temporary, file)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result.map_err(|error| format!("error: cannot write {}: {error}", file.display()))
}

/// The command that reproduces a run.
pub fn reproduce(path: &Path, seed: u64) -> String {
    format!("netsim run {} --seed {seed}", shell_quote(&path.display().to_string()))
}

/// `word` quoted for a POSIX shell when it needs to be.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | ':' | '@' | ',' | '=')
        });
    if plain { word.to_string() } else { format!("'{}'", word.replace('\'', r"'\''")) }
}

fn progress_line(case: &Case) -> String {
    match &case.outcome {
        Outcome::Invalid(_) => format!("ERROR {}: does not load", case.label()),
        Outcome::Ran { results, .. } => {
            let passed = results.checks.iter().filter(|c| c.passed).count();
            let verdict = if results.passed() { "PASS" } else { "FAIL" };
            format!(
                "{verdict} {} ({passed}/{} checks, {} ms)",
                case.label(),
                results.checks.len(),
                results.wall_ms
            )
        }
    }
}

/// The table: a row per check, with the scenario's packets and wall time on its first row.
pub fn table(cases: &[Case]) -> String {
    let mut rows: Vec<[String; 5]> =
        vec![["scenario", "check", "result", "delivered/sent", "wall"].map(String::from)];
    for case in cases {
        match &case.outcome {
            Outcome::Invalid(_) => {
                rows.push([case.label(), "(load)".into(), "ERROR".into(), String::new(), String::new()]);
            }
            Outcome::Ran { results, .. } => {
                let packets = format!("{}/{}", results.packets.delivered, results.packets.sent);
                let wall = format!("{} ms", results.wall_ms);
                if results.checks.is_empty() {
                    rows.push([case.label(), "(no checks)".into(), String::new(), packets, wall]);
                    continue;
                }
                for (index, check) in results.checks.iter().enumerate() {
                    let verdict = if check.passed { "PASS" } else { "FAIL" };
                    let (label, packets, wall) = if index == 0 {
                        (case.label(), packets.clone(), wall.clone())
                    } else {
                        (String::new(), String::new(), String::new())
                    };
                    rows.push([label, check.name.clone(), verdict.into(), packets, wall]);
                }
            }
        }
    }
    let widths: Vec<usize> =
        (0..5).map(|column| rows.iter().map(|row| row[column].chars().count()).max().unwrap_or(0)).collect();
    let lines: Vec<String> = rows
        .iter()
        .map(|row| {
            let mut line = String::new();
            for (column, cell) in row.iter().enumerate() {
                let pad = widths[column] - cell.chars().count();
                if column == 3 || column == 4 {
                    line += &format!("{}{cell}", " ".repeat(pad));
                } else {
                    line += &format!("{cell}{}", " ".repeat(pad));
                }
                if column < 4 {
                    line += "  ";
                }
            }
            line.trim_end().to_string()
        })
        .collect();
    lines.join("\n")
}

/// Every failing check with its detail and the command that reproduces it, and every scenario
/// that did not load.
pub fn failure_lines(cases: &[Case]) -> String {
    let mut lines = Vec::new();
    for case in cases {
        match &case.outcome {
            Outcome::Invalid(_) => lines.push(format!("ERROR {}: does not load (see above)", case.label())),
            Outcome::Ran { results, .. } => {
                let failed: Vec<_> = results.checks.iter().filter(|c| !c.passed).collect();
                for check in &failed {
                    lines.push(format!("FAIL {} {}: {}", case.label(), check.name, check.detail));
                }
                if !failed.is_empty() {
                    lines.push(format!("     reproduce: {}", reproduce(&case.path, results.seed)));
                }
                match &case.minimized {
                    Some(Ok(minimized)) => {
                        lines.push(format!("     minimized: {minimized}"));
                        lines.push(format!("     reproduce: {}", minimized.command()));
                    }
                    Some(Err(_)) => lines.push("     minimized: none (see above)".to_string()),
                    None => {}
                }
            }
        }
    }
    lines.join("\n")
}

/// A markdown summary for a pull-request comment: a table with ✅/❌ per check, then the
/// failures with their details and the commands that reproduce them.
pub fn markdown(cases: &[Case], shard: Shard) -> String {
    let tally = Tally::of(cases);
    let shard = if shard == Shard::ALL { String::new() } else { format!(", shard {shard}") };
    let mut text = String::new();
    let headline = if tally.invalid > 0 {
        format!("⚠️ {} of {} scenarios did not load", tally.invalid, tally.scenarios)
    } else if tally.failed() > 0 {
        format!("❌ {} of {} checks failed", tally.failed(), tally.checks)
    } else {
        format!("✅ all {} checks passed", tally.checks)
    };
    text += &format!("### netsim check: {headline}\n\n{}{shard}\n\n", tally.line());
    text += "| scenario | seed | check | result | delivered/sent | wall |\n|---|---:|---|:---:|---:|---:|\n";
    for case in cases {
        let label = format!("`{}`", cell(&case.label()));
        match &case.outcome {
            Outcome::Invalid(_) => text += &format!("| {label} | | *does not load* | ⚠️ | | |\n"),
            Outcome::Ran { results, .. } => {
                let packets = format!("{}/{}", results.packets.delivered, results.packets.sent);
                let wall = format!("{} ms", results.wall_ms);
                if results.checks.is_empty() {
                    text += &format!("| {label} | {} | *no checks* | | {packets} | {wall} |\n", results.seed);
                }
                for (index, check) in results.checks.iter().enumerate() {
                    let verdict = if check.passed { "✅" } else { "❌" };
                    // The run's numbers once, on its first row.
                    let (packets, wall) =
                        if index == 0 { (packets.as_str(), wall.as_str()) } else { ("", "") };
                    text += &format!(
                        "| {label} | {} | `{}` | {verdict} | {packets} | {wall} |\n",
                        results.seed,
                        cell(&check.name)
                    );
                }
            }
        }
    }
    let mut failures = String::new();
    for case in cases {
        match &case.outcome {
            Outcome::Invalid(message) => {
                failures +=
                    &format!("**`{}`** does not load:\n\n{}\n", cell(&case.label()), fence("text", message));
            }
            Outcome::Ran { results, .. } => {
                let failed: Vec<_> = results.checks.iter().filter(|c| !c.passed).collect();
                if failed.is_empty() {
                    continue;
                }
                failures += &format!("**`{}`** (seed {})\n\n", cell(&case.label()), results.seed);
                for check in failed {
                    failures += &format!("- ❌ `{}`: {}\n", cell(&check.name), prose(&check.detail));
                }
                failures +=
                    &format!("\nReproduce:\n\n{}\n", fence("sh", &reproduce(&case.path, results.seed)));
                match &case.minimized {
                    Some(Ok(minimized)) => {
                        failures += &format!(
                            "Minimal reproduction, `{}` ({}):\n\n{}\n",
                            cell(&minimized.file.display().to_string()),
                            prose(&minimized.shrunk.summary()),
                            fence("sh", &minimized.command())
                        );
                    }
                    Some(Err(error)) => {
                        failures += &format!("No minimal reproduction:\n\n{}\n", fence("text", error));
                    }
                    None => {}
                }
            }
        }
    }
    if !failures.is_empty() {
        text += &format!("\n#### Failures\n\n{failures}");
    }
    text
}

/// Text for a code span in a markdown table cell: on one line, no column separators, no
/// backticks (HTML needs no escaping in a code span).
fn cell(text: &str) -> String {
    text.replace(['\n', '\r'], " ").replace('|', r"\|").replace('`', "'")
}

/// Text for markdown prose: on one line, with no HTML.
fn prose(text: &str) -> String {
    text.replace(['\n', '\r'], " ").replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A fenced code block long enough not to be closed by `code`.
fn fence(language: &str, code: &str) -> String {
    let mut ticks = 3;
    while code.contains(&"`".repeat(ticks)) {
        ticks += 1;
    }
    let fence = "`".repeat(ticks);
    format!("{fence}{language}\n{}\n{fence}\n", code.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_partition() {
        assert_eq!("2/3".parse::<Shard>(), Ok(Shard { index: 2, count: 3 }));
        for bad in ["3/2", "0/2", "1/0", "1", "a/b", "1/2/3", "-1/2", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        let n = 3;
        for position in 0..10 {
            let owners: Vec<usize> =
                (1..=n).filter(|&k| Shard { index: k, count: n }.keeps(position)).collect();
            assert_eq!(owners.len(), 1, "position {position}");
        }
        assert!((0..10).all(|i| Shard::ALL.keeps(i)));
    }

    #[test]
    fn jobs_must_be_positive() {
        assert_eq!(parse_jobs("4").map(NonZeroUsize::get), Ok(4));
        assert!(parse_jobs("0").is_err());
        assert!(parse_jobs("many").is_err());
    }

    #[test]
    fn out_names_disambiguate_equal_stems() {
        let paths: Vec<PathBuf> =
            ["a/x.toml", "b/x.toml", "b/y.toml", "./c d/z.toml"].map(PathBuf::from).to_vec();
        assert_eq!(out_names(&paths), ["a_x", "b_x", "y", "z"]);
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("scenarios/a-b.toml"), "scenarios/a-b.toml");
        assert_eq!(shell_quote("my dir/it's.toml"), r"'my dir/it'\''s.toml'");
        assert_eq!(reproduce(Path::new("s/x.toml"), 9), "netsim run s/x.toml --seed 9");
    }

    #[test]
    fn markdown_cells_stay_in_their_cell() {
        assert_eq!(cell("a|b\n<c>`d`"), r"a\|b <c>'d'");
        assert_eq!(prose("x <= y\nz"), "x &lt;= y z");
        assert_eq!(fence("text", "x ``` y"), "````text\nx ``` y\n````\n");
    }
}
