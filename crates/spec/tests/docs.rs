//! The repository's documentation holds: every YAML example in it is a
//! file the real parsers accept, every relative link points at a file of
//! the repository, and nothing names the shared directory beside the
//! checkout that only gantry's builders have (users never do).
//!
//! A ```yaml block is parsed as what it holds: a pipeline file when it has
//! `stages:`, a buildspec when `gantry_spec::buildspec::is_buildspec` says
//! so, else a file of environments and services. A block that is
//! deliberately a piece of a file (one action, a `policy:`) says so with
//! `<!-- fragment -->` on the line before its fence, and is skipped.

use std::path::{Path, PathBuf};

use gantry_spec::SpecError;

/// The marker, on the line before a fence, of a block that is no whole
/// file.
const FRAGMENT: &str = "<!-- fragment -->";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The markdown files whose examples and links are checked, relative to
/// the root, sorted: the README, ARCHITECTURE.md, `docs/*.md` and every
/// `.md` under `examples/`.
fn markdown_files(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, relative: &str, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = format!("{relative}/{name}");
            if entry.path().is_dir() {
                if !name.starts_with('.') && name != "target" {
                    walk(&entry.path(), &path, out);
                }
            } else if name.ends_with(".md") {
                out.push(path);
            }
        }
    }
    let mut files = vec!["README.md".to_string(), "ARCHITECTURE.md".to_string()];
    if let Ok(entries) = std::fs::read_dir(root.join("docs")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".md") {
                files.push(format!("docs/{name}"));
            }
        }
    }
    walk(&root.join("examples"), "examples", &mut files);
    files.sort();
    files
}

/// A fenced code block of a markdown file.
struct Block {
    /// The fence's info string (`yaml`).
    info: String,
    /// The 1-based line of the opening fence.
    line: usize,
    /// Whether the line before the fence marks it as a fragment.
    fragment: bool,
    /// Its lines, without the fence's indentation.
    text: String,
}

/// The fenced blocks of `markdown` (``` or ~~~, possibly indented in a
/// list item).
fn blocks(markdown: &str) -> Vec<Block> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let trimmed = lines[i].trim_start();
        let indent = lines[i].len() - trimmed.len();
        let fence_char = trimmed.chars().next().filter(|c| *c == '`' || *c == '~');
        let fence_len = fence_char.map_or(0, |c| trimmed.chars().take_while(|x| *x == c).count());
        let Some(fence_char) = fence_char.filter(|_| fence_len >= 3) else {
            i += 1;
            continue;
        };
        let fragment = lines[..i]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| l.trim() == FRAGMENT);
        let mut block = Block {
            info: trimmed[fence_len..].trim().to_string(),
            line: i + 1,
            fragment,
            text: String::new(),
        };
        i += 1;
        while i < lines.len() {
            let line = lines[i];
            let content = line.trim_start();
            if content.len() >= fence_len
                && content.chars().all(|c| c == fence_char)
                && line.len() - content.len() <= indent.max(3)
            {
                break;
            }
            let strip = line.len() - content.len();
            block.text.push_str(&line[strip.min(indent)..]);
            block.text.push('\n');
            i += 1;
        }
        out.push(block);
        i += 1;
    }
    out
}

/// What a YAML example is, by its content.
fn kind(text: &str) -> &'static str {
    if text.lines().any(|l| l.starts_with("stages:")) {
        "pipeline file"
    } else if gantry_spec::buildspec::is_buildspec(text) == Some(true) {
        "buildspec"
    } else {
        "environments and services"
    }
}

/// Every error of parsing `text` as `kind`.
fn parse(kind: &str, file: &str, text: &str) -> Vec<SpecError> {
    let result = match kind {
        "pipeline file" => gantry_spec::pipeline::parse_pipeline(file, text).map(drop),
        "buildspec" => gantry_spec::buildspec::parse_buildspec(file, text).map(drop),
        _ => gantry_spec::parse_document(file, text).map(drop),
    };
    result.err().unwrap_or_default()
}

#[test]
fn every_yaml_example_in_the_docs_is_accepted_by_the_real_parser() {
    let root = root();
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in markdown_files(&root) {
        let Ok(markdown) = std::fs::read_to_string(root.join(&file)) else {
            continue;
        };
        for block in blocks(&markdown) {
            if !matches!(block.info.as_str(), "yaml" | "yml") || block.fragment {
                continue;
            }
            checked += 1;
            let kind = kind(&block.text);
            for error in parse(kind, &file, &block.text) {
                // The block's first line is the one after its fence.
                failures.push(format!(
                    "{file}:{}:{}: {} (the {kind} example at {file}:{})",
                    block.line + error.location.line,
                    error.location.col,
                    error.message,
                    block.line
                ));
            }
        }
    }
    assert!(
        checked > 0,
        "no ```yaml example found: is the scanner broken?"
    );
    assert!(
        failures.is_empty(),
        "YAML examples the parser refuses (fix them, or put {FRAGMENT} on the line before \
         the fence of one that is only a piece of a file):\n{}",
        failures.join("\n")
    );
}

