//! The JUnit XML report of `netsim check`, written by hand.
//!
//! One `<testsuite>` per scenario (named by its path), one `<testcase>` per check (classname:
//! the scenario's path; name: the check's name, made unique within the scenario). A failing
//! check has a `<failure>` with its detail and the command that reproduces it (and, with
//! `--minimize`, the command that runs its minimal reproduction); a scenario that
//! does not load is one `<testcase name="load">` with an `<error>`. Every testcase's
//! `<system-out>` lists the check's metrics. A testcase's `time` is its run's wall time shared
//! evenly among the run's checks (the checks are judged from one run), so totals add up.

use std::collections::BTreeSet;

use crate::suite::{Case, Outcome, reproduce};

/// The JUnit XML document for `cases`.
pub fn render(cases: &[Case]) -> String {
    let mut suites = String::new();
    let (mut tests, mut failures, mut errors, mut seconds) = (0, 0, 0, 0.0);
    for case in cases {
        let suite = testsuite(case);
        tests += suite.tests;
        failures += suite.failures;
        errors += suite.errors;
        seconds += suite.seconds;
        suites += &suite.xml;
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"netsim check\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{seconds:.3}\">\n{suites}</testsuites>\n"
    )
}

struct Suite {
    xml: String,
    tests: usize,
    failures: usize,
    errors: usize,
    seconds: f64,
}

fn testsuite(case: &Case) -> Suite {
    let path = attribute(&case.label());
    let mut names = BTreeSet::new();
    let mut cases = String::new();
    let mut properties = String::new();
    let (mut tests, mut failures, mut errors, mut seconds) = (0, 0, 0, 0.0);
    match &case.outcome {
        Outcome::Invalid(message) => {
            let first = message.lines().next().unwrap_or("");
            cases += &format!(
                "    <testcase classname=\"{path}\" name=\"{}\" time=\"0.000\">\n      <error message=\"{}\" type=\"invalid_scenario\">{}</error>\n    </testcase>\n",
                attribute(&unique(&mut names, "load")),
                attribute(first),
                text(message)
            );
            tests += 1;
            errors += 1;
        }
        Outcome::Ran { results, written } => {
            seconds = results.wall_ms as f64 / 1000.0;
            let mut command = reproduce(&case.path, results.seed);
            let minimized = case.minimized.as_ref().and_then(|m| m.as_ref().ok());
            for (name, value) in [
                ("seed", results.seed.to_string()),
                ("trace_hash", results.trace_hash.clone()),
                ("events", results.events.to_string()),
                ("packets_sent", results.packets.sent.to_string()),
                ("packets_delivered", results.packets.delivered.to_string()),
                ("reproduce", command.clone()),
            ] {
                properties += &format!("      <property name=\"{name}\" value=\"{}\"/>\n", attribute(&value));
            }
            if let Some(minimized) = minimized {
                let file = minimized.file.display().to_string();
                properties +=
                    &format!("      <property name=\"minimized\" value=\"{}\"/>\n", attribute(&file));
                command += &format!("\nminimal reproduction: {}", minimized.command());
            }
            let share = seconds / results.checks.len().max(1) as f64;
            for check in &results.checks {
                let name = unique(&mut names, &check.name);
                let mut out = format!("kind: {}\n", check.kind);
                for (metric, value) in &check.metrics {
                    out += &format!("{metric}: {value}\n");
                }
                let failure = if check.passed {
                    String::new()
                } else {
                    failures += 1;
                    format!(
                        "      <failure message=\"{}\" type=\"{}\">{}</failure>\n",
                        attribute(&check.detail),
                        attribute(check.kind),
                        text(&format!("{}\nreproduce: {command}", check.detail))
                    )
                };
                cases += &format!(
                    "    <testcase classname=\"{path}\" name=\"{}\" time=\"{share:.3}\">\n{failure}      <system-out>{}</system-out>\n    </testcase>\n",
                    attribute(&name),
                    text(&out)
                );
                tests += 1;
            }
            if let Err(error) = written {
                cases += &format!(
                    "    <testcase classname=\"{path}\" name=\"{}\" time=\"0.000\">\n      <error message=\"{}\" type=\"io\">{}</error>\n    </testcase>\n",
                    attribute(&unique(&mut names, "results.json")),
                    attribute(error),
                    text(error)
                );
                tests += 1;
                errors += 1;
            }
        }
    }
    let properties = if properties.is_empty() {
        String::new()
    } else {
        format!("    <properties>\n{properties}    </properties>\n")
    };
    let xml = format!(
        "  <testsuite name=\"{path}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"0\" time=\"{seconds:.3}\">\n{properties}{cases}  </testsuite>\n"
    );
    Suite { xml, tests, failures, errors, seconds }
}

/// `name`, or `name (2)`, `name (3)`, ... if already taken; records it as taken.
fn unique(taken: &mut BTreeSet<String>, name: &str) -> String {
    let mut candidate = name.to_string();
    let mut n = 1;
    while taken.contains(&candidate) {
        n += 1;
        candidate = format!("{name} ({n})");
    }
    taken.insert(candidate.clone());
    candidate
}

/// Escapes character data: the five XML specials, and characters XML 1.0 cannot carry
/// (control characters other than tab, line feed and carriage return) become U+FFFD.
pub fn text(raw: &str) -> String {
    escape(raw, false)
}

/// Escapes an attribute value: as [`text`], and line breaks and tabs as character references,
/// which attribute normalisation would otherwise turn into spaces.
pub fn attribute(raw: &str) -> String {
    escape(raw, true)
}

fn escape(raw: &str, in_attribute: bool) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out += "&amp;",
            '<' => out += "&lt;",
            '>' => out += "&gt;",
            '"' => out += "&quot;",
            '\'' => out += "&apos;",
            '\r' => out += "&#13;",
            '\n' if in_attribute => out += "&#10;",
            '\t' if in_attribute => out += "&#9;",
            '\n' | '\t' => out.push(c),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_specials_and_control_characters() {
        assert_eq!(text("a<b & \"c\" 'd' >e"), "a&lt;b &amp; &quot;c&quot; &apos;d&apos; &gt;e");
        assert_eq!(text("line\nnext\ttab\u{1}"), "line\nnext\ttab\u{fffd}");
        assert_eq!(attribute("line\nnext\r\t"), "line&#10;next&#13;&#9;");
    }

    #[test]
    fn names_are_made_unique() {
        let mut taken = BTreeSet::new();
        assert_eq!(unique(&mut taken, "x"), "x");
        assert_eq!(unique(&mut taken, "x"), "x (2)");
        assert_eq!(unique(&mut taken, "x"), "x (3)");
        assert_eq!(unique(&mut taken, "x (2)"), "x (2) (2)");
    }
}
