//! `gantry login URL`: checks a token against a server and keeps it in the
//! user's config dir (`$XDG_CONFIG_HOME/gantry/credentials.json`, else
//! `~/.config/gantry/…`), mode 0600 in a 0700 directory, so later commands
//! with `--server URL` find it.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::client::Client;

#[derive(Default, Serialize, Deserialize)]
struct Credentials {
    #[serde(default)]
    servers: BTreeMap<String, Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    token: String,
}

fn credentials_path() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("gantry").join("credentials.json"))
}

fn load() -> Credentials {
    credentials_path()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// The token `gantry login` stored for `url`.
pub(crate) fn stored_token(url: &str) -> Option<String> {
    load()
        .servers
        .get(url.trim_end_matches('/'))
        .map(|e| e.token.clone())
}

fn store(url: &str, token: &str) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let path = credentials_path().context("no HOME or XDG_CONFIG_HOME to keep the token in")?;
    let dir = path.parent().context("credentials path")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let mut credentials = load();
    credentials.servers.insert(
        url.trim_end_matches('/').to_string(),
        Entry {
            token: token.to_string(),
        },
    );
    gantry_server::write_private(
        &path,
        serde_json::to_string_pretty(&credentials)?.as_bytes(),
    )?;
    Ok(path)
}

/// Reads the token (`GANTRY_TOKEN`, else one line of standard input),
/// checks it with the server, and stores it.
pub(crate) async fn login(url: &str) -> Result<()> {
    let url = url.trim_end_matches('/');
    let token = match std::env::var(crate::client::TOKEN_ENV) {
        Ok(token) if !token.trim().is_empty() => token,
        _ => {
            if std::io::stdin().is_terminal() {
                eprint!("token for {url}: ");
                let _ = std::io::stderr().flush();
            }
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the token from standard input")?;
            line
        }
    };
    let token = token.trim();
    if token.is_empty() {
        bail!(
            "no token given (pipe it in, or set {})",
            crate::client::TOKEN_ENV
        );
    }
    let client = Client::new(url, Some(token.to_string()));
    let me: gantry_api::IdentityView = client.get("/api/v1/whoami").await?;
    let path = store(url, token)?;
    println!(
        "logged in to {url} as {} (token kept in {})",
        me.name,
        path.display()
    );
    Ok(())
}
