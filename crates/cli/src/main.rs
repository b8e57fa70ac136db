//! `gantry`: the command line. A thin client of the server's API, plus the
//! commands that need no server (`validate`, `schema`, `buildspec run`).
//! Errors are printed once, with their cause chain, by `main`.
//!
//! `main` parses the arguments (`args`), sets up logging and the runtime, and
//! hands the command to `dispatch`, which finds its data dir (`data_dir`)
//! and calls the module of its command group: `run` (and watch), `inspect`
//! (status, executions, logs), `approvals`,
//! `control` (retry, stop), `server`, `buildspec`, `validate` (and schema),
//! `deploy` (apply, deploy, rollback, env, shutdown), `triggers`, `param`,
//! `users` (user, token, whoami, audit), `registry` (gc), `image` (ls, inspect, promote), `login`, `demo`, `backup` (and restore) and `version` (and completions). `client` is how every command
//! reaches a server; `render` draws executions; `pipe` ends a command
//! quietly when its reader goes away; `paste` names the program in the
//! commands printed for a person to paste.

mod agent;
mod approvals;
mod args;
mod backup;
mod buildspec;
mod client;
mod control;
mod data_dir;
mod demo;
mod deploy;
mod env_logs;
mod env_render;
mod hints;
mod image;
mod inspect;
mod login;
mod param;
mod paste;
mod pipe;
mod project;
#[cfg(test)]
mod reference;
mod registry;
mod render;
mod run;
mod server;
mod table;
mod triggers;
mod users;
mod validate;
mod version;

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use args::{Cli, Command};
use clap::Parser;
use client::{ApiError, Connection};

