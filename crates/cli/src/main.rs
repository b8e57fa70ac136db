//! `gantry`: the command line. A thin client of the server's API, plus the
//! commands that need no server (`validate`, `schema`, `buildspec run`).
//! Errors are printed once, with their cause chain, by `main`.

mod client;
mod demo;
mod deploy;
mod login;
mod param;
mod project;
mod render;
mod users;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use client::{ApiError, Connection, data_dir};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "gantry",
    version,
    about = "Self-hosted continuous delivery for containerized microservices"
)]
struct Cli {
    /// The data dir (default: `.gantry/` beside the pipeline file).
    #[arg(long, global = true, env = "GANTRY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Talk to this server (`https://gantry.example.com:7700`) instead of
    /// the data dir's; the token comes from GANTRY_TOKEN or `gantry login`.
    #[arg(long, global = true, env = "GANTRY_SERVER", value_name = "URL")]
    server: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct FileArg {
    /// The pipeline file.
    #[arg(short = 'f', long = "file", default_value = "gantry.yaml")]
    file: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Validates a pipeline file; prints every error as FILE:LINE:COL: message.
    Validate {
        #[command(flatten)]
        file: FileArg,
    },
    /// Prints the JSON Schema of gantry.yaml.
    Schema,
    /// Starts an execution and follows it to the end.
    Run {
        #[command(flatten)]
        file: FileArg,
        /// Overrides a pipeline variable.
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
        /// Prints the execution id once started instead of following it.
        #[arg(long)]
        no_follow: bool,
        /// Prints machine-readable JSON instead of the live view.
        #[arg(long)]
        json: bool,
    },
    /// Shows one execution.
    Status {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Lists recent executions, newest first.
    Executions {
        #[arg(long)]
        pipeline: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Prints action logs.
    Logs {
        id: String,
        /// STAGE/ACTION
        target: Option<String>,
        #[arg(long)]
        follow: bool,
    },
    /// Approves a waiting approval.
    Approve(Decision),
    /// Rejects a waiting approval.
    Reject(Decision),
    /// Retries a failed stage (its failed actions, or all with --all-actions).
    Retry {
        id: String,
        stage: String,
        #[arg(long)]
        all_actions: bool,
    },
    /// Stops an execution (waiting for running actions, or abandoning them).
    Stop {
        id: String,
        #[arg(long)]
        abandon: bool,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Runs the control plane.
    Server {
        #[arg(long, default_value = "127.0.0.1:7700")]
        listen: SocketAddr,
        /// Where the embedded OCI registry listens.
        #[arg(long, default_value = "127.0.0.1:7701")]
        registry_listen: SocketAddr,
        /// A URL the server is reached by (its host is accepted in `Host`
        /// headers); repeatable.
        #[arg(long = "public-url", value_name = "URL")]
        public_urls: Vec<String>,
        /// The certificate chain (PEM) to serve TLS with.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The private key (PEM) of --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Serve plain HTTP on a non-loopback address (tokens travel in the clear).
        #[arg(long)]
        insecure_http: bool,
        /// Exit after this many seconds with no action running (used by
        /// `run --no-follow` when it starts a server in the background).
        #[arg(long, value_name = "SECONDS", hide = true)]
        idle_exit: Option<u64>,
    },
    /// Runs the seed's whole system: the sample shop's eight-step pipeline.
    Demo {
        /// Approve the release without waiting for a person.
        #[arg(long)]
        auto_approve: bool,
        /// Stop the services and exit when the pipeline ends.
        #[arg(long)]
        exit: bool,
        /// The last line is the execution JSON.
        #[arg(long)]
        json: bool,
        /// Then change one backend, commit, and run again (build once, visibly).
        #[arg(long)]
        second_run: bool,
    },
    /// Registers a file's pipeline, environments and services without running anything.
    Apply {
        #[command(flatten)]
        file: FileArg,
    },
    /// Rolls a service to an image, as a deploy action does.
    Deploy {
        environment: String,
        service: String,
        #[arg(long)]
        image: String,
        #[arg(long)]
        json: bool,
    },
    /// Returns a service to an earlier revision.
    Rollback {
        environment: String,
        service: String,
        #[arg(long)]
        to: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Environments: status, list.
    Env {
        #[command(subcommand)]
        command: deploy::EnvCommand,
    },
    /// Stops the server that owns the data dir (replicas keep running and
    /// are re-adopted by the next server, unless --stop-services).
    Shutdown {
        #[arg(long)]
        stop_services: bool,
    },
    /// The parameter store: put, get, list, history, label, delete, rotate-key.
    Param {
        #[command(subcommand)]
        command: param::ParamCommand,
    },
    /// Buildspec commands.
    Buildspec {
        #[command(subcommand)]
        command: BuildspecCommand,
    },
    /// Users and their grants (admin).
    User {
        #[command(subcommand)]
        command: users::UserCommand,
    },
    /// API tokens: create, list, revoke.
    Token {
        #[command(subcommand)]
        command: users::TokenCommand,
    },
    /// Checks a token against a server and keeps it for `--server URL`
    /// (reads it from GANTRY_TOKEN or standard input).
    Login { url: String },
    /// Who the token in use belongs to.
    Whoami,
    /// The audit log: every change and every refused request (admin).
    Audit {
        /// Only entries since: a duration back from now (1h, 7d) or Unix ms.
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        principal: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct Decision {
    id: String,
    /// STAGE/ACTION
    target: String,
    #[arg(long)]
    comment: Option<String>,
    /// Ignored: a decision is recorded under the identity of the token in
    /// use (kept so that older scripts keep working).
    #[arg(long, hide = true)]
    by: Option<String>,
}

#[derive(Subcommand)]
enum BuildspecCommand {
    /// Runs one buildspec locally, like CodeBuild's local agent.
    Run {
        file: PathBuf,
        /// The source directory (the build's working directory).
        #[arg(long, default_value = ".")]
        source: PathBuf,
        /// Where artifacts are written.
        #[arg(long, default_value = "gantry-artifacts")]
        out: PathBuf,
        #[arg(long = "env", value_name = "NAME=VALUE")]
        env: Vec<String>,
        /// A variable whose value is masked in the log.
        #[arg(long = "secret-env", value_name = "NAME=VALUE")]
        secret_env: Vec<String>,
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        timeout: Duration,
        /// Runs the build inside a container of this image (Docker Engine).
        #[arg(long)]
        image: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    gantry_spec::duration::parse_duration(s)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GANTRY_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(default_log_filter(&cli.command))
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(error) => {
            if let Some(api) = error.downcast_ref::<ApiError>() {
                for line in &api.errors {
                    eprintln!("{line}");
                }
                eprintln!("error: {} [{}]", api.message, api.code);
            } else {
                eprintln!("error: {error:#}");
            }
            ExitCode::FAILURE
        }
    }
}

fn default_log_filter(command: &Command) -> &'static str {
    match command {
        Command::Server { .. } => "info",
        _ => "warn",
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    client::set_remote(cli.server.clone());
    let default_file = PathBuf::from("gantry.yaml");
    let data_dir_for = |file: &Path| data_dir(cli.data_dir.as_deref(), file);
    match cli.command {
        Command::Validate { file } => validate(&file.file),
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&gantry_spec::pipeline::pipeline_schema())?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            file,
            vars,
            no_follow,
            json,
        } => {
            run(
                &data_dir_for(&file.file)?,
                &file.file,
                &vars,
                no_follow,
                json,
            )
            .await
        }
        Command::Status { id, json } => {
            let conn = Connection::open(&data_dir_for(&default_file)?).await?;
            let execution = conn.client.execution(&id).await;
            conn.close().await;
            let execution = execution?;
            if json {
                println!("{}", serde_json::to_string(&execution)?);
            } else {
                for line in render::view(&execution, std::io::stdout().is_terminal(), "") {
                    println!("{line}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Executions { pipeline, json } => {
            let conn = Connection::open(&data_dir_for(&default_file)?).await?;
            let query = pipeline
                .map(|p| format!("?pipeline={p}"))
                .unwrap_or_default();
            let list = conn
                .client
                .get_as::<Vec<gantry_api::ExecutionView>>(&format!("/api/v1/executions{query}"))
                .await;
            conn.close().await;
            let list = list?;
            if json {
                println!("{}", serde_json::to_string(&list)?);
            } else {
                for e in &list {
                    println!(
                        "{}  {:<20} {:<11} {}",
                        e.id, e.pipeline, e.status, e.started_at
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Logs { id, target, follow } => {
            logs(
                &data_dir_for(&default_file)?,
                &id,
                target.as_deref(),
                follow,
            )
            .await
        }
        Command::Approve(d) => decide(&data_dir_for(&default_file)?, d, true).await,
        Command::Reject(d) => decide(&data_dir_for(&default_file)?, d, false).await,
        Command::Retry {
            id,
            stage,
            all_actions,
        } => {
            let body = json!({"stage": stage, "all_actions": all_actions});
            act_then_follow(
                &data_dir_for(&default_file)?,
                &id,
                &format!("/api/v1/executions/{id}/retry"),
                body,
            )
            .await
        }
        Command::Stop {
            id,
            abandon,
            reason,
        } => {
            let body = json!({"abandon": abandon, "reason": reason});
            act_then_follow(
                &data_dir_for(&default_file)?,
                &id,
                &format!("/api/v1/executions/{id}/stop"),
                body,
            )
            .await
        }
        Command::Demo {
            auto_approve,
            exit,
            json,
            second_run,
        } => {
            demo::run(demo::DemoOptions {
                data_dir: cli.data_dir.clone(),
                auto_approve,
                exit,
                json,
                second_run,
            })
            .await
        }
        Command::Apply { file } => {
            let conn = Connection::open(&data_dir_for(&file.file)?).await?;
            let result = deploy::apply(&conn, &file.file).await;
            conn.close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Deploy {
            environment,
            service,
            image,
            json,
        } => {
            let conn = Connection::open(&data_dir_for(&default_file)?).await?;
            let result = deploy::deploy(&conn, &environment, &service, &image, json).await;
            conn.close().await;
            result.map(|ok| {
                if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            })
        }
        Command::Rollback {
            environment,
            service,
            to,
            json,
        } => {
            let conn = Connection::open(&data_dir_for(&default_file)?).await?;
            let result = deploy::rollback(&conn, &environment, &service, to, json).await;
            conn.close().await;
            result.map(|ok| {
                if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            })
        }
        Command::Env { command } => {
            let conn = Connection::open(&data_dir_for(&default_file)?).await?;
            let result = deploy::env(&conn, command).await;
            conn.close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Shutdown { stop_services } => {
            let conn = Connection::open(&data_dir_for(&default_file)?).await?;
            let result = deploy::shutdown(&conn, stop_services).await;
            conn.close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Param { command } => {
            let conn = Connection::open(&data_dir_for(&default_file)?).await?;
            let result = param::run(&conn, command).await;
            conn.close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Server {
            listen,
            registry_listen,
            public_urls,
            tls_cert,
            tls_key,
            insecure_http,
            idle_exit,
        } => {
            let options = gantry_server::ServerOptions {
                listen,
                registry_listen,
                public_urls,
                tls: tls_cert.zip(tls_key),
                insecure_http,
            };
            server(&data_dir_for(&default_file)?, options, idle_exit).await
        }
        Command::Buildspec { command } => buildspec_run(command).await,
        Command::User { command } => {
            let conn = Connection::open(&data_dir_for(&default_file)?).await?;
            let result = users::user(&conn, command).await;
            conn.close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Token { command } => {
            let conn = Connection::open(&data_dir_for(&default_file)?).await?;
            let result = users::token(&conn, command).await;
            conn.close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Whoami => {
            let conn = Connection::open(&data_dir_for(&default_file)?).await?;
            let result = users::whoami(&conn).await;
            conn.close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Audit {
            since,
            principal,
            limit,
            json,
        } => {
            let conn = Connection::open(&data_dir_for(&default_file)?).await?;
            let result = users::audit(&conn, since, principal, limit, json).await;
            conn.close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Login { url } => login::login(&url).await.map(|()| ExitCode::SUCCESS),
    }
}

fn validate(file: &Path) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    match gantry_spec::pipeline::parse_pipeline(&file.display().to_string(), &text) {
        Ok(pipeline) => {
            let actions: usize = pipeline.stages.iter().map(|s| s.actions.len()).sum();
            println!(
                "{}: valid ({} stages, {actions} actions)",
                file.display(),
                pipeline.stages.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for error in &errors {
                println!("{error}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
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

fn parse_pairs(pairs: &[String], what: &str) -> Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("{what} {p:?} is not NAME=VALUE"),
        })
        .collect()
}

async fn run(
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
        spawn_background_server(data_dir)?;
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
        .post_as::<_, gantry_api::Started>("/api/v1/executions", &request)
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
            println!("{}", json!({"id": id}));
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
    let Ok(list) = conn.client.get("/api/v1/environments").await else {
        return;
    };
    for env in list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if let Ok(status) = conn
            .client
            .get(&format!("/api/v1/environments/{env}"))
            .await
        {
            println!("{env}: {}", status["url"].as_str().unwrap_or_default());
        }
    }
    if conn.embedded.is_none() {
        println!(
            "(served by the gantry server of {}; `gantry shutdown` stops it)",
            conn.data_dir.display()
        );
    }
}

/// Follows an execution until it ends; prints the live view or, with `json`,
/// the final execution JSON. Ctrl-C stops the execution (abandoning running
/// actions) when this process owns the server.
async fn follow(conn: &Connection, id: &str, json: bool) -> Result<ExitCode> {
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
        tokio::select! {
            v = conn.client.changes(version, wait) => version = v?,
            _ = tokio::signal::ctrl_c(), if !interrupted => {
                interrupted = true;
                if conn.embedded.is_some() {
                    eprintln!("\nstopping {id} (abandoning running actions)…");
                    let stop = gantry_api::StopRequest {
                        abandon: true,
                        reason: Some("interrupted (Ctrl-C)".to_string()),
                    };
                    let _ = conn.client.post_as::<_, Value>(&format!("/api/v1/executions/{id}/stop"), &stop).await;
                } else {
                    eprintln!("\nstopped following; {id} goes on in the server");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    }
}

async fn decide(data_dir: &Path, d: Decision, approve: bool) -> Result<ExitCode> {
    let Some((stage, action)) = d.target.split_once('/') else {
        bail!("{:?} is not STAGE/ACTION", d.target);
    };
    if d.by.is_some() {
        eprintln!("note: --by is ignored; the decision is recorded under your token's identity");
    }
    let conn = Connection::open(data_dir).await?;
    // What the approval waits for, shown before deciding; the decision names
    // its fingerprint so that it cannot apply to anything else.
    let shown = conn
        .client
        .get(&format!(
            "/api/v1/executions/{}/approvals/{stage}/{action}",
            d.id
        ))
        .await;
    let fingerprint = match &shown {
        Ok(view) => {
            for line in render::binding(view) {
                eprintln!("{line}");
            }
            view["fingerprint"].as_str().map(str::to_string)
        }
        Err(_) => None,
    };
    let body = json!({
        "stage": stage, "action": action,
        "decision": if approve { "Approved" } else { "Rejected" },
        "comment": d.comment, "fingerprint": fingerprint,
    });
    let result = conn
        .client
        .post(&format!("/api/v1/executions/{}/approvals", d.id), &body)
        .await;
    let code = match result {
        Ok(answer) => {
            let outcome = &answer["outcome"];
            let pending = outcome["status"].as_str() == Some("Pending");
            println!(
                "{} {}/{} of {} as {}{}",
                if approve { "approved" } else { "rejected" },
                stage,
                action,
                d.id,
                answer["by"].as_str().unwrap_or("?"),
                if pending {
                    format!(
                        " ({} of {} approvals; waiting for more)",
                        outcome["approvals"], outcome["required"]
                    )
                } else {
                    String::new()
                }
            );
            if conn.embedded.is_some() {
                follow(&conn, &d.id, false).await.map(|_| ExitCode::SUCCESS)
            } else {
                Ok(ExitCode::SUCCESS)
            }
        }
        Err(error) => {
            if let Some(api) = error.downcast_ref::<ApiError>()
                && matches!(
                    api.code.as_str(),
                    "approval.not_waiting" | "approval.superseded"
                )
            {
                eprintln!("error: {}", api.message);
                Ok(ExitCode::FAILURE)
            } else {
                Err(error)
            }
        }
    };
    conn.close().await;
    code
}

/// Sends a request about an execution; with an embedded server, keeps it
/// running until the execution ends or waits for a person again.
async fn act_then_follow(data_dir: &Path, id: &str, path: &str, body: Value) -> Result<ExitCode> {
    let conn = Connection::open(data_dir).await?;
    let result = conn.client.post(path, &body).await;
    let code = match result {
        Ok(_) if conn.embedded.is_some() => {
            follow(&conn, id, false).await.map(|_| ExitCode::SUCCESS)
        }
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(error) => Err(error),
    };
    conn.close().await;
    code
}

async fn logs(data_dir: &Path, id: &str, target: Option<&str>, follow: bool) -> Result<ExitCode> {
    let filter = match target {
        Some(t) => {
            let Some((stage, action)) = t.split_once('/') else {
                bail!("{t:?} is not STAGE/ACTION")
            };
            format!("&stage={stage}&action={action}")
        }
        None => String::new(),
    };
    let conn = Connection::open(data_dir).await?;
    let result = print_logs(&conn, id, &filter, follow).await;
    conn.close().await;
    result.map(|()| ExitCode::SUCCESS)
}

async fn print_logs(conn: &Connection, id: &str, filter: &str, follow: bool) -> Result<()> {
    let mut after = 0i64;
    let mut version = 0;
    loop {
        let page: gantry_api::LogsPage = conn
            .client
            .get_as(&format!(
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
            return Ok(());
        }
        if conn.client.execution(id).await?.is_finished() {
            return Ok(());
        }
        version = conn
            .client
            .changes(version, Duration::from_millis(500))
            .await?;
    }
}

/// Starts `gantry server` detached from this terminal, logging to
/// `DATA_DIR/server.log`, and waits until it publishes `server.json`.
fn spawn_background_server(data_dir: &Path) -> Result<()> {
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
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while gantry_server::server_info::live_server(data_dir).is_none() {
        if std::time::Instant::now() > deadline {
            bail!(
                "the background server did not start; see {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

async fn server(
    data_dir: &Path,
    options: gantry_server::ServerOptions,
    idle_exit: Option<u64>,
) -> Result<ExitCode> {
    let server = gantry_server::RunningServer::start_with(data_dir, options).await?;
    tracing::info!(api = %server.api, data_dir = %data_dir.display(), "gantry server is listening.");
    eprintln!(
        "gantry server: API {}, registry {} (data dir {})",
        server.api,
        server.registry,
        data_dir.display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("signal handler")?;
    let plane = server.plane.clone();
    let idle = async move {
        let Some(limit) = idle_exit else {
            return std::future::pending().await;
        };
        let mut idle_for = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            idle_for = if plane.busy().await || plane.serving().await {
                0
            } else {
                idle_for + 1
            };
            if idle_for >= limit {
                return;
            }
        }
    };
    let asked = server.plane.clone();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        () = asked.shutdown_requested() => eprintln!("gantry server: shutdown requested"),
        () = idle => eprintln!("gantry server: idle for {}s", idle_exit.unwrap_or_default()),
    }
    eprintln!("gantry server: shutting down");
    server.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

struct StdoutLog;

impl gantry_build::LogSink for StdoutLog {
    fn line(&self, line: &str) {
        use std::io::Write;
        let mut out = std::io::stderr().lock();
        let _ = writeln!(out, "{line}");
    }
}

async fn buildspec_run(command: BuildspecCommand) -> Result<ExitCode> {
    let BuildspecCommand::Run {
        file,
        source,
        out,
        env,
        secret_env,
        timeout,
        image,
        json,
    } = command;
    let (file, source, out) = (file.as_path(), source.as_path(), out.as_path());
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let (buildspec, warnings) =
        match gantry_spec::buildspec::parse_buildspec(&file.display().to_string(), &text) {
            Ok(parsed) => parsed,
            Err(errors) => {
                for error in &errors {
                    eprintln!("{error}");
                }
                bail!(
                    "{} is invalid ({} errors); nothing was run",
                    file.display(),
                    errors.len()
                );
            }
        };
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let source = std::fs::canonicalize(source)
        .with_context(|| format!("cannot resolve {}", source.display()))?;
    let out =
        std::fs::canonicalize(out).with_context(|| format!("cannot resolve {}", out.display()))?;
    let request = gantry_build::BuildRequest {
        buildspec,
        source_dir: source,
        secondary_sources: Vec::new(),
        env: parse_pairs(&env, "--env")?,
        secrets: parse_pairs(&secret_env, "--secret-env")?,
        build_id: format!("local:{}", std::process::id()),
        build_number: 1,
        initiator: "gantry/local".to_string(),
        resolved_source_version: None,
        timeout,
        out_dir: out.clone(),
        cancel: tokio_util::sync::CancellationToken::new(),
        container: image.map(gantry_build::ContainerSpec::new),
    };
    let outcome = gantry_build::run(request, &StdoutLog).await?;
    if json {
        println!("{}", gantry_build::outcome_json(&outcome, &out));
    } else {
        eprintln!("build {:?}", outcome.status);
    }
    Ok(if outcome.status == gantry_build::BuildStatus::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
