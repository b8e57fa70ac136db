//! Where a problem is, and the error type every parser here returns.

use std::fmt;

/// A 1-based line and column in a source file.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Location {
    pub line: usize,
    pub col: usize,
}

/// One problem in a file. Displays as `FILE:LINE:COL: message`.
/// Also used for warnings (e.g. ignored AWS-only buildspec keys).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpecError {
    pub file: String,
    pub location: Location,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.location.line, self.location.col, self.message
        )
    }
}

impl std::error::Error for SpecError {}
