//! The book cannot rot silently: every chapter is linked from SUMMARY.md, and every
//! `{{#include}}` names a file (and anchor) that exists.

use netsim_tests::root;

fn chapters() -> Vec<String> {
    let summary = std::fs::read_to_string(root().join("book/src/SUMMARY.md")).expect("SUMMARY.md");
    summary
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(target, _)| target.to_string()))
        .collect()
}

#[test]
fn every_chapter_is_linked_and_exists() {
    let linked = chapters();
    for chapter in &linked {
        assert!(root().join("book/src").join(chapter).is_file(), "SUMMARY.md links missing {chapter}");
    }
    for entry in std::fs::read_dir(root().join("book/src")).expect("book/src") {
        let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") && name != "SUMMARY.md" {
            assert!(linked.contains(&name), "{name} is not linked from SUMMARY.md");
        }
    }
}

#[test]
fn every_include_resolves() {
    let mut includes = 0;
    for chapter in chapters() {
        let path = root().join("book/src").join(&chapter);
        let text = std::fs::read_to_string(&path).expect("chapter");
        for (_, rest) in text.match_indices("{{#include ").map(|(i, _)| ((), &text[i + 11..])) {
            let spec = rest.split("}}").next().expect("closed include").trim();
            let (file, selector) = spec.split_once(':').unwrap_or((spec, ""));
            let target = path.parent().expect("in a directory").join(file);
            assert!(target.is_file(), "{chapter}: include of missing {}", target.display());
            let anchor = selector.split(':').next().unwrap_or("");
            if !anchor.is_empty() && !anchor.chars().all(|c| c.is_ascii_digit()) {
                let source = std::fs::read_to_string(&target).expect("included file");
                for marker in [format!("ANCHOR: {anchor}"), format!("ANCHOR_END: {anchor}")] {
                    assert!(source.contains(&marker), "{chapter}: {} has no `{marker}`", target.display());
                }
            }
            includes += 1;
        }
    }
    assert!(includes >= 4, "only {includes} includes found: is the parser broken?");
}
