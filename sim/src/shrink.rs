//! Minimal reproductions: a failing scenario shrunk to the fewest entries that still fail it.
//!
//! [`minimize`] takes a scenario file, a seed and the checks that failed, and removes
//! `[[event]]` entries by delta debugging ([`ddmin`], Zeller and Hildebrandt's algorithm), then,
//! in a second pass, the `[[traffic]]` entries no failing check names and the `[[churn]]`
//! entries. A candidate counts as a reproduction only if it loads ([`Scenario::parse`]: a
//! `recover` left without its `fail` does not) and its run fails one of the originally failing
//! checks, and fails it the same way: a check that fails because it has nothing to judge (no
//! packet sent) does not stand for one that failed on its numbers. The result is written as a
//! scenario file with its seed set, so that the file alone reproduces the failure.
//!
//! Candidates are edits of the TOML document (a [`toml::Table`]): comments and key order are
//! lost, the scenario is not. Traffic entries without a `name` are given the name they had
//! (`traffic-<index>`), so that removing one renames nothing; a passing check that names a
//! removed traffic entry is removed with it.
//!
//! Runs are deterministic, so one run decides a candidate. The candidates of one ddmin step are
//! independent and run in parallel (on the current rayon pool); the step takes the first
//! failing candidate in index order, never the first to finish, so the result does not depend
//! on the number of threads. A candidate judged once is not run again. The work is bounded: at
//! most `runs_max` runs (the original's included; one more run confirms the written file), and
//! [`CANDIDATES_PER_RUN_MAX`] times as many candidates, counting those that do not load. When a
//! bound is hit, the result still fails, but may not be minimal, and the file says so.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};

use rayon::prelude::*;

use crate::scenario::{CheckKind, Scenario};
use crate::suite;

/// Default bound on the runs one shrink may do.
pub const RUNS_MAX_DEFAULT: usize = 200;
/// Candidates judged (loaded or not) per run allowed: loading is cheap, but not free.
pub const CANDIDATES_PER_RUN_MAX: usize = 10;
/// What a check's detail says when it failed for want of anything to judge (see `checks`).
const VACUOUS: &str = "nothing to judge";

// ---------------------------------------------------------------------------------------------
// Delta debugging.

/// A candidate's verdict in [`ddmin`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It still fails: a reproduction.
    Fails,
    /// It passes, or is not a valid input.
    Passes,
    /// It was not tested: the bound on the work is spent.
    Untested,
}

/// What [`ddmin`] kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reduced<T> {
    /// The items kept, in their original order.
    pub kept: Vec<T>,
    /// Whether a test went untested: `kept` still fails but may not be 1-minimal.
    pub exhausted: bool,
}

/// Zeller's ddmin: the failing configuration `items`, reduced to a 1-minimal one (removing any
/// single item makes it pass). `test` judges a batch of independent candidates, one verdict per
/// candidate in order; each step takes the first failing candidate of its batch. The empty
/// configuration is tested first. `items` itself is assumed to fail.
pub fn ddmin<T: Clone>(items: &[T], test: &mut dyn FnMut(&[Vec<T>]) -> Vec<Verdict>) -> Reduced<T> {
    let mut current = items.to_vec();
    if current.is_empty() {
        return Reduced { kept: current, exhausted: false };
    }
    match first_failing(vec![Vec::new()], test) {
        Step::Found(empty) => return Reduced { kept: empty, exhausted: false },
        Step::Exhausted => return Reduced { kept: current, exhausted: true },
        Step::None => {}
    }
    let mut n = 2;
    while current.len() >= 2 {
        let chunks = split(&current, n);
        // Reduce to a subset.
        match first_failing(chunks.clone(), test) {
            Step::Found(chunk) => {
                current = chunk;
                n = 2;
                continue;
            }
            Step::Exhausted => return Reduced { kept: current, exhausted: true },
            Step::None => {}
        }
        // Reduce to a complement (with two chunks, the complements are the subsets).
        if n > 2 {
            let complements: Vec<Vec<T>> = (0..n)
                .map(|skip| {
                    chunks
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i != skip)
                        .flat_map(|(_, c)| c.clone())
                        .collect()
                })
                .collect();
            match first_failing(complements, test) {
                Step::Found(complement) => {
                    current = complement;
                    n = (n - 1).max(2);
                    continue;
                }
                Step::Exhausted => return Reduced { kept: current, exhausted: true },
                Step::None => {}
            }
        }
        // Increase the granularity.
        if n >= current.len() {
            break;
        }
        n = (2 * n).min(current.len());
    }
    Reduced { kept: current, exhausted: false }
}

