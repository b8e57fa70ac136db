//! `gantry user …`, `gantry token …`, `gantry audit`, `gantry whoami`:
//! identities and the audit log, through the API.

use anyhow::Result;
use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::Connection;

#[derive(Subcommand)]
pub(crate) enum UserCommand {
    /// Adds a user with grants (ROLE or ROLE:env=E,pipeline=P,path=/p;
    /// roles viewer, operator, approver, secrets, admin).
    Add {
        name: String,
        #[arg(long = "grant", value_name = "GRANT")]
        grants: Vec<String>,
        /// Matched against commit authors by approval policies.
        #[arg(long)]
        email: Option<String>,
    },
    /// Lists users and their grants.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Replaces a user's grants.
    Grant {
        name: String,
        #[arg(long = "grant", value_name = "GRANT")]
        grants: Vec<String>,
    },
    /// Removes a user and revokes their tokens.
    Remove { name: String },
}

#[derive(Subcommand)]
pub(crate) enum TokenCommand {
    /// Creates a token (printed once, never stored in the clear).
    Create {
        /// Whose token (default: yours; others' need admin).
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// How long it lives: 12h, 30d, …; default forever.
        #[arg(long)]
        expires_in: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Lists tokens (yours; an admin's lists everyone's).
    List {
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revokes a token by id.
    Revoke { id: String },
}

fn time(ms: &Value) -> String {
    ms.as_i64()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| t.to_string())
        .unwrap_or_else(|| "-".to_string())
}

pub(crate) async fn user(conn: &Connection, command: UserCommand) -> Result<()> {
    match command {
        UserCommand::Add {
            name,
            grants,
            email,
        } => {
            let user = conn
                .client
                .post(
                    "/api/v1/users",
                    &json!({"name": name, "grants": grants, "email": email}),
                )
                .await?;
            println!("added user {}", user["name"].as_str().unwrap_or(&name));
        }
        UserCommand::List { json } => {
            let users = conn.client.get("/api/v1/users").await?;
            if json {
                println!("{users}");
            } else {
                for u in users.as_array().into_iter().flatten() {
                    let grants: Vec<&str> = u["grants"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    println!(
                        "{:<20} {:<28} {}",
                        u["name"].as_str().unwrap_or(""),
                        u["email"].as_str().unwrap_or("-"),
                        grants.join(" ")
                    );
                }
            }
        }
        UserCommand::Grant { name, grants } => {
            conn.client
                .put(
                    &format!("/api/v1/users/{name}/grants"),
                    &json!({"grants": grants}),
                )
                .await?;
            println!("{name}: {}", grants.join(" "));
        }
        UserCommand::Remove { name } => {
            let out = conn.client.delete(&format!("/api/v1/users/{name}")).await?;
            println!(
                "removed user {name} ({} tokens revoked)",
                out["revoked_tokens"].as_u64().unwrap_or(0)
            );
        }
    }
    Ok(())
}

pub(crate) async fn token(conn: &Connection, command: TokenCommand) -> Result<()> {
    match command {
        TokenCommand::Create {
            user,
            description,
            expires_in,
            json,
        } => {
            let out = conn
                .client
                .post(
                    "/api/v1/tokens",
                    &json!({"user": user, "description": description, "expires_in": expires_in}),
                )
                .await?;
            if json {
                println!("{out}");
            } else {
                eprintln!(
                    "token {} for {} (shown once; keep it safe):",
                    out["info"]["id"].as_str().unwrap_or(""),
                    out["info"]["user"].as_str().unwrap_or("")
                );
                println!("{}", out["token"].as_str().unwrap_or(""));
            }
        }
        TokenCommand::List { user, json } => {
            let query = user.map(|u| format!("?user={u}")).unwrap_or_default();
            let tokens = conn.client.get(&format!("/api/v1/tokens{query}")).await?;
            if json {
                println!("{tokens}");
            } else {
                for t in tokens.as_array().into_iter().flatten() {
                    let state = if !t["revoked_at_ms"].is_null() {
                        "revoked".to_string()
                    } else if !t["expires_at_ms"].is_null() {
                        format!("expires {}", time(&t["expires_at_ms"]))
                    } else {
                        "active".to_string()
                    };
                    println!(
                        "{}  {:<16} {:<24} {}  {}",
                        t["id"].as_str().unwrap_or(""),
                        t["user"].as_str().unwrap_or(""),
                        state,
                        time(&t["created_at_ms"]),
                        t["description"].as_str().unwrap_or("")
                    );
                }
            }
        }
        TokenCommand::Revoke { id } => {
            conn.client.delete(&format!("/api/v1/tokens/{id}")).await?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

pub(crate) async fn audit(
    conn: &Connection,
    since: Option<String>,
    principal: Option<String>,
    limit: Option<u32>,
    json: bool,
) -> Result<()> {
    let mut query = Vec::new();
    if let Some(since) = since {
        query.push(format!("since={since}"));
    }
    if let Some(p) = principal {
        query.push(format!("principal={p}"));
    }
    if let Some(l) = limit {
        query.push(format!("limit={l}"));
    }
    let path = if query.is_empty() {
        "/api/v1/audit".to_string()
    } else {
        format!("/api/v1/audit?{}", query.join("&"))
    };
    let records = conn.client.get(&path).await?;
    if json {
        println!("{records}");
        return Ok(());
    }
    for r in records.as_array().into_iter().flatten() {
        println!(
            "{}  {:<16} {:<22} {:<40} {:<28} {}",
            time(&r["at_ms"]),
            r["principal"].as_str().unwrap_or("-"),
            r["remote"].as_str().unwrap_or("-"),
            r["action"].as_str().unwrap_or(""),
            r["outcome"].as_str().unwrap_or(""),
            r["target"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

pub(crate) async fn whoami(conn: &Connection) -> Result<()> {
    let me = conn.client.get("/api/v1/whoami").await?;
    let grants: Vec<&str> = me["grants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    println!(
        "{} ({}) at {}",
        me["name"].as_str().unwrap_or("?"),
        grants.join(" "),
        conn.client.base()
    );
    Ok(())
}
