//! `netsim`: the simulator. It owns time, runs the sans-IO crates, judges checks and reports.
//!
//! Modules, in the order a run uses them:
//! - [`units`]: human quantities in scenario files (`"500ms"`, `"10Gbps"`, `"20000/s"`).
//! - [`scenario`]: loading and validating scenario files, with located diagnostics.
//! - [`engine`]: the event queue, the trace hash and the named RNG streams.
//! - [`traffic`]: flows of real UDP packets and the probe payload that identifies them.
//! - [`trace`]: `netsim trace`, one packet followed across every layer at a chosen time.
//! - [`runner`]: the event loop that drives the fabric and accounts for every packet.
//! - [`checks`]: verdicts with numbers.
//! - [`reach`]: `netsim reach`, the reachability matrix by real probes, judged against the
//!   reference NetworkPolicy (or label) evaluator.
//! - [`results`]: `results.json` and the summary table.
//! - [`suite`]: `netsim check`, a suite of scenarios run in parallel, with its table and
//!   markdown summary; [`junit`]: its JUnit XML report.
//! - [`sweep`]: `netsim sweep`, one scenario over a range of seeds, with distributions.
//! - [`shrink`]: minimal reproductions of failures, by delta debugging over a scenario's entries.
//! - [`report`]: `netsim report`, the overlay-vs-Calico comparison report (markdown, HTML,
//!   plots), with the cost model of `[cost]`.
//! - [`bench`]: `netsim bench`, the performance targets measured on this machine.
//! - [`cli`]: the `netsim` command.
//!
//! **Architecture invariant:** this crate is the only one that schedules events or reads the
//! wall clock, and it reads the wall clock only to report how long a run took.

pub mod agent;
pub mod bench;
pub mod checks;
pub mod cli;
pub mod control_channel;
pub mod engine;
pub mod junit;
pub mod pcap;
pub mod reach;
pub mod report;
pub mod results;
pub mod runner;
pub mod scenario;
pub mod shrink;
pub mod suite;
pub mod sweep;
pub mod trace;
pub mod traffic;
pub mod units;