enum Step<T> {
    Found(Vec<T>),
    None,
    Exhausted,
}

fn first_failing<T>(mut batch: Vec<Vec<T>>, test: &mut dyn FnMut(&[Vec<T>]) -> Vec<Verdict>) -> Step<T> {
    let verdicts = test(&batch);
    assert_eq!(verdicts.len(), batch.len(), "one verdict per candidate");
    match verdicts.iter().position(|v| *v == Verdict::Fails) {
        Some(index) => Step::Found(batch.swap_remove(index)),
        None if verdicts.contains(&Verdict::Untested) => Step::Exhausted,
        None => Step::None,
    }
}

/// `items` in `n` contiguous chunks of nearly equal sizes (`n <= items.len()`).
fn split<T: Clone>(items: &[T], n: usize) -> Vec<Vec<T>> {
    debug_assert!(n >= 1 && n <= items.len());
    (0..n).map(|i| items[i * items.len() / n..(i + 1) * items.len() / n].to_vec()).collect()
}

// ---------------------------------------------------------------------------------------------
// Shrinking a scenario.

/// An array of a scenario file whose entries can be removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    /// `[[event]]`: faults and changes of the cluster.
    Event,
    /// `[[traffic]]`.
    Traffic,
    /// `[[churn]]`.
    Churn,
}

impl Section {
    /// Every section, in the order reports list them.
    pub const ALL: [Section; 3] = [Section::Event, Section::Traffic, Section::Churn];

    /// The array's key in scenario files.
    pub fn key(self) -> &'static str {
        match self {
            Section::Event => "event",
            Section::Traffic => "traffic",
            Section::Churn => "churn",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Section::Event => "events",
            Section::Traffic => "traffic entries",
            Section::Churn => "churn entries",
        }
    }
}

/// An entry: its section and its index in the original file's array.
type Item = (Section, usize);

/// A candidate: the entries it keeps.
type Kept = BTreeSet<Item>;

/// A scenario shrunk by [`shrink`].
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// The shrunk document, seed set; manifest paths are still relative to the original file.
    pub document: toml::Table,
    /// The originally failing checks the shrunk scenario fails.
    pub failing: Vec<String>,
    /// For each section the original has entries in: how many it had, how many are kept.
    pub sections: Vec<(Section, usize, usize)>,
    /// Runs done, the original's included.
    pub runs: usize,
    /// The bound on runs.
    pub runs_max: usize,
    /// Whether a bound on the work was hit (the result may not be minimal).
    pub bound_hit: bool,
}

impl Shrunk {
    /// `1 of 6 events, 1 of 2 traffic entries; 23 runs`, and whether the bound was hit.
    pub fn summary(&self) -> String {
        let kept: Vec<String> =
            self.sections.iter().map(|(s, all, kept)| format!("{kept} of {all} {}", s.noun())).collect();
        let kept = if kept.is_empty() { "no events".to_string() } else { kept.join(", ") };
        let bound = if self.bound_hit {
            format!(", bound of {} runs hit: may not be minimal", self.runs_max)
        } else {
            String::new()
        };
        format!("{kept}; {} run{}{bound}", self.runs, if self.runs == 1 { "" } else { "s" })
    }
}

/// Why a scenario could not be shrunk.
#[derive(Debug, thiserror::Error)]
pub enum ShrinkError {
    /// The text is not a TOML document.
    #[error("not a TOML document: {0}")]
    Syntax(String),
    /// The scenario does not load.
    #[error("the scenario does not load:\n{0}")]
    Invalid(String),
    /// No failing check was named.
    #[error("no failing check to reproduce")]
    NoChecks,
    /// A seed TOML cannot hold.
    #[error("seed {0} does not fit in a scenario file (TOML integers go up to {max})", max = i64::MAX)]
    Seed(u64),
    /// The rewritten scenario does not fail the checks.
    #[error("rewritten as a scenario file with seed {seed}, it does not fail {checks}")]
    NotReproduced {
        /// The seed.
        seed: u64,
        /// The checks, comma-separated.
        checks: String,
    },
    /// The document cannot be written as TOML.
    #[error("cannot write the scenario as TOML: {0}")]
    Serialize(String),
}

