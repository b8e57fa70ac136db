//! `gantry apply`, `deploy` (and `deploy promote|abort|pause|resume`),
//! `rollback`, `env status` and `shutdown`: environments and services from
//! the command line.

use std::path::Path;

use anyhow::{Result, bail};
use clap::Subcommand;
use gantry_api::{
    Applied, ApplyRequest, DeployRequest, DeploymentAnswer, EnvironmentDown, EnvironmentStatus,
    PromoteRequest, RollbackRequest, ShiftAnswer, ShutdownAnswer, ShutdownRequest,
};

use crate::client::Connection;
use crate::hints;
use crate::render::print_json;

/// `gantry deploy promote|abort|pause|resume ENV SERVICE`: a progressive
/// deployment (blue_green, canary, linear, steps) in progress, steered.
/// Each needs an operator of the environment and fails with
/// `deploy.nothing_to_promote` when no deployment shifts the service's
/// traffic.
#[derive(Subcommand)]
pub(crate) enum DeployControl {
    /// Moves the deployment past its current pause or analysis wait (with
    /// --full: all the traffic to the new revision now).
    Promote {
        /// The environment (as applied).
        environment: String,
        /// The service in that environment.
        service: String,
        /// All the traffic to the new revision now.
        #[arg(long)]
        full: bool,
        /// Prints the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sends all the traffic back to the running revision at once and
    /// stops the new one (the deployment ends RolledBack).
    Abort {
        /// The environment (as applied).
        environment: String,
        /// The service in that environment.
        service: String,
        /// Prints the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Holds the deployment at its current weight: timers and analysis
    /// windows stop until a resume.
    Pause {
        /// The environment (as applied).
        environment: String,
        /// The service in that environment.
        service: String,
        /// Prints the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lets a paused deployment go on.
    Resume {
        /// The environment (as applied).
        environment: String,
        /// The service in that environment.
        service: String,
        /// Prints the answer as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn control(conn: &Connection, command: DeployControl) -> Result<()> {
    let (verb, env, service, full, json) = match command {
        DeployControl::Promote {
            environment,
            service,
            full,
            json,
        } => ("promote", environment, service, full, json),
        DeployControl::Abort {
            environment,
            service,
            json,
        } => ("abort", environment, service, false, json),
        DeployControl::Pause {
            environment,
            service,
            json,
        } => ("pause", environment, service, false, json),
        DeployControl::Resume {
            environment,
            service,
            json,
        } => ("resume", environment, service, false, json),
    };
    let path = format!("/api/v1/environments/{env}/services/{service}/{verb}");
    let sent = if verb == "promote" {
        conn.client.post(&path, &PromoteRequest { full }).await
    } else {
        conn.client.post(&path, &serde_json::Map::new()).await
    };
    let out: ShiftAnswer = match sent {
        Ok(out) => out,
        Err(error) => return Err(hints::in_environments(conn, &env, Some(&service), error).await),
    };
    if json {
        return print_json(&out);
    }
    println!(
        "{service} in {env}: deployment {}, revision {} → {}, step {} of {}, {}% on revision {}{}; {}",
        out.deployment,
        out.from_revision,
        out.to_revision,
        out.step,
        out.steps,
        out.weight,
        out.to_revision,
        if out.paused { ", paused" } else { "" },
        out.waiting
    );
    Ok(())
}

#[derive(Subcommand)]
pub(crate) enum EnvCommand {
    /// Services, revisions, image digests, replicas and their health.
    Status {
        /// The environment (as applied).
        environment: String,
        /// Prints the environment's status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stops every replica of an environment (its revisions stay in the history).
    Down {
        /// The environment (as applied).
        environment: String,
    },
    /// What a service's replicas wrote to stdout and stderr (operator).
    Logs(crate::env_logs::LogsArgs),
    /// Prints the manifests gantry would apply to Kubernetes for an
    /// environment of the file (whatever its runtime), secret values never
    /// shown; no server needed.
    Render(crate::env_render::RenderArgs),
    /// The environments applied to the server.
    List {
        /// Prints a JSON array of names.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn apply(conn: &Connection, file: &Path) -> Result<()> {
    let project = crate::project::ProjectFiles::read(file)?;
    let request = ApplyRequest {
        file: project.file,
        text: Some(project.text),
        includes: project.includes,
    };
    let out: Applied = conn.client.post("/api/v1/apply", &request).await?;
    if out.applied.is_empty() {
        println!("{}: no environments or services", file.display());
    }
    for line in &out.applied {
        println!("{line}");
    }
    Ok(())
}

/// Prints a deployment's answer; returns whether it succeeded.
fn print_deployment(out: &DeploymentAnswer, json: bool) -> Result<bool> {
    if json {
        print_json(out)?;
    } else {
        for line in out.log() {
            println!("{line}");
        }
        if let DeploymentAnswer::Failed { code, error, .. } = out {
            eprintln!("error: {error} [{code}]");
        }
    }
    Ok(out.succeeded())
}

pub(crate) async fn deploy(
    conn: &Connection,
    env: &str,
    service: &str,
    image: &str,
    json: bool,
) -> Result<bool> {
    let out = match conn
        .client
        .post(
            &format!("/api/v1/environments/{env}/services/{service}/deploy"),
            &DeployRequest {
                image: image.to_string(),
            },
        )
        .await
    {
        Ok(out) => out,
        Err(error) => return Err(hints::in_environments(conn, env, Some(service), error).await),
    };
    print_deployment(&out, json)
}

pub(crate) async fn rollback(
    conn: &Connection,
    env: &str,
    service: &str,
    to: Option<u64>,
    json: bool,
) -> Result<bool> {
    let out = match conn
        .client
        .post(
            &format!("/api/v1/environments/{env}/services/{service}/rollback"),
            &RollbackRequest { to },
        )
        .await
    {
        Ok(out) => out,
        Err(error) => return Err(hints::in_environments(conn, env, Some(service), error).await),
    };
    print_deployment(&out, json)
}

pub(crate) async fn env(conn: &Connection, command: EnvCommand) -> Result<()> {
    match command {
        EnvCommand::Down { environment } => {
            let out: EnvironmentDown = match conn
                .client
                .post(
                    &format!("/api/v1/environments/{environment}/down"),
                    // The route takes no body; older servers want an object.
                    &serde_json::Map::new(),
                )
                .await
            {
                Ok(out) => out,
                Err(error) => {
                    return Err(hints::in_environments(conn, &environment, None, error).await);
                }
            };
            println!("{environment}: stopped {} replica(s)", out.stopped_replicas);
        }
        EnvCommand::Logs(args) => crate::env_logs::logs(conn, args).await?,
        EnvCommand::Render(args) => crate::env_render::render(&args)?,
        EnvCommand::List { json } => {
            let list: Vec<String> = conn.client.get("/api/v1/environments").await?;
            if json {
                print_json(&list)?;
            } else {
                for e in &list {
                    println!("{e}");
                }
            }
        }
        EnvCommand::Status { environment, json } => {
            let status: EnvironmentStatus = match conn
                .client
                .get(&format!("/api/v1/environments/{environment}"))
                .await
            {
                Ok(status) => status,
                Err(error) => {
                    return Err(hints::in_environments(conn, &environment, None, error).await);
                }
            };
            if json {
                return print_json(&status);
            }
            println!(
                "{}  runtime {}  load balancer {}",
                status.environment, status.runtime, status.url
            );
            for s in &status.services {
                let revision = s.revision.map_or("-".to_string(), |r| r.to_string());
                println!(
                    "  {}  revision {revision}  {}/{} replicas  {}",
                    s.name,
                    s.replicas.len(),
                    s.desired.unwrap_or(0),
                    s.image.as_deref().unwrap_or("(not deployed)")
                );
                if !s.replicas.is_empty() {
                    let rows: Vec<Vec<String>> = s
                        .replicas
                        .iter()
                        .map(|r| {
                            vec![
                                r.id.clone(),
                                r.addr.clone(),
                                r.health.as_deref().unwrap_or("unknown").to_string(),
                                r.restarts.to_string(),
                                last_exit(r.last_exit.as_ref()),
                            ]
                        })
                        .collect();
                    let header = ["REPLICA", "ADDRESS", "HEALTH", "RESTARTS", "LAST EXIT"];
                    for line in crate::table::lines(&header, &rows) {
                        println!("      {line}");
                    }
                }
                if s.traffic.len() > 1 {
                    let shares: Vec<String> = s
                        .traffic
                        .iter()
                        .map(|t| format!("revision {} {}%", t.revision, t.percent))
                        .collect();
                    println!("      traffic: {}", shares.join(", "));
                }
                if let Some(cause) = &s.cause {
                    println!("      made by: {cause}");
                }
                if let Some(d) = s.deployments.first() {
                    println!(
                        "      last deployment: revision {} {}{}",
                        d.to_revision,
                        d.status,
                        d.message
                            .as_deref()
                            .map(|m| format!(" ({m})"))
                            .unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(())
}

/// How a replica last ended, for people: `exit 1`, `signal 9`, `exited`,
/// or `-` when it has not.
fn last_exit(exit: Option<&gantry_api::ReplicaExit>) -> String {
    match exit {
        None => "-".to_string(),
        Some(gantry_api::ReplicaExit {
            signal: Some(signal),
            ..
        }) => format!("signal {signal}"),
        Some(gantry_api::ReplicaExit {
            code: Some(code), ..
        }) => format!("exit {code}"),
        Some(_) => "exited".to_string(),
    }
}

pub(crate) async fn shutdown(conn: &Connection, stop_services: bool) -> Result<()> {
    if conn.embedded.is_some() && !stop_services {
        bail!(
            "no server runs for {}",
            crate::client::place_of(&conn.data_dir)
        );
    }
    let out: ShutdownAnswer = conn
        .client
        .post("/api/v1/shutdown", &ShutdownRequest { stop_services })
        .await?;
    if stop_services {
        println!("stopped {} replica(s)", out.stopped_replicas);
    }
    println!("the server is shutting down");
    Ok(())
}
