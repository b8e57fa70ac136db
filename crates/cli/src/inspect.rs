//! `gantry status`, `gantry executions` and `gantry logs`: read-only views
//! of executions (one execution's live view or JSON, the newest executions,
//! action logs, optionally followed until the execution ends).

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::client::Connection;
use crate::{hints, render, table};

/// Shows one execution: the view, or its JSON.
pub(crate) async fn status(data_dir: &Path, id: &str, json: bool) -> Result<ExitCode> {
    let conn = Connection::open_lasting(data_dir).await?;
    let execution = conn.client.execution(id).await;
    conn.close().await;
    let execution = execution?;
    if json {
        println!("{}", serde_json::to_string(&execution)?);
    } else {
        let colour = render::colour(std::io::stdout().is_terminal());
        for line in render::view(&execution, colour, crate::paste::gantry()) {
            println!("{line}");
        }
        for line in origin(&execution) {
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Lists recent executions, newest first, optionally of one pipeline.
pub(crate) async fn executions(
    data_dir: &Path,
    pipeline: Option<String>,
    json: bool,
) -> Result<ExitCode> {
    let conn = Connection::open_lasting(data_dir).await?;
    let query = pipeline
        .as_ref()
        .map(|p| format!("?pipeline={p}"))
        .unwrap_or_default();
    let list = conn
        .client
        .get::<Vec<gantry_api::ExecutionView>>(&format!("/api/v1/executions{query}"))
        .await;
    // Nothing for a pipeline the server does not know is a mistyped name,
    // not an empty history.
    let unknown = match (&list, &pipeline) {
        (Ok(list), Some(name)) if list.is_empty() => conn
            .client
            .get::<Vec<gantry_api::PipelineSummary>>("/api/v1/pipelines")
            .await
            .ok()
            .map(|known| known.into_iter().map(|p| p.name).collect::<Vec<_>>())
            .filter(|names| !names.contains(name))
            .map(|names| (name.clone(), names)),
        _ => None,
    };
    conn.close().await;
    if let Some((name, names)) = unknown {
        bail!(
            "no pipeline named {name}{}",
            hints::among(&name, &names, "pipelines")
        );
    }
    let list = list?;
    if json {
        println!("{}", serde_json::to_string(&list)?);
    } else if !list.is_empty() {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|e| {
                let trigger = e.trigger.as_ref().map_or("", |t| t.trigger_type.as_str());
                vec![
                    e.id.clone(),
                    e.pipeline.clone(),
                    e.status.clone(),
                    e.started_at.clone(),
                    trigger.to_string(),
                ]
            })
            .collect();
        table::print(&["ID", "PIPELINE", "STATUS", "STARTED", "TRIGGER"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

/// Lists the pipelines the server knows, each with its newest execution:
/// its status, what started it and how long ago.
pub(crate) async fn pipelines(data_dir: &Path, json: bool) -> Result<ExitCode> {
    let conn = Connection::open_lasting(data_dir).await?;
    let list = conn
        .client
        .get::<Vec<gantry_api::PipelineSummary>>("/api/v1/pipelines")
        .await;
    conn.close().await;
    let list = list?;
    if json {
        println!("{}", serde_json::to_string(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        eprintln!("no pipelines yet: `gantry run -f gantry.yaml` runs one");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| match &p.last_execution {
            Some(e) => vec![
                p.name.clone(),
                e.status.clone(),
                e.trigger
                    .as_ref()
                    .map_or_else(String::new, |t| t.trigger_type.clone()),
                render::age(&e.started_at),
                p.executions.to_string(),
                e.id.clone(),
            ],
            None => vec![
                p.name.clone(),
                "never run".to_string(),
                String::new(),
                String::new(),
                "0".to_string(),
                String::new(),
            ],
        })
        .collect();
    table::print(
        &[
            "PIPELINE",
            "LAST STATUS",
            "TRIGGER",
            "STARTED",
            "RUNS",
            "LAST EXECUTION",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

/// What started an execution and the commits its sources took, for
/// `gantry status`: `started by webhook (github delivery …)` and
/// `source checkout at 0d1a26e67d8f`.
fn origin(execution: &gantry_api::ExecutionView) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(t) = &execution.trigger {
        let mut line = format!("  started by {}", t.trigger_type);
        match (&t.by, t.detail.as_str()) {
            (Some(by), detail) if detail.is_empty() || detail == by => {
                line.push_str(&format!(" ({by})"));
            }
            (_, "") => {}
            (_, detail) => line.push_str(&format!(" ({detail})")),
        }
        lines.push(line);
    }
    for (action, commit) in &execution.source_revisions {
        let short: String = commit.chars().take(12).collect();
        lines.push(format!("  source {action} at {short}"));
    }
    lines
}

/// Prints an execution's action logs (one action's with `target`),
/// following them until the execution ends with `follow`, then exiting 1
/// when it (or the target action) did not succeed. An execution or action
/// that does not exist is an error, not an empty log.
pub(crate) async fn logs(
    data_dir: &Path,
    id: &str,
    target: Option<&str>,
    follow: bool,
) -> Result<ExitCode> {
    let target = match target {
        Some(t) => {
            let Some((stage, action)) = t.split_once('/') else {
                bail!("{t:?} is not STAGE/ACTION")
            };
            Some((stage, action))
        }
        None => None,
    };
    let conn = Connection::open_lasting(data_dir).await?;
    let result = async {
        let execution = conn.client.execution(id).await?;
        let filter = match target {
            Some((stage, action)) => {
                if execution.action(stage, action).is_none() {
                    bail!(
                        "execution {id} has no action {stage}/{action}{}",
                        hints::among(
                            &format!("{stage}/{action}"),
                            &hints::action_names(&execution),
                            "its actions"
                        )
                    );
                }
                format!("&stage={stage}&action={action}")
            }
            None => String::new(),
        };
        print_logs(&conn, id, &filter, follow, target).await
    }
    .await;
    conn.close().await;
    result.map(|succeeded| {
        if succeeded {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    })
}

/// Prints the log lines after each other, following them with `follow`
/// until the execution ends. Returns whether what was followed succeeded:
/// the `target` action, else the execution (`true` without `follow`).
async fn print_logs(
    conn: &Connection,
    id: &str,
    filter: &str,
    follow: bool,
    target: Option<(&str, &str)>,
) -> Result<bool> {
    let mut after = 0i64;
    let mut version = 0;
    let mut ended = None;
    loop {
        let page: gantry_api::LogsPage = conn
            .client
            .get(&format!(
                "/api/v1/executions/{id}/logs?after={after}{filter}"
            ))
            .await?;
        for l in &page.lines {
            let time = l.at.get(11..23).unwrap_or(&l.at);
            println!("{time} {}/{} | {}", l.stage, l.action, l.line);
        }
        after = page.next;
        if !page.lines.is_empty() {
            continue;
        }
        if !follow {
            return Ok(true);
        }
        if let Some(succeeded) = ended {
            return Ok(succeeded);
        }
        let execution = conn.client.execution(id).await?;
        if execution.is_finished() {
            // One more page for the lines written just before it ended.
            ended = Some(match target {
                Some((stage, action)) => execution
                    .action(stage, action)
                    .is_some_and(|a| a.status.as_deref() == Some("Succeeded")),
                None => execution.status == "Succeeded",
            });
            continue;
        }
        version = conn
            .client
            .changes(version, Duration::from_millis(500))
            .await?;
    }
}
