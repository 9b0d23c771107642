//! Helpers shared by the cross-crate integration tests.

use std::path::{Path, PathBuf};

use netsim::checks;
use netsim::results::Results;
use netsim::runner::{self, RunOptions, RunReport};
use netsim::scenario::Scenario;

/// The repository's root directory.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Loads a shipped scenario by file name (`fabric-failover.toml`).
pub fn shipped(name: &str) -> Scenario {
    let path = root().join("scenarios").join(name);
    Scenario::load(&path).unwrap_or_else(|error| panic!("{error}"))
}

/// Validates scenario text (reported as `test.toml`).
pub fn scenario(text: &str) -> Scenario {
    Scenario::parse(Path::new("test.toml"), text).unwrap_or_else(|error| panic!("{error}\n{text}"))
}

/// Runs a scenario with default options and no progress reporting.
pub fn run(scenario: &Scenario) -> RunReport {
    runner::run(scenario, RunOptions::default(), &mut |_| {})
}

/// Runs a scenario and assembles its results with the wall time zeroed, so that everything in
/// them is deterministic.
pub fn results(scenario: &Scenario) -> Results {
    let report = run(scenario);
    let checks = checks::evaluate(scenario, &report);
    Results::new(scenario, report, checks, 0)
}
