//! `netsim report`: the comparison report. One scenario runs under both data planes, the
//! OpenContrail-style overlay and Calico, with the same seed, workload and faults; small
//! synthetic scenarios measure what the scenario cannot show; an analytic cost model adds what
//! the simulator does not simulate (host CPU per packet). The report is written as `index.md`
//! and a self-contained `index.html`, with SVG and PNG plots.
//!
//! Modules:
//! - [`cost`]: the cost model (`[cost]` in scenario files), the encapsulations' byte counts and
//!   the published measurements the defaults are calibrated against;
//! - [`measure`]: the runs (the scenario on both planes over a sweep of seeds, fault kinds,
//!   line-rate goodput, ECMP balance, synthetic clusters of 10 to 300 hosts);
//! - [`plot`]: plots, byte-for-byte reproducible;
//! - [`render`]: markdown and HTML.
//!
//! Everything in the report is a function of the scenario file, the options and netsim's
//! version, except the last section (wall time), so two runs give byte-identical files apart
//! from that section.

pub mod cost;
pub mod measure;
pub mod plot;
pub mod render;

use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::path::{Path as FilePath, PathBuf};
use std::time::Instant;

use netsim_core::SimDuration;
use netsim_vrouter::calico::CalicoEncapsulation;
use netsim_vrouter::overlay::Encapsulation;

use crate::cli::{EXIT_INVALID, EXIT_PASS};
use crate::scenario::{BgpTopology, Scenario};
use cost::{CostModel, Path, Plane, Protocol, REFERENCES};
use measure::{FaultKind, Job, Key, Outcome, Pair};
use plot::{Bars, CALICO, Chart, Figure, GREY, OVERLAY, PALETTE, Series, Style};
use render::{Block, Document};

/// Seeds per data plane of the default sweep.
pub const SEEDS_DEFAULT: u32 = 8;
/// Cluster sizes measured by default (hosts); the model goes on to [`MODEL_SIZES`]. Larger
/// sizes can be asked for with `--sizes`, but a Calico full mesh of 300 hosts takes about 20 s
/// per run to build in this version (its BGP sessions grow as the square of the hosts).
pub const SIZES_DEFAULT: [u32; 3] = [10, 30, 100];
/// Cluster sizes the scaling model is evaluated at.
pub const MODEL_SIZES: [u32; 8] = [10, 30, 100, 300, 500, 1000, 2000, 5000];
/// Most seeds a report sweeps.
pub const SEEDS_MAX: u32 = 1000;
/// Largest cluster a report simulates.
pub const SIZE_MAX: u32 = 2000;

/// What `netsim report` was asked.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    /// Scenario files.
    pub scenarios: Vec<PathBuf>,
    /// Output directory (one scenario), or parent of one directory per scenario.
    pub out: Option<PathBuf>,
    /// Seeds per data plane.
    pub seeds: u32,
    /// Cluster sizes to measure.
    pub sizes: Vec<u32>,
    /// Threads.
    pub jobs: Option<NonZeroUsize>,
    /// Print only errors.
    pub quiet: bool,
}

/// Parses `--sizes`: host counts separated by commas, each between 4 and [`SIZE_MAX`].
pub fn parse_sizes(text: &str) -> Result<Vec<u32>, String> {
    let mut sizes = Vec::new();
    for part in text.split(',') {
        match part.trim().parse::<u32>() {
            Ok(size) if (4..=SIZE_MAX).contains(&size) => sizes.push(size),
            _ => return Err(format!("`{part}`: write host counts between 4 and {SIZE_MAX}, e.g. 10,30,100")),
        }
    }
    sizes.sort_unstable();
    sizes.dedup();
    Ok(sizes)
}

/// Runs `netsim report`: 0 when every report was written, 2 otherwise.
pub fn report_command(options: &ReportOptions) -> u8 {
    if options.seeds == 0 || options.seeds > SEEDS_MAX {
        eprintln!("error: --seeds must be between 1 and {SEEDS_MAX}");
        return EXIT_INVALID;
    }
    let mut scenarios = Vec::new();
    for path in &options.scenarios {
        match Scenario::load(path) {
            Ok(scenario) => scenarios.push(scenario),
            Err(error) => {
                eprintln!("{error}");
                return EXIT_INVALID;
            }
        }
    }
    let pool = match crate::suite::pool(options.jobs) {
        Ok(pool) => pool,
        Err(message) => {
            eprintln!("{message}");
            return EXIT_INVALID;
        }
    };
    let single = scenarios.len() == 1;
    let mut code = EXIT_PASS;
    for scenario in &scenarios {
        let name = crate::cli::file_safe(&scenario.name);
        let dir = match (&options.out, single) {
            (Some(out), true) => out.clone(),
            (Some(out), false) => out.join(&name),
            (None, _) => FilePath::new("reports").join(&name),
        };
        match write(scenario, &dir, options, &pool) {
            Ok(summary) => {
                if !options.quiet {
                    println!("{summary}");
                }
            }
            Err(message) => {
                eprintln!("error: {}: {message}", scenario.path.display());
                code = EXIT_INVALID;
            }
        }
    }
    code
}

/// Measures `scenario` and writes its report to `dir`; returns a line for the terminal.
pub fn write(
    scenario: &Scenario,
    dir: &FilePath,
    options: &ReportOptions,
    pool: &rayon::ThreadPool,
) -> Result<String, String> {
    // Wall time is measured outside the simulation, for the wall-time section only.
    #[allow(clippy::disallowed_methods, reason = "the report's wall-time section")]
    let started = Instant::now();
    let mut study = Study::new(scenario, options)?;
    if !options.quiet {
        eprintln!(
            "report    {}: {} runs on {} threads",
            scenario.name,
            study.jobs.len(),
            pool.current_num_threads()
        );
    }
    let jobs = std::mem::take(&mut study.jobs);
    let outcomes = measure::run_all(jobs, pool);
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut document = study.compose(&outcomes, dir)?;
    let total_ms = started.elapsed().as_millis() as u64;
    document.wall = wall_section(&outcomes, total_ms, pool.current_num_threads());
    let files = [("index.md", render::markdown(&document)), ("index.html", render::html(&document))];
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(format!(
        "report    {} in {} ({} runs, {:.1} s wall)",
        scenario.name,
        dir.join("index.html").display(),
        outcomes.len(),
        total_ms as f64 / 1000.0
    ))
}

/// A report in the making: the scenario, its variants, and the runs to do.
struct Study<'a> {
    scenario: &'a Scenario,
    pair: Option<Pair>,
    seeds: Vec<u64>,
    kinds: Vec<FaultKind>,
    paths: Vec<Path>,
    /// Indices into `paths` of the overlay's and Calico's paths in the scenario.
    compared: [usize; 2],
    sizes: Vec<u32>,
    service: (String, Vec<String>),
    jobs: Vec<Job>,
    options: ReportOptions,
}

impl<'a> Study<'a> {
    fn new(scenario: &'a Scenario, options: &ReportOptions) -> Result<Study<'a>, String> {
        let pair = measure::pair(scenario);
        let seeds: Vec<u64> = (0..u64::from(options.seeds)).map(|i| scenario.seed.wrapping_add(i)).collect();
        let kinds = pair.as_ref().map(measure::fault_kinds).unwrap_or_default();
        let paths = Path::all();
        let (overlay, calico) = match scenario.dataplane.cluster_spec() {
            Some(spec) => (Path::overlay(spec.encapsulation), Path::calico(spec.calico.encapsulation)),
            None => (Path::overlay(Encapsulation::MplsOverUdp), Path::calico(CalicoEncapsulation::None)),
        };
        let index = |path: &Path| paths.iter().position(|p| p == path).unwrap_or(0);
        let compared = [index(&overlay), index(&calico)];
        let service =
            pair.as_ref().map(|p| measure::busiest_service_backends(&p.overlay)).unwrap_or_default();
        let mut study = Study {
            scenario,
            pair,
            seeds,
            kinds,
            paths,
            compared,
            sizes: options.sizes.clone(),
            service,
            jobs: Vec::new(),
            options: options.clone(),
        };
        study.jobs = study.plan()?;
        Ok(study)
    }

    /// Every run, longest first (the pool balances better).
    fn plan(&self) -> Result<Vec<Job>, String> {
        let mut jobs = Vec::new();
        if let Some(pair) = &self.pair {
            for plane in Plane::BOTH {
                for &seed in &self.seeds {
                    let mut scenario = pair.get(plane).clone();
                    scenario.seed = seed;
                    jobs.push(Job { key: Key::Main(plane, seed), scenario, captures: Vec::new() });
                }
            }
            for (index, kind) in self.kinds.iter().enumerate() {
                let Some((events, churn)) = &kind.derived else { continue };
                for plane in Plane::BOTH {
                    for &seed in &self.seeds {
                        let scenario = measure::derive_fault_run(pair.get(plane), events, churn, seed);
                        jobs.push(Job {
                            key: Key::Fault(index, plane, seed),
                            scenario,
                            captures: Vec::new(),
                        });
                    }
                }
            }
            if !self.service.1.is_empty() {
                for plane in Plane::BOTH {
                    let scenario = measure::derive_fault_run(pair.get(plane), &[], &[], self.scenario.seed);
                    let mut scenario = scenario;
                    scenario.duration = SimDuration::from_millis(20);
                    let end = netsim_core::SimTime::ZERO + scenario.duration;
                    scenario.traffic.retain(|t| t.start < end);
                    for traffic in &mut scenario.traffic {
                        traffic.stop = traffic.stop.min(end);
                    }
                    jobs.push(Job { key: Key::Service(plane), scenario, captures: self.service.1.clone() });
                }
            }
        }
        for &hosts in self.sizes.iter().rev() {
            for plane in Plane::BOTH {
                for churn in [false, true] {
                    jobs.push(measure::scale_job(self.scenario, plane, hosts, churn)?);
                }
            }
        }
        for (index, path) in self.paths.iter().enumerate() {
            for &mtu in &self.scenario.cost.mtus {
                for flows in [1, measure::MANY_FLOWS] {
                    jobs.push(measure::wire_job(self.scenario, index, path, mtu, flows)?);
                }
            }
            jobs.push(measure::balance_job(self.scenario, index, path)?);
        }
        Ok(jobs)
    }

    fn cost(&self) -> &CostModel {
        &self.scenario.cost
    }

    fn main(&'a self, outcomes: &'a [Outcome], plane: Plane) -> Option<&'a Outcome> {
        measure::find(outcomes, &Key::Main(plane, self.scenario.seed))
    }