fn main() -> ExitCode {
    pipe::install();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        // No colour codes in files (a background server's server.log) nor
        // under NO_COLOR.
        .with_ansi(render::colour(std::io::stderr().is_terminal()))
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
                for line in &api.body.errors {
                    eprintln!("{line}");
                }
                eprintln!("{}", api.line());
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
    let explicit = cli.data_dir.as_deref();
    // Commands that only work on a data dir that exists find it (and never
    // create one); the few that set one up may (see `data_dir`).
    let existing = || data_dir::existing(explicit);
    let for_setup = || data_dir::for_setup(explicit);
    // A command about the data dir's server: one must run.
    let running = || {
        let dir = existing()?;
        if !client::is_remote() && gantry_server::server_info::live_server(&dir).is_none() {
            anyhow::bail!("no server runs for {}", client::place_of(&dir));
        }
        Ok(dir)
    };
    let success = |()| ExitCode::SUCCESS;
    match cli.command {
        Command::Validate { file } => validate::validate(&file.file, explicit).await,
        Command::Schema => validate::schema(),
        Command::Run {
            file,
            vars,
            no_follow,
            json,
        } => {
            let data_dir = data_dir::for_pipeline(explicit, &file.file)?;
            run::run(&data_dir, &file.file, &vars, no_follow, json).await
        }
        Command::Watch { id, json } => run::watch(&existing()?, &id, json).await,
        Command::Status { id, json } => inspect::status(&existing()?, &id, json).await,
        Command::Pipelines { json } => inspect::pipelines(&existing()?, json).await,
        Command::Executions { pipeline, json } => {
            inspect::executions(&existing()?, pipeline, json).await
        }
        Command::Logs { id, target, follow } => {
            inspect::logs(&existing()?, &id, target.as_deref(), follow).await
        }
        Command::Approve(d) => approvals::decide(&existing()?, d, true).await,
        Command::Reject(d) => approvals::decide(&existing()?, d, false).await,
        Command::Retry {
            id,
            stage,
            all_actions,
            no_follow,
        } => control::retry(&existing()?, &id, stage, all_actions, no_follow).await,
        Command::Stop {
            id,
            abandon,
            reason,
        } => control::stop(&existing()?, &id, abandon, reason).await,
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
            let data_dir = data_dir::for_pipeline(explicit, &file.file)?;
            with_connection(&data_dir, async |conn| {
                deploy::apply(conn, &file.file).await
            })
            .await
            .map(success)
        }
        Command::Deploy {
            control: Some(control),
            ..
        } => with_connection(&existing()?, async |conn| {
            deploy::control(conn, control).await
        })
        .await
        .map(success),
        Command::Deploy {
            control: None,
            environment,
            service,
            image,
            json,
        } => {
            // clap requires all three without a subcommand.
            let (Some(environment), Some(service), Some(image)) = (environment, service, image)
            else {
                anyhow::bail!("gantry deploy needs ENVIRONMENT SERVICE --image REF");
            };
            with_connection(&existing()?, async |conn| {
                deploy::deploy(conn, &environment, &service, &image, json).await
            })
            .await
            .map(exit_code)
        }
        Command::Rollback {
            environment,
            service,
            to,
            json,
        } => with_connection(&existing()?, async |conn| {
            deploy::rollback(conn, &environment, &service, to, json).await
        })
        .await
        .map(exit_code),
        Command::Triggers { json } => {
            with_connection(&existing()?, async |conn| triggers::list(conn, json).await)
                .await
                .map(success)
        }
        // Rendering reads the project's files only: no server.
        Command::Env {
            command: deploy::EnvCommand::Render(args),
        } => env_render::render(&args).map(success),
        Command::Env { command } => {
            with_connection(&existing()?, async |conn| deploy::env(conn, command).await)
                .await
                .map(success)
        }
        // Without a server, --stop-services still stops the replicas (they
        // outlive servers) through one started for it.
        Command::Shutdown { stop_services } => with_connection(
            &if stop_services {
                existing()?
            } else {
                running()?
            },
            async |conn| deploy::shutdown(conn, stop_services).await,
        )
        .await
        .map(success),
        Command::Param { command } => with_connection(
            &if command.may_create_data_dir() {
                for_setup()?
            } else {
                existing()?
            },
            async |conn| param::run(conn, command).await,
        )
        .await
        .map(success),
        Command::Server {
            listen,
            registry_listen,
            public_urls,
            tls_cert,
            tls_key,
            insecure_http,
            database,
            blob_dir,
            lease_ms,
            advertise_url,
            agent_timeout,
            idle_exit,
        } => {
            let options = gantry_server::ServerOptions {
                listen,
                registry_listen,
                public_urls,
                tls: tls_cert.zip(tls_key),
                insecure_http,
                database,
                blob_dir,
                lease: std::time::Duration::from_millis(lease_ms),
                agent_timeout,
                advertise_url,
            };
            server::serve(&for_setup()?, options, idle_exit).await
        }
        Command::Agent(args) => agent::run(args).await,
        Command::Buildspec { command } => buildspec::run(command, cli.data_dir.as_deref()).await,
        Command::User { command } => with_connection(
            &if matches!(command, users::UserCommand::Add { .. }) {
                for_setup()?
            } else {
                existing()?
            },
            async |conn| users::user(conn, command).await,
        )
        .await
        .map(success),
        Command::Token { command } => with_connection(
            &if matches!(command, users::TokenCommand::Create { .. }) {
                for_setup()?
            } else {
                existing()?
            },
            async |conn| users::token(conn, command).await,
        )
        .await
        .map(success),
        Command::Whoami => with_connection(&existing()?, users::whoami)
            .await
            .map(success),
        Command::Audit {
            since,
            principal,
            limit,
            json,
        } => with_connection(&existing()?, async |conn| {
            users::audit(conn, since, principal, limit, json).await
        })
        .await
        .map(success),
        Command::Registry { command } => with_connection(&existing()?, async |conn| {
            registry::registry(conn, command).await
        })
        .await
        .map(success),
        Command::Login { url } => login::login(&url).await.map(success),
        Command::Image { command } => {
            with_connection(&existing()?, async |conn| image::image(conn, command).await)
                .await
                .map(success)
        }
        Command::Backup {
            out,
            with_master_key,
        } => {
            if client::is_remote() {
                anyhow::bail!(
                    "backup reads the data dir on this machine; it does not work with --server"
                );
            }
            backup::backup(&existing()?, &out, with_master_key)
                .await
                .map(success)
        }
        Command::Restore { file } => {
            let target =
                explicit.map_or_else(|| Path::new(".gantry").to_path_buf(), Path::to_path_buf);
            backup::restore(&file, &target).map(success)
        }
        Command::MigrateStore { from, to } => {
            let report = gantry_server::migrate::migrate_store(&from, &to).await?;
            let rows: u64 = report.iter().map(|(_, n)| n).sum();
            for (table, n) in &report {
                println!("{table}: {n} rows");
            }
            println!(
                "copied {rows} rows in {} tables to {}",
                report.len(),
                gantry_db::redact(&to)
            );
            Ok(success(()))
        }
        Command::Version { json } => version::version(json).map(success),
        Command::Completions { shell } => version::completions(shell).map(success),
    }
}

/// Opens the data dir's connection (its server, or one started in the
/// background), runs `command` with it, and closes it whatever it returned.
async fn with_connection<T>(
    data_dir: &Path,
    command: impl AsyncFnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    let conn = Connection::open_lasting(data_dir).await?;
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
