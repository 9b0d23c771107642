//! The command-line contract: exit codes, results.json, and located errors on bad input.

mod common;
use common::{netsim, scratch, text};

const SMALL: &str = r#"name = "small"
seed = 5
duration = "20ms"
[fabric]
hosts = 8
leaves = 4
spines = 2
[[traffic]]
from = "all"
to = "all"
rate = "10k/s"
flows = 8
[[check]]
kind = "delivery_ratio"
min = 1.0
"#;

#[test]
fn run_writes_results_and_exits_zero_when_checks_pass() {
    let dir = scratch("pass");
    let scenario = dir.join("small.toml");
    std::fs::write(&scenario, SMALL).expect("write scenario");
    let out = dir.join("out");
    let output = netsim(&["run", scenario.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("PASS delivery_ratio"), "{stdout}");
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).expect("results.json"))
            .expect("JSON");
    for field in ["scenario", "seed", "trace_hash", "sim_time_ns", "events", "packets", "checks", "wall_ms"] {
        assert!(results.get(field).is_some(), "results.json lacks {field}");
    }
    let packets = &results["packets"];
    assert_eq!(packets["sent"], packets["delivered"]);
    assert!(packets["sent"].as_u64().unwrap() > 0);
    assert_eq!(results["checks"][0]["passed"], true);
    assert_eq!(results["seed"], 5);
    // No temporary file left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, ["results.json"]);
}

#[test]
fn seed_flag_overrides_and_changes_the_trace() {
    let dir = scratch("seed");
    let scenario = dir.join("small.toml");
    std::fs::write(&scenario, SMALL).expect("write scenario");
    let hash = |seed: &str, out: &str| {
        let out = dir.join(out);
        let output = netsim(&[
            "run",
            scenario.to_str().unwrap(),
            "--quiet",
            "--seed",
            seed,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(output.status.code(), Some(0));
        assert!(output.stdout.is_empty(), "--quiet prints nothing");
        let results: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
        assert_eq!(results["seed"].as_u64(), Some(seed.parse().unwrap()));
        results["trace_hash"].as_str().unwrap().to_string()
    };
    assert_eq!(hash("9", "a"), hash("9", "b"));
    assert_ne!(hash("9", "a"), hash("10", "c"));
}

#[test]
fn failing_check_exits_one() {
    let dir = scratch("fail");
    let scenario = dir.join("failing.toml");
    // A link too slow for the offered load: the queue overflows.
    let failing = SMALL
        .replace("[fabric]", "[fabric]\nhost_link = { bandwidth = \"10Mbps\", queue = \"4KiB\" }")
        .replace("10k/s", "100k/s");
    std::fs::write(&scenario, failing).expect("write scenario");
    let output = netsim(&["run", scenario.to_str().unwrap(), "--out", dir.join("out").to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));
    assert!(text(&output.stdout).contains("FAIL delivery_ratio"));
    assert!(dir.join("out/results.json").exists(), "results are written when checks fail");
}

#[test]
fn bad_input_exits_two_with_a_located_message_and_no_panic() {
    let dir = scratch("bad");
    let cases = [
        ("syntax.toml", "name = \"x\"\nseed = [\n", "syntax.toml:2:9: error: unclosed array"),
        (
            "unknown.toml",
            "name = \"x\"\nduration = \"1s\"\n[fabric_typo]\nx = 1\n",
            "unknown.toml:3:2: error: unknown field `fabric_typo`",
        ),
        (
            "units.toml",
            "name = \"x\"\nduration = \"1 fortnight\"\n",
            "units.toml:2:12: error: duration `1 fortnight`",
        ),
    ];
    for (name, contents, expected) in cases {
        let path = dir.join(name);
        std::fs::write(&path, contents).expect("write scenario");
        for command in ["run", "validate"] {
            let output = netsim(&[command, path.to_str().unwrap()]);
            let stderr = text(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{command} {name}: {stderr}");
            assert!(stderr.contains(expected), "{command} {name}: {stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
    let missing = netsim(&["run", "no/such/file.toml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("no/such/file.toml: error: cannot read"));
}

#[test]
fn validate_accepts_the_shipped_scenarios() {
    let output = netsim(&["validate", "scenarios/fabric-failover.toml", "scenarios/fabric-baseline.toml"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout).lines().filter(|l| l.starts_with("ok: ")).count(), 2);
}

#[test]
fn bad_arguments_exit_two() {
    assert_eq!(netsim(&["run"]).status.code(), Some(2));
    assert_eq!(netsim(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(netsim(&["run", "x.toml", "--seed", "minus-one"]).status.code(), Some(2));
}

#[test]
fn reach_prints_the_matrix_and_json_and_exits_by_conformance() {
    let dir = scratch("reach");
    let manifest = dir.join("pods.yaml");
    let mut pods = String::new();
    for pod in ["a", "b"] {
        pods += &format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}, labels: {{pod: {pod}}}}}\nspec: {{containers: [{{ports: [{{containerPort: 80}}]}}]}}\n"
        );
    }
    std::fs::write(&manifest, &pods).expect("write manifest");
    let deny = dir.join("deny.yaml");
    std::fs::write(&deny, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n").expect("write policy");

    let output = netsim(&["reach", manifest.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("TCP/80 (overlay, network-policy)"), "{stdout}");
    assert!(stdout.contains("2 probes: 2 allowed, 0 denied; all agree with the reference"), "{stdout}");

    let output = netsim(&[
        "reach",
        manifest.to_str().unwrap(),
        "--json",
        "--compare",
        manifest.to_str().unwrap(),
        deny.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let after = &json["after"]["probes"];
    let denied: Vec<_> = after.as_array().unwrap().iter().filter(|p| p["result"] == "denied").collect();
    assert_eq!(denied.len(), 1);
    assert_eq!(
        (denied[0]["from"].as_str(), denied[0]["to"].as_str()),
        (Some("default/b"), Some("default/a"))
    );

    let output = netsim(&["reach", dir.join("missing.yaml").to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("missing.yaml: error: cannot read"));
}
