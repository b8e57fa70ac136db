//! Errors that say how to fix them: when the server answers that a stage,
//! action, environment or service does not exist, the command asks what
//! does exist and adds "did you mean …?" (edit distance, from
//! `gantry_spec::suggest`) and the names it could have used. The server's
//! code and message stay as they were; the hint is appended.

use anyhow::Error;
use gantry_api::{EnvironmentStatus, ExecutionView};
use gantry_spec::suggest::did_you_mean;

use crate::client::{ApiError, Connection};

/// `error` with `hint` appended to its message (an API error keeps its code).
pub(crate) fn append(error: Error, hint: &str) -> Error {
    match error.downcast::<ApiError>() {
        Ok(mut api) => {
            api.body.message.push_str(hint);
            Error::new(api)
        }
        Err(other) => other.context(hint.trim_start_matches("; ").to_string()),
    }
}

/// Whether `error` is the API's answer that something does not exist.
pub(crate) fn is_not_found(error: &Error) -> bool {
    error
        .downcast_ref::<ApiError>()
        .is_some_and(|a| a.status == 404)
}

/// The canonical code of an API error, if `error` is one.
pub(crate) fn code(error: &Error) -> Option<&str> {
    error.downcast_ref::<ApiError>().map(|a| a.body.canonical())
}

/// `; did you mean `X`? its stages: A, B` for a name among `names`.
pub(crate) fn among(wanted: &str, names: &[String], what: &str) -> String {
    let suggestion = did_you_mean(wanted, names.iter().map(String::as_str));
    if names.is_empty() {
        return format!("{suggestion}; there are no {what}");
    }
    format!("{suggestion}; {what}: {}", names.join(", "))
}

/// Adds what exists to a "no stage" / "no action" answer about execution
/// `id`: `stage` alone names a stage, with `action` an action of it.
pub(crate) async fn in_execution(
    conn: &Connection,
    id: &str,
    stage: &str,
    action: Option<&str>,
    error: Error,
) -> Error {
    if !matches!(code(&error), Some("stage.not_found" | "action.not_found")) {
        return error;
    }
    let Ok(execution) = conn.client.execution(id).await else {
        return error;
    };
    let hint = match action {
        Some(action) => among(
            &format!("{stage}/{action}"),
            &action_names(&execution),
            "its actions",
        ),
        None => among(stage, &stage_names(&execution), "its stages"),
    };
    append(error, &hint)
}

/// Adds what exists to an "unknown environment" or "unknown service"
/// answer about `environment` (and `service`).
pub(crate) async fn in_environments(
    conn: &Connection,
    environment: &str,
    service: Option<&str>,
    error: Error,
) -> Error {
    match (code(&error), service) {
        (Some("deploy.unknown_environment"), _) => {
            let Ok(names) = conn.client.get::<Vec<String>>("/api/v1/environments").await else {
                return error;
            };
            let mut hint = among(environment, &names, "environments applied");
            hint.push_str(" (`gantry apply -f FILE` applies the file that declares it)");
            append(error, &hint)
        }
        (Some("deploy.unknown_service"), Some(service)) => {
            let Ok(status) = conn
                .client
                .get::<EnvironmentStatus>(&format!("/api/v1/environments/{environment}"))
                .await
            else {
                return error;
            };
            let names: Vec<String> = status.services.iter().map(|s| s.name.clone()).collect();
            append(error, &among(service, &names, "its services"))
        }
        _ => error,
    }
}

/// The names of an execution's stages, in order.
pub(crate) fn stage_names(execution: &ExecutionView) -> Vec<String> {
    execution.stages.iter().map(|s| s.name.clone()).collect()
}

/// `Stage/action` of every action of an execution, in order.
pub(crate) fn action_names(execution: &ExecutionView) -> Vec<String> {
    execution
        .stages
        .iter()
        .flat_map(|s| {
            s.actions
                .iter()
                .map(move |a| format!("{}/{}", s.name, a.name))
        })
        .collect()
}
