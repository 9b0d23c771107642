//! The report as a list of blocks, written as markdown (`index.md`) and as one self-contained
//! HTML page (`index.html`: inline CSS, the SVG plots inlined, no links to fetch).
//!
//! Text in blocks may use three inline markups, which both writers understand: `` `code` ``,
//! `**bold**` and `[text](target)`.

use std::fmt::Write as _;

/// One block of the report.
#[derive(Clone, Debug)]
pub enum Block {
    /// A heading of level 2 or 3 (the title is level 1).
    Heading(u8, String),
    /// A paragraph.
    Para(String),
    /// A bulleted list.
    List(Vec<String>),
    /// A table: header and rows (cells are inline text).
    Table(Vec<String>, Vec<Vec<String>>),
    /// A plot: file stem, caption, and the SVG text to inline.
    Figure {
        /// `NAME` of `NAME.svg` and `NAME.png`.
        name: String,
        /// What it shows.
        caption: String,
        /// The SVG itself.
        svg: String,
    },
    /// A shell command or other preformatted text.
    Code(String),
    /// An HTML comment in the markdown only (mdBook's `ANCHOR:` markers for the book's
    /// includes); nothing in the HTML page.
    Marker(String),
}

/// The whole report.
#[derive(Clone, Debug, Default)]
pub struct Document {
    /// Title (level 1).
    pub title: String,
    /// Every reproducible block.
    pub blocks: Vec<Block>,
    /// The wall-time section: the only part that differs between two runs.
    pub wall: Vec<Block>,
}

/// The heading of the wall-time section, in both files.
pub const WALL_HEADING: &str = "Wall time";

/// The markdown text.
pub fn markdown(document: &Document) -> String {
    let mut out = format!("# {}\n\n", document.title);
    for block in &document.blocks {
        markdown_block(&mut out, block);
    }
    out.push_str("---\n\n");
    markdown_block(&mut out, &Block::Heading(2, WALL_HEADING.into()));
    for block in &document.wall {
        markdown_block(&mut out, block);
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

fn markdown_block(out: &mut String, block: &Block) {
    match block {
        Block::Heading(level, text) => {
            let _ = writeln!(out, "{} {text}\n", "#".repeat(usize::from(*level)));
        }
        Block::Para(text) => {
            let _ = writeln!(out, "{text}\n");
        }
        Block::List(items) => {
            for item in items {
                let _ = writeln!(out, "- {item}");
            }
            out.push('\n');
        }
        Block::Table(header, rows) => {
            let cell = |text: &String| text.replace('|', "\\|");
            let _ = writeln!(out, "| {} |", header.iter().map(cell).collect::<Vec<_>>().join(" | "));
            let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
            for row in rows {
                let _ = writeln!(out, "| {} |", row.iter().map(cell).collect::<Vec<_>>().join(" | "));
            }
            out.push('\n');
        }
        Block::Figure { name, caption, .. } => {
            let _ = writeln!(out, "![{caption}]({name}.svg)\n\n*{caption}* ([PNG]({name}.png))\n");
        }
        Block::Code(text) => {
            let _ = writeln!(out, "```sh\n{text}\n```\n");
        }
        Block::Marker(text) => {
            let _ = writeln!(out, "<!-- {text} -->\n");
        }
    }
}

const STYLE: &str = "body{font-family:'DejaVu Sans',Verdana,sans-serif;max-width:72rem;margin:2rem auto;\
padding:0 1rem;color:#222;line-height:1.45}h1,h2,h3{line-height:1.2}h2{border-bottom:1px solid #ccc;\
padding-bottom:.2rem;margin-top:2.2rem}table{border-collapse:collapse;margin:1rem 0;font-size:.92rem}\
th,td{border:1px solid #ccc;padding:.3rem .55rem;text-align:left;vertical-align:top}th{background:#f3f3f3}\
tr:nth-child(even) td{background:#fafafa}code{background:#f3f3f3;padding:0 .2rem;border-radius:3px}\
pre{background:#f6f6f6;padding:.7rem;overflow-x:auto}figure{margin:1.2rem 0}figure svg{max-width:100%;\
height:auto;border:1px solid #eee}figcaption{font-size:.9rem;color:#555}#wall-time{color:#666;\
border-top:2px dashed #bbb;margin-top:3rem}";

/// The HTML page.
pub fn html(document: &Document) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n<main>\n<h1>{}</h1>\n",
        escape(&document.title),
        inline(&document.title)
    );
    for block in &document.blocks {
        html_block(&mut out, block);
    }
    out.push_str("</main>\n<section id=\"wall-time\">\n");
    html_block(&mut out, &Block::Heading(2, WALL_HEADING.into()));
    for block in &document.wall {
        html_block(&mut out, block);
    }
    out.push_str("</section>\n</body>\n</html>\n");
    out
}

