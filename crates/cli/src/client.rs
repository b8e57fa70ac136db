//! Talking to the server that owns a data dir, or to one started in this
//! process when none runs. The CLI always speaks HTTP, even to its own
//! embedded server, so both cases take one code path, and `gantry approve`
//! from a second terminal reaches an embedded server the same way.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use gantry_server::RunningServer;
use gantry_server::server_info::live_server;
use serde_json::Value;

pub(crate) struct Connection {
    pub(crate) client: Client,
    /// The data dir this connection is about.
    pub(crate) data_dir: PathBuf,
    /// The server this process started, if it did.
    pub(crate) embedded: Option<RunningServer>,
}

#[derive(Clone)]
pub(crate) struct Client {
    base: String,
    http: reqwest::Client,
}

/// An error the API answered with: its stable code and message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct ApiError {
    pub(crate) code: String,
    pub(crate) message: String,
    pub(crate) errors: Vec<String>,
}

impl Connection {
    /// Uses the live server of `data_dir`, or starts one in this process.
    pub(crate) async fn open(data_dir: &Path) -> Result<Connection> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(info) = live_server(data_dir) {
                let client = Client::new(&info.api);
                if client.get("/api/v1/health").await.is_ok() {
                    return Ok(Connection {
                        client,
                        data_dir: data_dir.to_path_buf(),
                        embedded: None,
                    });
                }
            }
            let listen: SocketAddr = "127.0.0.1:0".parse().context("loopback address")?;
            match RunningServer::start(data_dir, listen, listen).await {
                Ok(server) => {
                    let client = Client::new(&server.api);
                    return Ok(Connection {
                        client,
                        data_dir: data_dir.to_path_buf(),
                        embedded: Some(server),
                    });
                }
                // Another process holds the data dir; it publishes server.json
                // as soon as its API listens, so wait for that.
                Err(error)
                    if tokio::time::Instant::now() < deadline
                        && error.to_string().contains("another gantry server") =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => {
                    return Err(error)
                        .context(format!("cannot start a server in {}", data_dir.display()));
                }
            }
        }
    }

    /// For an embedded server: waits until nothing runs (approvals may still
    /// wait for a person), then stops it.
    pub(crate) async fn close(self) {
        if let Some(server) = self.embedded {
            while server.plane.busy().await {
                let mut changes = server.plane.changes();
                let _ = tokio::time::timeout(Duration::from_millis(500), changes.changed()).await;
            }
            server.shutdown().await;
        }
    }
}

impl Client {
    pub(crate) fn new(base: &str) -> Client {
        Client {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Value> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .context("the server did not answer")?;
        decode(response).await
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .context("the server did not answer")?;
        decode(response).await
    }

    /// Waits (up to `timeout`) for any change after `version`; returns the new version.
    pub(crate) async fn changes(&self, version: u64, timeout: Duration) -> Result<u64> {
        let v = self
            .get(&format!(
                "/api/v1/changes?after={version}&timeout_ms={}",
                timeout.as_millis()
            ))
            .await?;
        Ok(v["version"].as_u64().unwrap_or(version))
    }
}

async fn decode(response: reqwest::Response) -> Result<Value> {
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .context("the server sent something that is not JSON")?;
    if status.is_success() {
        return Ok(body);
    }
    let errors = body["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    Err(anyhow!(ApiError {
        code: body["code"].as_str().unwrap_or("unknown").to_string(),
        message: body["message"]
            .as_str()
            .unwrap_or("the server refused the request")
            .to_string(),
        errors,
    }))
}

/// The data dir: `--data-dir`, `GANTRY_DATA_DIR`, or `.gantry/` beside the pipeline file.
pub(crate) fn data_dir(explicit: Option<&Path>, pipeline_file: &Path) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        return Ok(dir.to_path_buf());
    }
    let file = if pipeline_file.is_absolute() {
        pipeline_file.to_path_buf()
    } else {
        std::env::current_dir()
            .context("current directory")?
            .join(pipeline_file)
    };
    let Some(parent) = file.parent() else {
        bail!("{} has no directory", file.display())
    };
    Ok(parent.join(".gantry"))
}
