//! What a YAML syntax error most likely means, in words a newcomer can act
//! on: the parser says "did not find expected key" or "mapping values are
//! not allowed in this context" where a person wrote a key one column off,
//! and "found a tab" a line or two above the tab it means.
//!
//! Only the common indentation mistakes are recognised; any other parser
//! message is reported as the parser wrote it. The parser's own words follow
//! the hint in parentheses, so nothing is lost.

use crate::location::Location;

/// A better location and message for the parser's `message` at `at`, when
/// the error is one of the common indentation mistakes.
pub(super) fn explain(text: &str, at: Location, message: &str) -> Option<(Location, String)> {
    let lines: Vec<&str> = text.lines().collect();
    if message.contains("tab") {
        return tab(&lines, at, message);
    }
    let indentation = message.contains("did not find expected key")
        || message.contains("did not find expected '-' indicator")
        || message.contains("mapping values are not allowed in this context");
    if !indentation {
        return None;
    }
    let index = at.line.checked_sub(1)?;
    let line = *lines.get(index)?;
    let column = indent(line) + 1;
    let here = Location {
        line: at.line,
        col: column,
    };
    let above = lines[..index]
        .iter()
        .enumerate()
        .rev()
        .find(|(_, l)| !is_blank(l))
        .map(|(i, l)| (i + 1, *l));
    let item = line.trim_start().starts_with("- ");
    match above {
        Some((above_line, above_text)) => {
            let (above_column, above_key) = key_column(above_text);
            if item {
                let above_item = above_text.trim_start().starts_with("- ");
                if above_item && indent(above_text) + 1 != column {
                    return Some((
                        here,
                        format!(
                            "this list item starts at column {column}, but the item on line \
                             {above_line} starts at column {}: items of one list start with `- ` \
                             in the same column ({message})",
                            indent(above_text) + 1
                        ),
                    ));
                }
            }
            if column != above_column && !is_key_ending_block(above_text) {
                let which = above_key
                    .map(|k| format!("the key `{k}`"))
                    .unwrap_or_else(|| "the text".to_owned());
                return Some((
                    here,
                    format!(
                        "bad indentation: this line starts at column {column}, but {which} on \
                         line {above_line} starts at column {above_column}; keys of one mapping \
                         start in the same column, indented with spaces ({message})"
                    ),
                ));
            }
            if message.contains("mapping values") {
                return Some((at, colon_in_value(message)));
            }
            Some((
                here,
                format!(
                    "bad indentation: this line does not line up with the lines above it; keys \
                     of one mapping start in the same column, and items of one list start with \
                     `- ` in the same column ({message})"
                ),
            ))
        }
        None if message.contains("mapping values") => Some((at, colon_in_value(message))),
        None => None,
    }
}

fn colon_in_value(message: &str) -> String {
    format!(
        "a second `: ` on one line: quote a value that contains `: ` (`key: \"a: b\"`), or put \
         a nested key on its own line, indented further ({message})"
    )
}

/// A tab: the parser reports it where the scalar before it began; the tab
/// itself is in the indentation of a line at or after that place.
fn tab(lines: &[&str], at: Location, message: &str) -> Option<(Location, String)> {
    let from = at.line.saturating_sub(1);
    let found = lines
        .iter()
        .enumerate()
        .skip(from)
        .chain(lines.iter().enumerate().take(from))
        .find_map(|(i, l)| {
            let leading: String = l.chars().take_while(|c| c.is_whitespace()).collect();
            leading.find('\t').map(|col| Location {
                line: i + 1,
                col: col + 1,
            })
        });
    Some((
        found.unwrap_or(at),
        format!(
            "a tab in the indentation: YAML indents with spaces only; replace the tab with \
             spaces ({message})"
        ),
    ))
}

/// The number of leading spaces.
fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_blank(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#') || t == "---"
}

/// The column where a line's key starts (after `- ` for a list item), and
/// the key, if the line holds one.
fn key_column(line: &str) -> (usize, Option<&str>) {
    let mut rest = &line[indent(line)..];
    let mut column = indent(line) + 1;
    while let Some(after) = rest.strip_prefix("- ") {
        let trimmed = after.trim_start_matches(' ');
        column += rest.len() - trimmed.len();
        rest = trimmed;
    }
    let key = rest
        .split_once(':')
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && !k.contains(' ') && !k.starts_with(['"', '\'', '{', '[']));
    (column, key)
}

/// Whether a line ends with `key:` (a block below it may be indented further).
fn is_key_ending_block(line: &str) -> bool {
    let t = line.trim_end();
    t.ends_with(':') || t.ends_with(": |") || t.ends_with(": >") || t.ends_with(": |-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, line: usize, col: usize, message: &str) -> (Location, String) {
        explain(text, Location { line, col }, message).expect("a hint")
    }

    #[test]
    fn a_tab_is_found_where_it_is() {
        let text =
            "stages:\n  - name: Source\n    actions:\n      - name: checkout\n\ttype: source\n";
        let (at, message) = check(text, 4, 15, "while scanning a plain scalar, found a tab");
        assert_eq!(at, Location { line: 5, col: 1 });
        assert!(message.starts_with("a tab in the indentation"), "{message}");
    }

    #[test]
    fn a_key_one_column_off_names_the_key_above() {
        let text =
            "stages:\n  - name: Source\n    actions:\n      - name: checkout\n     type: source\n";
        let (at, message) = check(
            text,
            5,
            6,
            "while parsing a block mapping, did not find expected key",
        );
        assert_eq!(at, Location { line: 5, col: 6 });
        assert!(
            message.contains("starts at column 6, but the key `name` on line 4 starts at column 9"),
            "{message}"
        );

        let text = "stages:\n  - name: Source\n    actions:\n      - name: checkout\n          type: source\n";
        let (at, message) = check(
            text,
            5,
            15,
            "mapping values are not allowed in this context",
        );
        assert_eq!(at, Location { line: 5, col: 11 });
        assert!(
            message
                .contains("starts at column 11, but the key `name` on line 4 starts at column 9"),
            "{message}"
        );
    }

    #[test]
    fn list_items_out_of_line() {
        let text = "stages:\n  - name: a\n   - name: b\n";
        let (_, message) = check(
            text,
            3,
            4,
            "while parsing a block collection, did not find expected '-' indicator",
        );
        assert!(
            message.contains("this list item starts at column 4"),
            "{message}"
        );
    }

    #[test]
    fn a_colon_in_a_value() {
        let text = "a: b: c\n";
        let (_, message) = check(text, 1, 5, "mapping values are not allowed in this context");
        assert!(message.starts_with("a second `: `"), "{message}");
    }
}