/// Shrinks the scenario `text` (loaded as from `path`) run with `seed` to the fewest entries
/// that still fail one of the `failing` checks; at most `runs_max` runs.
pub fn shrink(
    path: &Path,
    text: &str,
    seed: u64,
    failing: &BTreeSet<String>,
    runs_max: usize,
) -> Result<Shrunk, ShrinkError> {
    if failing.is_empty() {
        return Err(ShrinkError::NoChecks);
    }
    let mut document: toml::Table =
        text.parse().map_err(|e: toml::de::Error| ShrinkError::Syntax(e.to_string()))?;
    let seed_value = i64::try_from(seed).map_err(|_| ShrinkError::Seed(seed))?;
    document.insert("seed".into(), toml::Value::Integer(seed_value));
    let scenario = Scenario::parse(path, text).map_err(|e| ShrinkError::Invalid(e.to_string()))?;
    // Name every traffic entry as it was named, so that removing one renames no other.
    if let Some(toml::Value::Array(entries)) = document.get_mut(Section::Traffic.key()) {
        for (entry, spec) in entries.iter_mut().zip(&scenario.traffic) {
            if let toml::Value::Table(entry) = entry
                && !entry.contains_key("name")
            {
                entry.insert("name".into(), toml::Value::String(spec.name.clone()));
            }
        }
    }
    // The traffic a failing check judges stays.
    let protected: BTreeSet<usize> = scenario
        .checks
        .iter()
        .filter(|check| failing.contains(&check.name))
        .filter_map(|check| match check.kind {
            CheckKind::DeliveryRatio { traffic, .. } => traffic,
            _ => None,
        })
        .collect();
    let count = |section: Section| match document.get(section.key()) {
        Some(toml::Value::Array(entries)) => entries.len(),
        _ => 0,
    };
    let counts: BTreeMap<Section, usize> = Section::ALL.iter().map(|&s| (s, count(s))).collect();
    let all: Kept = counts.iter().flat_map(|(&s, &n)| (0..n).map(move |i| (s, i))).collect();
    let mut judge = Judge {
        path,
        document,
        targets: failing.iter().map(|name| (name.clone(), None)).collect(),
        cache: BTreeMap::new(),
        runs: 0,
        runs_max: runs_max.max(1),
        candidates: 0,
        candidates_max: runs_max.max(1).saturating_mul(CANDIDATES_PER_RUN_MAX),
    };
    // The original, rewritten: which of the checks it fails, and how.
    let original = judge.outcome(&all)?;
    if original.is_empty() {
        let checks: Vec<&str> = failing.iter().map(String::as_str).collect();
        return Err(ShrinkError::NotReproduced { seed, checks: checks.join(", ") });
    }
    judge.targets.retain(|_, vacuous| vacuous.is_some());
    judge.cache.clear();
    judge.cache.insert(all.clone(), Some(original.iter().map(|(name, _)| name.clone()).collect()));

    let mut kept = all;
    let mut bound_hit = false;
    let passes: [Vec<Item>; 2] = [
        kept.iter().filter(|(s, _)| *s == Section::Event).copied().collect(),
        kept.iter()
            .filter(|(s, i)| *s == Section::Churn || (*s == Section::Traffic && !protected.contains(i)))
            .copied()
            .collect(),
    ];
    for items in passes {
        let fixed: Kept = kept.iter().filter(|item| !items.contains(item)).copied().collect();
        let reduced = ddmin(&items, &mut |batch: &[Vec<Item>]| {
            let candidates: Vec<Kept> =
                batch.iter().map(|subset| fixed.iter().chain(subset).copied().collect()).collect();
            judge.judge(&candidates)
        });
        kept = fixed.into_iter().chain(reduced.kept).collect();
        bound_hit |= reduced.exhausted;
    }
    let failing = judge.cache.get(&kept).cloned().flatten().expect("ddmin keeps a failing candidate");
    Ok(Shrunk {
        document: judge.document(&kept),
        failing,
        sections: counts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(&s, &n)| (s, n, kept.iter().filter(|(k, _)| *k == s).count()))
            .collect(),
        runs: judge.runs,
        runs_max: judge.runs_max,
        bound_hit,
    })
}

/// Judges candidates: loads and runs them, remembering every verdict.
struct Judge<'a> {
    path: &'a Path,
    /// The whole document, seed set and traffic named.
    document: toml::Table,
    /// The checks to fail, and whether each failed for want of anything to judge (`None` until
    /// the original's run says).
    targets: BTreeMap<String, Option<bool>>,
    /// Candidates judged: `None` when it does not load, else the target checks it fails.
    cache: BTreeMap<Kept, Option<Vec<String>>>,
    runs: usize,
    runs_max: usize,
    candidates: usize,
    candidates_max: usize,
}

