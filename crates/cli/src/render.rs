//! The live view of an execution: stages, actions, statuses, durations, and
//! the command to type when an approval waits. In a terminal it is redrawn
//! in place; elsewhere each change is printed once as a line. Colour only
//! goes to a terminal, and never when `NO_COLOR` is set (no-color.org).

use std::collections::BTreeMap;
use std::io::Write;

use gantry_api::{ApprovalView, ExecutionView};
use jiff::Timestamp;

mod tail;
pub(crate) use tail::Tails;

fn parse_ts(v: Option<&str>) -> Option<Timestamp> {
    v?.parse().ok()
}

fn duration(started: Option<&str>, finished: Option<&str>) -> Option<String> {
    let start = parse_ts(started)?.as_millisecond();
    let end = parse_ts(finished).map_or_else(gantry_clock::now_ms, |t| t.as_millisecond());
    let ms = (end - start).max(0);
    Some(if ms < 10_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    })
}

/// How long ago `at` (RFC 3339) was: `42s ago`, `5m ago`, `3h ago`, `2d ago`;
/// empty when it cannot be read.
pub(crate) fn age(at: &str) -> String {
    let Some(then) = parse_ts(Some(at)) else {
        return String::new();
    };
    let s = ((gantry_clock::now_ms() - then.as_millisecond()) / 1000).max(0);
    match s {
        0..60 => format!("{s}s ago"),
        60..3_600 => format!("{}m ago", s / 60),
        3_600..86_400 => format!("{}h ago", s / 3_600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// Whether output to a stream that is (or is not) a terminal may be
/// coloured: only a terminal, and not when `NO_COLOR` is set to anything
/// but the empty string.
pub(crate) fn colour(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn mark(status: Option<&str>, color: bool) -> String {
    let (symbol, code) = match status {
        Some("Succeeded") => ("✓", "32"),
        Some("Failed") => ("✗", "31"),
        Some("InProgress") => ("▶", "36"),
        Some("Waiting") => ("⏸", "33"),
        Some("Stopping") | Some("Stopped") | Some("Abandoned") | Some("Superseded") => ("■", "35"),
        _ => ("·", "2"),
    };
    if color {
        format!("\x1b[{code}m{symbol}\x1b[0m")
    } else {
        symbol.to_string()
    }
}

/// The lines of the view.
/// `hint` starts every command the view suggests: the program and its global
/// options (`gantry --data-dir DIR`, see `paste`).
pub(crate) fn view(execution: &ExecutionView, color: bool, hint: &str) -> Vec<String> {
    view_with(execution, color, hint, None)
}

/// The lines of the view, with the last log lines (and a deploy's
/// progress) under each running action when `tails` has them.
fn view_with(
    execution: &ExecutionView,
    color: bool,
    hint: &str,
    tails: Option<&Tails>,
) -> Vec<String> {
    let id = &execution.id;
    let status = execution.status.as_str();
    let mut lines = vec![format!(
        "{} {}  {}  {}  {}",
        mark(Some(status), color),
        execution.pipeline,
        id,
        status,
        duration(
            Some(&execution.started_at),
            execution.finished_at.as_deref()
        )
        .unwrap_or_default()
    )];
    if let Some(stage) = &execution.waiting_at {
        lines.push(format!(
            "  waiting to enter stage {stage} (another execution holds it)"
        ));
    }
    for stage in &execution.stages {
        let stage_name = &stage.name;
        lines.push(format!(
            "  {} {}",
            mark(stage.status.as_deref(), color),
            stage_name
        ));
        for action in &stage.actions {
            let action_status = action.status.as_deref();
            let name = &action.name;
            let mut line = format!(
                "      {} {:<24} {:<10}",
                mark(action_status, color),
                name,
                action_status.unwrap_or("")
            );
            if let Some(d) = duration(action.started_at.as_deref(), action.finished_at.as_deref()) {
                line.push_str(&format!(" {d:>7}"));
            }
            if action.attempt > 1 {
                line.push_str(&format!("  (attempt {})", action.attempt));
            }
            lines.push(line);
            if action_status == Some("InProgress")
                && let Some(tails) = tails
            {
                for l in tails.lines(stage_name, name, action.attempt) {
                    lines.push(format!("          {l}"));
                }
            }
            if let Some(decided) = action.decided.as_ref().filter(|d| d.decision == "Approved") {
                lines.push(format!("          {}", approved_by(decided)));
            }
            if let Some(error) = &action.error {
                for (i, l) in error.lines().take(6).enumerate() {
                    lines.push(format!(
                        "          {}{l}",
                        if i == 0 { "error: " } else { "       " }
                    ));
                }
            }
            for report in action.reports.iter().flatten() {
                lines.push(format!(
                    "          tests {}: {} passed, {} failed, {} skipped",
                    report.group, report.passed, report.failed, report.skipped
                ));
                for failure in report.failures.iter().take(5) {
                    lines.push(format!(
                        "            ✗ {}: {}",
                        failure.name,
                        failure.message.lines().next().unwrap_or("")
                    ));
                }
            }
            if action_status == Some("Waiting") {
                if let Some(approval) = &action.approval {
                    if let Some(comments) = &approval.comments {
                        lines.push(format!("          {comments}"));
                    }
                    if let Some(url) = &approval.review_url {
                        lines.push(format!("          review: {url}"));
                    }
                }
                lines.push(format!(
                    "          approve: {hint} approve {id} {stage_name}/{name}"
                ));
                lines.push(format!(
                    "          reject:  {hint} reject {id} {stage_name}/{name}"
                ));
            }
        }
    }
    lines
}

/// `approved by ann: ship it`.
fn approved_by(decided: &gantry_api::ApprovalDecided) -> String {
    let comment = decided
        .comment
        .as_deref()
        .map(|c| format!(": {c}"))
        .unwrap_or_default();
    format!(
        "{} by {}{comment}",
        decided.decision.to_lowercase(),
        decided.by
    )
}

/// Draws successive views: in place on a terminal, as change lines otherwise.
pub(crate) struct LiveView {
    tty: bool,
    hint: String,
    drawn: usize,
    seen: BTreeMap<String, String>,
    /// The running actions' last log lines (drawn in a terminal only).
    pub(crate) tails: Tails,
}

impl LiveView {
    pub(crate) fn new(tty: bool, hint: String) -> LiveView {
        LiveView {
            tty,
            hint,
            drawn: 0,
            seen: BTreeMap::new(),
            tails: Tails::default(),
        }
    }

    /// Whether the view shows log lines (only in a terminal).
    pub(crate) fn shows_logs(&self) -> bool {
        self.tty
    }

    pub(crate) fn draw(&mut self, execution: &ExecutionView) {
        let mut out = std::io::stdout().lock();
        let written = (|| -> std::io::Result<()> {
            if self.tty {
                let lines = view_with(execution, colour(true), &self.hint, Some(&self.tails));
                if self.drawn > 0 {
                    write!(out, "\x1b[{}A\x1b[J", self.drawn)?;
                }
                for line in &lines {
                    writeln!(out, "{line}")?;
                }
                self.drawn = lines.len();
            } else {
                for (key, line) in changes(execution, &self.hint) {
                    if self.seen.get(&key) != Some(&line) {
                        writeln!(out, "{line}")?;
                        self.seen.insert(key, line);
                    }
                }
            }
            out.flush()
        })();
        // Nobody reads the view any more (`gantry run | head`): end quietly.
        // Any other failure to write it is no reason to stop following.
        if let Err(error) = written {
            crate::pipe::end_if_broken(&error);
        }
    }
}

/// One line per execution and action status, keyed so unchanged ones are not repeated.
fn changes(execution: &ExecutionView, hint: &str) -> Vec<(String, String)> {
    let id = &execution.id;
    let mut out = Vec::new();
    for stage in &execution.stages {
        let stage_name = &stage.name;
        for action in &stage.actions {
            let Some(status) = action.status.as_deref() else {
                continue;
            };
            let name = &action.name;
            let mut line = format!("{stage_name}/{name}: {status}");
            if let Some(d) = duration(action.started_at.as_deref(), action.finished_at.as_deref())
                .filter(|_| status != "InProgress" && status != "Waiting")
            {
                line.push_str(&format!(" in {d}"));
            }
            if let Some(error) = &action.error {
                line.push_str(&format!(" ({})", error.lines().next().unwrap_or("")));
            } else if let Some(decided) = &action.decided {
                line.push_str(&format!(" ({})", approved_by(decided)));
            }
            if status == "Waiting" {
                line.push_str(&format!(
                    " — approve with: {hint} approve {id} {stage_name}/{name}"
                ));
            }
            out.push((format!("{stage_name}/{name}#{}", action.attempt), line));
        }
    }
    let status = execution.status.as_str();
    let line = format!("execution {id}: {status}");
    // The execution's own line comes first while it runs and last once it ended.
    if matches!(status, "InProgress" | "Stopping") {
        out.insert(0, ("#execution".into(), line));
    } else {
        out.push(("#execution".into(), line));
    }
    out
}

/// What an approval waits for, for the person deciding it: the commits,
/// image digests, parameter versions, its policy and the votes so far.
pub(crate) fn binding(view: &ApprovalView) -> Vec<String> {
    let mut lines = vec![format!(
        "{}/{} waits for (fingerprint {}):",
        view.stage, view.action, view.fingerprint
    )];
    let binding = &view.binding;
    for (label, pinned) in [("commit", &binding.commits), ("image", &binding.images)] {
        for (at, value) in pinned {
            lines.push(format!("  {label} {value} ({at})"));
        }
    }
    for (at, records) in &binding.parameters {
        for r in records {
            lines.push(format!(
                "  parameter {} version {} ({at})",
                r.name, r.version
            ));
        }
    }
    let required = view.policy.required;
    let votes = view.votes.len();
    if required > 1 || votes > 0 {
        lines.push(format!("  approvals: {votes} of {required}"));
    }
    lines
}

/// Prints an API answer as one line of JSON, for `--json`: the bytes the
/// server sent, since the answer's type writes its fields in their order.
pub(crate) fn print_json(answer: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(answer)?);
    Ok(())
}
