//! `gantry run`: validates a pipeline file locally, sends it to the data
//! dir's server (starting one in the background when the run must outlive
//! this command), and follows the execution to its end with the live view.
//! `follow` is shared with the commands that keep an embedded server running
//! after acting on an execution (approve, reject, retry, stop).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::args::parse_pairs;
use crate::client::{self, Connection};
use crate::{project, render};

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
    // Services deployed by this run must stay reachable after it: their
    // load balancers live in the server, so it must outlive this command.
    let has_environments = gantry_spec::parse_document(&file.display().to_string(), &text)
        .map(|d| !d.environments.is_empty() || !d.includes.is_empty())
        .unwrap_or(false);
    if (no_follow || has_environments)
        && !client::is_remote()
        && gantry_server::server_info::live_server(data_dir).is_none()
    {
        // Nothing would keep an embedded server alive after this command
        // returns, so start one in the background; it exits once idle.
        spawn_background_server(data_dir).await?;
    }
    let conn = Connection::open(data_dir).await?;
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
    if no_follow {
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
            "(served by the gantry server of {}; `gantry shutdown` stops it)",
            conn.data_dir.display()
        );
    }
}

/// The shortest time between two fetches of the followed execution.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(50);

/// Follows an execution until it ends; prints the live view or, with `json`,
/// the final execution JSON. Ctrl-C stops the execution (abandoning running
/// actions) when this process owns the server.
pub(crate) async fn follow(conn: &Connection, id: &str, json: bool) -> Result<ExitCode> {
    let tty = std::io::stdout().is_terminal() && !json;
    let mut view = render::LiveView::new(tty, data_dir_hint(&conn.data_dir));
    let mut version = 0;
    let mut interrupted = false;
    loop {
        let execution = conn.client.execution(id).await?;
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
            _ = tokio::signal::ctrl_c(), if !interrupted => {
                interrupted = true;
                if conn.embedded.is_some() {
                    eprintln!("\nstopping {id} (abandoning running actions)…");
                    let stop = gantry_api::StopRequest {
                        abandon: true,
                        reason: Some("interrupted (Ctrl-C)".to_string()),
                    };
                    let _ = conn.client.post::<gantry_api::Ack>(&format!("/api/v1/executions/{id}/stop"), &stop).await;
                } else {
                    eprintln!("\nstopped following; {id} goes on in the server");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    }
}

/// Starts `gantry server` detached from this terminal, logging to
/// `DATA_DIR/server.log`, and waits until it publishes `server.json`.
async fn spawn_background_server(data_dir: &Path) -> Result<()> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let log_path = data_dir.join("server.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the gantry executable")?;
    std::process::Command::new(exe)
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--registry-listen",
            "127.0.0.1:0",
            "--idle-exit",
            "10",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().context("server log")?)
        .stderr(log)
        // Its own process group: Ctrl-C in this terminal must not stop it.
        .process_group(0)
        .spawn()
        .context("cannot start a background server")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while gantry_server::server_info::live_server(data_dir).is_none() {
        if tokio::time::Instant::now() > deadline {
            bail!(
                "the background server did not start; see {}",
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// ` --data-dir DIR` when commands typed in the current directory would not
/// find `dir` by default, so suggested commands work when pasted.
fn data_dir_hint(dir: &Path) -> String {
    let cwd = std::env::current_dir()
        .ok()
        .and_then(|d| d.canonicalize().ok());
    let dir_abs = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    if cwd.as_ref().is_some_and(|c| c.join(".gantry") == dir_abs) {
        return String::new();
    }
    let shown = cwd
        .and_then(|c| dir_abs.strip_prefix(c).ok().map(Path::to_path_buf))
        .unwrap_or(dir_abs);
    format!(" --data-dir {}", shown.display())
}