impl Judge<'_> {
    /// The document of a candidate.
    fn document(&self, kept: &Kept) -> toml::Table {
        let mut document = self.document.clone();
        let mut removed_traffic = BTreeSet::new();
        for section in Section::ALL {
            let Some(toml::Value::Array(entries)) = document.remove(section.key()) else { continue };
            let mut keep = Vec::new();
            for (index, entry) in entries.into_iter().enumerate() {
                if kept.contains(&(section, index)) {
                    keep.push(entry);
                } else if section == Section::Traffic
                    && let Some(name) = entry.get("name").and_then(toml::Value::as_str)
                {
                    removed_traffic.insert(name.to_string());
                }
            }
            if !keep.is_empty() {
                document.insert(section.key().into(), toml::Value::Array(keep));
            }
        }
        // A check of removed traffic goes with it (a failing check's traffic is never removed).
        if let Some(toml::Value::Array(checks)) = document.get_mut("check") {
            checks.retain(|check| {
                !check
                    .get("traffic")
                    .and_then(toml::Value::as_str)
                    .is_some_and(|t| removed_traffic.contains(t))
            });
            if checks.is_empty() {
                document.remove("check");
            }
        }
        document
    }

    fn load(&self, kept: &Kept) -> Option<Scenario> {
        let text = toml::to_string(&self.document(kept)).ok()?;
        Scenario::parse(self.path, &text).ok()
    }

    /// Runs one candidate outside the bounds: the failing target checks, with how they failed.
    fn outcome(&mut self, kept: &Kept) -> Result<Vec<(String, bool)>, ShrinkError> {
        let text =
            toml::to_string(&self.document(kept)).map_err(|e| ShrinkError::Serialize(e.to_string()))?;
        let scenario = Scenario::parse(self.path, &text).map_err(|e| ShrinkError::Invalid(e.to_string()))?;
        self.runs += 1;
        self.candidates += 1;
        let results = suite::run_timed(&scenario);
        let mut failed = Vec::new();
        for check in results.checks.iter().filter(|c| !c.passed) {
            if let Some(vacuous) = self.targets.get_mut(&check.name) {
                *vacuous = Some(check.detail.contains(VACUOUS));
                failed.push((check.name.clone(), check.detail.contains(VACUOUS)));
            }
        }
        Ok(failed)
    }

    /// The target checks a run fails the way the original failed them.
    fn reproduced(&self, results: &crate::results::Results) -> Vec<String> {
        results
            .checks
            .iter()
            .filter(|c| !c.passed && self.targets.get(&c.name) == Some(&Some(c.detail.contains(VACUOUS))))
            .map(|c| c.name.clone())
            .collect()
    }

    /// Verdicts for a batch of candidates, in order. New candidates are loaded and run in
    /// parallel; the bounds are given out in index order.
    fn judge(&mut self, batch: &[Kept]) -> Vec<Verdict> {
        let mut fresh: Vec<usize> = Vec::new();
        for (index, kept) in batch.iter().enumerate() {
            if !self.cache.contains_key(kept) && !fresh.iter().any(|&f| batch[f] == *kept) {
                fresh.push(index);
            }
        }
        fresh.truncate(self.candidates_max.saturating_sub(self.candidates));
        self.candidates += fresh.len();
        let loaded: Vec<Option<Scenario>> = fresh.par_iter().map(|&index| self.load(&batch[index])).collect();
        let mut runnable = Vec::new();
        for (&index, scenario) in fresh.iter().zip(loaded) {
            match scenario {
                None => {
                    self.cache.insert(batch[index].clone(), None);
                }
                Some(scenario) if self.runs < self.runs_max => {
                    self.runs += 1;
                    runnable.push((index, scenario));
                }
                Some(_) => {}
            }
        }
        let outcomes: Vec<Vec<String>> = runnable
            .par_iter()
            // One run per task: runs are long and unequal.
            .with_max_len(1)
            .map(|(_, scenario)| self.reproduced(&suite::run_timed(scenario)))
            .collect();
        for ((index, _), outcome) in runnable.iter().zip(outcomes) {
            self.cache.insert(batch[*index].clone(), Some(outcome));
        }
        batch
            .iter()
            .map(|kept| match self.cache.get(kept) {
                None => Verdict::Untested,
                Some(Some(failing)) if !failing.is_empty() => Verdict::Fails,
                Some(_) => Verdict::Passes,
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Writing the reproduction.

/// A minimal reproduction, written.
#[derive(Clone, Debug)]
pub struct Minimized {
    /// The scenario file written.
    pub file: PathBuf,
    /// What was kept and what it cost.
    pub shrunk: Shrunk,
}

impl Minimized {
    /// The command that reproduces the failure: `netsim run FILE`.
    pub fn command(&self) -> String {
        command(&self.file)
    }
}

impl fmt::Display for Minimized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.file.display(), self.shrunk.summary())
    }
}

