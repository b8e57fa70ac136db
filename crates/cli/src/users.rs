//! `gantry user …`, `gantry token …`, `gantry audit`, `gantry whoami`:
//! identities and the audit log, through the API.

use anyhow::Result;
use clap::Subcommand;
use gantry_api::{
    AuditRecordView, CreatedToken, GrantsRequest, IdentityView, NewTokenRequest, NewUserRequest,
    TokenView, UserRemoved, UserView,
};

use crate::client::Connection;
use crate::render::print_json;

#[derive(Subcommand)]
pub(crate) enum UserCommand {
    /// Adds a user with grants (ROLE or ROLE:env=E,pipeline=P,path=/p;
    /// roles viewer, operator, approver, secrets, admin).
    Add {
        /// The user's name.
        name: String,
        /// A grant (repeatable): ROLE or ROLE:KEY=VALUE[,KEY=VALUE].
        #[arg(long = "grant", value_name = "GRANT")]
        grants: Vec<String>,
        /// Matched against commit authors by approval policies.
        #[arg(long)]
        email: Option<String>,
    },
    /// Lists users and their grants.
    List {
        /// Prints a JSON array of users.
        #[arg(long)]
        json: bool,
    },
    /// Replaces a user's grants.
    Grant {
        /// The user's name.
        name: String,
        /// A grant (repeatable); the user gets exactly these.
        #[arg(long = "grant", value_name = "GRANT")]
        grants: Vec<String>,
    },
    /// Removes a user and revokes their tokens.
    Remove {
        /// The user's name.
        name: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum TokenCommand {
    /// Creates a token (printed once, never stored in the clear).
    Create {
        /// Whose token (default: yours; others' need admin).
        #[arg(long)]
        user: Option<String>,
        /// What the token is for (shown by `token list`).
        #[arg(long)]
        description: Option<String>,
        /// How long it lives: 12h, 30d, …; default forever.
        #[arg(long)]
        expires_in: Option<String>,
        /// Prints the token and its record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lists tokens (yours; an admin's lists everyone's).
    List {
        /// Only this user's tokens.
        #[arg(long)]
        user: Option<String>,
        /// Prints a JSON array of tokens (never their values).
        #[arg(long)]
        json: bool,
    },
    /// Revokes a token by id.
    Revoke {
        /// The token's id (from `token list`).
        id: String,
    },
}

fn time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| "-".to_string())
}

pub(crate) async fn user(conn: &Connection, command: UserCommand) -> Result<()> {
    match command {
        UserCommand::Add {
            name,
            grants,
            email,
        } => {
            let user: UserView = conn
                .client
                .post(
                    "/api/v1/users",
                    &NewUserRequest {
                        name,
                        email,
                        grants,
                    },
                )
                .await?;
            println!("added user {}", user.name);
        }
        UserCommand::List { json } => {
            let users: Vec<UserView> = conn.client.get("/api/v1/users").await?;
            if json {
                print_json(&users)?;
            } else {
                for u in &users {
                    println!(
                        "{:<20} {:<28} {}",
                        u.name,
                        u.email.as_deref().unwrap_or("-"),
                        u.grants.join(" ")
                    );
                }
            }
        }
        UserCommand::Grant { name, grants } => {
            let user: UserView = conn
                .client
                .put(
                    &format!("/api/v1/users/{name}/grants"),
                    &GrantsRequest { grants },
                )
                .await?;
            println!("{name}: {}", user.grants.join(" "));
        }
        UserCommand::Remove { name } => {
            let out: UserRemoved = conn.client.delete(&format!("/api/v1/users/{name}")).await?;
            println!(
                "removed user {name} ({} tokens revoked)",
                out.revoked_tokens
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
            let out: CreatedToken = conn
                .client
                .post(
                    "/api/v1/tokens",
                    &NewTokenRequest {
                        user,
                        description,
                        expires_in,
                    },
                )
                .await?;
            if json {
                print_json(&out)?;
            } else {
                eprintln!(
                    "token {} for {} (shown once; keep it safe):",
                    out.info.id, out.info.user
                );
                println!("{}", out.token);
            }
        }
        TokenCommand::List { user, json } => {
            let query = user.map(|u| format!("?user={u}")).unwrap_or_default();
            let tokens: Vec<TokenView> = conn.client.get(&format!("/api/v1/tokens{query}")).await?;
            if json {
                print_json(&tokens)?;
            } else {
                for t in &tokens {
                    let state = match (t.revoked_at_ms, t.expires_at_ms) {
                        (Some(_), _) => "revoked".to_string(),
                        (None, Some(expires)) => format!("expires {}", time(expires)),
                        (None, None) => "active".to_string(),
                    };
                    println!(
                        "{}  {:<16} {:<24} {}  {}",
                        t.id,
                        t.user,
                        state,
                        time(t.created_at_ms),
                        t.description.as_deref().unwrap_or("")
                    );
                }
            }
        }
        TokenCommand::Revoke { id } => {
            let _: TokenView = conn.client.delete(&format!("/api/v1/tokens/{id}")).await?;
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
    let records: Vec<AuditRecordView> = conn.client.get(&path).await?;
    if json {
        return print_json(&records);
    }
    for r in &records {
        println!(
            "{}  {:<16} {:<22} {:<40} {:<28} {}",
            time(r.at_ms),
            r.principal.as_deref().unwrap_or("-"),
            r.remote.as_deref().unwrap_or("-"),
            r.action,
            r.outcome,
            r.target.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

pub(crate) async fn whoami(conn: &Connection) -> Result<()> {
    let me: IdentityView = conn.client.get("/api/v1/whoami").await?;
    println!(
        "{} ({}) at {}",
        me.name,
        me.grants.join(" "),
        conn.client.base()
    );
    Ok(())
}
