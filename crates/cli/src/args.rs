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

use crate::{deploy, image, param, registry, users};

#[derive(Parser)]
#[command(
    name = "gantry",
    version = crate::version::LONG_VERSION,
    about = "Self-hosted continuous delivery for containerized microservices"
)]
pub(crate) struct Cli {
    /// The data dir (default: the nearest `.gantry/` in the current directory
    /// or its parents; `run` makes one in the current directory).
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
    /// Starts an execution and follows it to the end (Ctrl-C detaches; the
    /// execution goes on in the server).
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
    /// Follows an execution again (after Ctrl-C, or from another terminal)
    /// until it ends; exits 0 when it succeeded, 1 otherwise.
    Watch {
        /// The execution's id.
        id: String,
        /// Prints the final execution JSON instead of the live view.
        #[arg(long)]
        json: bool,
    },
    /// Shows one execution.
    Status {
        /// The execution's id.
        id: String,
        /// Prints the execution JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lists the pipelines the server knows, each with its newest execution.
    Pipelines {
        /// Prints a JSON array of pipelines, each with its newest execution.
        #[arg(long)]
        json: bool,
    },
    /// Lists recent executions, newest first.
    Executions {
        /// Only executions of this pipeline.
        #[arg(long)]
        pipeline: Option<String>,
        /// Prints a JSON array of executions.
        #[arg(long)]
        json: bool,
    },
    /// Prints action logs.
    Logs {
        /// The execution's id.
        id: String,
        /// Only this action's log: STAGE/ACTION.
        target: Option<String>,
        /// Keeps printing new lines until the execution ends.
        #[arg(long)]
        follow: bool,
    },
    /// Approves a waiting approval.
    Approve(Decision),
    /// Rejects a waiting approval.
    Reject(Decision),
    /// Retries a failed stage (its failed actions, or all with --all-actions)
    /// and follows the execution: exits 1 when the stage fails again.
    Retry {
        /// The execution's id.
        id: String,
        /// The failed stage to retry.
        stage: String,
        /// Runs every action of the stage again, not only the failed ones.
        #[arg(long)]
        all_actions: bool,
        /// Returns once the stage is retried instead of following the execution.
        #[arg(long)]
        no_follow: bool,
    },
    /// Stops an execution (waiting for running actions, or abandoning them)
    /// and says what it did.
    Stop {
        /// The execution's id.
        id: String,
        /// Abandons running actions instead of waiting for them to finish.
        #[arg(long)]
        abandon: bool,
        /// Why, recorded with the execution (its `stop_reason`).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Runs the control plane.
    Server {
        /// Where the API listens.
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
        /// Keep the database in PostgreSQL (`postgres://USER:PASSWORD@HOST/DB`)
        /// instead of the data dir's SQLite file.
        #[arg(
            long,
            value_name = "URL",
            env = "GANTRY_DATABASE_URL",
            hide_env_values = true
        )]
        database: Option<String>,
        /// Keep blobs and artifacts here instead of the data dir's
        /// `artifacts/`: the servers of one --database share one directory.
        #[arg(long, value_name = "DIR")]
        blob_dir: Option<PathBuf>,
        /// With --database: how long the leader's lease lasts unrenewed, in
        /// milliseconds (a standby takes over this long after the leader
        /// stops).
        #[arg(long, value_name = "MS", default_value_t = 3000,
              value_parser = clap::value_parser!(u64).range(500..=600_000))]
        lease_ms: u64,
        /// With --database: the URL the other servers reach this one's API
        /// at, to forward requests while it leads (default: its --listen
        /// address, 0.0.0.0 as the host name; with TLS, a name its
        /// certificate holds).
        #[arg(long, value_name = "URL")]
        advertise_url: Option<String>,
        /// How long a build agent running a job may send no heartbeat
        /// before the job fails as interrupted (`30s`, `2m`).
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_agent_timeout)]
        agent_timeout: Duration,
        /// Exit after this many seconds with no action running (used by
        /// `run --no-follow` when it starts a server in the background).
        #[arg(long, value_name = "SECONDS", hide = true)]
        idle_exit: Option<u64>,
    },
    /// Runs build, test and shell actions that ask for an agent
    /// (`agent: {labels}`) on this machine, for the server at --server.
    Agent(AgentArgs),
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
    /// Rolls a service to an image, as a deploy action does; or, with a
    /// subcommand, steers a progressive deployment in progress.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Deploy {
        #[command(subcommand)]
        control: Option<deploy::DeployControl>,
        /// The environment (as applied).
        #[arg(required = true)]
        environment: Option<String>,
        /// The service in that environment.
        #[arg(required = true)]
        service: Option<String>,
        /// The image reference (by tag or digest); one without a registry host
        /// (`shop/web:1`) is in gantry's embedded registry.
        #[arg(long, required = true)]
        image: Option<String>,
        /// Prints the deployment's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Returns a service to an earlier revision.
    Rollback {
        /// The environment (as applied).
        environment: String,
        /// The service in that environment.
        service: String,
        /// The revision to return to (default: the one before the current).
        #[arg(long)]
        to: Option<u64>,
        /// Prints the deployment's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lists every trigger of every registered pipeline: what it watches,
    /// its last event, commit, result and error.
    Triggers {
        /// Prints a JSON array of triggers.
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
        /// Stops every replica of every environment first.
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
    Login {
        /// The server's URL (`https://gantry.example.com:7700`).
        url: String,
    },
    /// Who the token in use belongs to.
    Whoami,
    /// The embedded registry: garbage collection (admin).
    Registry {
        #[command(subcommand)]
        command: registry::RegistryCommand,
    },
    /// The embedded registry's images: ls, inspect, promote.
    Image {
        #[command(subcommand)]
        command: image::ImageCommand,
    },
    /// Writes a consistent online backup of the data dir (its database and
    /// blobs, the master key only when asked) to one tar file, mode 0600.
    Backup {
        /// The file to write (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Also puts the parameter store's master key file in the backup
        /// (then the backup reveals every SecureString: keep it as a secret).
        #[arg(long)]
        with_master_key: bool,
    },
    /// Restores a backup into a new or empty data dir (--data-dir, default
    /// ./.gantry); refuses links and paths that leave it.
    Restore {
        /// The backup file (`gantry backup --out FILE`).
        file: PathBuf,
    },
    /// Copies a data dir's store (SQLite) into a new PostgreSQL database,
    /// for `gantry server --database URL`; no server may run on the data dir.
    MigrateStore {
        /// The data dir whose store is copied.
        #[arg(long, value_name = "DATA_DIR")]
        from: PathBuf,
        /// The PostgreSQL database to copy into (`postgres://…`); it must hold
        /// no gantry store yet.
        #[arg(
            long,
            value_name = "URL",
            env = "GANTRY_DATABASE_URL",
            hide_env_values = true
        )]
        to: String,
    },
    /// Prints the version and the git commit the binary was built from.
    Version {
        /// Prints `{"version": ..., "commit": ...}`.
        #[arg(long)]
        json: bool,
    },
    /// Prints a shell completion script (bash, zsh, fish) to standard output.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// The audit log: every change and every refused request (admin).
    Audit {
        /// Only entries since: a duration back from now (1h, 7d) or Unix ms.
        #[arg(long)]
        since: Option<String>,
        /// Only entries of this user (or `webhook:PROVIDER`).
        #[arg(long)]
        principal: Option<String>,
        /// At most this many entries, newest first.
        #[arg(long)]
        limit: Option<u32>,
        /// Prints a JSON array of entries.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub(crate) struct Decision {
    /// The execution's id.
    pub(crate) id: String,
    /// The approval action: STAGE/ACTION.
    pub(crate) target: String,
    /// Why, recorded with the decision (a policy may require one).
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
        /// The buildspec file.
        file: PathBuf,
        /// The source directory (the build's working directory).
        #[arg(long, default_value = ".")]
        source: PathBuf,
        /// Where artifacts are written.
        #[arg(long, default_value = "gantry-artifacts")]
        out: PathBuf,
        /// A variable for the build (repeatable).
        #[arg(long = "env", value_name = "NAME=VALUE")]
        env: Vec<String>,
        /// A variable whose value is masked in the log.
        #[arg(long = "secret-env", value_name = "NAME=VALUE")]
        secret_env: Vec<String>,
        /// Ends the build after this long (90s, 30m, 2h).
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        timeout: Duration,
        /// Runs the build inside a container of this image (Docker Engine).
        #[arg(long)]
        image: Option<String>,
        /// Prints the result as JSON (status, phases, exported variables, artifacts).
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// `(command path, argument)` of every argument without a help text,
    /// in `command` and its subcommands.
    fn without_help(command: &clap::Command, path: &str, out: &mut Vec<String>) {
        for arg in command.get_arguments() {
            let builtin = matches!(arg.get_id().as_str(), "help" | "version");
            if !builtin && !arg.is_hide_set() && arg.get_help().is_none() {
                out.push(format!("{path} {}", arg.get_id()));
            }
        }
        for sub in command.get_subcommands() {
            without_help(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_flag_and_argument_has_a_help_text() {
        let mut missing = Vec::new();
        without_help(&super::Cli::command(), "gantry", &mut missing);
        assert!(
            missing.is_empty(),
            "give these a `///` help text:\n{}",
            missing.join("\n")
        );
    }
}

/// `gantry agent`.
#[derive(Args)]
pub(crate) struct AgentArgs {
    /// The agent's token: a user with the `agent` grant (`gantry user add
    /// NAME --grant agent`); else GANTRY_AGENT_TOKEN, else GANTRY_TOKEN.
    #[arg(long, env = "GANTRY_AGENT_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// The agent's labels, comma-separated: it takes the jobs whose
    /// `agent.labels` it has all of.
    #[arg(long, value_delimiter = ',', value_name = "LABEL,...")]
    pub(crate) labels: Vec<String>,
    /// How many jobs it runs at once.
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub(crate) concurrency: u16,
    /// Where jobs, blobs and caches live (default: `gantry-agent` in the
    /// current directory).
    #[arg(long, value_name = "DIR", default_value = "gantry-agent")]
    pub(crate) work_dir: PathBuf,
    /// The agent's name (default: the host name).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// A CA certificate (PEM) to trust for an https server.
    #[arg(long, value_name = "FILE")]
    pub(crate) ca_cert: Option<PathBuf>,
}

/// `--agent-timeout`: 1 s to 1 h.
fn parse_agent_timeout(text: &str) -> Result<Duration, String> {
    let duration = gantry_spec::duration::parse_duration(text).map_err(|e| e.to_string())?;
    if duration < Duration::from_secs(1) || duration > Duration::from_secs(3600) {
        return Err("from 1s to 1h".into());
    }
    Ok(duration)
}
