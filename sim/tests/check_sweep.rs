//! `netsim check` and `netsim sweep` through the built binary: exit codes, JUnit and markdown
//! reports, shards that partition, and results that do not depend on the number of threads.

mod common;
use common::{netsim, s, scratch, text, write};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A small scenario (8 hosts, 20 ms): a few hundred packets, milliseconds to run.
fn small(name: &str, seed: u64) -> String {
    format!(
        r#"name = "{name}"
seed = {seed}
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
pattern = "poisson"
[[check]]
kind = "delivery_ratio"
min = 1.0
[[check]]
kind = "loss_only_in_failure_windows"
"#
    )
}

/// `small` with a check no lossless run meets: at most half the packets delivered.
fn failing(name: &str, seed: u64) -> String {
    small(name, seed) + "[[check]]\nkind = \"delivery_ratio\"\nname = \"at-most-half\"\nmax = 0.5\n"
}

fn json(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).expect("JSON")
}

// ---------------------------------------------------------------------------------------------
// A small XML well-formedness checker: enough to know a CI server can parse the JUnit report.

/// One element of a parsed document.
#[derive(Debug)]
struct Element {
    name: String,
    attributes: BTreeMap<String, String>,
    /// Index of the parent element, `None` for the root.
    parent: Option<usize>,
}

/// Parses `xml`, panicking on anything not well-formed: unbalanced or crossed tags, unquoted
/// or repeated attributes, a raw `<` or a bad entity in text or attributes, several roots.
fn parse_xml(xml: &str) -> Vec<Element> {
    let mut rest = xml.strip_prefix("<?xml").map_or(xml, |r| &r[r.find("?>").expect("prolog ends") + 2..]);
    let mut elements: Vec<Element> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    let mut roots = 0;
    loop {
        let Some(start) = rest.find('<') else {
            check_text(rest);
            assert!(rest.trim().is_empty() || !open.is_empty(), "text after the root: {rest:?}");
            break;
        };
        check_text(&rest[..start]);
        assert!(!open.is_empty() || rest[..start].trim().is_empty(), "text outside the root");
        let end = start + rest[start..].find('>').expect("tag closes");
        let tag = &rest[start + 1..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let index = open.pop().unwrap_or_else(|| panic!("</{name}> closes nothing"));
            assert_eq!(elements[index].name, name.trim(), "crossed tags");
            continue;
        }
        let (tag, empty) = match tag.strip_suffix('/') {
            Some(tag) => (tag, true),
            None => (tag, false),
        };
        let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
        let name = &tag[..name_end];
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || "-_:.".contains(c)),
            "name {name:?}"
        );
        let attributes = parse_attributes(&tag[name_end..]);
        if open.is_empty() {
            roots += 1;
        }
        elements.push(Element { name: name.to_string(), attributes, parent: open.last().copied() });
        if !empty {
            open.push(elements.len() - 1);
        }
    }
    assert!(
        open.is_empty(),
        "unclosed elements: {:?}",
        open.iter().map(|&i| &elements[i].name).collect::<Vec<_>>()
    );
    assert_eq!(roots, 1, "one root element");
    elements
}

fn parse_attributes(mut rest: &str) -> BTreeMap<String, String> {
    let mut attributes = BTreeMap::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return attributes;
        }
        let equals = rest.find('=').expect("attribute has a value");
        let name = rest[..equals].trim().to_string();
        let value = rest[equals + 1..].trim_start();
        assert!(value.starts_with('"'), "attribute {name} is not quoted");
        let close = 1 + value[1..].find('"').expect("attribute value closes");
        let raw = &value[1..close];
        assert!(!raw.contains('<'), "raw < in attribute {name}");
        check_text(raw);
        assert!(attributes.insert(name.clone(), unescape(raw)).is_none(), "attribute {name} twice");
        rest = &value[close + 1..];
    }
}

/// Text must not hold a raw `<` (the caller splits on it) nor an `&` that starts no entity.
fn check_text(text: &str) {
    for (i, _) in text.match_indices('&') {
        let entity = &text[i..i + text[i..].find(';').expect("entity ends with ;") + 1];
        let known = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].contains(&entity)
            || entity[1..entity.len() - 1].strip_prefix('#').is_some_and(|n| n.parse::<u32>().is_ok());
        assert!(known, "bad entity {entity}");
    }
}

fn unescape(raw: &str) -> String {
    raw.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#10;", "\n")
        .replace("&amp;", "&")
}

