//! Test reports: JUnit XML files summarised per report group.
//!
//! As with CodeBuild, reports never change the build's status (the test
//! command's exit status does); files that are missing, unreadable or not
//! JUnit are reported as warnings in the log.

use std::collections::BTreeMap;

use gantry_spec::buildspec::ReportGroup;
use quick_junit::{NonSuccessKind, Report, TestCaseStatus};

use crate::artifacts::{Selection, SourceView, expand_vars, select};
use crate::mask::Masker;
use crate::outcome::{TestFailure, TestReport};

/// JUnit files larger than this are skipped (a report is read whole).
const MAX_REPORT_BYTES: u64 = 64 * 1024 * 1024;

/// A report group with the variables of its paths expanded (see
/// `artifacts::expand_vars`); `unset` receives the names not set.
pub(crate) fn expand(
    group: &ReportGroup,
    vars: &BTreeMap<String, String>,
    unset: &mut Vec<String>,
) -> ReportGroup {
    let mut one = |text: &str| {
        let (out, missing) = expand_vars(text, vars);
        for name in missing {
            if !unset.contains(&name) {
                unset.push(name);
            }
        }
        out
    };
    ReportGroup {
        files: group.files.iter().map(|f| one(f)).collect(),
        base_directory: group.base_directory.as_deref().map(&mut one),
        ..group.clone()
    }
}

/// Summarises one report group (its paths expanded); `warn` receives
/// problems worth a log line.
pub(crate) fn summarize(
    group: &ReportGroup,
    view: &SourceView<'_>,
    masker: &Masker,
    warn: &mut dyn FnMut(String),
) -> TestReport {
    let mut report = TestReport {
        group: group.name.clone(),
        passed: 0,
        failed: 0,
        skipped: 0,
        failures: Vec::new(),
    };
    let format = group.file_format.to_ascii_uppercase();
    if !format.is_empty() && format != "JUNITXML" {
        warn(format!(
            "Report group {}: file format {format} is not supported; skipped",
            group.name
        ));
        return report;
    }
    let sel = Selection {
        artifact: &group.name,
        base_directory: group.base_directory.as_deref(),
        files: &group.files,
        exclude: &[],
        discard_paths: false,
        enable_symlinks: false,
        require_matches: false,
        skip_symlinks: false,
    };
    let files = match select(&sel, view) {
        Ok(files) => files,
        Err(e) => {
            warn(format!("Report group {}: {e}", group.name));
            return report;
        }
    };
    if files.is_empty() {
        warn(format!(
            "Report group {}: no report files found",
            group.name
        ));
    }
    for file in files {
        let too_big = std::fs::metadata(&file.source).is_ok_and(|m| m.len() > MAX_REPORT_BYTES);
        if too_big {
            warn(format!(
                "Report group {}: {} is too large; skipped",
                group.name, file.dest
            ));
            continue;
        }
        let text = match std::fs::read(&file.source) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                warn(format!(
                    "Report group {}: cannot read {}: {e}",
                    group.name, file.dest
                ));
                continue;
            }
        };
        match parse_junit(&text) {
            Ok(parsed) => add(&mut report, &parsed, masker),
            Err(e) => warn(format!(
                "Report group {}: {} is not a JUnit XML report: {}",
                group.name,
                file.dest,
                masker.mask(&e)
            )),
        }
    }
    report
}

/// Parses a JUnit document whose root is `<testsuites>` or, as many tools
/// write it, a single `<testsuite>` (quick-junit wants the former).
fn parse_junit(text: &str) -> Result<Report, String> {
    match Report::deserialize_from_str(text) {
        Ok(report) => Ok(report),
        Err(first) => {
            let body = strip_xml_declaration(text);
            if body.trim_start().starts_with("<testsuite")
                && !body.trim_start().starts_with("<testsuites")
            {
                Report::deserialize_from_str(&format!("<testsuites>{body}</testsuites>"))
                    .map_err(|e| e.to_string())
            } else {
                Err(first.to_string())
            }
        }
    }
}

fn strip_xml_declaration(text: &str) -> &str {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with("<?xml")
        && let Some(end) = trimmed.find("?>")
    {
        return &trimmed[end + 2..];
    }
    trimmed
}

fn add(report: &mut TestReport, parsed: &Report, masker: &Masker) {
    for suite in &parsed.test_suites {
        for case in &suite.test_cases {
            match &case.status {
                TestCaseStatus::Success { .. } => report.passed += 1,
                TestCaseStatus::Skipped { .. } => report.skipped += 1,
                TestCaseStatus::NonSuccess {
                    kind,
                    message,
                    description,
                    ..
                } => {
                    report.failed += 1;
                    if report.failures.len() >= TestReport::MAX_FAILURES {
                        continue;
                    }
                    let name = match &case.classname {
                        Some(class) => format!("{}.{}", class.as_str(), case.name.as_str()),
                        None => case.name.as_str().to_owned(),
                    };
                    let message = message
                        .as_ref()
                        .map(|m| m.as_str().to_owned())
                        .or_else(|| description.as_ref().map(|d| d.as_str().trim().to_owned()))
                        .unwrap_or_else(|| match kind {
                            NonSuccessKind::Failure => "failure".to_owned(),
                            NonSuccessKind::Error => "error".to_owned(),
                        });
                    report.failures.push(TestFailure {
                        name: masker.mask(&name).into_owned(),
                        message: masker.mask(&message).into_owned(),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_testsuite_root_is_accepted() {
        let xml = r#"<?xml version="1.0"?>
<testsuite name="s" tests="2"><testcase name="a"/><testcase name="b"><failure message="boom"/></testcase></testsuite>"#;
        let report = parse_junit(xml).unwrap();
        assert_eq!(report.test_suites[0].test_cases.len(), 2);
    }
}