    /// The whole document but the wall-time section; plots are written to `dir`.
    fn compose(&self, outcomes: &[Outcome], dir: &FilePath) -> Result<Document, String> {
        let mut document = Document {
            title: format!("netsim report: {} — overlay vs Calico", self.scenario.name),
            ..Document::default()
        };
        let blocks = &mut document.blocks;
        self.introduction(blocks);
        self.summary(outcomes, blocks);
        match &self.pair {
            Some(pair) => {
                self.workload(pair, outcomes, dir, blocks)?;
                self.isolation(pair, outcomes, blocks);
            }
            None => {
                blocks.push(Block::Heading(2, "The workload on both data planes".into()));
                blocks.push(Block::Para(self.no_workload()));
            }
        }
        self.encapsulation(outcomes, dir, blocks)?;
        self.cost_model(blocks);
        self.latency(outcomes, blocks);
        self.ecmp(outcomes, dir, blocks)?;
        self.scaling(outcomes, dir, blocks)?;
        match &self.pair {
            Some(pair) => self.faults(pair, outcomes, dir, blocks)?,
            None => {
                blocks.push(Block::Heading(2, "Faults: convergence and loss".into()));
                blocks.push(Block::Para(self.no_workload()));
            }
        }
        self.reproducibility(outcomes, blocks);
        Ok(document)
    }

    fn no_workload(&self) -> String {
        format!(
            "**There is no pod workload to compare.** `{}` is an underlay-only scenario (`dataplane = \
             \"underlay\"`): its hosts send plain UDP over the fabric, with no pods, so neither data plane \
             carries anything in it. The sections below that do not need the scenario's pods (encapsulation, \
             the cost model, ECMP, cluster size) are measured with netsim's synthetic scenarios on this \
             scenario's fabric; give a scenario with `manifests` (e.g. `scenarios/petstore.toml`) to compare \
             the data planes on a workload.",
            self.scenario.name
        )
    }

    fn introduction(&self, blocks: &mut Vec<Block>) {
        let scenario = self.scenario;
        let file = measure::display_path(&scenario.path);
        let mut intro = format!(
            "This report compares the two data planes netsim implements, an OpenContrail-style **overlay** \
             (vRouters tunnelling pod packets between hosts, programmed by a network manager over a control \
             channel) and **Calico** (every host a router for its pods, routes exchanged by BGP, felix's \
             policy chains and kube-proxy's NAT), on the scenario `{file}`"
        );
        if let Some(description) = &scenario.description {
            let _ = write!(intro, " ({description})");
        }
        intro.push_str(
            ". Numbers marked **measured** come from simulations (real frames, link speeds, queues, \
             routing and control traffic); numbers marked **model** come from the analytic cost model, which \
             adds what netsim does not simulate: the CPU time a host spends per packet.",
        );
        blocks.push(Block::Para(intro));
        blocks.push(Block::Heading(2, "Reproduce".into()));
        let mut command = format!("netsim report {file}");
        if self.options.seeds != SEEDS_DEFAULT {
            let _ = write!(command, " --seeds {}", self.options.seeds);
        }
        if self.sizes != SIZES_DEFAULT {
            let sizes: Vec<String> = self.sizes.iter().map(u32::to_string).collect();
            let _ = write!(command, " --sizes {}", sizes.join(","));
        }
        blocks.push(Block::Code(command));
        let mut items = vec![
            format!("scenario: `{}` from `{file}`", scenario.name),
            format!(
                "seed: {} (the sweeps use seeds {} to {})",
                scenario.seed,
                self.seeds[0],
                self.seeds[self.seeds.len() - 1]
            ),
            format!("netsim version: {}", env!("CARGO_PKG_VERSION")),
        ];
        match (&self.pair, scenario.dataplane.cluster_spec()) {
            (Some(pair), Some(spec)) => {
                let bgp = match spec.calico.bgp {
                    BgpTopology::FullMesh => "BGP full mesh",
                    BgpTopology::RouteReflectors => "BGP route reflectors",
                };
                items.push(format!(
                    "data planes: overlay with {} (cluster-wide IPAM), Calico {} with {bgp} (per-host /26 \
                     blocks); the scenario file names `{}`",
                    self.paths[self.compared[0]].name,
                    self.paths[self.compared[1]].name,
                    scenario.dataplane.name()
                ));
                items.push(
                    "both run the same pods on the same hosts, the same traffic (the same flows between the same \
                     pods, drawn from the same seed), the same faults and the same checks"
                        .into(),
                );
                items.extend(pair.notes.iter().cloned());
            }
            _ => items.push("data planes: none in the scenario (underlay only)".into()),
        }
        items.push(
            "trace hashes of every run are listed under \"Reproducibility\"; running the same command again \
             gives byte-identical files except the last section (wall time)"
                .into(),
        );
        blocks.push(Block::List(items));
    }

