//! Test cases, their console lines and the JUnit XML report.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// How a test case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Passed,
    /// The message, then optional details (page excerpt, screenshot path).
    Failed(String, String),
    /// Why it did not run.
    Skipped(String),
}

/// One test case.
#[derive(Debug, Clone)]
pub(crate) struct Case {
    pub(crate) name: String,
    pub(crate) duration: Duration,
    pub(crate) outcome: Outcome,
}

/// A step's failure: a one-line message and optional details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StepError {
    pub(crate) message: String,
    pub(crate) details: String,
}

impl StepError {
    pub(crate) fn new(message: impl Into<String>) -> StepError {
        StepError {
            message: message.into(),
            details: String::new(),
        }
    }

    pub(crate) fn with_details(mut self, details: impl Into<String>) -> StepError {
        self.details = details.into();
        self
    }
}

impl From<String> for StepError {
    fn from(message: String) -> StepError {
        StepError::new(message)
    }
}

impl From<&str> for StepError {
    fn from(message: &str) -> StepError {
        StepError::new(message)
    }
}

/// Fails with `message` unless `condition` holds.
pub(crate) fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<(), StepError> {
    if condition {
        Ok(())
    } else {
        Err(StepError::new(message()))
    }
}

/// The results of a run, printed as they come.
#[derive(Debug)]
pub(crate) struct Report {
    /// `browser` or `http`: the JUnit classname suffix.
    pub(crate) mode: &'static str,
    pub(crate) properties: Vec<(String, String)>,
    pub(crate) cases: Vec<Case>,
    /// Set when a step that later steps need has failed.
    blocked_by: Option<String>,
    started: Instant,
    timestamp: String,
}

impl Report {
    pub(crate) fn new(mode: &'static str) -> Report {
        Report {
            mode,
            properties: Vec::new(),
            cases: Vec::new(),
            blocked_by: None,
            started: Instant::now(),
            // RFC 3339 in UTC, without the fraction: what JUnit readers
            // that insist on a zone (quick-junit, hence gantry) accept.
            timestamp: format!("{}Z", shop_http::now_rfc3339().chars().take(19).collect::<String>()),
        }
    }

    /// Whether the remaining steps will be skipped.
    pub(crate) fn blocked(&self) -> Option<&str> {
        self.blocked_by.as_deref()
    }

    /// Records a finished step. A failed `critical` step skips the rest.
    pub(crate) fn record(&mut self, name: &str, critical: bool, duration: Duration, result: Result<(), StepError>) {
        let outcome = match result {
            Ok(()) => Outcome::Passed,
            Err(e) => {
                if critical {
                    self.blocked_by = Some(name.to_string());
                }
                Outcome::Failed(e.message, e.details)
            }
        };
        self.push(Case {
            name: name.to_string(),
            duration,
            outcome,
        });
    }

    /// Records a step that did not run because an earlier one failed.
    pub(crate) fn skip(&mut self, name: &str) {
        let why = format!(
            "not run: the step \"{}\" failed",
            self.blocked_by.as_deref().unwrap_or("?")
        );
        self.push(Case {
            name: name.to_string(),
            duration: Duration::ZERO,
            outcome: Outcome::Skipped(why),
        });
    }

    /// Runs a synchronous step, or skips it when blocked.
    pub(crate) fn step(&mut self, name: &str, critical: bool, f: impl FnOnce() -> Result<(), StepError>) {
        if self.blocked().is_some() {
            self.skip(name);
            return;
        }
        let started = Instant::now();
        let result = f();
        self.record(name, critical, started.elapsed(), result);
    }

    fn push(&mut self, case: Case) {
        let secs = case.duration.as_secs_f64();
        match &case.outcome {
            Outcome::Passed => println!("  ok    {} ({secs:.2} s)", case.name),
            Outcome::Failed(message, details) => {
                println!("  FAIL  {} ({secs:.2} s): {message}", case.name);
                for line in details.lines().take(30) {
                    println!("        {line}");
                }
            }
            Outcome::Skipped(why) => println!("  skip  {}: {why}", case.name),
        }
        self.cases.push(case);
    }

