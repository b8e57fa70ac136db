//! The error answer every route gives.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Every error answer.
///
/// `code` is stable. A few codes predate the `area.snake_case` scheme (the
/// engine's `not_stoppable`, `stage_busy`, …): `/api/v1` keeps answering
/// them in `code`, so clients that match them keep working, and names the
/// canonical code beside them in `canonical_code`, which is absent whenever
/// `code` is canonical already. A client that wants one scheme reads
/// [`ErrorBody::canonical`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// Stable: `area.snake_case` (`auth.forbidden`, `execution.not_found`),
    /// or one of the legacy codes listed in docs/error-codes.md.
    pub code: String,
    /// The `area.snake_case` code of an error whose `code` is a legacy one
    /// (`not_stoppable` → `execution.not_stoppable`); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canonical_code: Option<String>,
    pub message: String,
    /// Every error of an invalid pipeline file, as `FILE:LINE:COL: message`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl ErrorBody {
    /// An error whose `code` is canonical.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            code: code.into(),
            canonical_code: None,
            message: message.into(),
            errors: Vec::new(),
        }
    }

    /// The `area.snake_case` code, whichever field holds it (an older
    /// server sent legacy codes without `canonical_code`).
    pub fn canonical(&self) -> &str {
        self.canonical_code
            .as_deref()
            .or_else(|| canonical_of_legacy(&self.code))
            .unwrap_or(&self.code)
    }
}

/// The codes `/api/v1` answered before the `area.snake_case` scheme (the
/// engine's refusals), each with its canonical code: `(legacy, canonical)`.
/// `/api/v1` keeps the legacy code in `code` and adds `canonical_code`.
/// No code joins this list: new codes are canonical from the start.
pub const LEGACY_CODES: &[(&str, &str)] = &[
    ("invalid_plan", "pipeline.invalid_plan"),
    ("wrong_pipeline", "execution.wrong_pipeline"),
    ("duplicate_execution", "execution.duplicate"),
    ("unknown_execution", "execution.not_found"),
    ("unknown_stage", "stage.not_found"),
    ("unknown_action", "action.not_found"),
    ("not_an_approval", "action.not_an_approval"),
    ("approval_not_waiting", "approval.not_waiting"),
    ("not_stoppable", "execution.not_stoppable"),
    ("execution_not_retryable", "execution.not_retryable"),
    ("stage_not_retryable", "stage.not_retryable"),
    ("newer_execution_entered", "stage.newer_execution_entered"),
    ("stage_busy", "stage.busy"),
];

/// The legacy code an engine refusal answers in `code`, given its canonical
/// code. Only for errors that had a legacy code: a canonical code such as
/// `approval.not_waiting` is also answered, as itself, by errors that never
/// had one.
pub fn legacy_code(canonical: &str) -> Option<&'static str> {
    LEGACY_CODES
        .iter()
        .find(|(_, c)| *c == canonical)
        .map(|(legacy, _)| *legacy)
}

/// The canonical code of a legacy code.
pub fn canonical_of_legacy(legacy: &str) -> Option<&'static str> {
    LEGACY_CODES
        .iter()
        .find(|(l, _)| *l == legacy)
        .map(|(_, canonical)| *canonical)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::tests::same_bytes;

    #[test]
    fn a_canonical_code_adds_no_field() {
        let body = ErrorBody::new("auth.forbidden", "no");
        same_bytes(&body, json!({"code": "auth.forbidden", "message": "no"}));
        assert_eq!(body.canonical(), "auth.forbidden");
    }

    #[test]
    fn a_legacy_code_stays_in_code_and_names_its_canonical_one() {
        let body = ErrorBody {
            canonical_code: Some("execution.not_stoppable".into()),
            ..ErrorBody::new("not_stoppable", "execution e1 is Succeeded")
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"code":"not_stoppable","canonical_code":"execution.not_stoppable","message":"execution e1 is Succeeded"}"#
        );
        assert_eq!(body.canonical(), "execution.not_stoppable");
        // What an older server sent (no `canonical_code`) reads the same.
        let old: ErrorBody =
            serde_json::from_str(r#"{"code": "stage_busy", "message": "m"}"#).unwrap();
        assert_eq!(old.canonical(), "stage.busy");
    }

    #[test]
    fn legacy_and_canonical_codes_map_one_to_one() {
        for (legacy, canonical) in LEGACY_CODES {
            assert_eq!(legacy_code(canonical), Some(*legacy));
            assert_eq!(canonical_of_legacy(legacy), Some(*canonical));
            assert!(!legacy.contains('.') && canonical.contains('.'));
        }
    }
}
