//! `--minimize` of `netsim check` and `netsim sweep` through the built binary: a failing
//! scenario shrunk to the one event that fails it, a file that reproduces the failure on its
//! own, manifests found from wherever the file is written, and the bound on runs.

mod common;
use common::{netsim, s, scratch, text, write};

use std::path::{Path, PathBuf};

fn toml(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse().unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

/// Every `*.min.toml` under `dir`, sorted.
fn reproductions(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(".min.toml") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Eight hosts for 20 ms. `web` (host-0 to host-1) must lose nothing; of six events (three
/// links failing and recovering), only host-1's uplink failure makes it lose packets. A second
/// traffic entry that no failing check judges can go too.
fn shrinkable(name: &str, seed: u64) -> String {
    format!(
        r#"# Comments are not kept.
name = "{name}"
seed = {seed}
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
name = "background"
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
kind = "loss_only_in_failure_windows"
"#
    )
}

/// A small scenario that passes.
fn passing(name: &str) -> String {
    format!(
        "name = \"{name}\"\nduration = \"20ms\"\n[fabric]\nhosts = 8\nleaves = 4\nspines = 2\nuplinks_per_host = 1\n[[traffic]]\nfrom = \"all\"\nto = \"all\"\nrate = \"5k/s\"\nflows = 8\n[[event]]\nat = \"5ms\"\naction = \"fail\"\nlink = \"host-3:uplink0\"\n[[check]]\nkind = \"loss_only_in_failure_windows\"\n"
    )
}

/// The events of a scenario document: `(action, element)`.
fn events(document: &toml::Table) -> Vec<(String, String)> {
    let Some(events) = document.get("event").and_then(toml::Value::as_array) else { return Vec::new() };
    events
        .iter()
        .map(|event| {
            let element = ["link", "switch", "host", "workload", "pod"]
                .iter()
                .find_map(|key| event.get(key).and_then(toml::Value::as_str))
                .unwrap_or_default();
            (event["action"].as_str().unwrap_or_default().to_string(), element.to_string())
        })
        .collect()
}

#[test]
fn check_minimize_shrinks_a_failure_to_the_one_event_that_causes_it() {
    let dir = scratch("check");
    let suite = dir.join("suite");
    write(&suite.join("links.toml"), &shrinkable("links", 7));
    write(&suite.join("fine.toml"), &passing("fine"));
    let (out, junit, markdown) = (dir.join("out"), dir.join("junit.xml"), dir.join("summary.md"));
    let output = netsim(&[
        "check",
        s(&suite),
        "--minimize",
        "--out",
        s(&out),
        "--junit",
        s(&junit),
        "--markdown",
        s(&markdown),
        "--quiet",
    ]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    let file = out.join("links.min.toml");
    assert_eq!(reproductions(&dir), std::slice::from_ref(&file), "only the failing scenario is minimized");
    let command = format!("netsim run {}", s(&file));
    assert!(
        stdout.contains(&format!("minimized: {} (1 of 6 events, 1 of 2 traffic entries; ", s(&file))),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("reproduce: {command}\n")), "{stdout}");

    let document = toml(&file);
    assert_eq!(events(&document), [("fail".to_string(), "host-1:uplink0".to_string())]);
    let traffic = document["traffic"].as_array().expect("traffic");
    assert_eq!(traffic.len(), 1);
    assert_eq!(traffic[0]["name"].as_str(), Some("web"));
    assert_eq!(document["seed"].as_integer(), Some(7), "the file alone reproduces");
    let header = std::fs::read_to_string(&file).expect("written");
    assert!(header.starts_with("# A minimal reproduction, shrunk by delta debugging from "), "{header}");
    assert!(header.contains(&format!("# Reproduce: {command}\n")), "{header}");
    assert!(header.contains("# It fails: delivery_ratio[web].\n"), "{header}");

    // The file fails the same check on its own.
    let run = netsim(&["run", s(&file), "--out", s(&dir.join("run")), "--quiet"]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run.stderr));
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("run/results.json")).expect("results")).expect("JSON");
    let failed: Vec<&str> = results["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["passed"] == false)
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(failed, ["delivery_ratio[web]"]);

    let markdown = std::fs::read_to_string(&markdown).expect("markdown written");
    assert!(markdown.contains(&format!("Minimal reproduction, `{}` (1 of 6 events", s(&file))), "{markdown}");
    assert!(markdown.contains(&format!("```sh\n{command}\n```")), "{markdown}");
    let xml = std::fs::read_to_string(&junit).expect("JUnit written");
    assert!(xml.contains(&format!("minimal reproduction: {command}</failure>")), "{xml}");
    assert!(xml.contains(&format!("<property name=\"minimized\" value=\"{}\"/>", s(&file))), "{xml}");
}

#[test]
fn a_passing_suite_writes_no_reproduction() {
    let dir = scratch("passing");
    let suite = dir.join("suite");
    write(&suite.join("fine.toml"), &passing("fine"));
    let output = netsim(&["check", s(&suite), "--minimize", "--out", s(&dir.join("out")), "--quiet"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(!text(&output.stdout).contains("minimized"));
    assert_eq!(reproductions(&dir), Vec::<PathBuf>::new());
    // Without --minimize, a failing scenario gets no file either.
    write(&suite.join("links.toml"), &shrinkable("links", 7));
    let output = netsim(&["check", s(&suite), "--out", s(&dir.join("out")), "--quiet"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(reproductions(&dir), Vec::<PathBuf>::new());
}

#[test]
fn the_bound_on_runs_is_respected_and_said() {
    let dir = scratch("bound");
    let scenario = dir.join("links.toml");
    write(&scenario, &shrinkable("links", 7));
    let out = dir.join("out");
    let output =
        netsim(&["check", s(&scenario), "--minimize", "--minimize-runs", "3", "--out", s(&out), "--quiet"]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{}", text(&output.stderr));
    assert!(stdout.contains("; 3 runs, bound of 3 runs hit: may not be minimal)"), "{stdout}");
    let file = out.join("links.min.toml");
    let header = std::fs::read_to_string(&file).expect("written");
    assert!(header.contains("# The bound of 3 runs was hit"), "{header}");
    // Smaller or not, it still fails.
    let run = netsim(&["run", s(&file), "--out", s(&dir.join("run")), "--quiet"]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        netsim(&["check", s(&scenario), "--minimize-runs", "3"]).status.code() == Some(2),
        "needs --minimize"
    );
    assert!(netsim(&["check", s(&scenario), "--minimize", "--minimize-runs", "0"]).status.code() == Some(2));
}

#[test]
fn sweep_minimizes_the_first_three_failing_seeds() {
    let dir = scratch("sweep");
    let scenario = dir.join("links.toml");
    write(&scenario, &shrinkable("links", 1));
    let (out, report) = (dir.join("out"), dir.join("sweep.json"));
    let output = netsim(&[
        "sweep",
        s(&scenario),
        "--seeds",
        "10..14",
        "--minimize",
        "--out",
        s(&out),
        "--json",
        s(&report),
        "--quiet",
    ]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{}", text(&output.stderr));
    let files: Vec<PathBuf> = (10..=12).map(|seed| out.join(format!("links-seed-{seed}.min.toml"))).collect();
    assert_eq!(reproductions(&dir), files);
    for (seed, file) in (10..=12).zip(&files) {
        let document = toml(file);
        assert_eq!(document["seed"].as_integer(), Some(seed));
        assert_eq!(events(&document), [("fail".to_string(), "host-1:uplink0".to_string())], "seed {seed}");
        assert!(stdout.contains(&format!("reproduce: netsim run {}\n", s(file))), "{stdout}");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("JSON");
    let minimized: Vec<Option<&str>> =
        report["rows"].as_array().expect("rows").iter().map(|r| r["minimized"].as_str()).collect();
    assert_eq!(minimized, [Some(s(&files[0])), Some(s(&files[1])), Some(s(&files[2])), None, None]);
}

#[test]
fn manifests_resolve_from_where_the_reproduction_is_written() {
    let dir = scratch("manifests");
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/k8s/petstore.yaml");
    let suite = dir.join("suite/nested");
    write(&suite.join("k8s/petstore.yaml"), &std::fs::read_to_string(repository).expect("the petstore"));
    // The frontend scaled down loses requests hashed to the removed replica until hosts learn.
    write(
        &suite.join("churn.toml"),
        r#"name = "churn"
seed = 42
duration = "200ms"
dataplane = "overlay"
manifests = ["k8s/petstore.yaml"]
isolation = "uses-labels"
[cluster]
propagation_delay = "20ms"
propagation_jitter = "10ms"
[[event]]
at = "50ms"
action = "scale"
workload = "default/frontend"
replicas = 3
[[event]]
at = "150ms"
action = "scale"
workload = "default/frontend"
replicas = 5
[[traffic]]
name = "bps-to-frontend"
from = "pods:name=bps"
to = "service:frontend"
port = 3000
rate = "20k/s"
size = "600B"
flows = 40
[[check]]
kind = "delivery_ratio"
traffic = "bps-to-frontend"
min = 1.0
"#,
    );
    let out = dir.join("out/check");
    let output = netsim(&["check", s(&dir.join("suite")), "--minimize", "--out", s(&out), "--quiet"]);
    assert_eq!(output.status.code(), Some(1), "{}\n{}", text(&output.stdout), text(&output.stderr));
    let file = out.join("churn.min.toml");
    let document = toml(&file);
    assert_eq!(
        document["manifests"].as_array().and_then(|m| m[0].as_str()),
        Some("../../suite/nested/k8s/petstore.yaml")
    );
    assert_eq!(events(&document), [("scale".to_string(), "default/frontend".to_string())]);
    let run = netsim(&["run", s(&file), "--out", s(&dir.join("run")), "--quiet"]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run.stderr));
}