    fn summary(&self, outcomes: &[Outcome], blocks: &mut Vec<Block>) {
        blocks.push(Block::Heading(2, "Summary".into()));
        blocks.push(Block::Marker("ANCHOR: summary".into()));
        let mut rows = Vec::new();
        let mut row =
            |metric: String, lower_better: bool, values: [f64; 2], shown: [String; 2], kind: &str| {
                rows.push(vec![
                    metric,
                    shown[0].clone(),
                    shown[1].clone(),
                    better(lower_better, values),
                    kind.into(),
                ]);
            };
        let [o, c] = self.compared.map(|i| self.paths[i]);
        let model = self.cost();
        let link = self.scenario.fabric.host_link.bandwidth_bps;
        if let Some(pair) = &self.pair {
            let isolation = measure::isolation_entries(&pair.overlay);
            let mains = Plane::BOTH.map(|p| self.main(outcomes, p));
            if let [Some(mo), Some(mc)] = mains {
                let ratio = |outcome: &Outcome| workload_ratio(outcome, &isolation);
                let values = [ratio(mo), ratio(mc)];
                row(
                    "workload delivered (seed, whole run)".into(),
                    false,
                    values,
                    values.map(|v| format!("{:.3}%", v * 100.0)),
                    "measured",
                );
                let violations = [violations(mo, &isolation) as f64, violations(mc, &isolation) as f64];
                row(
                    "isolation violations".into(),
                    true,
                    violations,
                    violations.map(|v| format!("{v}")),
                    "measured",
                );
                let p50 = [mo.report.latency.p50 as f64, mc.report.latency.p50 as f64];
                row("one-way latency p50, wire and queues".into(), true, p50, p50.map(fmt_ns), "measured");
                let p99 = [mo.report.latency.p99 as f64, mc.report.latency.p99 as f64];
                row("one-way latency p99, wire and queues".into(), true, p99, p99.map(fmt_ns), "measured");
                let state = [state_of(mo).0 as f64, state_of(mc).0 as f64];
                row(
                    format!("routes over all {} hosts", self.scenario.fabric.hosts),
                    true,
                    state,
                    state.map(|v| format!("{v}")),
                    "measured",
                );
                let flows = [state_of(mo).1 as f64, state_of(mc).1 as f64];
                row(
                    "flow / conntrack entries over all hosts".into(),
                    true,
                    flows,
                    flows.map(|v| format!("{v}")),
                    "measured",
                );
            }
            for (index, kind) in self.kinds.iter().enumerate() {
                let times = Plane::BOTH.map(|p| median(&self.fault_values(outcomes, index, p).0));
                row(
                    format!("time with losses after: {} (median over seeds)", kind.name),
                    true,
                    times,
                    times.map(fmt_ns),
                    "measured",
                );
            }
        }
        let bytes = [o.frame_overhead_bytes() as f64, c.frame_overhead_bytes() as f64];
        row(
            "bytes on the wire beyond the pod's IP packet".into(),
            true,
            bytes,
            [format!("{} ({})", bytes[0], o.name), format!("{} ({})", bytes[1], c.name)],
            "code",
        );
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            let goodput = [o, c].map(|p| model.goodput(&p, protocol, p.pod_mtu(1500), link).bps());
            row(
                format!("one {} stream at MTU 1500, {}", protocol.name(), fmt_bps(link as f64)),
                false,
                goodput,
                goodput.map(fmt_bps),
                "model",
            );
        }
        let ecmp = self.compared.map(|i| {
            measure::find(outcomes, &Key::Wire(i, 1500, measure::MANY_FLOWS))
                .map_or(0.0, |w| measure::wire_goodput_bps(w, self.paths[i].pod_mtu(1500)))
        });
        row(
            format!("{} flows between two hosts, MTU 1500 (ECMP over both uplinks)", measure::MANY_FLOWS),
            false,
            ecmp,
            ecmp.map(fmt_bps),
            "measured",
        );
        let latency = [model.latency_ns(&o), model.latency_ns(&c)];
        row("CPU time per packet, sender and receiver".into(), true, latency, latency.map(fmt_ns), "model");
        let scaling = self.scaling_model(outcomes);
        if let Some(fit) = scaling.iter().find(|f| f.name == "routes per host") {
            let values = fit.at(5000);
            row("routes per host at 5,000 hosts".into(), true, values, values.map(fmt_count), "model");
        }
        if let Some(fit) = scaling.iter().find(|f| f.name == "rules per host") {
            let values = fit.at(5000);
            row(
                "policy and NAT rules per host at 5,000 hosts".into(),
                true,
                values,
                values.map(fmt_count),
                "model",
            );
        }
        let sessions = [0, 1].map(|p| self.sessions_per_host(Plane::BOTH[p], 5000));
        row(
            "control sessions per compute host at 5,000 hosts".into(),
            true,
            sessions,
            sessions.map(fmt_count),
            "model",
        );
        let busiest = [sessions_model(Plane::Overlay, 5000), sessions_model(Plane::Calico, 5000)];
        row(
            "control sessions on the busiest node at 5,000 hosts".into(),
            true,
            busiest,
            [
                format!("{} (a control node)", fmt_count(busiest[0])),
                format!("{} (every host)", fmt_count(busiest[1])),
            ],
            "model",
        );
        if let Some(fit) = scaling.iter().find(|f| f.name == "hosts told per churn event") {
            let values = fit.at(5000);
            row(
                "hosts re-programmed per pod restart at 5,000 hosts".into(),
                true,
                values,
                values.map(fmt_count),
                "model",
            );
        }
        blocks.push(Block::Table(
            vec!["metric".into(), "overlay".into(), "calico".into(), "better".into(), "from".into()],
            rows,
        ));
        blocks.push(Block::Heading(3, "Trade-offs".into()));
        blocks.push(Block::List(self.tradeoffs(outcomes, &scaling)));
        blocks.push(Block::Marker("ANCHOR_END: summary".into()));
    }

    fn tradeoffs(&self, outcomes: &[Outcome], scaling: &[Fit]) -> Vec<String> {
        let mut items = Vec::new();
        let [o, c] = self.compared.map(|i| self.paths[i]);
        let model = self.cost();
        let link = self.scenario.fabric.host_link.bandwidth_bps;
        let extra = o.frame_overhead_bytes() as i64 - c.frame_overhead_bytes() as i64;
        let tcp = [o, c].map(|p| model.goodput(&p, Protocol::Tcp, p.pod_mtu(1500), link).bps());
        let udp = [o, c].map(|p| model.goodput(&p, Protocol::Udp, p.pod_mtu(1500), link).bps());
        let jumbo = [o, c].map(|p| model.goodput(&p, Protocol::Tcp, p.pod_mtu(9000), link).bps());
        if extra > 0 {
            items.push(format!(
                "**Bytes and CPU per packet favour Calico.** The overlay's {} puts {extra} more bytes on every \
                 packet than Calico's {} and costs an encapsulation at each end: at MTU 1500 one TCP stream gets \
                 {} against {} ({:.1}% less), one UDP stream {} against {}. At MTU 9000 the gap shrinks to {:.1}% \
                 ({} against {}).",
                o.name,
                c.name,
                fmt_bps(tcp[0]),
                fmt_bps(tcp[1]),
                100.0 * (1.0 - tcp[0] / tcp[1]),
                fmt_bps(udp[0]),
                fmt_bps(udp[1]),
                100.0 * (1.0 - jumbo[0] / jumbo[1]),
                fmt_bps(jumbo[0]),
                fmt_bps(jumbo[1]),
            ));
        } else {
            items.push(format!(
                "**Bytes per packet:** the overlay's {} adds {} bytes and Calico's {} {}: neither data plane \
                 has an advantage on the wire here.",
                o.name,
                o.frame_overhead_bytes(),
                c.name,
                c.frame_overhead_bytes()
            ));
        }
        items.push(format!(
            "**UDP at MTU 1500 is bound by per-packet CPU on both**: {} (overlay) and {} (Calico) against {} \
             of TCP, as the published benchmarks show for every CNI; jumbo frames, not the choice of data plane, \
             fix it.",
            fmt_bps(udp[0]),
            fmt_bps(udp[1]),
            fmt_bps(tcp[1])
        ));
        let sessions = [sessions_model(Plane::Overlay, 5000), sessions_model(Plane::Calico, 5000)];
        let routes = scaling.iter().find(|f| f.name == "routes per host").map(|f| f.at(5000));
        let told = scaling.iter().find(|f| f.name == "hosts told per churn event").map(|f| f.at(5000));
        let agent_sessions = self.sessions_per_host(Plane::Overlay, 5000);
        let mut control = format!(
            "**Control plane and state at scale.** Each vRouter agent keeps {} to the control nodes whatever \
             the cluster's size, while each control node serves every agent; Calico's {} gives {} {} BGP sessions \
             at 5,000 hosts.",
            if agent_sessions == 1.0 {
                "one session".to_string()
            } else {
                format!("{agent_sessions} sessions")
            },
            match self.scenario.dataplane.cluster_spec().map(|s| s.calico.bgp) {
                Some(BgpTopology::RouteReflectors) => "route-reflector topology",
                _ => "full mesh",
            },
            match self.scenario.dataplane.cluster_spec().map(|s| s.calico.bgp) {
                Some(BgpTopology::RouteReflectors) => "each reflector",
                _ => "every host",
            },
            fmt_count(sessions[1])
        );
        if let Some(routes) = routes {
            let _ = write!(
                control,
                " Per host the model gives {} routes for the overlay and {} for Calico at 5,000 hosts (Calico \
                 aggregates pods into /26 blocks; the overlay keeps a route per pod in each network's VRF).",
                fmt_count(routes[0]),
                fmt_count(routes[1])
            );
        }
        if let [Some(mo), Some(mc)] = Plane::BOTH.map(|p| self.main(outcomes, p)) {
            let _ = write!(
                control,
                " On this scenario's {} hosts the overlay holds {} routes over all hosts and Calico {}: the overlay \
                 installs a network's routes only on the hosts with pods in it, Calico every host's blocks on every \
                 host.",
                self.scenario.fabric.hosts,
                fmt_count(state_of(mo).0 as f64),
                fmt_count(state_of(mc).0 as f64)
            );
        }
        if let Some(told) = told {
            let _ = write!(
                control,
                " A pod restart re-programs about {} hosts on the overlay and {} on Calico.",
                fmt_count(told[0]),
                fmt_count(told[1])
            );
        }
        items.push(control);
        if let Some(pair) = &self.pair {
            let isolation = measure::isolation_entries(&pair.overlay);
            let mains = Plane::BOTH.map(|p| self.main(outcomes, p));
            if let [Some(mo), Some(mc)] = mains {
                let v = [violations(mo, &isolation), violations(mc, &isolation)];
                items.push(if v == [0, 0] {
                    format!(
                        "**Isolation holds on both**: no packet of the traffic the scenario expects to be blocked ({}) \
                         got through.",
                        if isolation.len() == 1 { "1 entry".to_string() } else { format!("{} entries", isolation.len()) },
                    )
                } else {
                    format!(
                        "**Isolation differs**: {} packets that should have been blocked got through on the overlay, \
                         {} on Calico.",
                        v[0],
                        v[1],
                    )
                });
            }
            let mut faults = Vec::new();
            for (index, kind) in self.kinds.iter().enumerate() {
                let times = Plane::BOTH.map(|p| median(&self.fault_values(outcomes, index, p).0));
                let lost = Plane::BOTH.map(|p| median(&self.fault_values(outcomes, index, p).1));
                faults.push(format!(
                    "{}: {} / {} with losses, {} / {} packets lost",
                    kind.name,
                    fmt_ns(times[0]),
                    fmt_ns(times[1]),
                    fmt_count(lost[0]),
                    fmt_count(lost[1])
                ));
            }
            if !faults.is_empty() {
                items.push(format!(
                    "**Faults (overlay / Calico, medians over {} seeds)**: {}. Fabric failures are healed by the \
                     underlay's routing under both data planes, so their outages are alike; differences come from \
                     the hosts and the control planes.",
                    self.seeds.len(),
                    faults.join("; ")
                ));
            }
        }
        items.push(
            "**What this does not weigh**: operational complexity (a control-node cluster against BGP peering \
             with the fabric), multi-tenancy and overlapping address spaces (the overlay's VRFs give them, plain \
             Calico does not), and encryption."
                .into(),
        );
        items
    }

    fn workload(
        &self,
        pair: &Pair,
        outcomes: &[Outcome],
        dir: &FilePath,
        blocks: &mut Vec<Block>,
    ) -> Result<(), String> {
        blocks.push(Block::Heading(2, "The workload on both data planes".into()));
        let mains = Plane::BOTH.map(|p| self.main(outcomes, p));
        let [Some(mo), Some(mc)] = mains else { return Ok(()) };
        blocks.push(Block::Para(format!(
            "**Measured**: the scenario as written, seed {}, once per data plane. Delivery counts requests and \
             replies; drops name their reason.",
            self.scenario.seed
        )));
        let mut rows = Vec::new();
        for (index, ((name, o), (_, c))) in
            mo.report.per_traffic.iter().zip(&mc.report.per_traffic).enumerate()
        {
            let expected = if measure::isolation_entries(&pair.overlay).contains(&index) {
                "blocked"
            } else {
                "delivered"
            };
            rows.push(vec![
                format!("`{name}`"),
                expected.into(),
                format!("{} of {} ({})", o.delivered, o.sent, ratio_text(o.delivered, o.sent)),
                format!("{} of {} ({})", c.delivered, c.sent, ratio_text(c.delivered, c.sent)),
            ]);
        }
        blocks.push(Block::Table(
            vec!["traffic".into(), "expected".into(), "overlay delivered".into(), "calico delivered".into()],
            rows,
        ));
        let mut rows = Vec::new();
        let pick = |f: &dyn Fn(&Outcome) -> String| vec![f(mo), f(mc)];
        let mut add = |name: &str, values: Vec<String>| {
            let mut row = vec![name.to_string()];
            row.extend(values);
            rows.push(row);
        };
        add("packets sent", pick(&|o| o.report.packets.sent.to_string()));
        add("delivered", pick(&|o| ratio_text(o.report.packets.delivered, o.report.packets.sent)));
        add(
            "dropped, by reason",
            pick(&|o| {
                let reasons: Vec<String> =
                    o.report.packets.dropped.iter().map(|(r, n)| format!("{r} {n}")).collect();
                if reasons.is_empty() { "none".into() } else { reasons.join(", ") }
            }),
        );
        add(
            "latency min / p50 / p99 / max",
            pick(&|o| {
                let l = &o.report.latency;
                format!(
                    "{} / {} / {} / {}",
                    fmt_ns(l.min as f64),
                    fmt_ns(l.p50 as f64),
                    fmt_ns(l.p99 as f64),
                    fmt_ns(l.max as f64)
                )
            }),
        );
        add(
            "routes, flow entries (over all hosts)",
            pick(&|o| {
                let (routes, flows) = state_of(o);
                format!("{routes}, {flows}")
            }),
        );
        add("control plane", pick(&|o| control_text(o)));
        add(
            "checks",
            pick(&|o| {
                let passed = o.checks.iter().filter(|c| c.passed).count();
                format!("{passed} of {} pass", o.checks.len())
            }),
        );
        add("events executed", pick(&|o| o.report.events.to_string()));
        add("trace hash", pick(&|o| format!("`{}`", o.report.trace_hash)));
        blocks.push(Block::Table(vec!["".into(), "overlay".into(), "calico".into()], rows));
        let failing: Vec<String> = [mo, mc]
            .iter()
            .zip(Plane::BOTH)
            .flat_map(|(o, plane)| {
                o.checks
                    .iter()
                    .filter(|c| !c.passed)
                    .map(move |c| format!("{}: FAIL {}: {}", plane.name(), c.name, c.detail))
            })
            .collect();
        if !failing.is_empty() {
            blocks.push(Block::Para("Checks that fail:".into()));
            blocks.push(Block::List(failing));
        }
        // Latency CDF.
        let cdf = |o: &Outcome| -> Vec<(f64, f64)> {
            o.report.latency_quantiles.iter().map(|&(q, ns)| (ns as f64 / 1000.0, q)).collect()
        };
        let (lo, hi) = [mo, mc]
            .iter()
            .flat_map(|o| o.report.latency_quantiles.iter().map(|&(_, ns)| ns as f64 / 1000.0))
            .fold((f64::INFINITY, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
        let pad = ((hi - lo) * 0.05).max(0.01);
        let chart = Chart {
            title: "One-way latency of delivered packets (measured)".into(),
            x_label: "latency (µs): wire, queues; no host CPU".into(),
            y_label: "fraction of packets".into(),
            x: ((lo - pad).max(0.0), hi + pad),
            y: (0.0, 1.02),
            log: false,
            series: vec![
                Series { name: "overlay".into(), color: OVERLAY, style: Style::LinePoints, points: cdf(mo) },
                Series { name: "calico".into(), color: CALICO, style: Style::LinePoints, points: cdf(mc) },
            ],
            marks: Vec::new(),
        };
        self.figure(
            blocks,
            dir,
            "latency-cdf",
            Figure::Chart(chart),
            "Latency CDF, seed run, both data planes, at netsim's fixed quantiles (0 to 1). Calico's packets are \
             shorter, so they serialize faster on each of the path's links; the CPU cost of each data path is \
             in the model, below.",
        )?;
        // Delivery over time.
        let duration_ms = self.scenario.duration.as_nanos() as f64 / 1e6;
        let series_of = |o: &Outcome| -> Vec<(f64, f64)> {
            let slice = duration_ms / o.report.timeline.len().max(1) as f64;
            o.report
                .timeline
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let total = b.delivered + b.dropped;
                    let ratio = if total == 0 { 100.0 } else { 100.0 * b.delivered as f64 / total as f64 };
                    ((i as f64 + 0.5) * slice, ratio)
                })
                .collect()
        };
        let (so, sc) = (series_of(mo), series_of(mc));
        let low = so.iter().chain(&sc).map(|p| p.1).fold(100.0_f64, f64::min);
        let marks = self
            .scenario
            .events
            .iter()
            .map(|e| {
                let verb = if e.action == crate::scenario::FaultAction::Fail { "fails" } else { "recovers" };
                (e.at.as_nanos() as f64 / 1e6, format!("{} {verb}", e.target))
            })
            .chain(self.scenario.churn.iter().map(|c| (c.at.as_nanos() as f64 / 1e6, "churn".to_string())))
            .collect();
        let chart = Chart {
            title: "Packets delivered per 1% of the run (measured)".into(),
            x_label: "simulated time (ms)".into(),
            y_label: "delivered / (delivered + dropped), %".into(),
            x: (0.0, duration_ms),
            y: ((low - (100.0 - low) * 0.1 - 0.05).max(0.0), 100.0 + (100.0 - low) * 0.05 + 0.02),
            log: false,
            series: vec![
                Series { name: "overlay".into(), color: OVERLAY, style: Style::Line, points: so },
                Series { name: "calico".into(), color: CALICO, style: Style::Line, points: sc },
            ],
            marks,
        };
        self.figure(
            blocks,
            dir,
            "delivery-timeline",
            Figure::Chart(chart),
            "Delivery over time across the scenario's faults (dashed lines). Isolation probes, dropped by design, \
             keep both curves slightly below 100% throughout.",
        )?;
        Ok(())
    }

    fn isolation(&self, pair: &Pair, outcomes: &[Outcome], blocks: &mut Vec<Block>) {
        blocks.push(Block::Heading(2, "Isolation and availability".into()));
        let isolation = measure::isolation_entries(&pair.overlay);
        let para = format!(
            "**Measured.** Isolation violations are packets delivered by the traffic entries the scenario expects to \
             be blocked (a `delivery_ratio` check with `max = 0`: {} of them here), over every seed of the sweep. \
             Availability gaps are the slices of the run (1% each) in which the workload, isolation probes left \
             out, lost packets. When the scenario has an `isolation` check, the oracle's verdicts are shown \
             too: every request delivered to a pod judged against NetworkPolicy (or the uses labels) on the \
             cluster as it was at that instant, and the availability gaps of permitted flows it measured.",
            isolation.len()
        );
        blocks.push(Block::Para(para));
        let mut rows = Vec::new();
        for plane in Plane::BOTH {
            let runs: Vec<&Outcome> =
                self.seeds.iter().filter_map(|&s| measure::find(outcomes, &Key::Main(plane, s))).collect();
            let violations: u64 = runs.iter().map(|o| violations(o, &isolation)).sum();
            let probes: u64 = runs
                .iter()
                .map(|o| {
                    isolation
                        .iter()
                        .filter_map(|&i| o.report.per_traffic.get(i))
                        .map(|(_, c)| c.sent)
                        .sum::<u64>()
                })
                .sum();
            let gaps: Vec<(u64, u64)> =
                runs.iter().map(|o| gaps(o, &isolation, self.scenario.duration)).collect();
            let total: Vec<f64> = gaps.iter().map(|g| g.0 as f64).collect();
            let longest: Vec<f64> = gaps.iter().map(|g| g.1 as f64).collect();
            let judged: u64 = runs.iter().map(|o| o.report.judgements.judged).sum();
            let oracle = if judged == 0 {
                "no isolation check".to_string()
            } else {
                let violations: u64 = runs.iter().map(|o| o.report.judgements.violations).sum();
                let gap_count: usize = runs.iter().map(|o| o.report.judgements.gaps.len()).sum();
                let longest_gap = runs
                    .iter()
                    .flat_map(|o| o.report.judgements.gaps.iter().map(|g| g.duration_ns))
                    .max()
                    .unwrap_or(0);
                format!(
                    "{violations} of {judged} deliveries; {gap_count} gaps, longest {}",
                    fmt_ns(longest_gap as f64)
                )
            };
            rows.push(vec![
                plane.name().into(),
                format!("{violations} of {probes}"),
                format!("{} [{} – {}]", fmt_ns(median(&total)), fmt_ns(min(&total)), fmt_ns(max(&total))),
                format!(
                    "{} [{} – {}]",
                    fmt_ns(median(&longest)),
                    fmt_ns(min(&longest)),
                    fmt_ns(max(&longest))
                ),
                oracle,
            ]);
        }
        blocks.push(Block::Table(
            vec![
                "data plane".into(),
                "isolation violations (probes)".into(),
                "time with losses: median [min – max]".into(),
                "longest gap: median [min – max]".into(),
                "oracle: violations; gaps of permitted flows".into(),
            ],
            rows,
        ));
    }

    fn encapsulation(
        &self,
        outcomes: &[Outcome],
        dir: &FilePath,
        blocks: &mut Vec<Block>,
    ) -> Result<(), String> {
        blocks.push(Block::Heading(2, "Encapsulation overhead and goodput".into()));
        blocks.push(Block::Para(format!(
            "Each encapsulation netsim implements, with its bytes from the code (`Encapsulation::header_len`, \
             `CalicoEncapsulation::overhead`) and **measured** on the wire: the frame length on host-0's uplink \
             minus the pod's {}-byte IP packet, in the ECMP runs below. Every frame also costs {} bytes of FCS, \
             preamble and gap, which the fabric charges.",
            measure::BALANCE_PACKET_BYTES,
            cost::WIRE_EXTRA_BYTES
        )));
        let mut rows = Vec::new();
        for (index, path) in self.paths.iter().enumerate() {
            let uplinks = self.scenario.fabric.uplinks_per_host as usize;
            let measured = measure::find(outcomes, &Key::Balance(index))
                .and_then(|o| {
                    let mut lengths = std::collections::BTreeMap::new();
                    for port in o.ports.iter().take(uplinks) {
                        for (&len, &n) in &port.lengths {
                            *lengths.entry(len).or_insert(0u64) += n;
                        }
                    }
                    lengths
                        .into_iter()
                        .max_by_key(|&(len, n)| (n, std::cmp::Reverse(len)))
                        .map(|(len, _)| len)
                })
                .map_or("—".to_string(), |len| {
                    format!("{}", len as i64 - i64::from(measure::BALANCE_PACKET_BYTES))
                });
            let compared = if self.compared.contains(&index) { " (compared)" } else { "" };
            rows.push(vec![
                format!("{}{compared}", path.label()),
                format!("`{}`", path.setting),
                path.added_bytes.to_string(),
                path.frame_overhead_bytes().to_string(),
                measured,
                path.pod_mtu(1500).to_string(),
                path.pod_mtu(9000).to_string(),
            ]);
        }
        blocks.push(Block::Table(
            vec![
                "path".into(),
                "setting".into(),
                "bytes added to the IP packet".into(),
                "bytes beyond the IP packet (code)".into(),
                "measured on the wire".into(),
                "pod MTU at 1500".into(),
                "pod MTU at 9000".into(),
            ],
            rows,
        ));
        let model = self.cost();
        let host_link = self.scenario.fabric.host_link.bandwidth_bps;
        blocks.push(Block::Para(format!(
            "Goodput of one stream, **model** (see the cost model below), at each MTU and link speed of `[cost]`, \
             beside the **measured** wire goodput of netsim (UDP at 125% of line rate between two pods, {} host \
             links; the simulator charges no CPU, so it measures the wire alone and agrees with the model's line \
             bound). An asterisk marks a CPU-bound figure.",
            fmt_bps(host_link as f64)
        )));
        let mut header = vec!["path".into(), "protocol".into()];
        for &speed in &model.link_speeds_bps {
            for &mtu in &model.mtus {
                header.push(format!("model, MTU {mtu}, {}", fmt_bps(speed as f64)));
            }
        }
        for &mtu in &model.mtus {
            header.push(format!("measured UDP wire goodput, MTU {mtu}"));
        }
        let mut rows = Vec::new();
        for (index, path) in self.paths.iter().enumerate() {
            for protocol in [Protocol::Tcp, Protocol::Udp] {
                let mut row = vec![path.label(), protocol.name().into()];
                for &speed in &model.link_speeds_bps {
                    for &mtu in &model.mtus {
                        let g = model.goodput(path, protocol, path.pod_mtu(mtu), speed);
                        row.push(format!("{}{}", fmt_bps(g.bps()), if g.cpu_bound() { "*" } else { "" }));
                    }
                }
                for &mtu in &model.mtus {
                    row.push(match protocol {
                        Protocol::Udp => measure::find(outcomes, &Key::Wire(index, mtu, 1))
                            .map_or("—".into(), |o| {
                                fmt_bps(measure::wire_goodput_bps(o, path.pod_mtu(mtu)))
                            }),
                        Protocol::Tcp => "".into(),
                    });
                }
                rows.push(row);
            }
        }
        blocks.push(Block::Table(header, rows));
        // Goodput against MTU.
        let speed = model.link_speeds_bps.first().copied().unwrap_or(host_link);
        let mtus: Vec<u32> = (0..=17).map(|i| 1000 + i * 500).collect();
        let mut series = Vec::new();
        for (n, &i) in self.compared.iter().enumerate() {
            let path = self.paths[i];
            let color = if n == 0 { OVERLAY } else { CALICO };
            for (protocol, style) in [(Protocol::Tcp, Style::Line), (Protocol::Udp, Style::Dashed)] {
                series.push(Series {
                    name: format!("model {} {}", path.label(), protocol.name()),
                    color,
                    style,
                    points: mtus
                        .iter()
                        .map(|&m| {
                            (f64::from(m), model.goodput(&path, protocol, path.pod_mtu(m), speed).bps() / 1e9)
                        })
                        .collect(),
                });
            }
            let measured: Vec<(f64, f64)> = model
                .mtus
                .iter()
                .filter_map(|&m| {
                    measure::find(outcomes, &Key::Wire(i, m, 1))
                        .map(|o| (f64::from(m), measure::wire_goodput_bps(o, path.pod_mtu(m)) / 1e9))
                })
                .collect();
            if speed == host_link {
                series.push(Series {
                    name: format!("measured {} UDP wire", path.plane.name()),
                    color,
                    style: Style::Points,
                    points: measured,
                });
            }
        }
        let references: Vec<(f64, f64)> = REFERENCES
            .iter()
            .filter(|r| r.link_bps == speed)
            .map(|r| {
                let added = match r.system {
                    cost::System::BareMetal => 0,
                    cost::System::KernelVxlan => 50,
                    cost::System::Path(Plane::Overlay, _) => 32,
                    cost::System::Path(Plane::Calico, cost::PathKind::IpIp) => 20,
                    cost::System::Path(Plane::Calico, _) => 0,
                };
                (f64::from(r.pod_mtu + added), r.measured_gbps)
            })
            .collect();
        series.push(Series {
            name: "published (any CNI)".into(),
            color: GREY,
            style: Style::Crosses,
            points: references,
        });
        let chart = Chart {
            title: format!("One stream's goodput against the underlay MTU, {}", fmt_bps(speed as f64)),
            x_label: "underlay MTU (bytes)".into(),
            y_label: "goodput (Gb/s)".into(),
            x: (1000.0, 9500.0),
            y: (0.0, speed as f64 / 1e9 * 1.05),
            log: false,
            series,
            marks: Vec::new(),
        };
        self.figure(
            blocks,
            dir,
            "goodput-mtu",
            Figure::Chart(chart),
            "Goodput against MTU: model TCP (solid) and UDP (dashed) for the compared paths, netsim's measured wire \
             goodput (dots) and the published figures (crosses; see the cost model). UDP is CPU-bound until the \
             packets are large.",
        )?;
        Ok(())
    }

    fn cost_model(&self, blocks: &mut Vec<Block>) {
        blocks.push(Block::Heading(2, "The cost model beside published measurements".into()));
        let model = self.cost();
        let defaults = CostModel::default();
        blocks.push(Block::Para(
            "netsim moves real frames at the links' speed but charges no CPU time for forwarding. The **model** \
             adds it: per wire packet a host spends the data path's cost (and the encapsulation's, when it \
             encapsulates), plus a cost per payload byte; UDP pays the stack's cost per datagram too, which TCP's \
             segmentation and receive offloads amortise. One stream runs on one core; its goodput is the smaller \
             of the link's and the core's. The values come from the scenario's `[cost]` section; the defaults and \
             their sources:"
                .into(),
        ));
        let rows = vec![
            cost_row(
                "`stack_ns_per_packet`",
                model.stack_ns_per_packet,
                defaults.stack_ns_per_packet,
                "ns",
                "Calico IP in IP, UDP 1.9 Gb/s at MTU 1440 on 10 GbE (Ducastel 2020): 5.95 µs per datagram in all",
            ),
            cost_row(
                "`ns_per_byte`",
                model.ns_per_byte,
                defaults.ns_per_byte,
                "ns",
                "bare-metal TCP, one stream, 31.9 Gb/s on 40 GbE (Ducastel 2024)",
            ),
            cost_row(
                "`overlay_ns_per_packet`",
                model.overlay_ns_per_packet,
                defaults.overlay_ns_per_packet,
                "ns",
                "no published per-packet figure: set equal to Calico's; the OpenContrail blog's line-rate TCP bounds it under about 600 ns",
            ),
            cost_row(
                "`calico_ns_per_packet`",
                model.calico_ns_per_packet,
                defaults.calico_ns_per_packet,
                "ns",
                "Calico iptables TCP, one stream, 19.6 Gb/s on 40 GbE against 31.9 bare metal (Ducastel 2024)",
            ),
            cost_row(
                "`encapsulation_ns_per_packet`",
                model.encapsulation_ns_per_packet,
                defaults.encapsulation_ns_per_packet,
                "ns",
                "no published figure isolates it: the order of this code's own fast-path benchmarks (105–135 ns)",
            ),
            vec![
                "`cores`".into(),
                model.cores.to_string(),
                defaults.cores.to_string(),
                "the seeds' test bed: 8 CPUs per node (Mirantis 2016)".into(),
            ],
            vec![
                "`link_speeds`".into(),
                model.link_speeds_bps.iter().map(|&s| fmt_bps(s as f64)).collect::<Vec<_>>().join(", "),
                defaults.link_speeds_bps.iter().map(|&s| fmt_bps(s as f64)).collect::<Vec<_>>().join(", "),
                "the published measurements' links".into(),
            ],
            vec![
                "`mtus`".into(),
                model.mtus.iter().map(u32::to_string).collect::<Vec<_>>().join(", "),
                defaults.mtus.iter().map(u32::to_string).collect::<Vec<_>>().join(", "),
                "standard and jumbo frames".into(),
            ],
        ];
        blocks.push(Block::Table(
            vec![
                "parameter".into(),
                "this report".into(),
                "default".into(),
                "where the default comes from".into(),
            ],
            rows,
        ));
        blocks.push(Block::Para("The model beside each published single-stream figure:".into()));
        let mut rows = Vec::new();
        for reference in REFERENCES {
            let value = reference.model_gbps(model);
            rows.push(vec![
                reference.figure.into(),
                format!(
                    "{} {}, pod MTU {}",
                    reference.protocol.name(),
                    fmt_bps(reference.link_bps as f64),
                    reference.pod_mtu
                ),
                reference.measured.into(),
                format!("{value:.2} Gb/s"),
                format!("{:.2}", value / reference.measured_gbps),
                reference.use_.name().into(),
                reference.note.into(),
                reference.source.into(),
            ]);
        }
        blocks.push(Block::Table(
            vec![
                "published figure".into(),
                "conditions".into(),
                "measured".into(),
                "model".into(),
                "model / measured".into(),
                "use".into(),
                "note".into(),
                "source".into(),
            ],
            rows,
        ));
        let overlay = Path::overlay(Encapsulation::MplsOverUdp);
        let calico = Path::calico(CalicoEncapsulation::None);
        let ten = 10_000_000_000;
        let o = model.goodput(&overlay, Protocol::Tcp, overlay.pod_mtu(1500), ten);
        let c = model.goodput(&calico, Protocol::Tcp, calico.pod_mtu(1500), ten);
        let udp: Vec<String> = Path::all()
            .iter()
            .filter(|p| p.encapsulates)
            .map(|p| {
                format!(
                    "{} {} (at 9000: {})",
                    p.label(),
                    fmt_bps(model.goodput(p, Protocol::Udp, p.pod_mtu(1500), ten).bps()),
                    fmt_bps(model.goodput(p, Protocol::Udp, p.pod_mtu(9000), ten).bps())
                )
            })
            .collect();
        blocks.push(Block::List(vec![
            format!(
                "**Overlay near 90% of 10 GbE line rate**: the model gives {} for one TCP stream over MPLS over UDP at \
                 MTU 1500, {:.0}% of 10 Gb/s; the 46 bytes of encapsulation alone cost 3%, and the link is the limit \
                 (one core could move {}).",
                fmt_bps(o.bps()),
                o.bps() / 1e8,
                fmt_bps(o.cpu_bps)
            ),
            format!(
                "**Calico saturates 10 Gb/s at MTU 1500**: {} for one TCP stream, {:.0}% of the line, all the payload \
                 a 1500-byte frame can carry.",
                fmt_bps(c.bps()),
                c.bps() / 1e8
            ),
            format!(
                "**UDP collapses at MTU 1500 for encapsulating CNIs**: {}. The per-datagram stack cost dominates; the \
                 published 1.8–1.9 Gb/s (Calico IP in IP, Weave) is the same effect.",
                udp.join("; ")
            ),
            "**Out of the model's reach**: multi-stream figures (they depend on how flows spread over cores), and \
             the 2024 figures' faster CPU for UDP (set `stack_ns_per_packet` near 1250 to model it)."
                .into(),
        ]));
    }

    fn latency(&self, outcomes: &[Outcome], blocks: &mut Vec<Block>) {
        blocks.push(Block::Heading(2, "Per-packet processing latency".into()));
        let model = self.cost();
        blocks.push(Block::Para(
            "The one-way latency netsim **measures** is the wire's (serialization of every byte on each link, \
             propagation, queues). The data paths' CPU time per packet, at the sender and at the receiver, is the \
             **model**'s. For scale, this code's own vRouter fast path (criterion, `cargo bench -p netsim-vrouter`, \
             the book's performance chapter) takes 135 ns to encapsulate a 1400-byte segment and 105 ns to \
             decapsulate and NAT it: a Rust model of the data path, not the kernel module."
                .into(),
        ));
        let mut rows = Vec::new();
        for (n, &i) in self.compared.iter().enumerate() {
            let path = self.paths[i];
            let plane = Plane::BOTH[n];
            let measured = self.main(outcomes, plane).map(|o| o.report.latency.p50 as f64);
            let cpu = model.latency_ns(&path);
            rows.push(vec![
                path.label(),
                measured.map_or("—".into(), fmt_ns),
                fmt_ns(cpu),
                measured.map_or("—".into(), |m| fmt_ns(m + cpu)),
            ]);
        }
        for (i, path) in self.paths.iter().enumerate() {
            if !self.compared.contains(&i) {
                rows.push(vec![path.label(), "—".into(), fmt_ns(model.latency_ns(path)), "—".into()]);
            }
        }
        blocks.push(Block::Table(
            vec![
                "path".into(),
                "measured p50 (wire, queues)".into(),
                "model: CPU, both ends".into(),
                "measured + model".into(),
            ],
            rows,
        ));
    }

    fn ecmp(&self, outcomes: &[Outcome], dir: &FilePath, blocks: &mut Vec<Block>) -> Result<(), String> {
        blocks.push(Block::Heading(2, "Throughput with ECMP".into()));
        let model = self.cost();
        let fabric = &self.scenario.fabric;
        blocks.push(Block::Para(format!(
            "**Measured**: UDP from a pod on host-0 to a pod on host-{}, MTU 1500, offered at 125% of what the \
             sender's uplinks carry, with one flow and with {} flows. The hosts have {} uplinks of {}; the fabric \
             hashes each flow onto one uplink and one spine, by what it can see of the flow. **Model**: the {} \
             flows spread over `cores` = {} cores, each limited as one TCP stream, and the uplinks their outer headers \
             let the fabric spread them over.",
            fabric.hosts - 1,
            measure::MANY_FLOWS,
            fabric.uplinks_per_host,
            fmt_bps(fabric.host_link.bandwidth_bps as f64),
            measure::MANY_FLOWS,
            model.cores
        )));
        let mut rows = Vec::new();
        let uplinks_bps = fabric.host_link.bandwidth_bps * u64::from(fabric.uplinks_per_host);
        for (index, path) in self.paths.iter().enumerate() {
            let size = path.pod_mtu(1500);
            let one = measure::find(outcomes, &Key::Wire(index, 1500, 1))
                .map(|o| measure::wire_goodput_bps(o, size));
            let many = measure::find(outcomes, &Key::Wire(index, 1500, measure::MANY_FLOWS))
                .map(|o| measure::wire_goodput_bps(o, size));
            // Without entropy in the outer header every flow hashes onto the same uplink.
            let reachable = if path.has_entropy() { uplinks_bps } else { fabric.host_link.bandwidth_bps };
            let per_core = model.goodput(path, Protocol::Tcp, size, reachable).cpu_bps;
            let line = model.goodput(path, Protocol::Tcp, size, reachable).line_bps;
            let modelled = line.min(per_core * f64::from(model.cores));
            rows.push(vec![
                path.label(),
                one.map_or("—".into(), fmt_bps),
                many.map_or("—".into(), fmt_bps),
                match (one, many) {
                    (Some(a), Some(b)) if a > 0.0 => format!("{:.2}×", b / a),
                    _ => "—".into(),
                },
                fmt_bps(modelled),
                path.entropy.into(),
            ]);
        }
        blocks.push(Block::Table(
            vec![
                "path".into(),
                "1 flow (measured)".into(),
                format!("{} flows (measured)", measure::MANY_FLOWS),
                "gain".into(),
                format!("{} TCP flows (model)", measure::MANY_FLOWS),
                "what the fabric hashes".into(),
            ],
            rows,
        ));
        // Balance.
        let ports = measure::balance_ports(&with_mtu_1500(fabric));
        let uplinks = fabric.uplinks_per_host as usize;
        let spines = fabric.spines as usize;
        let mut categories: Vec<String> = (0..uplinks).map(|u| format!("uplink {u}")).collect();
        categories.extend((0..spines).map(|s| format!("spine {s}")));
        let mut groups = Vec::new();
        for (index, path) in self.paths.iter().enumerate() {
            let Some(outcome) = measure::find(outcomes, &Key::Balance(index)) else { continue };
            let counts: Vec<u64> = outcome.ports.iter().map(|p| p.data_frames).collect();
            let up_total: u64 = counts.iter().take(uplinks).sum();
            let mut shares: Vec<f64> = counts
                .iter()
                .take(uplinks)
                .map(|&c| if up_total == 0 { 0.0 } else { c as f64 / up_total as f64 })
                .collect();
            // Spine ports: leaf `l`'s port to spine `s`, leaves in uplink order.
            let mut per_spine = vec![0u64; spines];
            for (k, &count) in counts.iter().enumerate().skip(uplinks) {
                per_spine[(k - uplinks) % spines.max(1)] += count;
            }
            let spine_total: u64 = per_spine.iter().sum();
            shares.extend(
                per_spine.iter().map(|&c| if spine_total == 0 { 0.0 } else { c as f64 / spine_total as f64 }),
            );
            groups.push((path.label(), PALETTE[index % PALETTE.len()], shares));
        }
        let mut rows = Vec::new();
        for (name, _, shares) in &groups {
            let mut row = vec![name.clone()];
            row.extend(shares.iter().map(|s| format!("{:.1}%", s * 100.0)));
            rows.push(row);
        }
        let mut header = vec!["path".to_string()];
        header.extend(categories.iter().cloned());
        blocks.push(Block::Para(format!(
            "ECMP balance (**measured**): the share of {} flows' packets ({} packets of {} bytes) on each of host-0's \
             uplinks, and on each spine (summed over the spine ports of host-0's leaves: {}). A fair share is {:.0}% \
             per uplink and {:.0}% per spine.",
            measure::MANY_FLOWS,
            measure::MANY_FLOWS * 20,
            measure::BALANCE_PACKET_BYTES,
            ports.iter().skip(uplinks).map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", "),
            100.0 / uplinks.max(1) as f64,
            100.0 / spines.max(1) as f64
        )));
        blocks.push(Block::Table(header, rows));
        let bars = Bars {
            title: format!("ECMP balance of {} flows (measured)", measure::MANY_FLOWS),
            y_label: "share of packets".into(),
            categories,
            groups,
            reference: None,
        };
        self.figure(
            blocks,
            dir,
            "ecmp-balance",
            Figure::Bars(bars),
            "ECMP balance histogram: each bar is one path's share of packets on one uplink of host-0 (left) or one \
             spine (right). Paths whose outer header carries no ports (MPLS over GRE, IP in IP) put every flow on \
             the same uplink and spine.",
        )?;
        if let Some(pair) = &self.pair
            && !self.service.1.is_empty()
        {
            let _ = pair;
            let counts: Vec<Vec<u64>> = Plane::BOTH
                .iter()
                .map(|&p| {
                    measure::find(outcomes, &Key::Service(p))
                        .map(|o| o.ports.iter().map(|c| c.data_frames).collect())
                        .unwrap_or_default()
                })
                .collect();
            let mut rows = Vec::new();
            for (k, name) in self.service.1.iter().enumerate() {
                let share = |plane: usize| {
                    let total: u64 = counts[plane].iter().sum();
                    counts[plane]
                        .get(k)
                        .map_or("—".into(), |&c| format!("{:.1}%", 100.0 * c as f64 / total.max(1) as f64))
                };
                rows.push(vec![format!("`{}`", name.trim_start_matches("pod:")), share(0), share(1)]);
            }
            blocks.push(Block::Para(format!(
                "Service load balancing (**measured**, the scenario's workload for 20 ms): the share of frames at each \
                 backend of `{}`, the busiest service. The overlay's vRouter spreads new flows over the service's \
                 floating IPs by ECMP; Calico's kube-proxy picks a backend per connection.",
                self.service.0
            )));
            blocks.push(Block::Table(vec!["backend".into(), "overlay".into(), "calico".into()], rows));
        }
        Ok(())
    }

    /// The scaling fits: quantities per host against hosts, one per plane.
    fn scaling_model(&self, outcomes: &[Outcome]) -> Vec<Fit> {
        let mut fits = Vec::new();
        let measured = |f: &dyn Fn(&Outcome, &Outcome) -> f64, plane: Plane| -> Vec<(f64, f64)> {
            self.sizes
                .iter()
                .filter_map(|&n| {
                    let base = measure::find(outcomes, &Key::Scale(plane, n, false))?;
                    let churn = measure::find(outcomes, &Key::Scale(plane, n, true))?;
                    Some((f64::from(n), f(base, churn)))
                })
                .collect()
        };
        let routes = |b: &Outcome, _: &Outcome| state_of(b).0 as f64 / hosts_of(b);
        let rules = |b: &Outcome, _: &Outcome| b.rules.map_or(0.0, |r| r.mean);
        let told = |b: &Outcome, c: &Outcome| match (&b.report.bgp, &c.report.bgp) {
            (Some(_), Some(cb)) => cb.felix_updates as f64,
            _ => c.report.control.as_ref().map_or(0.0, |x| x.updates as f64),
        };
        let messages = |b: &Outcome, c: &Outcome| match (&b.report.bgp, &c.report.bgp) {
            (Some(bb), Some(cb)) => {
                cb.felix_commands as f64 + cb.updates_sent.saturating_sub(bb.updates_sent) as f64
            }
            _ => c.report.control.as_ref().map_or(0.0, |x| x.messages as f64),
        };
        for (name, f) in [
            ("routes per host", &routes as &dyn Fn(&Outcome, &Outcome) -> f64),
            ("rules per host", &rules),
            ("hosts told per churn event", &told),
            ("messages per churn event", &messages),
        ] {
            let points = Plane::BOTH.map(|p| measured(f, p));
            fits.push(Fit::new(name, points));
        }
        fits
    }

    fn scaling(&self, outcomes: &[Outcome], dir: &FilePath, blocks: &mut Vec<Block>) -> Result<(), String> {
        blocks.push(Block::Heading(2, "Forwarding state and control-plane load against cluster size".into()));
        let sizes: Vec<String> = self.sizes.iter().map(u32::to_string).collect();
        blocks.push(Block::Para(format!(
            "**Measured** at {} hosts: a synthetic cluster ({} pods per host: `web` twice per host and `db` once, a \
             service each, a NetworkPolicy admitting only `web` to `db`) on a leaf-spine fabric of ten hosts per \
             leaf pair, built and run for {} under each data plane with its default path, once quiet and once with \
             one `db` pod restarted. Routes are counted in every host's data plane; rules are what the control \
             plane programs (Calico: felix's chain rules, IP-set members and kube-proxy's service backends; overlay: \
             the ACL rules of the networks and interfaces on the host and its floating-IP ports); hosts told and \
             messages are the updates a pod restart causes (overlay: control-channel updates and their agent \
             messages; Calico: felix updates and their commands, plus BGP UPDATEs). **Model** beyond that, to 5,000 \
             hosts: each quantity is linear in the hosts by design (routes and rules grow with the pods a host must \
             reach, updates with the hosts that hold affected state), so the model is the least-squares line through \
             the measured points; sessions follow from the topology (overlay: each agent to {} control node(s), \
             every agent on a control node; Calico: the BGP {}).",
            sizes.join(", "),
            measure::SCALE_PODS_PER_HOST,
            measure::SCALE_RUN,
            self.control_node_count(),
            match self.scenario.dataplane.cluster_spec().map(|s| s.calico.bgp) {
                Some(BgpTopology::RouteReflectors) => "route reflectors: n − 1 sessions on a reflector",
                _ => "full mesh: n − 1 sessions on every host",
            }
        )));
        let fits = self.scaling_model(outcomes);
        let mut rows = Vec::new();
        for &n in &self.sizes {
            for plane in Plane::BOTH {
                let Some(base) = measure::find(outcomes, &Key::Scale(plane, n, false)) else { continue };
                let sessions = match &base.report.bgp {
                    Some(bgp) => format!("{} (max on a host)", bgp.sessions_per_host_max),
                    None => format!(
                        "{} per agent, {} on a control node",
                        self.control_node_count().min(n as usize),
                        n
                    ),
                };
                let value = |name: &str| {
                    fits.iter()
                        .find(|f| f.name == name)
                        .and_then(|f| f.points[plane as usize].iter().find(|p| p.0 == f64::from(n)))
                        .map_or("—".into(), |p| fmt_count(p.1))
                };
                rows.push(vec![
                    n.to_string(),
                    plane.name().into(),
                    value("routes per host"),
                    format!("{} (max {})", value("rules per host"), base.rules.map_or(0, |r| r.max)),
                    sessions,
                    value("hosts told per churn event"),
                    value("messages per churn event"),
                ]);
            }
        }
        blocks.push(Block::Table(
            vec![
                "hosts".into(),
                "data plane".into(),
                "routes per host".into(),
                "rules per host".into(),
                "control sessions".into(),
                "hosts told per pod restart".into(),
                "messages per pod restart".into(),
            ],
            rows,
        ));
        let mut rows = Vec::new();
        for &n in &MODEL_SIZES {
            let mut row = vec![n.to_string()];
            for fit in &fits {
                let v = fit.at(n);
                row.push(format!("{} / {}", fmt_count(v[0]), fmt_count(v[1])));
            }
            row.push(format!(
                "{} / {}",
                fmt_count(sessions_model(Plane::Overlay, n)),
                fmt_count(sessions_model(Plane::Calico, n))
            ));
            rows.push(row);
        }
        let mut header = vec!["hosts (model)".to_string()];
        header.extend(fits.iter().map(|f| format!("{} (overlay / calico)", f.name)));
        header.push("sessions on the busiest node (overlay / calico)".into());
        blocks.push(Block::Table(header, rows));
        let lines: Vec<String> = fits
            .iter()
            .map(|f| {
                format!(
                    "{}: overlay {}, calico {}",
                    f.name,
                    f.formula(Plane::Overlay),
                    f.formula(Plane::Calico)
                )
            })
            .collect();
        blocks.push(Block::List(lines));
        let xs: Vec<f64> = MODEL_SIZES.iter().map(|&n| f64::from(n)).collect();
        let chart = |title: &str, y_label: &str, names: &[&str], with_sessions: bool| {
            let mut series = Vec::new();
            let mut top: f64 = 10.0;
            for (k, name) in names.iter().enumerate() {
                let Some(fit) = fits.iter().find(|f| f.name == *name) else { continue };
                for plane in Plane::BOTH {
                    let color = if plane == Plane::Overlay { OVERLAY } else { CALICO };
                    let color =
                        if k == 0 { color } else { PALETTE[if plane == Plane::Overlay { 1 } else { 4 }] };
                    let model: Vec<(f64, f64)> =
                        xs.iter().map(|&x| (x, fit.value(plane, x).max(0.5))).collect();
                    top = top.max(model.iter().map(|p| p.1).fold(0.0, f64::max));
                    series.push(Series {
                        name: format!("{} {name} (model)", plane.name()),
                        color,
                        style: Style::Dashed,
                        points: model,
                    });
                    let measured: Vec<(f64, f64)> =
                        fit.points[plane as usize].iter().map(|&(x, y)| (x, y.max(0.5))).collect();
                    series.push(Series {
                        name: format!("{} {name} (measured)", plane.name()),
                        color,
                        style: Style::Points,
                        points: measured,
                    });
                }
            }
            if with_sessions {
                for plane in Plane::BOTH {
                    let color = if plane == Plane::Overlay { PALETTE[2] } else { PALETTE[5] };
                    let points: Vec<(f64, f64)> =
                        xs.iter().map(|&x| (x, sessions_model(plane, x as u32).max(0.5))).collect();
                    top = top.max(points.iter().map(|p| p.1).fold(0.0, f64::max));
                    series.push(Series {
                        name: format!("{} sessions, busiest node (model)", plane.name()),
                        color,
                        style: Style::Line,
                        points,
                    });
                }
            }
            Chart {
                title: title.into(),
                x_label: "hosts".into(),
                y_label: y_label.into(),
                x: (8.0, 6000.0),
                y: (0.5, top * 2.0),
                log: true,
                series,
                marks: Vec::new(),
            }
        };
        self.figure(
            blocks,
            dir,
            "state-scaling",
            Figure::Chart(chart(
                "Forwarding state per host against cluster size",
                "per host",
                &["routes per host", "rules per host"],
                false,
            )),
            "Forwarding state per host, log-log: routes and rules, measured (dots) and the model (dashed).",
        )?;
        self.figure(
            blocks,
            dir,
            "control-scaling",
            Figure::Chart(chart(
                "Control-plane load against cluster size",
                "count",
                &["hosts told per churn event", "messages per churn event"],
                true,
            )),
            "Control-plane load, log-log: sessions on the busiest node, and hosts told and messages per pod restart, \
             measured (dots) and the model.",
        )?;
        Ok(())
    }

    /// Control sessions of an ordinary host: an overlay agent's to the control nodes, a Calico
    /// host's BGP peers (every other host in a full mesh, the reflectors otherwise).
    fn sessions_per_host(&self, plane: Plane, hosts: u32) -> f64 {
        match (plane, self.scenario.dataplane.cluster_spec().map(|s| s.calico.bgp)) {
            (Plane::Overlay, _) => self.control_node_count().min(hosts as usize) as f64,
            (Plane::Calico, Some(BgpTopology::RouteReflectors)) => {
                self.control_node_count().min(hosts as usize) as f64
            }
            (Plane::Calico, _) => f64::from(hosts.saturating_sub(1)),
        }
    }

    fn control_node_count(&self) -> usize {
        self.scenario.dataplane.cluster_spec().map_or(2, |s| s.control_nodes.len())
    }

    /// (loss time ns, packets lost, control convergence ns) of each seed's run of fault kind `index`.
    fn fault_values(
        &self,
        outcomes: &[Outcome],
        index: usize,
        plane: Plane,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let Some(pair) = &self.pair else { return Default::default() };
        let kind = &self.kinds[index];
        let (scenario_isolation, duration) = match kind.derived {
            None => (measure::isolation_entries(&pair.overlay), self.scenario.duration),
            Some(_) => (Vec::new(), measure::FAULT_RUN),
        };
        let mut values = (Vec::new(), Vec::new(), Vec::new());
        for &seed in &self.seeds {
            let key = match kind.derived {
                None => Key::Main(plane, seed),
                Some(_) => Key::Fault(index, plane, seed),
            };
            let Some(outcome) = measure::find(outcomes, &key) else { continue };
            values.0.push(measure::loss_time_ns(&outcome.report, &scenario_isolation, duration) as f64);
            values.1.push(measure::lost(&outcome.report, &scenario_isolation) as f64);
            let convergence = match (&outcome.report.bgp, &outcome.report.control) {
                (Some(bgp), _) => bgp.convergence_ns_max,
                (None, Some(control)) => control.convergence_ns_max,
                (None, None) => 0,
            };
            values.2.push(convergence as f64);
        }
        values
    }

    fn faults(
        &self,
        pair: &Pair,
        outcomes: &[Outcome],
        dir: &FilePath,
        blocks: &mut Vec<Block>,
    ) -> Result<(), String> {
        blocks.push(Block::Heading(2, "Faults: convergence and loss".into()));
        blocks.push(Block::Para(format!(
            "**Measured** over seeds {} to {} on each data plane. Each fault kind but the scenario's own runs the \
             scenario's workload (isolation probes left out) for {}. *Time with losses* is the length of the slices \
             (1% of the run each) in which the workload lost packets: the data-plane outage, at that resolution. \
             *Packets lost* counts the workload's drops. *Control convergence* is the longest time from a change \
             to its programming at a host (overlay: control-channel updates applied; Calico: the last route change \
             BGP made after it, 0 when none had to change — felix's updates are applied after the configured \
             propagation delay and jitter, {} + up to {}, which RunReport does not time separately).",
            self.seeds[0],
            self.seeds[self.seeds.len() - 1],
            measure::FAULT_RUN,
            pair.overlay.dataplane.cluster_spec().map_or(SimDuration::ZERO, |s| s.propagation_delay),
            pair.overlay.dataplane.cluster_spec().map_or(SimDuration::ZERO, |s| s.propagation_jitter),
        )));
        blocks.push(Block::List(
            self.kinds.iter().map(|k| format!("**{}**: {}", k.name, k.description)).collect(),
        ));
        let mut rows = Vec::new();
        let mut time_panels = Vec::new();
        let mut loss_panels = Vec::new();
        for (index, kind) in self.kinds.iter().enumerate() {
            let mut time_series = Vec::new();
            let mut loss_series = Vec::new();
            let mut time_top: f64 = 1.0;
            let mut loss_top: f64 = 1.0;
            for plane in Plane::BOTH {
                let (times, lost, convergence) = self.fault_values(outcomes, index, plane);
                rows.push(vec![
                    kind.name.clone(),
                    plane.name().into(),
                    spread(&times, fmt_ns),
                    spread(&lost, fmt_count),
                    spread(&convergence, fmt_ns),
                ]);
                let color = if plane == Plane::Overlay { OVERLAY } else { CALICO };
                let t: Vec<f64> = times.iter().map(|v| v / 1e6).collect();
                time_top = time_top.max(max(&t));
                loss_top = loss_top.max(max(&lost));
                time_series.push(Series {
                    name: plane.name().into(),
                    color,
                    style: Style::LinePoints,
                    points: cdf_points(&t),
                });
                loss_series.push(Series {
                    name: plane.name().into(),
                    color,
                    style: Style::LinePoints,
                    points: cdf_points(&lost),
                });
            }
            time_panels.push(Chart {
                title: kind.name.clone(),
                x_label: "time with losses (ms)".into(),
                y_label: "fraction of seeds".into(),
                x: (0.0, time_top * 1.15),
                y: (0.0, 1.05),
                log: false,
                series: time_series,
                marks: Vec::new(),
            });
            loss_panels.push(Chart {
                title: kind.name.clone(),
                x_label: "packets lost".into(),
                y_label: "fraction of seeds".into(),
                x: (0.0, loss_top * 1.15),
                y: (0.0, 1.05),
                log: false,
                series: loss_series,
                marks: Vec::new(),
            });
        }
        blocks.push(Block::Table(
            vec![
                "fault".into(),
                "data plane".into(),
                "time with losses: median [min – max]".into(),
                "packets lost: median [min – max]".into(),
                "control convergence: median [min – max]".into(),
            ],
            rows,
        ));
        if !time_panels.is_empty() {
            self.figure(
                blocks,
                dir,
                "fault-loss-time-cdf",
                Figure::Panels("Time with losses after each kind of fault: CDF over seeds (measured)".into(), time_panels),
                "CDF over seeds of the time during which the workload lost packets, per fault kind and data plane \
                 (where one curve hides the other, the two data planes measured the same).",
            )?;
            self.figure(
                blocks,
                dir,
                "fault-packets-lost-cdf",
                Figure::Panels(
                    "Packets lost after each kind of fault: CDF over seeds (measured)".into(),
                    loss_panels,
                ),
                "CDF over seeds of the packets the workload lost, per fault kind and data plane.",
            )?;
        }
        Ok(())
    }

    fn reproducibility(&self, outcomes: &[Outcome], blocks: &mut Vec<Block>) {
        blocks.push(Block::Heading(2, "Reproducibility".into()));
        blocks.push(Block::Para(format!(
            "netsim {} ran {} simulations for this report. Each is a function of its scenario and seed: its trace \
             hash (over every executed event) is the same on every machine. The trace hashes of the runs on the \
             scenario's workload:",
            env!("CARGO_PKG_VERSION"),
            outcomes.len()
        )));
        let mut rows = Vec::new();
        for outcome in outcomes {
            let (what, plane, seed) = match &outcome.key {
                Key::Main(plane, seed) => ("scenario".to_string(), *plane, *seed),
                Key::Fault(index, plane, seed) => {
                    (format!("fault: {}", self.kinds[*index].name), *plane, *seed)
                }
                _ => continue,
            };
            rows.push(vec![
                what,
                plane.name().into(),
                seed.to_string(),
                outcome.report.events.to_string(),
                format!("`{}`", outcome.report.trace_hash),
            ]);
        }
        if rows.is_empty() {
            blocks.push(Block::Para("(none: the scenario has no pod workload)".into()));
        } else {
            blocks.push(Block::Table(
                vec!["run".into(), "data plane".into(), "seed".into(), "events".into(), "trace hash".into()],
                rows,
            ));
        }
        let synthetic = outcomes.iter().filter(|o| !matches!(o.key, Key::Main(..) | Key::Fault(..)));
        let mut hasher = netsim_core::StableHasher::default();
        for outcome in synthetic {
            hasher.write_bytes(outcome.report.trace_hash.as_bytes());
        }
        blocks.push(Block::Para(format!(
            "The synthetic runs (goodput, ECMP, service balance, cluster sizes) together hash to `{:016x}`.",
            hasher.finish()
        )));
    }

    fn figure(
        &self,
        blocks: &mut Vec<Block>,
        dir: &FilePath,
        name: &str,
        figure: Figure,
        caption: &str,
    ) -> Result<(), String> {
        let svg = plot::render(&figure, dir, name)?;
        blocks.push(Block::Figure { name: name.into(), caption: caption.into(), svg });
        Ok(())
    }
}

