//! `netsim report`: the files it writes, their reproducibility (byte-identical apart from the
//! wall-time section), a reviewed snapshot of index.md, and index.html as a real browser sees
//! it (headless Chromium: required under CI, which installs it; see .ci/run).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The petstore on 20 hosts for 60 ms at a fiftieth of its rate, with a spine failure; one
/// MTU in `[cost]` so that the goodput runs stay few.
fn small_petstore() -> String {
    let k8s = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/k8s");
    let k8s = k8s.canonicalize().expect("scenarios/k8s");
    format!(
        r#"name = "petstore-small"
description = "the petstore, small and short, for the report's tests"
seed = 7
duration = "60ms"
dataplane = "overlay"
manifests = ["{0}/petstore.yaml", "{0}/petstore-policies.yaml"]
isolation = "network-policy"

[fabric]
hosts = 20
leaves = 4
spines = 2
detection_delay = "5ms"

[cost]
mtus = [1500]

[[traffic]]
name = "bps-to-frontend"
from = "pods:name=bps"
to = "service:frontend"
port = 3000
pattern = "poisson"
rate = "8k/s"
size = "600B"
flows = 40
reply_size = "1200B"

[[traffic]]
name = "frontend-to-redis"
from = "pods:name=frontend"
to = "service:redismaster"
port = 6379
rate = "2k/s"
size = "200B"
flows = 8
reply_size = "400B"

[[traffic]]
name = "bps-to-redis-denied"
from = "pods:name=bps"
to = "service:redismaster"
port = 6379
rate = "500/s"
flows = 4

[[event]]
at = "20ms"
action = "fail"
switch = "spine-1"

[[event]]
at = "40ms"
action = "recover"
switch = "spine-1"

[[check]]
kind = "delivery_ratio"
traffic = "bps-to-frontend"
min = 0.9

[[check]]
kind = "delivery_ratio"
name = "bps-cannot-reach-redis"
traffic = "bps-to-redis-denied"
max = 0.0
"#,
        k8s.display()
    )
}

/// Runs the report twice into `first` and `second` (once per process), in a scratch directory.
fn reports() -> &'static (PathBuf, PathBuf) {
    static REPORTS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    REPORTS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        std::fs::write(dir.join("small.toml"), small_petstore()).expect("write scenario");
        for out in ["first", "second"] {
            let output = Command::new(env!("CARGO_BIN_EXE_netsim"))
                .args(["report", "small.toml", "--out", out, "--seeds", "2", "--sizes", "8,16", "--quiet"])
                .current_dir(&dir)
                .output()
                .expect("the netsim binary runs");
            assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
        }
        (dir.join("first"), dir.join("second"))
    })
}

/// A file's text before `marker` (the wall-time section).
fn before(path: &Path, marker: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (head, _) = text.split_once(marker).unwrap_or_else(|| panic!("{} has no {marker:?}", path.display()));
    head.to_string()
}

#[test]
fn report_writes_markdown_html_and_plots() {
    let (first, _) = reports();
    let md = std::fs::read_to_string(first.join("index.md")).expect("index.md");
    let html = std::fs::read_to_string(first.join("index.html")).expect("index.html");
    let mut svgs = Vec::new();
    for entry in std::fs::read_dir(first).expect("report directory") {
        let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".svg") {
            svgs.push(stem.to_string());
        }
    }
    svgs.sort();
    assert!(svgs.len() >= 4, "only {svgs:?}");
    for stem in &svgs {
        let png = std::fs::read(first.join(format!("{stem}.png"))).expect("a PNG beside each SVG");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{stem}.png is a PNG");
        assert!(md.contains(&format!("]({stem}.svg)")), "index.md shows {stem}.svg");
        assert!(html.contains(&format!("<figure id=\"{stem}\">\n<svg")), "index.html inlines {stem}.svg");
    }
    // Self-contained: no stylesheet, script or image is fetched.
    for fetch in ["<link", "<script", "<img", "src="] {
        assert!(!html.contains(fetch), "index.html contains {fetch}");
    }
    for section in
        ["Summary", "Encapsulation overhead and goodput", "Faults: convergence and loss", "Wall time"]
    {
        assert!(md.contains(&format!("## {section}\n")), "index.md lacks {section}");
    }
    assert!(md.contains("| overlay |") && md.contains("calico"), "both data planes");
}

#[test]
fn two_runs_differ_only_in_the_wall_time_section() {
    let (first, second) = reports();
    assert_eq!(
        before(&first.join("index.md"), "## Wall time"),
        before(&second.join("index.md"), "## Wall time")
    );
    assert_eq!(
        before(&first.join("index.html"), "<section id=\"wall-time\">"),
        before(&second.join("index.html"), "<section id=\"wall-time\">")
    );
    // Every line of the wall-time section says so (CI diffs reports with `grep -v wall`).
    let md = std::fs::read_to_string(first.join("index.md")).expect("index.md");
    let (_, wall) = md.split_once("## Wall time").expect("a wall-time section");
    for line in wall.lines().filter(|l| !l.trim().is_empty()) {
        assert!(line.to_lowercase().contains("wall"), "{line:?} in the wall-time section does not say wall");
    }
    // Plots are byte-identical too.
    for entry in std::fs::read_dir(first).expect("report directory") {
        let name = entry.expect("entry").file_name();
        if name.to_string_lossy().ends_with(".svg") || name.to_string_lossy().ends_with(".png") {
            let a = std::fs::read(first.join(&name)).expect("first");
            let b = std::fs::read(second.join(&name)).expect("second");
            assert!(a == b, "{} differs between two runs", name.to_string_lossy());
        }
    }
}

#[test]
fn markdown_snapshot() {
    let (first, _) = reports();
    insta::assert_snapshot!(before(&first.join("index.md"), "## Wall time"));
}

/// Renders index.html in headless Chromium and checks the DOM it builds: every plot is an
/// SVG element with drawing in it, every table has rows. Without Chromium the check is skipped,
/// except under CI, which must install it.
#[test]
fn html_renders_in_a_browser() {
    let (first, _) = reports();
    let browser = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()));
    let Some(browser) = browser else {
        assert!(std::env::var_os("CI").is_none(), "CI must install chromium (see .ci/run)");
        eprintln!("chromium is not installed: skipping the browser check");
        return;
    };
    let page = first.join("index.html").canonicalize().expect("index.html");
    let profile = first.parent().expect("scratch directory").join("chromium-profile");
    let output = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(output.status.success(), "chromium failed: {}", String::from_utf8_lossy(&output.stderr));
    let dom = String::from_utf8_lossy(&output.stdout);
    let svgs = dom.matches("<svg").count();
    let figures = dom.matches("<figure").count();
    let tables = dom.matches("<table").count();
    assert!(svgs >= 4 && svgs == figures, "{svgs} SVG elements in {figures} figures");
    assert!(tables >= 8, "only {tables} tables in the DOM");
    assert!(dom.matches("<tr>").count() > 60, "tables without rows");
    // The plots were parsed as SVG with their drawing (text and lines), not as text.
    assert!(dom.matches("<polyline").count() + dom.matches("<path").count() >= 10, "plots without lines");
    assert!(dom.contains("<h2 id=\"summary\">Summary</h2>"), "the summary heading");
}
