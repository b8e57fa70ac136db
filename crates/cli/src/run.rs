//! `gantry run` and `gantry watch`: validates a pipeline file locally, sends
//! it to the data dir's server (starting one in the background when none
//! runs, so the execution never depends on this command), and follows the
//! execution to its end with the live view. `follow` is shared with the
//! commands that follow an execution after acting on it (`retry`), and
//! `watch` re-attaches to one.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::signal::unix::{SignalKind, signal};

use crate::args::parse_pairs;
use crate::client::{self, Connection};
use crate::{paste, project, render};

pub(crate) async fn run(
    data_dir: &Path,
    file: &Path,
    vars: &[String],
    no_follow: bool,
    json: bool,
) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    // Validate here too, so an invalid file never starts a server.
    if let Err(errors) = gantry_spec::pipeline::parse_pipeline(&file.display().to_string(), &text) {
        for error in &errors {
            eprintln!("{error}");
        }
        bail!(
            "{} is invalid ({} errors); nothing was run",
            file.display(),
            errors.len()
        );
    }
    let variables: BTreeMap<String, String> = parse_pairs(vars, "--var")?.into_iter().collect();
    let project = project::ProjectFiles::with_text(file, text.clone())?;
    let has_environments = gantry_spec::parse_document(&file.display().to_string(), &text)
        .map(|d| !d.environments.is_empty() || !d.includes.is_empty())
        .unwrap_or(false);
    // The execution runs in a server that outlives this command (one in
    // the background when none runs), so Ctrl-C only stops following it,
    // and services it deploys stay reachable after it returns.
    let conn = Connection::open_lasting(data_dir).await?;
    let request = gantry_api::StartRequest {
        file: project.file,
        text: Some(project.text),
        includes: project.includes,
        variables,
    };
    let started = conn
        .client
        .post::<gantry_api::Started>("/api/v1/executions", &request)
        .await;
    let id = match started {
        Ok(started) => started.id,
        Err(error) => {
            conn.close().await;
            return Err(error);
        }
    };
    if no_follow && conn.embedded.is_none() {
        if json {
            render::print_json(&gantry_api::Started { id })?;
        } else {
            println!("{id}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if conn.embedded.is_some() {
        // The background server could not be reached in time and this
        // process owns the server after all: follow instead of abandoning.
        eprintln!(
            "note: following {id} in this process (no background server answered for {})",
            data_dir.display()
        );
    }
    let code = follow(&conn, &id, json).await;
    if has_environments && !json {
        print_environments(&conn).await;
    }
    conn.close().await;
    code
}

/// `gantry watch ID`: follows an execution (again), as `run` does, until it
/// ends; exits 0 when it succeeded, 1 otherwise.
pub(crate) async fn watch(data_dir: &Path, id: &str, json: bool) -> Result<ExitCode> {
    let conn = Connection::open_lasting(data_dir).await?;
    let code = follow(&conn, id, json).await;
    conn.close().await;
    code
}

/// Where the environments are served, and how to stop the server.
async fn print_environments(conn: &Connection) {
    let Ok(list) = conn.client.get::<Vec<String>>("/api/v1/environments").await else {
        return;
    };
    for env in list {
        if let Ok(status) = conn
            .client
            .get::<gantry_api::EnvironmentStatus>(&format!("/api/v1/environments/{env}"))
            .await
        {
            println!("{env}: {}", status.url);
        }
    }
    if conn.embedded.is_none() {
        println!(
            "(served by the gantry server of {}; `{} shutdown` stops it)",
            conn.data_dir.display(),
            paste::gantry_with(&data_dir_hint(&conn.data_dir))
        );
    }
}

/// The shortest time between two fetches of the followed execution.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(50);

/// Follows an execution until it ends; prints the live view or, with `json`,
/// the final execution JSON, and exits 0 when it succeeded, 1 otherwise.
///
/// Ctrl-C detaches, whatever the pipeline: the execution goes on in its
/// server, and the message says how to re-attach (`gantry watch`) or stop
/// it. Only when this process is the server (no background server could be
/// started) can it not go on; then Ctrl-C stops it, abandoning its running
/// actions with that reason.
pub(crate) async fn follow(conn: &Connection, id: &str, json: bool) -> Result<ExitCode> {
    let tty = std::io::stdout().is_terminal() && !json;
    let hint = paste::gantry_with(&data_dir_hint(&conn.data_dir));
    let mut view = render::LiveView::new(tty, hint.clone());
    let mut version = 0;
    let mut interrupted = false;
    // Registered once, before the first fetch: a Ctrl-C that comes while
    // the view is fetched or drawn waits in the stream for the next select
    // (a `ctrl_c()` future made anew in each select would lose it, and the
    // handler already installed would keep the default from ending us).
    let mut ctrl_c = signal(SignalKind::interrupt())?;
    loop {
        let execution = conn.client.execution(id).await?;
        if tty && !execution.is_finished() && view.shows_logs() {
            // The running actions' last lines; a failed read only leaves
            // them out of this drawing.
            let path = format!(
                "/api/v1/executions/{id}/logs?after={}&limit=2000",
                view.tails.after
            );
            if let Ok(page) = conn.client.get::<gantry_api::LogsPage>(&path).await {
                view.tails.add(&page);
            }
        }
        if !json {
            view.draw(&execution);
        }
        if execution.is_finished() {
            if json {
                println!("{}", serde_json::to_string(&execution)?);
            }
            return Ok(if execution.status == "Succeeded" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        let wait = if tty {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(5)
        };
        // At most one view every FOLLOW_INTERVAL: changes in between are
        // coalesced, so a fast pipeline is not slowed by its own follower
        // fetching the whole view after each action.
        let next_fetch = tokio::time::Instant::now() + FOLLOW_INTERVAL;
        tokio::select! {
            v = async {
                let v = conn.client.changes(version, wait).await;
                tokio::time::sleep_until(next_fetch).await;
                v
            } => version = v?,
            _ = ctrl_c.recv(), if !interrupted => {
                interrupted = true;
                if conn.embedded.is_none() {
                    eprintln!(
                        "\ndetached from {id}; it goes on in {}.\n  \
                         re-attach: {hint} watch {id}\n  \
                         stop it:   {hint} stop {id}",
                        conn.server_name()
                    );
                    return Ok(ExitCode::FAILURE);
                }
                eprintln!("\nstopping {id}: this process runs its server, so it cannot go on without it (abandoning running actions)…");
                let stop = gantry_api::StopRequest {
                    abandon: true,
                    reason: Some(INTERRUPTED.to_string()),
                };
                let _ = conn.client.post::<gantry_api::Ack>(&format!("/api/v1/executions/{id}/stop"), &stop).await;
            }
        }
    }
}

/// The stop reason of an execution whose follower was interrupted while it
/// ran the server itself.
const INTERRUPTED: &str =
    "interrupted (Ctrl-C) while the gantry command that ran its server followed it";

/// ` --data-dir DIR` when commands typed in the current directory would not
/// find `dir` by themselves (it is not the nearest `.gantry/`), so suggested
/// commands work when pasted.
pub(crate) fn data_dir_hint(dir: &Path) -> String {
    let cwd = std::env::current_dir()
        .ok()
        .and_then(|d| d.canonicalize().ok());
    let dir_abs = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let found = cwd
        .as_deref()
        .and_then(crate::data_dir::nearest)
        .and_then(|d| d.canonicalize().ok());
    if client::is_remote() || found.as_ref() == Some(&dir_abs) {
        return String::new();
    }
    let shown = cwd
        .and_then(|c| dir_abs.strip_prefix(c).ok().map(Path::to_path_buf))
        .unwrap_or(dir_abs);
    format!(" --data-dir {}", shown.display())
}