fn with_mtu_1500(fabric: &netsim_fabric::FabricConfig) -> netsim_fabric::FabricConfig {
    let mut fabric = fabric.clone();
    fabric.host_link.mtu_bytes = 1500;
    fabric.fabric_link.mtu_bytes = 1500;
    fabric
}

/// A least-squares line per plane through measured (hosts, value) points.
struct Fit {
    name: &'static str,
    points: [Vec<(f64, f64)>; 2],
    lines: [(f64, f64); 2],
}

impl Fit {
    fn new(name: &'static str, points: [Vec<(f64, f64)>; 2]) -> Fit {
        let lines = [line(&points[0]), line(&points[1])];
        Fit { name, points, lines }
    }

    fn value(&self, plane: Plane, hosts: f64) -> f64 {
        let (a, b) = self.lines[plane as usize];
        (a + b * hosts).max(0.0)
    }

    fn at(&self, hosts: u32) -> [f64; 2] {
        Plane::BOTH.map(|p| self.value(p, f64::from(hosts)))
    }

    fn formula(&self, plane: Plane) -> String {
        let (a, b) = self.lines[plane as usize];
        format!("{a:.1} + {b:.3} · hosts")
    }
}

/// Intercept and slope of the least-squares line through `points` (a constant for one point).
fn line(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    if points.is_empty() {
        return (0.0, 0.0);
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx == 0.0 {
        return (my, 0.0);
    }
    let slope = sxy / sxx;
    (my - slope * mx, slope)
}

/// Control sessions on the busiest node at `hosts` hosts: a control node holds one per agent
/// (every agent connects to each control node); a BGP full-mesh member, or a route reflector,
/// peers with every other host.
fn sessions_model(plane: Plane, hosts: u32) -> f64 {
    let hosts = f64::from(hosts);
    match plane {
        Plane::Overlay => hosts,
        Plane::Calico => (hosts - 1.0).max(0.0),
    }
}

fn wall_section(outcomes: &[Outcome], total_ms: u64, threads: usize) -> Vec<Block> {
    let mut blocks = vec![Block::Para(
        "Wall-clock time is the one thing in this report that differs between runs (every line below says wall)."
            .into(),
    )];
    let mut items =
        vec![format!("whole report: {:.1} s wall on {threads} threads", total_ms as f64 / 1000.0)];
    let mut sums: std::collections::BTreeMap<&str, (u64, usize)> = std::collections::BTreeMap::new();
    for outcome in outcomes {
        let group = match outcome.key {
            Key::Main(..) => "scenario runs",
            Key::Fault(..) => "fault-kind runs",
            Key::Wire(..) => "goodput runs",
            Key::Balance(..) => "ECMP balance runs",
            Key::Service(..) => "service balance runs",
            Key::Scale(..) => "cluster-size runs",
        };
        let entry = sums.entry(group).or_default();
        entry.0 += outcome.wall_ms;
        entry.1 += 1;
    }
    for (group, (ms, runs)) in sums {
        items.push(format!("{group}: {runs} runs, {:.1} s wall in all", ms as f64 / 1000.0));
    }
    blocks.push(Block::List(items));
    blocks
}

// ---------------------------------------------------------------------------------------------
// Small measures and formats.

/// Hosts of a cluster-size run.
fn hosts_of(outcome: &Outcome) -> f64 {
    match outcome.key {
        Key::Scale(_, hosts, _) => f64::from(hosts),
        _ => 1.0,
    }
}

fn state_of(outcome: &Outcome) -> (usize, usize) {
    outcome.report.overlay_state.unwrap_or((0, 0))
}

fn workload_ratio(outcome: &Outcome, isolation: &[usize]) -> f64 {
    let (mut sent, mut delivered) = (0, 0);
    for (index, (_, counts)) in outcome.report.per_traffic.iter().enumerate() {
        if !isolation.contains(&index) {
            sent += counts.sent;
            delivered += counts.delivered;
        }
    }
    if sent == 0 { 1.0 } else { delivered as f64 / sent as f64 }
}

fn violations(outcome: &Outcome, isolation: &[usize]) -> u64 {
    isolation.iter().filter_map(|&i| outcome.report.per_traffic.get(i)).map(|(_, c)| c.delivered).sum()
}

/// (time with losses, longest run of lossy slices), ns.
fn gaps(outcome: &Outcome, isolation: &[usize], duration: SimDuration) -> (u64, u64) {
    let slices = measure::loss_slices(&outcome.report, isolation);
    let slice = duration.as_nanos() / slices.len().max(1) as u64;
    let (mut total, mut longest, mut run) = (0, 0, 0);
    for lossy in slices {
        if lossy {
            total += 1;
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    (total * slice, longest * slice)
}

fn control_text(outcome: &Outcome) -> String {
    if let Some(bgp) = &outcome.report.bgp {
        return format!(
            "BGP {}: {} of {} sessions up, {} messages; felix {} updates",
            bgp.topology,
            bgp.sessions_established,
            bgp.sessions_configured,
            bgp.messages_sent,
            bgp.felix_updates
        );
    }
    match &outcome.report.control {
        Some(control) => format!(
            "{} updates ({} messages) in {} datagrams, {} retransmitted",
            control.updates, control.messages, control.datagrams, control.retransmissions
        ),
        None => "—".into(),
    }
}

fn better(lower_better: bool, [overlay, calico]: [f64; 2]) -> String {
    let scale = overlay.abs().max(calico.abs());
    if scale == 0.0 || (overlay - calico).abs() <= 0.01 * scale {
        return "tie".into();
    }
    let overlay_wins = if lower_better { overlay < calico } else { overlay > calico };
    if overlay_wins { "overlay".into() } else { "calico".into() }
}

fn cost_row(name: &str, value: f64, default: f64, unit: &str, source: &str) -> Vec<String> {
    vec![name.into(), format!("{value} {unit}"), format!("{default} {unit}"), source.into()]
}

fn ratio_text(delivered: u64, sent: u64) -> String {
    if sent == 0 { "—".into() } else { format!("{:.3}%", 100.0 * delivered as f64 / sent as f64) }
}

fn cdf_points(values: &[f64]) -> Vec<(f64, f64)> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as f64;
    let mut points = Vec::new();
    for (i, &v) in sorted.iter().enumerate() {
        points.push((v, i as f64 / n));
        points.push((v, (i + 1) as f64 / n));
    }
    points
}

fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) { (sorted[mid - 1] + sorted[mid]) / 2.0 } else { sorted[mid] }
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min).min(if values.is_empty() {
        0.0
    } else {
        f64::INFINITY
    })
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(0.0, f64::max)
}

