//! Helpers shared by the integration tests.

#![allow(dead_code)] // Each test crate uses only some of the helpers.

use gantry_spec::SpecError;

/// Removes the indentation common to all non-empty lines and the first line
/// break, so that YAML can be written indented inside a test; line 1 is the
/// line after the opening quote.
pub(crate) fn dedent(text: &str) -> String {
    let text = text.strip_prefix('\n').unwrap_or(text);
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(line.get(indent..).unwrap_or(""));
        out.push('\n');
    }
    out
}

/// Errors as the CLI prints them, one `FILE:LINE:COL: message` per item.
pub(crate) fn lines(errors: &[SpecError]) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}
