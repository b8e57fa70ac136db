//! `gantry param …`: the parameter store from the command line. A value can
//! come from standard input (`-` or no VALUE), so secrets stay out of shell
//! history; SecureStrings print as `***` unless `--decrypt` is given.

use std::io::Read;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use gantry_api::{
    DeleteParameterRequest, KeyRotated, LabelParameterRequest, ParameterDeleted, ParameterLabelled,
    ParameterPut, ParameterView, PutParameterRequest, RotateKeyRequest,
};

use crate::client::Connection;
use crate::render::print_json;

#[derive(Subcommand)]
pub(crate) enum ParamCommand {
    /// Creates a parameter, or a new version of it with --overwrite.
    Put {
        /// The parameter's name: a path (`/shop/staging/DB_URL`).
        name: String,
        /// The value; `-` or absent reads it from standard input.
        value: Option<String>,
        /// String, StringList or SecureString.
        #[arg(long = "type", default_value = "String")]
        param_type: String,
        /// Makes a new version of an existing parameter (else that is an error).
        #[arg(long)]
        overwrite: bool,
        /// What the parameter is for.
        #[arg(long)]
        description: Option<String>,
        /// Prints the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Reads a parameter: NAME, NAME:VERSION or NAME:LABEL.
    Get {
        /// NAME, NAME:VERSION or NAME:LABEL.
        name: String,
        /// Prints a SecureString's value instead of `***` (needs a secrets grant).
        #[arg(long)]
        decrypt: bool,
        /// Prints the parameter as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lists parameters under a path (the whole tree under it).
    List {
        /// The path to list under (default `/`).
        #[arg(value_name = "PATH", conflicts_with = "path")]
        under: Option<String>,
        /// The path to list under, as a flag (the same as PATH).
        #[arg(long)]
        path: Option<String>,
        /// Lists the whole tree under the path (the default; kept for scripts).
        #[arg(long, conflicts_with = "one_level")]
        recursive: bool,
        /// Lists only the path's direct children, not the tree under it.
        #[arg(long)]
        one_level: bool,
        /// Prints SecureString values instead of `***` (needs a secrets grant).
        #[arg(long)]
        decrypt: bool,
        /// Prints a JSON array of parameters.
        #[arg(long)]
        json: bool,
    },
    /// Every kept version of a parameter, oldest first.
    History {
        /// The parameter's name.
        name: String,
        /// Prints SecureString values instead of `***` (needs a secrets grant).
        #[arg(long)]
        decrypt: bool,
        /// Prints a JSON array of versions.
        #[arg(long)]
        json: bool,
    },
    /// Attaches labels to a version: NAME:VERSION LABEL... (NAME alone = latest).
    Label {
        /// NAME:VERSION, or NAME for the latest version.
        target: String,
        /// The labels to attach (a label moves from the version that had it).
        #[arg(required = true)]
        labels: Vec<String>,
        /// Prints the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Deletes a parameter and all its versions.
    Delete {
        /// The parameter's name.
        name: String,
        /// Prints the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-encrypts every SecureString under a new master key.
    RotateKey {
        /// The new key (64 hex characters), read from standard input when `-`.
        /// Needed when the key comes from GANTRY_MASTER_KEY; otherwise a new
        /// key is generated and the key file replaced.
        #[arg(long)]
        new_key: Option<String>,
        /// Prints the answer as JSON.
        #[arg(long)]
        json: bool,
    },
}

impl ParamCommand {
    /// Whether the command may set up a data dir: putting a parameter comes
    /// before the first run of a pipeline that reads it.
    pub(crate) fn may_create_data_dir(&self) -> bool {
        matches!(self, ParamCommand::Put { .. })
    }
}

fn query(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn read_stdin() -> Result<String> {
    let mut value = String::new();
    std::io::stdin()
        .read_to_string(&mut value)
        .context("cannot read the value from standard input")?;
    // A trailing newline comes from `echo` or the terminal, not from the value.
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    Ok(value)
}

fn print_param(p: &ParameterView) {
    let labels = if p.labels.is_empty() {
        String::new()
    } else {
        format!("  [{}]", p.labels.join(","))
    };
    println!(
        "{}  {}  v{}  {}{labels}",
        p.name, p.param_type, p.version, p.value
    );
}

pub(crate) async fn run(conn: &Connection, command: ParamCommand) -> Result<()> {
    let by = std::env::var("USER").unwrap_or_else(|_| "unknown".to_string());
    match command {
        ParamCommand::Put {
            name,
            value,
            param_type,
            overwrite,
            description,
            json,
        } => {
            let value = match value.as_deref() {
                None | Some("-") => read_stdin()?,
                Some(v) => v.to_string(),
            };
            let body = PutParameterRequest {
                name,
                value,
                param_type: Some(param_type),
                overwrite,
                description,
                by: Some(by),
            };
            let out: ParameterPut = conn.client.post("/api/v1/params/put", &body).await?;
            if json {
                print_json(&out)?;
            } else {
                println!("{} version {}", out.name, out.version);
            }
        }
        ParamCommand::Get {
            name,
            decrypt,
            json,
        } => {
            let p: ParameterView = conn
                .client
                .get(&format!(
                    "/api/v1/params/get?name={}&decrypt={decrypt}",
                    query(&name)
                ))
                .await?;
            if json {
                print_json(&p)?;
            } else {
                println!("{}", p.value);
            }
        }
        ParamCommand::List {
            under,
            path,
            recursive: _,
            one_level,
            decrypt,
            json,
        } => {
            let path = under.or(path).unwrap_or_else(|| "/".to_string());
            let recursive = !one_level;
            let list: Vec<ParameterView> = conn
                .client
                .get(&format!(
                    "/api/v1/params/list?path={}&recursive={recursive}&decrypt={decrypt}",
                    query(&path)
                ))
                .await?;
            if json {
                print_json(&list)?;
            } else if list.is_empty() {
                eprintln!(
                    "no parameters under {path}{}",
                    if recursive {
                        ""
                    } else {
                        " (one level; drop --one-level for the tree)"
                    }
                );
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|p| {
                        vec![
                            p.name.clone(),
                            p.param_type.clone(),
                            format!("v{}", p.version),
                            p.value.clone(),
                            p.labels.join(","),
                        ]
                    })
                    .collect();
                crate::table::print(&["NAME", "TYPE", "VERSION", "VALUE", "LABELS"], &rows);
            }
        }
        ParamCommand::History {
            name,
            decrypt,
            json,
        } => {
            let list: Vec<ParameterView> = conn
                .client
                .get(&format!(
                    "/api/v1/params/history?name={}&decrypt={decrypt}",
                    query(&name)
                ))
                .await?;
            if json {
                print_json(&list)?;
            } else {
                for p in &list {
                    print_param(p);
                    println!("    {} by {}", p.last_modified, p.modified_by);
                }
            }
        }
        ParamCommand::Label {
            target,
            labels,
            json,
        } => {
            let (name, version) = match target.rsplit_once(':') {
                Some((n, v)) => match v.parse::<u64>() {
                    Ok(v) => (n.to_string(), Some(v)),
                    Err(_) => bail!("{target:?}: the part after ':' must be a version number"),
                },
                None => (target.clone(), None),
            };
            let out: ParameterLabelled = conn
                .client
                .post(
                    "/api/v1/params/label",
                    &LabelParameterRequest {
                        name,
                        version,
                        labels,
                    },
                )
                .await?;
            if json {
                print_json(&out)?;
            } else {
                println!("{} version {}: labelled", out.name, out.version);
                for bad in &out.invalid_labels {
                    eprintln!("invalid label: {bad}");
                }
            }
            if !out.invalid_labels.is_empty() {
                bail!("some labels are invalid");
            }
        }
        ParamCommand::Delete { name, json } => {
            let out: ParameterDeleted = conn
                .client
                .post("/api/v1/params/delete", &DeleteParameterRequest { name })
                .await?;
            if json {
                print_json(&out)?;
            } else {
                println!("{} deleted", out.name);
            }
        }
        ParamCommand::RotateKey { new_key, json } => {
            let new_key = match new_key.as_deref() {
                Some("-") => Some(read_stdin()?),
                other => other.map(str::to_string),
            };
            let out: KeyRotated = conn
                .client
                .post("/api/v1/params/rotate-key", &RotateKeyRequest { new_key })
                .await?;
            if json {
                print_json(&out)?;
            } else {
                println!(
                    "re-encrypted {} versions; master key is now {}",
                    out.rotated_versions, out.key_id
                );
            }
        }
    }
    Ok(())
}
