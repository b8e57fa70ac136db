//! What the live view shows under a running action: the last lines of its
//! log, and for a deploy the rollout's progress, counted from the lines the
//! deploy action writes (`Started replica …`, `Replica … is healthy …`,
//! `Draining replica …`, `… failed (n/threshold) …`). Fed with the
//! execution's log pages as they come; bounded whatever the log's size.

use std::collections::{BTreeMap, VecDeque};

use gantry_api::LogsPage;

/// How many of an action's last lines the view shows.
const LAST_LINES: usize = 4;
/// How many characters of a line the view shows (longer lines would wrap,
/// and a view redrawn in place counts its lines).
const WIDTH: usize = 100;

/// The tails of an execution's actions, by `(stage, action, attempt)`.
#[derive(Default)]
pub(crate) struct Tails {
    actions: BTreeMap<(String, String, i64), ActionTail>,
    /// The sequence number of the last line seen (the next page's `after`).
    pub(crate) after: i64,
}

#[derive(Default)]
struct ActionTail {
    last: VecDeque<String>,
    rollout: Option<Rollout>,
}

/// A deploy's progress as its log tells it.
#[derive(Default, Debug, PartialEq, Eq)]
struct Rollout {
    target: Option<u64>,
    started: u64,
    healthy: u64,
    drained: u64,
    failed: u64,
}

impl Tails {
    /// Takes in a page of the execution's log.
    pub(crate) fn add(&mut self, page: &LogsPage) {
        for line in &page.lines {
            let key = (line.stage.clone(), line.action.clone(), line.attempt);
            let tail = self.actions.entry(key).or_default();
            let text = printable(&line.line);
            observe(&mut tail.rollout, &text);
            if tail.last.len() == LAST_LINES {
                tail.last.pop_front();
            }
            tail.last.push_back(text);
        }
        self.after = self.after.max(page.next);
    }

    /// The lines to show under an action that runs: its rollout's progress,
    /// then its last log lines.
    pub(crate) fn lines(&self, stage: &str, action: &str, attempt: u32) -> Vec<String> {
        let key = (stage.to_string(), action.to_string(), i64::from(attempt));
        let Some(tail) = self.actions.get(&key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(r) = &tail.rollout {
            let of = r.target.map(|n| format!("/{n}")).unwrap_or_default();
            out.push(format!(
                "rollout: {}{of} started, {}{of} healthy, {} drained, {} failed",
                r.started, r.healthy, r.drained, r.failed
            ));
        }
        out.extend(tail.last.iter().map(|l| format!("│ {l}")));
        out
    }
}

/// Counts a deploy's steps from its log lines (`crates/deploy/src/rollout.rs`).
fn observe(rollout: &mut Option<Rollout>, line: &str) {
    let target = line
        .strip_prefix("Rolling ")
        .or_else(|| line.strip_prefix("Blue/green: starting "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    if let Some(n) = target {
        rollout.get_or_insert_with(Rollout::default).target = Some(n);
        return;
    }
    let Some(r) = rollout.as_mut() else {
        return;
    };
    if line.starts_with("Started replica ") {
        r.started += 1;
    } else if line.starts_with("Replica ") && line.contains(" is healthy") {
        r.healthy += 1;
    } else if line.starts_with("Draining replica ") {
        r.drained += 1;
    } else if line.starts_with("Replica failed (") || line.starts_with("Green replica failed (") {
        r.failed += 1;
    }
}

/// A log line as the view can show it: without terminal escapes or other
/// control characters, cut to [`WIDTH`] characters.
fn printable(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    let mut count = 0;
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An escape sequence: ESC [ … letter (or ESC and one character).
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        if c.is_control() {
            continue;
        }
        if count == WIDTH {
            out.push('…');
            break;
        }
        out.push(c);
        count += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use gantry_api::{LogLineView, LogsPage};

    use super::*;

    fn page(lines: &[(&str, &str)]) -> LogsPage {
        LogsPage {
            lines: lines
                .iter()
                .enumerate()
                .map(|(i, (action, line))| LogLineView {
                    seq: i as i64 + 1,
                    stage: "Deploy".into(),
                    action: (*action).into(),
                    attempt: 1,
                    at: "2026-01-01T00:00:00.000Z".into(),
                    line: (*line).into(),
                })
                .collect(),
            next: lines.len() as i64,
        }
    }

    #[test]
    fn the_last_lines_and_a_rollouts_progress() {
        let mut tails = Tails::default();
        tails.add(&page(&[
            ("staging", "Image r/web:1 is r/web@sha256:abc"),
            ("staging", "Rolling 2 replica(s) to revision 3 (r/web@sha256:abc); keep at least 1 healthy, at most 3 running"),
            ("staging", "Started replica a at 127.0.0.1:1; waiting for its health checks"),
            ("staging", "Replica a is healthy and takes traffic."),
            ("staging", "Draining replica old (revision 2) for up to 5s, then stopping it"),
            ("staging", "Started replica b at 127.0.0.1:2; \u{1b}[31mwaiting\u{1b}[0m"),
            ("other", "hello"),
        ]));
        assert_eq!(tails.after, 7);
        assert_eq!(
            tails.lines("Deploy", "staging", 1),
            vec![
                "rollout: 2/2 started, 1/2 healthy, 1 drained, 0 failed",
                "│ Started replica a at 127.0.0.1:1; waiting for its health checks",
                "│ Replica a is healthy and takes traffic.",
                "│ Draining replica old (revision 2) for up to 5s, then stopping it",
                "│ Started replica b at 127.0.0.1:2; waiting",
            ]
        );
        assert_eq!(tails.lines("Deploy", "other", 1), vec!["│ hello"]);
        assert!(tails.lines("Deploy", "staging", 2).is_empty());
    }

    #[test]
    fn long_lines_are_cut() {
        let long = "x".repeat(300);
        assert_eq!(printable(&long).chars().count(), WIDTH + 1);
    }
}
