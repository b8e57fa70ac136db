//! Data-driven tests: every file under `tests/fixtures/pipeline/`,
//! `tests/fixtures/document/` and `tests/fixtures/buildspec/` is parsed (with
//! `parse_pipeline`, `parse_document` and `parse_buildspec`), and the result
//! is compared with the checked-in `<file>.expected` beside it: the exact
//! `FILE:LINE:COL: message` lines for an invalid file, or the parsed value
//! (and warnings) for a valid one.
//!
//! After an intended change, regenerate the expectations with
//! `UPDATE_EXPECT=1 cargo test -p gantry-spec --test fixtures` and review the
//! diff before committing it.

mod common;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use common::lines;
use gantry_spec::buildspec::parse_buildspec;
use gantry_spec::parse_document;
use gantry_spec::pipeline::parse_pipeline;

fn fixture_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind)
}

/// The fixture files of one kind, sorted, without their `.expected` files.
fn fixtures(kind: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(fixture_dir(kind))
        .expect("fixture directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            )
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {kind}");
    files
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("?")
        .to_owned()
}

fn render_pipeline(name: &str, text: &str) -> String {
    match parse_pipeline(name, text) {
        Ok(pipeline) => format!("OK\n{pipeline:#?}\n"),
        Err(errors) => lines(&errors).iter().map(|l| format!("{l}\n")).collect(),
    }
}

fn render_document(name: &str, text: &str) -> String {
    match parse_document(name, text) {
        Ok(document) => format!("OK\n{document:#?}\n"),
        Err(errors) => lines(&errors).iter().map(|l| format!("{l}\n")).collect(),
    }
}

fn render_buildspec(name: &str, text: &str) -> String {
    match parse_buildspec(name, text) {
        Ok((buildspec, warnings)) => {
            let mut out = String::from("OK\n");
            for warning in &warnings {
                let _ = writeln!(out, "warning: {warning}");
            }
            let _ = writeln!(out, "{buildspec:#?}");
            out
        }
        Err(errors) => lines(&errors).iter().map(|l| format!("{l}\n")).collect(),
    }
}

/// Compares (or, with UPDATE_EXPECT=1, rewrites) every fixture of `kind`.
fn check_fixtures(kind: &str, render: fn(&str, &str) -> String) {
    let update = std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1");
    let mut mismatches = Vec::new();
    for path in fixtures(kind) {
        let text = fs::read_to_string(&path).expect("fixture");
        let actual = render(&file_name(&path), &text);
        let expected_path = path.with_file_name(format!("{}.expected", file_name(&path)));
        if update {
            fs::write(&expected_path, &actual).expect("write expectation");
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            mismatches.push(format!(
                "--- {}\n--- expected:\n{expected}--- actual:\n{actual}",
                path.display()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{}\n{} fixture(s) differ; if the change is intended, run \
         `UPDATE_EXPECT=1 cargo test -p gantry-spec --test fixtures` and review the diff",
        mismatches.join("\n"),
        mismatches.len()
    );
}

#[test]
fn pipeline_fixtures_match_their_expectations() {
    check_fixtures("pipeline", render_pipeline);
}

#[test]
fn document_fixtures_match_their_expectations() {
    check_fixtures("document", render_document);
}

#[test]
fn buildspec_fixtures_match_their_expectations() {
    check_fixtures("buildspec", render_buildspec);
}

/// Prefixes of every fixture, and every fixture with one line removed,
/// goes through both parsers without a panic.
#[test]
fn truncated_and_mangled_fixtures_never_panic() {
    for kind in ["pipeline", "document", "buildspec"] {
        for path in fixtures(kind) {
            let text = fs::read_to_string(&path).expect("fixture");
            // Every third prefix keeps the test fast while still cutting
            // through every kind of token.
            let mut variants: Vec<String> = text
                .char_indices()
                .step_by(3)
                .map(|(i, _)| text[..i].to_owned())
                .collect();
            let source_lines: Vec<&str> = text.lines().collect();
            for skip in 0..source_lines.len() {
                let mut mangled = String::new();
                for (i, line) in source_lines.iter().enumerate() {
                    if i != skip {
                        mangled.push_str(line);
                        mangled.push('\n');
                    }
                }
                variants.push(mangled);
            }
            for variant in &variants {
                // parse_pipeline decodes environments and services too;
                // parse_document differs only for files without a pipeline,
                // which only the document fixtures are about.
                let _ = parse_pipeline("f", variant);
                if kind == "document" {
                    let _ = parse_document("f", variant);
                }
                let _ = parse_buildspec("f", variant);
            }
        }
    }
}

#[test]
fn hostile_yaml_is_an_error_not_a_crash() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..12 {
        let prev = if i == 0 {
            "a".to_owned()
        } else {
            format!("l{}", i - 1)
        };
        let _ = writeln!(
            bomb,
            "l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]"
        );
    }
    for text in [
        deep.as_str(),
        bomb.as_str(),
        "a: &a [*a]\n",
        "\u{feff}\u{0}",
        "key: \"\\uD800\"\n",
    ] {
        assert!(parse_pipeline("f", text).is_err());
        assert!(parse_document("f", text).is_err());
        assert!(parse_buildspec("f", text).is_err());
    }
}
