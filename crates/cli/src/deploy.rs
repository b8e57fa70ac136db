//! `gantry apply`, `deploy`, `rollback`, `env status` and `shutdown`:
//! environments and services from the command line.

use std::path::Path;

use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::Connection;

#[derive(Subcommand)]
pub(crate) enum EnvCommand {
    /// Services, revisions, image digests, replicas and their health.
    Status {
        environment: String,
        #[arg(long)]
        json: bool,
    },
    /// Stops every replica of an environment (its revisions stay in the history).
    Down { environment: String },
    /// The environments applied to the server.
    List {
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn apply(conn: &Connection, file: &Path) -> Result<()> {
    let project = crate::project::ProjectFiles::read(file)?;
    let out = conn
        .client
        .post(
            "/api/v1/apply",
            &json!({"file": project.file, "text": project.text, "includes": project.includes}),
        )
        .await?;
    let applied = out["applied"].as_array().cloned().unwrap_or_default();
    if applied.is_empty() {
        println!("{}: no environments or services", file.display());
    }
    for line in applied {
        println!("{}", line.as_str().unwrap_or_default());
    }
    Ok(())
}

/// Prints a deployment's answer; returns whether it succeeded.
fn print_deployment(out: &Value, json: bool) -> bool {
    if json {
        println!("{out}");
    } else {
        for line in out["log"].as_array().into_iter().flatten() {
            println!("{}", line.as_str().unwrap_or_default());
        }
        if let Some(error) = out["error"].as_str() {
            eprintln!(
                "error: {error} [{}]",
                out["code"].as_str().unwrap_or_default()
            );
        }
    }
    out["status"] == "Succeeded"
}

pub(crate) async fn deploy(
    conn: &Connection,
    env: &str,
    service: &str,
    image: &str,
    json: bool,
) -> Result<bool> {
    let out = conn
        .client
        .post(
            &format!("/api/v1/environments/{env}/services/{service}/deploy"),
            &json!({"image": image}),
        )
        .await?;
    Ok(print_deployment(&out, json))
}

pub(crate) async fn rollback(
    conn: &Connection,
    env: &str,
    service: &str,
    to: Option<u64>,
    json: bool,
) -> Result<bool> {
    let out = conn
        .client
        .post(
            &format!("/api/v1/environments/{env}/services/{service}/rollback"),
            &json!({"to": to}),
        )
        .await?;
    Ok(print_deployment(&out, json))
}

pub(crate) async fn env(conn: &Connection, command: EnvCommand) -> Result<()> {
    match command {
        EnvCommand::Down { environment } => {
            let out = conn
                .client
                .post(
                    &format!("/api/v1/environments/{environment}/down"),
                    &json!({}),
                )
                .await?;
            println!(
                "{environment}: stopped {} replica(s)",
                out["stopped_replicas"]
            );
        }
        EnvCommand::List { json } => {
            let list = conn.client.get("/api/v1/environments").await?;
            if json {
                println!("{list}");
            } else {
                for e in list.as_array().into_iter().flatten() {
                    println!("{}", e.as_str().unwrap_or_default());
                }
            }
        }
        EnvCommand::Status { environment, json } => {
            let status = conn
                .client
                .get(&format!("/api/v1/environments/{environment}"))
                .await?;
            if json {
                println!("{status}");
                return Ok(());
            }
            println!(
                "{}  runtime {}  load balancer {}",
                status["environment"].as_str().unwrap_or_default(),
                status["runtime"].as_str().unwrap_or_default(),
                status["url"].as_str().unwrap_or_default()
            );
            for s in status["services"].as_array().into_iter().flatten() {
                let revision = s["revision"]
                    .as_u64()
                    .map_or("-".to_string(), |r| r.to_string());
                println!(
                    "  {}  revision {revision}  {}/{} replicas  {}",
                    s["name"].as_str().unwrap_or_default(),
                    s["replicas"].as_array().map_or(0, Vec::len),
                    s["desired"].as_u64().unwrap_or(0),
                    s["image"].as_str().unwrap_or("(not deployed)")
                );
                for r in s["replicas"].as_array().into_iter().flatten() {
                    println!(
                        "      {}  {}  {}",
                        r["id"].as_str().unwrap_or_default(),
                        r["addr"].as_str().unwrap_or_default(),
                        r["health"].as_str().unwrap_or("unknown")
                    );
                }
                if let Some(d) = s["deployments"].as_array().and_then(|d| d.first()) {
                    println!(
                        "      last deployment: revision {} {}{}",
                        d["to_revision"],
                        d["status"].as_str().unwrap_or_default(),
                        d["message"]
                            .as_str()
                            .map(|m| format!(" ({m})"))
                            .unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(())
}

pub(crate) async fn shutdown(conn: &Connection, stop_services: bool) -> Result<()> {
    if conn.embedded.is_some() && !stop_services {
        bail!("no server runs for this data dir");
    }
    let out = conn
        .client
        .post("/api/v1/shutdown", &json!({"stop_services": stop_services}))
        .await?;
    if stop_services {
        println!("stopped {} replica(s)", out["stopped_replicas"]);
    }
    println!("the server is shutting down");
    Ok(())
}