/// `(classname, name)` of every testcase, and whether it has a `<failure>` or `<error>`.
fn testcases(xml: &str) -> Vec<(String, String, &'static str)> {
    let elements = parse_xml(xml);
    assert_eq!(elements[0].name, "testsuites");
    let mut verdicts: BTreeMap<usize, &'static str> = BTreeMap::new();
    for element in &elements {
        if let (Some(parent), "failure" | "error") = (element.parent, element.name.as_str()) {
            verdicts.insert(parent, if element.name == "failure" { "failure" } else { "error" });
        }
    }
    elements
        .iter()
        .enumerate()
        .filter(|(_, e)| e.name == "testcase")
        .map(|(i, e)| {
            let parent = &elements[e.parent.expect("in a testsuite")];
            assert_eq!(parent.name, "testsuite");
            assert_eq!(parent.attributes["name"], e.attributes["classname"]);
            (
                e.attributes["classname"].clone(),
                e.attributes["name"].clone(),
                verdicts.get(&i).copied().unwrap_or("pass"),
            )
        })
        .collect()
}

#[test]
fn xml_checker_rejects_what_is_not_well_formed() {
    parse_xml("<?xml version=\"1.0\"?>\n<a x=\"1 &amp; 2\"><b/><c>t &lt; u</c></a>\n");
    for bad in ["<a><b></a></b>", "<a>", "<a x=1/>", "<a>&nbsp;</a>", "<a/><b/>", "<a x=\"1\" x=\"2\"/>"] {
        assert!(std::panic::catch_unwind(|| parse_xml(bad)).is_err(), "{bad} accepted");
    }
}

// ---------------------------------------------------------------------------------------------
// netsim check

/// A suite of three passing scenarios, one in a subdirectory, and a manifest to ignore.
fn passing_suite(dir: &Path) -> PathBuf {
    let suite = dir.join("suite");
    write(&suite.join("alpha.toml"), &small("alpha", 1));
    write(&suite.join("beta.toml"), &small("beta", 2));
    write(&suite.join("nested/gamma.toml"), &small("gamma", 3));
    write(&suite.join("k8s/pods.yaml"), "apiVersion: v1\nkind: Pod\n");
    write(&suite.join("README.md"), "not a scenario\n");
    suite
}

#[test]
fn check_on_a_directory_passes_with_a_testcase_per_check() {
    let dir = scratch("pass");
    let suite = passing_suite(&dir);
    let (junit, markdown, out) = (dir.join("junit.xml"), dir.join("summary.md"), dir.join("out"));
    let output =
        netsim(&["check", s(&suite), "--junit", s(&junit), "--markdown", s(&markdown), "--out", s(&out)]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("3 scenarios, 6 checks: 6 passed, 0 failed"), "{stdout}");
    assert_eq!(stderr.lines().filter(|l| l.contains(" PASS ")).count(), 3, "a progress line each: {stderr}");
    // Sorted by path: alpha, beta, nested/gamma.
    let order: Vec<usize> = ["alpha.toml", "beta.toml", "nested/gamma.toml"]
        .iter()
        .map(|name| stdout.find(name).unwrap_or_else(|| panic!("{name} in {stdout}")))
        .collect();
    assert!(order.is_sorted(), "{stdout}");

    let cases = testcases(&std::fs::read_to_string(&junit).expect("JUnit written"));
    assert_eq!(cases.len(), 6, "{cases:?}");
    let unique: BTreeSet<_> = cases.iter().map(|(class, name, _)| (class, name)).collect();
    assert_eq!(unique.len(), 6, "unique (classname, name)");
    assert!(cases.iter().all(|(_, _, verdict)| *verdict == "pass"));
    assert!(
        cases.iter().any(|(class, name, _)| class.ends_with("suite/alpha.toml") && name == "delivery_ratio")
    );

    for stem in ["alpha", "beta", "gamma"] {
        let results = json(&out.join(stem).join("results.json"));
        assert_eq!(results["scenario"], stem);
        assert_eq!(results["checks"].as_array().map(Vec::len), Some(2));
    }
    let markdown = std::fs::read_to_string(&markdown).expect("markdown written");
    assert!(markdown.contains("✅ all 6 checks passed"), "{markdown}");
    assert_eq!(markdown.matches("| ✅ |").count(), 6, "{markdown}");
    assert!(!markdown.contains("❌"));
}

