//! `gantry`: the command line. A thin client of the server's API, plus the
//! commands that need no server (`validate`, `schema`, `buildspec run`).
//! Errors are printed once, with their cause chain, by `main`.
//!
//! `main` parses the arguments (`args`), sets up logging and the runtime, and
//! hands the command to `dispatch`, which calls the module of its command
//! group: `run`, `inspect` (status, executions, logs), `approvals`,
//! `control` (retry, stop), `server`, `buildspec`, `validate` (and schema),
//! `deploy` (apply, deploy, rollback, env, shutdown), `triggers`, `param`,
//! `users` (user, token, whoami, audit), `registry` (gc), `login` and `demo`. `client` is how every command
//! reaches a server; `render` draws executions.

mod approvals;
mod args;
mod buildspec;
mod client;
mod control;
mod demo;
mod deploy;
mod inspect;
mod login;
mod param;
mod project;
mod registry;
mod render;
mod run;
mod server;
mod triggers;
mod users;
mod validate;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use args::{Cli, Command};
use clap::Parser;
use client::{ApiError, Connection, data_dir};

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
            if let Some(ApiError(body)) = error.downcast_ref::<ApiError>() {
                for line in &body.errors {
                    eprintln!("{line}");
                }
                eprintln!("error: {} [{}]", body.message, body.canonical());
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
    let data_dir_for = |file: &Path| data_dir(cli.data_dir.as_deref(), file);
    let default_dir = || data_dir_for(Path::new("gantry.yaml"));
    let success = |()| ExitCode::SUCCESS;
    match cli.command {
        Command::Validate { file } => validate::validate(&file.file),
        Command::Schema => validate::schema(),
        Command::Run {
            file,
            vars,
            no_follow,
            json,
        } => {
            let data_dir = data_dir_for(&file.file)?;
            run::run(&data_dir, &file.file, &vars, no_follow, json).await
        }
        Command::Status { id, json } => inspect::status(&default_dir()?, &id, json).await,
        Command::Executions { pipeline, json } => {
            inspect::executions(&default_dir()?, pipeline, json).await
        }
        Command::Logs { id, target, follow } => {
            inspect::logs(&default_dir()?, &id, target.as_deref(), follow).await
        }
        Command::Approve(d) => approvals::decide(&default_dir()?, d, true).await,
        Command::Reject(d) => approvals::decide(&default_dir()?, d, false).await,
        Command::Retry {
            id,
            stage,
            all_actions,
        } => control::retry(&default_dir()?, &id, stage, all_actions).await,
        Command::Stop {
            id,
            abandon,
            reason,
        } => control::stop(&default_dir()?, &id, abandon, reason).await,
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
            let data_dir = data_dir_for(&file.file)?;
            with_connection(&data_dir, async |conn| {
                deploy::apply(conn, &file.file).await
            })
            .await
            .map(success)
        }
        Command::Deploy {
            environment,
            service,
            image,
            json,
        } => with_connection(&default_dir()?, async |conn| {
            deploy::deploy(conn, &environment, &service, &image, json).await
        })
        .await
        .map(exit_code),
        Command::Rollback {
            environment,
            service,
            to,
            json,
        } => with_connection(&default_dir()?, async |conn| {
            deploy::rollback(conn, &environment, &service, to, json).await
        })
        .await
        .map(exit_code),
        Command::Triggers { json } => with_connection(&default_dir()?, async |conn| {
            triggers::list(conn, json).await
        })
        .await
        .map(success),
        Command::Env { command } => with_connection(&default_dir()?, async |conn| {
            deploy::env(conn, command).await
        })
        .await
        .map(success),
        Command::Shutdown { stop_services } => with_connection(&default_dir()?, async |conn| {
            deploy::shutdown(conn, stop_services).await
        })
        .await
        .map(success),
        Command::Param { command } => with_connection(&default_dir()?, async |conn| {
            param::run(conn, command).await
        })
        .await
        .map(success),
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
            server::serve(&default_dir()?, options, idle_exit).await
        }
        Command::Buildspec { command } => buildspec::run(command, cli.data_dir.as_deref()).await,
        Command::User { command } => with_connection(&default_dir()?, async |conn| {
            users::user(conn, command).await
        })
        .await
        .map(success),
        Command::Token { command } => with_connection(&default_dir()?, async |conn| {
            users::token(conn, command).await
        })
        .await
        .map(success),
        Command::Whoami => with_connection(&default_dir()?, users::whoami)
            .await
            .map(success),
        Command::Audit {
            since,
            principal,
            limit,
            json,
        } => with_connection(&default_dir()?, async |conn| {
            users::audit(conn, since, principal, limit, json).await
        })
        .await
        .map(success),
        Command::Registry { command } => with_connection(&default_dir()?, async |conn| {
            registry::registry(conn, command).await
        })
        .await
        .map(success),
        Command::Login { url } => login::login(&url).await.map(success),
    }
}

/// Opens the data dir's connection, runs `command` with it, and closes it
/// (waiting for an embedded server's running actions) whatever it returned.
async fn with_connection<T>(
    data_dir: &Path,
    command: impl AsyncFnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    let conn = Connection::open(data_dir).await?;
    let result = command(&conn).await;
    conn.close().await;
    result
}

/// The exit code of a command that answers whether it succeeded.
fn exit_code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