fn html_block(out: &mut String, block: &Block) {
    match block {
        Block::Heading(level, text) => {
            let _ = writeln!(out, "<h{level} id=\"{}\">{}</h{level}>", anchor(text), inline(text));
        }
        Block::Para(text) => {
            let _ = writeln!(out, "<p>{}</p>", inline(text));
        }
        Block::List(items) => {
            out.push_str("<ul>\n");
            for item in items {
                let _ = writeln!(out, "<li>{}</li>", inline(item));
            }
            out.push_str("</ul>\n");
        }
        Block::Table(header, rows) => {
            out.push_str("<table>\n<thead><tr>");
            for cell in header {
                let _ = write!(out, "<th>{}</th>", inline(cell));
            }
            out.push_str("</tr></thead>\n<tbody>\n");
            for row in rows {
                out.push_str("<tr>");
                for cell in row {
                    let _ = write!(out, "<td>{}</td>", inline(cell));
                }
                out.push_str("</tr>\n");
            }
            out.push_str("</tbody>\n</table>\n");
        }
        Block::Figure { name, caption, svg } => {
            let svg = svg.trim_start_matches(|c: char| c != '<');
            let svg = match svg.strip_prefix("<?xml") {
                Some(rest) => rest.split_once("?>").map_or(rest, |(_, body)| body).trim_start(),
                None => svg,
            };
            let _ = writeln!(
                out,
                "<figure id=\"{name}\">\n{svg}\n<figcaption>{}</figcaption>\n</figure>",
                inline(caption)
            );
        }
        Block::Code(text) => {
            let _ = writeln!(out, "<pre><code>{}</code></pre>", escape(text));
        }
        Block::Marker(_) => {}
    }
}

/// `text` with HTML's special characters escaped.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A heading's anchor: lower case, words joined by dashes.
fn anchor(text: &str) -> String {
    let mut anchor = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            anchor.push(c.to_ascii_lowercase());
        } else if !anchor.ends_with('-') && !anchor.is_empty() {
            anchor.push('-');
        }
    }
    anchor.trim_end_matches('-').to_string()
}

/// Inline markup to HTML: `code`, **bold**, [text](target); everything else escaped.
pub fn inline(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('`')
            && let Some(end) = after.find('`')
        {
            let _ = write!(out, "<code>{}</code>", escape(&after[..end]));
            rest = &after[end + 1..];
            continue;
        }
        if let Some(after) = rest.strip_prefix("**")
            && let Some(end) = after.find("**")
        {
            let _ = write!(out, "<strong>{}</strong>", inline(&after[..end]));
            rest = &after[end + 2..];
            continue;
        }
        if let Some(after) = rest.strip_prefix('[')
            && let Some((label, tail)) = after.split_once("](")
            && let Some((target, tail)) = tail.split_once(')')
            && !label.contains('[')
        {
            let _ = write!(out, "<a href=\"{}\">{}</a>", escape(target), inline(label));
            rest = tail;
            continue;
        }
        // `rest` is not empty: its first character exists.
        let first = rest.chars().next().map_or(1, char::len_utf8);
        let next = rest[first..].find(['`', '*', '[']).map_or(rest.len(), |i| i + first);
        out.push_str(&escape(&rest[..next]));
        rest = &rest[next..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_markup() {
        assert_eq!(
            inline("a `b<c` **d** [e](f.svg) 1 * 2"),
            "a <code>b&lt;c</code> <strong>d</strong> <a href=\"f.svg\">e</a> 1 * 2"
        );
        assert_eq!(anchor("Faults: loss & convergence"), "faults-loss-convergence");
    }

    #[test]
    fn the_wall_section_comes_last_in_both() {
        let document = Document {
            title: "t".into(),
            blocks: vec![Block::Table(vec!["a|b".into()], vec![vec!["1".into()]])],
            wall: vec![Block::List(vec!["3 ms wall".into()])],
        };
        let md = markdown(&document);
        assert!(md.contains("| a\\|b |"), "{md}");
        assert!(md.ends_with("## Wall time\n\n- 3 ms wall\n"), "{md}");
        let html = html(&document);
        assert!(
            html.contains("<section id=\"wall-time\">\n<h2 id=\"wall-time\">Wall time</h2>\n<ul>"),
            "{html}"
        );
    }
}