#[test]
fn a_failing_check_exits_one_with_a_failure_and_the_reproduce_command() {
    let dir = scratch("fail");
    let suite = dir.join("suite");
    write(&suite.join("good.toml"), &small("good", 1));
    let bad = suite.join("bad.toml");
    write(&bad, &failing("bad", 5));
    let (junit, markdown) = (dir.join("junit.xml"), dir.join("summary.md"));
    let output = netsim(&[
        "check",
        s(&suite),
        "--junit",
        s(&junit),
        "--markdown",
        s(&markdown),
        "--out",
        s(&dir.join("out")),
        "--quiet",
    ]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.is_empty(), "--quiet: no progress: {stderr}");
    let command = format!("netsim run {} --seed 5", s(&bad));
    assert!(stdout.contains(&format!("FAIL {} at-most-half: ", s(&bad))), "{stdout}");
    assert!(stdout.contains(&command), "{stdout}");
    assert!(stdout.contains("2 scenarios, 5 checks: 4 passed, 1 failed"), "{stdout}");

    let xml = std::fs::read_to_string(&junit).expect("JUnit written");
    let cases = testcases(&xml);
    let failures: Vec<_> = cases.iter().filter(|(_, _, verdict)| *verdict == "failure").collect();
    assert_eq!(failures.len(), 1, "{cases:?}");
    assert_eq!((failures[0].0.as_str(), failures[0].1.as_str()), (s(&bad), "at-most-half"));
    assert!(xml.contains("<failure message=\"all traffic: "), "{xml}");
    assert!(xml.contains("not &lt;= 0.5"), "the detail, escaped: {xml}");

    let markdown = std::fs::read_to_string(&markdown).expect("markdown written");
    assert!(markdown.contains("❌ 1 of 5 checks failed"), "{markdown}");
    assert!(markdown.contains("| `at-most-half` | ❌ |"), "{markdown}");
    assert!(markdown.contains(&format!("```sh\n{command}\n```")), "{markdown}");
    assert!(markdown.contains("not &lt;= 0.5"), "{markdown}");
}

#[test]
fn a_broken_scenario_exits_two_with_its_location_and_the_rest_still_run() {
    let dir = scratch("broken");
    let suite = dir.join("suite");
    write(&suite.join("good.toml"), &small("good", 1));
    write(&suite.join("syntax.toml"), "name = \"x\"\nseed = [\n");
    let junit = dir.join("junit.xml");
    let out = dir.join("out");
    let output = netsim(&["check", s(&suite), "--junit", s(&junit), "--out", s(&out)]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("syntax.toml:2:9: error: unclosed array"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stdout.contains("1 scenario did not load"), "{stdout}");
    assert!(out.join("good/results.json").is_file(), "the loadable scenario still ran");
    let cases = testcases(&std::fs::read_to_string(&junit).expect("JUnit written"));
    let errors: Vec<_> = cases.iter().filter(|(_, _, verdict)| *verdict == "error").collect();
    assert_eq!(errors.len(), 1, "{cases:?}");
    assert!(errors[0].0.ends_with("syntax.toml"));
    assert_eq!(cases.len(), 3);
}

#[test]
fn shards_partition_the_suite() {
    let dir = scratch("shards");
    let suite = dir.join("suite");
    for (i, name) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        write(&suite.join(format!("{name}.toml")), &small(name, i as u64));
    }
    let run = |shard: Option<&str>| {
        let label = shard.unwrap_or("all").replace('/', "-of-");
        let junit = dir.join(format!("{label}.xml"));
        let mut args = vec!["check", s(&suite), "--junit", s(&junit), "--quiet"];
        let out = dir.join(format!("out-{label}"));
        args.extend(["--out", s(&out)]);
        if let Some(shard) = shard {
            args.extend(["--shard", shard]);
        }
        let output = netsim(&args);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        let cases: BTreeSet<(String, String)> = testcases(&std::fs::read_to_string(&junit).expect("JUnit"))
            .into_iter()
            .map(|(class, name, _)| (class, name))
            .collect();
        cases
    };
    let all = run(None);
    assert_eq!(all.len(), 10);
    assert_eq!(run(Some("1/1")), all);
    let (first, second) = (run(Some("1/2")), run(Some("2/2")));
    assert!(first.is_disjoint(&second), "{first:?} {second:?}");
    assert_eq!(first.union(&second).cloned().collect::<BTreeSet<_>>(), all);
    // Positions 0, 2, 4 of the sorted suite: a, c, e.
    let scenarios: BTreeSet<&str> = first.iter().map(|(class, _)| &class[class.len() - 6..]).collect();
    assert_eq!(scenarios, BTreeSet::from(["a.toml", "c.toml", "e.toml"]));
    // More shards than scenarios: an empty shard passes.
    let output = netsim(&["check", s(&suite), "--shard", "7/7", "--quiet", "--out", s(&dir.join("out-7"))]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("0 scenarios, 0 checks"));
}