fn command(file: &Path) -> String {
    format!("netsim run {}", suite::shell_quote(&file.display().to_string()))
}

/// Shrinks the scenario file `path`, run with `seed`, to a minimal reproduction of its
/// `failing` checks, writes it to `out_file` and confirms that the written file fails them.
pub fn minimize(
    path: &Path,
    seed: u64,
    failing: &BTreeSet<String>,
    out_file: &Path,
    runs_max: usize,
) -> Result<Minimized, String> {
    let context = |message: String| format!("error: cannot minimize {}: {message}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| context(format!("cannot read it: {e}")))?;
    let shrunk = shrink(path, &text, seed, failing, runs_max).map_err(|e| context(e.to_string()))?;
    let out_dir = out_file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(out_dir)
        .map_err(|e| format!("error: cannot create directory {}: {e}", out_dir.display()))?;
    let source_dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut document = shrunk.document.clone();
    relocate_manifests(&mut document, source_dir, out_dir).map_err(context)?;
    let text = header(path, seed, &shrunk, out_file)
        + &render(&document).map_err(|e| context(format!("cannot write the scenario as TOML: {e}")))?;
    suite::write_file(out_file, &text)?;
    // The file alone must reproduce: load it from where it is and run it.
    let written = Scenario::load(out_file).map_err(|e| {
        format!("error: the minimal reproduction {} does not load (a bug):\n{e}", out_file.display())
    })?;
    let results = suite::run_timed(&written);
    let still: Vec<&str> = results
        .checks
        .iter()
        .filter(|c| !c.passed && shrunk.failing.contains(&c.name))
        .map(|c| c.name.as_str())
        .collect();
    if still.is_empty() {
        return Err(format!(
            "error: the minimal reproduction {} does not fail {} (a bug)",
            out_file.display(),
            shrunk.failing.join(", ")
        ));
    }
    Ok(Minimized { file: out_file.to_path_buf(), shrunk })
}

fn header(source: &Path, seed: u64, shrunk: &Shrunk, out_file: &Path) -> String {
    let mut text = format!(
        "# A minimal reproduction, shrunk by delta debugging from {} with seed {seed}.\n# Kept: {}.\n# It fails: {}.\n# Reproduce: {}\n",
        source.display(),
        shrunk.summary(),
        shrunk.failing.join(", "),
        command(out_file)
    );
    if shrunk.bound_hit {
        text += &format!(
            "# The bound of {} runs was hit: this is smaller than the original but may not be minimal.\n",
            shrunk.runs_max
        );
    }
    text + "# Comments and key order of the original are not kept.\n\n"
}

/// Rewrites the manifest paths of `document` (`manifests`, and `manifest` of `apply` events),
/// which are relative to `source_dir`, to paths relative to `out_dir`.
fn relocate_manifests(document: &mut toml::Table, source_dir: &Path, out_dir: &Path) -> Result<(), String> {
    let base = absolute(out_dir).map_err(|e| format!("cannot resolve {}: {e}", out_dir.display()))?;
    let relocate = |value: &mut toml::Value| -> Result<(), String> {
        let Some(written) = value.as_str() else { return Ok(()) };
        let target = absolute(&source_dir.join(written))
            .map_err(|e| format!("cannot resolve manifest {written}: {e}"))?;
        *value = toml::Value::String(relative_path(&target, &base).to_string_lossy().into_owned());
        Ok(())
    };
    if let Some(toml::Value::Array(manifests)) = document.get_mut("manifests") {
        manifests.iter_mut().try_for_each(relocate)?;
    }
    if let Some(toml::Value::Array(events)) = document.get_mut(Section::Event.key()) {
        for event in events {
            if let Some(manifest) = event.as_table_mut().and_then(|e| e.get_mut("manifest")) {
                relocate(manifest)?;
            }
        }
    }
    Ok(())
}

/// `path` made absolute, with `.` and `..` removed: through the file system (symbolic links
/// resolved) when it exists, else its longest existing ancestor so, and the rest as written.
fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    if let Ok(resolved) = std::fs::canonicalize(path) {
        return Ok(resolved);
    }
    let path = lexical(&std::path::absolute(path)?);
    for ancestor in path.ancestors() {
        if let Ok(resolved) = std::fs::canonicalize(ancestor) {
            // `ancestor` is a prefix of `path`.
            let rest = path.strip_prefix(ancestor).expect("an ancestor is a prefix");
            return Ok(if rest.as_os_str().is_empty() { resolved } else { resolved.join(rest) });
        }
    }
    Ok(path)
}

