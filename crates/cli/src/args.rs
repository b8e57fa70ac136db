//! The command line's arguments, as clap reads them: the global options
//! (`--data-dir`, `--server`), one `Command` per subcommand with its flags
//! and help texts, and the parsers of flag values (durations, NAME=VALUE
//! pairs). The help texts are a contract: `gantry --help` prints them as
//! written here. Subcommand groups that belong to one module (`env`,
//! `param`, `user`, `token`) keep their argument types in that module.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::{deploy, param, registry, users};

#[derive(Parser)]
#[command(
    name = "gantry",
    version,
    about = "Self-hosted continuous delivery for containerized microservices"
)]
pub(crate) struct Cli {
    /// The data dir (default: `.gantry/` beside the pipeline file).
    #[arg(long, global = true, env = "GANTRY_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Talk to this server (`https://gantry.example.com:7700`) instead of
    /// the data dir's; the token comes from GANTRY_TOKEN or `gantry login`.
    #[arg(long, global = true, env = "GANTRY_SERVER", value_name = "URL")]
    pub(crate) server: Option<String>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Args, Clone)]
pub(crate) struct FileArg {
    /// The pipeline file.
    #[arg(short = 'f', long = "file", default_value = "gantry.yaml")]
    pub(crate) file: PathBuf,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
        /// Then commit a change to one backend: the pipeline's git trigger runs it
        /// (no command starts it; only that service is rebuilt and redeployed).
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
    /// Lists every trigger of every registered pipeline: what it watches,
    /// its last event, commit, result and error.
    Triggers {
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
    /// The embedded registry: garbage collection (admin).
    Registry {
        #[command(subcommand)]
        command: registry::RegistryCommand,
    },
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
pub(crate) struct Decision {
    pub(crate) id: String,
    /// STAGE/ACTION
    pub(crate) target: String,
    #[arg(long)]
    pub(crate) comment: Option<String>,
    /// Ignored: a decision is recorded under the identity of the token in
    /// use (kept so that older scripts keep working).
    #[arg(long, hide = true)]
    pub(crate) by: Option<String>,
}

#[derive(Subcommand)]
pub(crate) enum BuildspecCommand {
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

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    gantry_spec::duration::parse_duration(s)
}

pub(crate) fn parse_pairs(pairs: &[String], what: &str) -> Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("{what} {p:?} is not NAME=VALUE"),
        })
        .collect()
}