#[test]
fn bad_arguments_exit_two() {
    let dir = scratch("arguments");
    let suite = passing_suite(&dir);
    for (args, expected) in [
        (vec!["--shard", "3/2"], "K must be between 1 and N"),
        (vec!["--shard", "0/2"], "K must be between 1 and N"),
        (vec!["--shard", "1/0"], "N must be at least 1"),
        (vec!["--shard", "half"], "is not a shard"),
        (vec!["--jobs", "0"], "is not a number of threads"),
    ] {
        let mut all = vec!["check", s(&suite)];
        all.extend(&args);
        let output = netsim(&all);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(text(&output.stderr).contains(expected), "{args:?}: {}", text(&output.stderr));
    }
    let missing = netsim(&["check", s(&dir.join("no-such-dir"))]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("no-such-dir: error: cannot read"), "{}", text(&missing.stderr));
    std::fs::create_dir_all(dir.join("empty")).expect("empty directory");
    let empty = netsim(&["check", s(&dir.join("empty"))]);
    assert_eq!(empty.status.code(), Some(2));
    assert!(text(&empty.stderr).contains("no scenario files"), "{}", text(&empty.stderr));
    assert_eq!(netsim(&["check"]).status.code(), Some(2));
}

#[test]
fn check_results_do_not_depend_on_the_number_of_threads() {
    let dir = scratch("jobs");
    let suite = passing_suite(&dir);
    write(&suite.join("delta.toml"), &failing("delta", 4));
    let run = |jobs: &str| {
        let out = dir.join(format!("out-{jobs}"));
        let output = netsim(&["check", s(&suite), "--jobs", jobs, "--out", s(&out)]);
        assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
        let mut results = BTreeMap::new();
        for stem in ["alpha", "beta", "gamma", "delta"] {
            let mut value = json(&out.join(stem).join("results.json"));
            value["wall_ms"] = serde_json::Value::Null;
            results.insert(stem, value);
        }
        // The table without its header and wall-time column (whose widths vary).
        let table: Vec<String> = text(&output.stdout)
            .lines()
            .skip(1)
            .map(|l| l.trim_end_matches(|c: char| c.is_ascii_digit() || " ms".contains(c)).to_string())
            .collect();
        (results, table)
    };
    let (one, table_one) = run("1");
    let (two, table_two) = run("2");
    for stem in one.keys() {
        assert_eq!(one[stem]["trace_hash"], two[stem]["trace_hash"], "{stem}");
    }
    assert_eq!(one, two);
    assert_eq!(table_one, table_two);
}

// ---------------------------------------------------------------------------------------------
// netsim sweep