fn spread(values: &[f64], format: fn(f64) -> String) -> String {
    if values.is_empty() {
        return "—".into();
    }
    format!("{} [{} – {}]", format(median(values)), format(min(values)), format(max(values)))
}

/// Nanoseconds in a readable unit.
pub fn fmt_ns(ns: f64) -> String {
    let three = |value: f64, unit: &str| {
        if value < 10.0 {
            format!("{value:.2} {unit}")
        } else if value < 100.0 {
            format!("{value:.1} {unit}")
        } else {
            format!("{value:.0} {unit}")
        }
    };
    if ns == 0.0 {
        "0".into()
    } else if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        three(ns / 1e3, "µs")
    } else if ns < 1e9 {
        three(ns / 1e6, "ms")
    } else {
        three(ns / 1e9, "s")
    }
}

/// Bits per second in Gb/s (or Mb/s below one).
pub fn fmt_bps(bps: f64) -> String {
    if bps >= 1e9 && (bps / 1e9).fract() == 0.0 {
        format!("{:.0} Gb/s", bps / 1e9)
    } else if bps >= 1e9 {
        format!("{:.2} Gb/s", bps / 1e9)
    } else {
        format!("{:.0} Mb/s", bps / 1e6)
    }
}

/// A count: whole numbers with thousands separators, small fractions with one decimal.
pub fn fmt_count(value: f64) -> String {
    if value.abs() < 100.0 && value.fract().abs() > 1e-9 {
        return format!("{value:.1}");
    }
    let whole = value.round() as i64;
    let digits = whole.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if whole < 0 { format!("-{out}") } else { out }
}