/// `path` without `.` components, and with `..` applied to what precedes it.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push(component);
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The path of `target` relative to the directory `base` (both absolute and free of `.` and
/// `..`); `target` itself when they share no root.
pub fn relative_path(target: &Path, base: &Path) -> PathBuf {
    let (target_parts, base_parts): (Vec<Component>, Vec<Component>) =
        (target.components().collect(), base.components().collect());
    let common = target_parts.iter().zip(&base_parts).take_while(|(a, b)| a == b).count();
    let rooted =
        |parts: &[Component]| parts.iter().any(|c| matches!(c, Component::RootDir | Component::Prefix(_)));
    if rooted(&target_parts[..common]) != rooted(&base_parts) {
        return target.to_path_buf();
    }
    let mut relative = PathBuf::new();
    for _ in common..base_parts.len() {
        relative.push("..");
    }
    for part in &target_parts[common..] {
        relative.push(part);
    }
    if relative.as_os_str().is_empty() { PathBuf::from(".") } else { relative }
}

/// The document as a scenario file reads best: top-level values first (`name`, `seed`, ...),
/// then sections, then the arrays of tables in the order traffic, events, churn, checks.
fn render(document: &toml::Table) -> Result<String, toml::ser::Error> {
    const VALUES: [&str; 9] = [
        "name",
        "description",
        "seed",
        "duration",
        "events_max",
        "dataplane",
        "isolation",
        "manifests",
        "captures",
    ];
    const TABLES: [&str; 9] =
        ["fabric", "cluster", "overlay", "calico", "cost", "traffic", "event", "churn", "check"];
    let is_table = |value: &toml::Value| match value {
        toml::Value::Table(_) => true,
        toml::Value::Array(entries) => !entries.is_empty() && entries.iter().all(toml::Value::is_table),
        _ => false,
    };
    let rank = |key: &str, known: &[&str]| known.iter().position(|k| *k == key).unwrap_or(known.len());
    let mut values: Vec<(&String, &toml::Value)> = document.iter().filter(|(_, v)| !is_table(v)).collect();
    values.sort_by_key(|(key, _)| rank(key, &VALUES));
    let mut tables: Vec<(&String, &toml::Value)> = document.iter().filter(|(_, v)| is_table(v)).collect();
    tables.sort_by_key(|(key, _)| rank(key, &TABLES));
    let one = |key: &String, value: &toml::Value| {
        toml::to_string(&toml::Table::from_iter([(key.clone(), value.clone())]))
    };
    let mut text = String::new();
    for (key, value) in values {
        text += &one(key, value)?;
    }
    for (key, value) in tables {
        text += "\n";
        text += &one(key, value)?;
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ddmin over 0..n with a predicate, counting the candidates tested; `budget` bounds them.
    fn reduce(n: usize, budget: usize, fails: impl Fn(&[usize]) -> bool) -> (Reduced<usize>, usize) {
        let items: Vec<usize> = (0..n).collect();
        let mut tested = 0;
        let reduced = ddmin(&items, &mut |batch: &[Vec<usize>]| {
            batch
                .iter()
                .map(|candidate| {
                    if tested == budget {
                        return Verdict::Untested;
                    }
                    tested += 1;
                    if fails(candidate) { Verdict::Fails } else { Verdict::Passes }
                })
                .collect()
        });
        (reduced, tested)
    }

    #[test]
    fn ddmin_finds_the_two_items_that_fail_together() {
        let (reduced, tested) = reduce(10, usize::MAX, |c| c.contains(&3) && c.contains(&7));
        assert_eq!(reduced, Reduced { kept: vec![3, 7], exhausted: false });
        assert!(tested < 45, "{tested}");
        // Deterministic.
        assert_eq!(reduce(10, usize::MAX, |c| c.contains(&3) && c.contains(&7)), (reduced, tested));
    }

    #[test]
    fn ddmin_edge_cases() {
        assert_eq!(reduce(8, usize::MAX, |c| c.contains(&5)).0.kept, [5]);
        assert_eq!(reduce(8, usize::MAX, |_| true).0.kept, Vec::<usize>::new(), "fails without any item");
        assert_eq!(reduce(0, usize::MAX, |_| true).0.kept, Vec::<usize>::new());
        assert_eq!(reduce(1, usize::MAX, |c| !c.is_empty()).0.kept, [0]);
        assert_eq!(reduce(6, usize::MAX, |c| c.len() >= 6).0.kept, [0, 1, 2, 3, 4, 5]);
        // 1-minimal: a pair that fails only when both are there, a third alone.
        let (reduced, _) = reduce(12, usize::MAX, |c| (c.contains(&1) && c.contains(&10)) || c.contains(&6));
        assert_eq!(reduced.kept, [6]);
    }

    #[test]
    fn ddmin_respects_its_bound() {
        for budget in [0, 1, 3, 7] {
            let (reduced, tested) = reduce(16, budget, |c| c.contains(&3) && c.contains(&12));
            assert!(tested <= budget, "{tested} > {budget}");
            assert!(reduced.exhausted);
            assert!(reduced.kept.contains(&3) && reduced.kept.contains(&12), "still fails: {reduced:?}");
        }
    }

    #[test]
    fn relative_paths() {
        let check = |target: &str, base: &str, expected: &str| {
            assert_eq!(
                relative_path(Path::new(target), Path::new(base)),
                Path::new(expected),
                "{target} from {base}"
            );
        };
        check("/a/b/k8s/x.yaml", "/a/b", "k8s/x.yaml");
        check("/a/b/k8s/x.yaml", "/a/out/check", "../../b/k8s/x.yaml");
        check("/x.yaml", "/a/b", "../../x.yaml");
        check("/a/b", "/a/b", ".");
        check("/a/b/c.yaml", "/", "a/b/c.yaml");
        assert_eq!(lexical(Path::new("/a/./b/../c")), Path::new("/a/c"));
    }

    #[test]
    fn manifests_are_relocated_relative_to_the_output() {
        let root = std::env::temp_dir().join(format!("netsim-shrink-relocate-{}", std::process::id()));
        let (source, out) = (root.join("suite/nested"), root.join("out/check"));
        for dir in [source.join("k8s"), out.clone()] {
            std::fs::create_dir_all(dir).expect("directory");
        }
        let text = "manifests = [\"k8s/a.yaml\", \"../b.yaml\"]\n[[event]]\naction = \"apply\"\nmanifest = \"k8s/c.yaml\"\n[[event]]\naction = \"fail\"\nlink = \"host-1:uplink0\"\n";
        let mut document: toml::Table = text.parse().expect("TOML");
        relocate_manifests(&mut document, &source, &out).expect("relocates");
        let _ = std::fs::remove_dir_all(&root);
        let manifests: Vec<&str> =
            document["manifests"].as_array().expect("array").iter().filter_map(toml::Value::as_str).collect();
        assert_eq!(manifests, ["../../suite/nested/k8s/a.yaml", "../../suite/b.yaml"]);
        assert_eq!(document["event"][0]["manifest"].as_str(), Some("../../suite/nested/k8s/c.yaml"));
        assert_eq!(document["event"][1].get("manifest"), None);
    }

    #[test]
    fn documents_render_in_scenario_order_and_parse_back() {
        let text = "name = \"x\"\nduration = \"20ms\"\n[fabric]\nhosts = 8\n[[check]]\nkind = \"delivery_ratio\"\nmin = 1.0\n[[traffic]]\nfrom = \"all\"\nto = \"all\"\nrate = \"1k/s\"\n[[event]]\nat = \"1ms\"\naction = \"fail\"\nlink = \"host-1:uplink0\"\n";
        let document: toml::Table = text.parse().expect("TOML");
        let rendered = render(&document).expect("renders");
        let order: Vec<usize> = ["name =", "duration =", "[fabric]", "[[traffic]]", "[[event]]", "[[check]]"]
            .iter()
            .map(|k| rendered.find(k).unwrap_or_else(|| panic!("{k}: {rendered}")))
            .collect();
        assert!(order.is_sorted(), "{rendered}");
        assert_eq!(rendered.parse::<toml::Table>().expect("parses back"), document);
    }

    /// Eight hosts, a 20 ms run: `web` (host-0 to host-1) must lose nothing.
    const SCENARIO: &str = r#"# A comment, lost.
name = "shrinkable"
seed = 3
duration = "20ms"
[fabric]
hosts = 8
leaves = 4
spines = 2
uplinks_per_host = 1
[[traffic]]
name = "web"
from = "host-0"
to = "host-1"
rate = "10k/s"
[[traffic]]
from = "all"
to = "all"
rate = "5k/s"
flows = 8
[[event]]
at = "2ms"
action = "fail"
link = "host-5:uplink0"
[[event]]
at = "4ms"
action = "fail"
link = "host-1:uplink0"
[[event]]
at = "6ms"
action = "fail"
link = "host-6:uplink0"
[[event]]
at = "9ms"
action = "recover"
link = "host-5:uplink0"
[[event]]
at = "12ms"
action = "recover"
link = "host-1:uplink0"
[[event]]
at = "14ms"
action = "recover"
link = "host-6:uplink0"
[[check]]
kind = "delivery_ratio"
traffic = "web"
min = 1.0
[[check]]
kind = "delivery_ratio"
traffic = "traffic-1"
min = 0.0
[[check]]
kind = "loss_only_in_failure_windows"
"#;

    #[test]
    fn a_scenario_shrinks_to_the_event_that_fails_it() {
        let path = Path::new("shrinkable.toml");
        let failing = BTreeSet::from(["delivery_ratio[web]".to_string()]);
        let shrunk = shrink(path, SCENARIO, 11, &failing, RUNS_MAX_DEFAULT).expect("shrinks");
        assert_eq!(shrunk.failing, ["delivery_ratio[web]"]);
        assert!(!shrunk.bound_hit && shrunk.runs <= RUNS_MAX_DEFAULT, "{}", shrunk.summary());
        let events = shrunk.document["event"].as_array().expect("events");
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0]["link"].as_str(), Some("host-1:uplink0"));
        assert_eq!(events[0]["action"].as_str(), Some("fail"));
        let traffic = shrunk.document["traffic"].as_array().expect("traffic");
        assert_eq!(traffic.len(), 1, "the unchecked traffic goes: {traffic:?}");
        // Its check went with it; the others stay.
        assert_eq!(shrunk.document["check"].as_array().map(Vec::len), Some(2));
        assert_eq!(shrunk.document["seed"].as_integer(), Some(11));
        assert_eq!(shrunk.summary().split(';').next(), Some("1 of 6 events, 1 of 2 traffic entries"));
        // Deterministic, whatever the threads.
        let again = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
        let one = again.install(|| shrink(path, SCENARIO, 11, &failing, RUNS_MAX_DEFAULT)).expect("shrinks");
        assert_eq!((one.document, one.runs), (shrunk.document, shrunk.runs));
    }

    #[test]
    fn the_bound_on_runs_is_respected() {
        let failing = BTreeSet::from(["delivery_ratio[web]".to_string()]);
        for runs_max in [1, 2, 5] {
            let shrunk = shrink(Path::new("s.toml"), SCENARIO, 11, &failing, runs_max).expect("shrinks");
            assert!(shrunk.runs <= runs_max, "{} > {runs_max}", shrunk.runs);
            assert!(shrunk.bound_hit, "{}", shrunk.summary());
            assert!(shrunk.summary().contains(&format!("bound of {runs_max} runs hit")));
        }
    }

    #[test]
    fn a_passing_check_or_a_bad_input_is_not_shrunk() {
        let path = Path::new("s.toml");
        let passing = BTreeSet::from(["loss_only_in_failure_windows".to_string()]);
        assert!(matches!(shrink(path, SCENARIO, 11, &passing, 10), Err(ShrinkError::NotReproduced { .. })));
        assert!(matches!(shrink(path, SCENARIO, 11, &BTreeSet::new(), 10), Err(ShrinkError::NoChecks)));
        let failing = BTreeSet::from(["delivery_ratio[web]".to_string()]);
        assert!(matches!(shrink(path, SCENARIO, u64::MAX, &failing, 10), Err(ShrinkError::Seed(_))));
        assert!(matches!(shrink(path, "name = [", 1, &failing, 10), Err(ShrinkError::Syntax(_))));
    }
}