/// The targets of the markdown links of `markdown` outside code:
/// `[text](target)`, `![alt](target)` and `[label]: target`, each with
/// its 1-based line.
fn links(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let fences: Vec<(usize, usize)> = blocks(markdown)
        .iter()
        .map(|b| (b.line, b.line + b.text.lines().count() + 1))
        .collect();
    for (i, line) in markdown.lines().enumerate() {
        let number = i + 1;
        if fences.iter().any(|(a, b)| (*a..=*b).contains(&number)) {
            continue;
        }
        // Code spans hold text, not links.
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(n, _)| n % 2 == 0)
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .join(" ");
        if let Some(rest) = prose.trim_start().strip_prefix('[')
            && let Some((_, target)) = rest.split_once("]: ")
        {
            out.push((number, target.trim().to_string()));
            continue;
        }
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].trim();
            let target = target
                .strip_prefix('<')
                .and_then(|t| t.split_once('>'))
                .map_or(target, |(t, _)| t);
            // A title after the target: [x](path "title").
            let target = target.split_whitespace().next().unwrap_or("");
            out.push((number, target.to_string()));
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn the_scanner_finds_links_outside_code_and_blocks_with_their_fragment_mark() {
    let markdown = "See [a](a.md \"A\") and `[b](b.md)`.\n[c]: c.md\n\n<!-- fragment -->\n\
                    ```yaml\nx: [y](z)\n```\n  ```yml\n  k: v\n  ```\n";
    assert_eq!(
        links(markdown),
        [(1, "a.md".to_string()), (2, "c.md".to_string())]
    );
    let found: Vec<(String, usize, bool, String)> = blocks(markdown)
        .into_iter()
        .map(|b| (b.info, b.line, b.fragment, b.text))
        .collect();
    assert_eq!(
        found,
        [
            ("yaml".to_string(), 5, true, "x: [y](z)\n".to_string()),
            ("yml".to_string(), 8, false, "k: v\n".to_string())
        ]
    );
}

#[test]
fn every_relative_link_in_the_docs_points_at_a_file_of_the_repository() {
    let root = root();
    let mut broken = Vec::new();
    for file in markdown_files(&root) {
        let Ok(markdown) = std::fs::read_to_string(root.join(&file)) else {
            continue;
        };
        let dir = root.join(&file).parent().unwrap().to_path_buf();
        for (line, target) in links(&markdown) {
            let external = ["http://", "https://", "mailto:"]
                .iter()
                .any(|scheme| target.starts_with(scheme));
            if external || target.is_empty() || target.starts_with('#') {
                continue;
            }
            let path = target.split(['#', '?']).next().unwrap_or("");
            let resolved = match path.strip_prefix('/') {
                Some(from_root) => root.join(from_root),
                None => dir.join(path),
            };
            let inside = resolved
                .canonicalize()
                .is_ok_and(|resolved| resolved.starts_with(&root));
            if !inside {
                broken.push(format!("{file}:{line}: {target}"));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links to no file of the repository (a link may leave it only as http(s)://):\n{}",
        broken.join("\n")
    );
}

#[test]
fn no_file_of_the_repository_points_at_the_builders_shared_directory() {
    let root = root();
    // Spelled in two pieces, so that this file does not name it.
    let shared = format!("{}/shared", "..");
    let listed = std::process::Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(&root)
        .output()
        .expect("git ls-files (the check reads the repository's files)");
    assert!(listed.status.success(), "git ls-files failed");
    let mut mentions = Vec::new();
    for file in String::from_utf8_lossy(&listed.stdout).split('\0') {
        // The CI script runs the builders' conformance suites from there.
        if file.is_empty() || file == ".ci/run" {
            continue;
        }
        let Ok(bytes) = std::fs::read(root.join(file)) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        for (i, line) in text.lines().enumerate() {
            if line.contains(&shared) {
                mentions.push(format!("{file}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    assert!(
        mentions.is_empty(),
        "{shared} is not part of the repository (users never have it); move what is \
         needed into the repository (docs/) and point there:\n{}",
        mentions.join("\n")
    );
}