    pub(crate) fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.cases.iter().filter(|c| f(&c.outcome)).count()
    }

    pub(crate) fn passed(&self) -> usize {
        self.count(|o| *o == Outcome::Passed)
    }

    pub(crate) fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(..)))
    }

    pub(crate) fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped(_)))
    }

    /// True when every case passed (and there was at least one).
    pub(crate) fn success(&self) -> bool {
        !self.cases.is_empty() && self.passed() == self.cases.len()
    }

    /// `shop-e2e: 7 passed, 0 failed, 0 skipped`.
    pub(crate) fn summary(&self) -> String {
        format!(
            "shop-e2e: {} passed, {} failed, {} skipped",
            self.passed(),
            self.failed(),
            self.skipped()
        )
    }

    /// The JUnit XML document: one `testsuite` named `shop-e2e`.
    pub(crate) fn junit(&self) -> String {
        let total = self.started.elapsed().as_secs_f64();
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let counts = format!(
            "tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{total:.3}\"",
            self.cases.len(),
            self.failed(),
            self.skipped()
        );
        let _ = writeln!(x, "<testsuites name=\"shop-e2e\" {counts}>");
        let _ = writeln!(
            x,
            "  <testsuite name=\"shop-e2e\" {counts} timestamp=\"{}\">",
            self.timestamp
        );
        if !self.properties.is_empty() {
            x.push_str("    <properties>\n");
            for (name, value) in &self.properties {
                let _ = writeln!(x, "      <property name=\"{}\" value=\"{}\"/>", xml(name), xml(value));
            }
            x.push_str("    </properties>\n");
        }
        for case in &self.cases {
            let _ = write!(
                x,
                "    <testcase classname=\"shop-e2e.{}\" name=\"{}\" time=\"{:.3}\"",
                self.mode,
                xml(&case.name),
                case.duration.as_secs_f64()
            );
            match &case.outcome {
                Outcome::Passed => x.push_str("/>\n"),
                Outcome::Failed(message, details) => {
                    let _ = writeln!(
                        x,
                        ">\n      <failure message=\"{}\" type=\"AssertionError\">{}</failure>\n    </testcase>",
                        xml(message),
                        xml(&format!("{message}\n{details}"))
                    );
                }
                Outcome::Skipped(why) => {
                    let _ = writeln!(x, ">\n      <skipped message=\"{}\"/>\n    </testcase>", xml(why));
                }
            }
        }
        x.push_str("  </testsuite>\n</testsuites>\n");
        x
    }

    /// Writes the JUnit file, creating its directory.
    pub(crate) fn write_junit(&self, path: &Path) -> Result<(), String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        std::fs::write(path, self.junit()).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

/// Escapes text for XML attributes and content, dropping the control
/// characters XML 1.0 cannot carry at all.
pub(crate) fn xml(s: &str) -> String {
    let kept: String = s
        .chars()
        .filter(|&c| c == '\n' || c == '\t' || c == '\r' || c >= ' ')
        .collect();
    shop_http::html::escape(&kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_has_cases_failures_and_skips() {
        let mut r = Report::new("http");
        r.properties.push(("url".into(), "http://127.0.0.1:1/?a=<b>".into()));
        r.step("first", false, || Ok(()));
        r.step("second \"quoted\"", true, || {
            Err(StepError::new("boom <&>\u{1}").with_details("page: x"))
        });
        r.step("third", false, || Ok(()));
        assert_eq!((r.passed(), r.failed(), r.skipped()), (1, 1, 1));
        assert!(!r.success());
        assert_eq!(r.summary(), "shop-e2e: 1 passed, 1 failed, 1 skipped");
        let x = r.junit();
        assert!(
            x.contains("<testsuite name=\"shop-e2e\" tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\""),
            "{x}"
        );
        assert!(
            x.contains("<testcase classname=\"shop-e2e.http\" name=\"first\""),
            "{x}"
        );
        assert!(x.contains("name=\"second &quot;quoted&quot;\""), "{x}");
        assert!(
            x.contains(
                "<failure message=\"boom &lt;&amp;&gt;\" type=\"AssertionError\">boom &lt;&amp;&gt;\npage: x</failure>"
            ),
            "{x}"
        );
        assert!(
            x.contains("<skipped message=\"not run: the step &quot;second &quot;quoted&quot;&quot; failed\"/>"),
            "{x}"
        );
        assert!(x.contains("value=\"http://127.0.0.1:1/?a=&lt;b&gt;\""), "{x}");
    }

    #[test]
    fn an_empty_run_is_not_a_success() {
        assert!(!Report::new("browser").success());
    }
}