#[test]
fn sweep_runs_every_seed_with_distinct_traces() {
    let dir = scratch("sweep");
    let scenario = dir.join("small.toml");
    write(&scenario, &small("small", 1));
    let sweep = |jobs: &str| {
        let report = dir.join(format!("sweep-{jobs}.json"));
        let out = dir.join(format!("out-{jobs}"));
        let output = netsim(&[
            "sweep",
            s(&scenario),
            "--seeds",
            "1..4",
            "--jobs",
            jobs,
            "--json",
            s(&report),
            "--out",
            s(&out),
        ]);
        let stdout = text(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{stdout}\n{}", text(&output.stderr));
        assert!(stdout.contains("4 seeds: 4 passed, 0 failed"), "{stdout}");
        for metric in ["packets.delivery_ratio", "latency_ns.p99", "check.delivery_ratio.ratio"] {
            assert!(stdout.lines().any(|l| l.starts_with(metric)), "{metric}: {stdout}");
        }
        assert!(out.join("seed-3/results.json").is_file());
        json(&report)
    };
    let report = sweep("2");
    let rows = report["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 4);
    let seeds: Vec<u64> = rows.iter().map(|r| r["seed"].as_u64().expect("seed")).collect();
    assert_eq!(seeds, [1, 2, 3, 4]);
    let hashes: BTreeSet<&str> = rows.iter().map(|r| r["trace_hash"].as_str().expect("hash")).collect();
    assert_eq!(hashes.len(), 4, "distinct traces: {rows:?}");
    assert!(rows.iter().all(|r| r["passed"] == true && r["checks_passed"] == 2));
    assert_eq!(report["failed"], 0);
    let distribution = |report: &serde_json::Value, metric: &str| {
        report["distributions"]
            .as_array()
            .expect("distributions")
            .iter()
            .find(|d| d["metric"] == metric)
            .cloned()
    };
    let sent = distribution(&report, "packets.sent").expect("packets.sent");
    assert_eq!(sent["samples"], 4);
    assert!(sent["min"].as_f64() <= sent["p50"].as_f64() && sent["p50"].as_f64() <= sent["max"].as_f64());

    // One thread gives the same numbers, wall time aside.
    let strip = |mut report: serde_json::Value| {
        for row in report["rows"].as_array_mut().expect("rows") {
            row["wall_ms"] = serde_json::Value::Null;
        }
        report["distributions"].as_array_mut().expect("distributions").retain(|d| d["metric"] != "wall_ms");
        report
    };
    assert_eq!(strip(sweep("1")), strip(report.clone()));

    // A seed's run is the run `netsim run --seed` does.
    let out = dir.join("run-3");
    let output = netsim(&["run", s(&scenario), "--seed", "3", "--quiet", "--out", s(&out)]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(json(&out.join("results.json"))["trace_hash"], rows[2]["trace_hash"]);
}

#[test]
fn sweep_with_a_failing_check_prints_the_reproduce_command() {
    let dir = scratch("sweep-fail");
    let scenario = dir.join("failing.toml");
    write(&scenario, &failing("failing", 1));
    let report = dir.join("sweep.json");
    let output = netsim(&[
        "sweep",
        s(&scenario),
        "--seeds",
        "7..9",
        "--json",
        s(&report),
        "--out",
        s(&dir.join("out")),
        "--quiet",
    ]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{}", text(&output.stderr));
    for seed in 7..=9 {
        assert!(stdout.contains(&format!("netsim run {} --seed {seed}", s(&scenario))), "{stdout}");
        assert!(stdout.contains(&format!("FAIL seed {seed} at-most-half: ")), "{stdout}");
    }
    assert!(stdout.contains("3 seeds: 0 passed, 3 failed"), "{stdout}");
    assert_eq!(json(&report)["failing_seeds"], serde_json::json!([7, 8, 9]));
}

#[test]
fn sweep_takes_one_seed_and_shards() {
    let dir = scratch("sweep-shard");
    let scenario = dir.join("small.toml");
    write(&scenario, &small("small", 1));
    let seeds = |range: &str, shard: Option<&str>| {
        let report = dir.join("sweep.json");
        let mut args = vec!["sweep", s(&scenario), "--seeds", range, "--json", s(&report), "--quiet"];
        let out = dir.join("out");
        args.extend(["--out", s(&out)]);
        if let Some(shard) = shard {
            args.extend(["--shard", shard]);
        }
        let output = netsim(&args);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        let rows: Vec<u64> = json(&report)["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r["seed"].as_u64().expect("seed"))
            .collect();
        rows
    };
    assert_eq!(seeds("3", None), [3]);
    assert_eq!(seeds("10..14", Some("1/2")), [10, 12, 14]);
    assert_eq!(seeds("10..14", Some("2/2")), [11, 13]);
}

#[test]
fn sweep_rejects_bad_input() {
    let dir = scratch("sweep-bad");
    let scenario = dir.join("small.toml");
    write(&scenario, &small("small", 1));
    for (range, expected) in [
        ("5..2", "the first seed 5 is greater than the last 2"),
        ("1..x", "is not a seed range"),
        ("", "is not a seed range"),
    ] {
        let output = netsim(&["sweep", s(&scenario), "--seeds", range]);
        assert_eq!(output.status.code(), Some(2), "{range}");
        assert!(text(&output.stderr).contains(expected), "{range}: {}", text(&output.stderr));
    }
    assert_eq!(netsim(&["sweep", s(&scenario)]).status.code(), Some(2), "--seeds is required");
    assert_eq!(netsim(&["sweep", s(&scenario), "--seeds", "1..2", "--shard", "3/2"]).status.code(), Some(2));
    let broken = dir.join("broken.toml");
    write(&broken, "name = \"x\"\nseed = [\n");
    let output = netsim(&["sweep", s(&broken), "--seeds", "1..2"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("broken.toml:2:9: error:"), "{}", text(&output.stderr));
}
