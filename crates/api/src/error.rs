//! The error answer every route gives.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// Stable, `area.snake_case` (`auth.forbidden`, `execution.not_found`).
    pub code: String,
    pub message: String,
    /// Every error of an invalid pipeline file, as `FILE:LINE:COL: message`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl ErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            code: code.into(),
            message: message.into(),
            errors: Vec::new(),
        }
    }
}
