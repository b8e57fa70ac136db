//! Talking to the server that owns a data dir, or to one started in this
//! process when none runs, or to a remote one (`--server URL`). The CLI
//! always speaks HTTP, even to its own embedded server, so every case takes
//! one code path, and `gantry approve` from a second terminal reaches an
//! embedded server the same way.
//!
//! Every request carries a token: `GANTRY_TOKEN`; else, for a remote
//! server, the one `gantry login URL` stored; else, for the server of the
//! data dir, `DATA_DIR/admin.token` (readable by its owner only).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use gantry_api::ErrorBody;
use gantry_server::RunningServer;
use gantry_server::server_info::live_server;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The variable that holds a token for every command.
pub(crate) const TOKEN_ENV: &str = "GANTRY_TOKEN";

/// The server named by `--server` / `GANTRY_SERVER`, set once by `main`.
static REMOTE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Makes every connection go to `url` instead of the data dir's server.
pub(crate) fn set_remote(url: Option<String>) {
    let _ = REMOTE.set(url.map(|u| u.trim_end_matches('/').to_string()));
}

pub(crate) fn remote() -> Option<&'static str> {
    REMOTE.get().and_then(Option::as_deref)
}

/// Whether commands go to a remote server (`--server`).
pub(crate) fn is_remote() -> bool {
    remote().is_some()
}

/// The token for a server: `GANTRY_TOKEN`, or `fallback` (the stored
/// login, or the data dir's admin token).
fn token_for(fallback: impl FnOnce() -> Option<String>) -> Option<String> {
    std::env::var(TOKEN_ENV)
        .ok()
        .filter(|t| !t.trim().is_empty())
        .or_else(fallback)
        .map(|t| t.trim().to_string())
}

/// The admin token a server wrote into its data dir.
pub(crate) fn admin_token(data_dir: &Path) -> Option<String> {
    std::fs::read_to_string(data_dir.join(gantry_server::ADMIN_TOKEN_FILE)).ok()
}

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
    token: Option<String>,
    http: reqwest::Client,
    /// Where this client's answers come from, for errors that say
    /// something was not found: `the data dir DIR` or `the server at URL`.
    place: String,
}

/// An error the API answered with: its stable code and message, and where
/// the client asked (so "not found" says where it looked).
#[derive(Debug, thiserror::Error)]
#[error("{}", .body.message)]
pub(crate) struct ApiError {
    pub(crate) body: ErrorBody,
    /// The HTTP status.
    pub(crate) status: u16,
    /// `the data dir DIR` or `the server at URL`.
    pub(crate) place: String,
}

impl ApiError {
    /// The line `main` prints: the message, where a "not found" looked, and
    /// the canonical code.
    pub(crate) fn line(&self) -> String {
        let looked = if self.status == 404 {
            format!(" (looked in {})", self.place)
        } else {
            String::new()
        };
        format!(
            "error: {}{looked} [{}]",
            self.body.message,
            self.body.canonical()
        )
    }
}

impl Connection {
    /// Uses the remote server (`--server`), or the live server of
    /// `data_dir`, or starts one in this process.
    pub(crate) async fn open(data_dir: &Path) -> Result<Connection> {
        if let Some(url) = remote() {
            let token = token_for(|| crate::login::stored_token(url));
            if token.is_none() {
                bail!("no token for {url}: run `gantry login {url}` or set {TOKEN_ENV}");
            }
            return Ok(Connection {
                client: Client::new(url, token),
                data_dir: data_dir.to_path_buf(),
                embedded: None,
            });
        }
        let place = place_of(data_dir);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut unanswered = None;
        loop {
            if let Some(info) = live_server(data_dir) {
                let client = Client::with_ca(
                    &info.api,
                    token_for(|| admin_token(data_dir)),
                    info.tls_cert.as_deref(),
                )
                .at(&place);
                match client.get::<gantry_api::Ack>("/api/v1/health").await {
                    Ok(_) => {
                        return Ok(Connection {
                            client,
                            data_dir: data_dir.to_path_buf(),
                            embedded: None,
                        });
                    }
                    Err(error) => unanswered = Some(error),
                }
            }
            let listen: SocketAddr = "127.0.0.1:0".parse().context("loopback address")?;
            match RunningServer::start(data_dir, listen, listen).await {
                Ok(server) => {
                    let client =
                        Client::new(&server.api, token_for(|| admin_token(data_dir))).at(&place);
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
                    // The server that holds the data dir did not answer:
                    // say why, rather than that it holds the data dir.
                    if let Some(unanswered) = unanswered {
                        return Err(unanswered);
                    }
                    return Err(error)
                        .context(format!("cannot start a server in {}", data_dir.display()));
                }
            }
        }
    }

    /// Like [`Connection::open`], but the server outlives this command: a
    /// local data dir without a live server gets one in the background
    /// (`DATA_DIR/server.log`; it exits once idle and nobody follows an
    /// execution). The commands of `main` use it, so that Ctrl-C or the end
    /// of a command never ends an execution, and so that commands started
    /// at once in several terminals meet in one server rather than one of
    /// them running an execution in a server that ends with it.
    pub(crate) async fn open_lasting(data_dir: &Path) -> Result<Connection> {
        if !is_remote() && live_server(data_dir).is_none() {
            spawn_background_server(data_dir).await?;
        }
        Connection::open(data_dir).await
    }

    /// How to name this connection's server to a person: `the server of
    /// DIR`, `this process's server for DIR`, or `the server at URL`.
    pub(crate) fn server_name(&self) -> String {
        match (&self.embedded, remote()) {
            (_, Some(url)) => format!("the server at {url}"),
            (Some(_), None) => format!("this process's server for {}", self.data_dir.display()),
            (None, None) => format!("the server of {}", self.data_dir.display()),
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
    pub(crate) fn new(base: &str, token: Option<String>) -> Client {
        Self::with_ca(base, token, None)
    }

    /// A client that also trusts the certificate in `ca` (the one a local
    /// server published in `server.json`).
    pub(crate) fn with_ca(base: &str, token: Option<String>, ca: Option<&Path>) -> Client {
        Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: http_client(base, ca),
            place: format!("the server at {}", base.trim_end_matches('/')),
        }
    }

    /// The same client, described as `place` in "not found" errors.
    pub(crate) fn at(mut self, place: &str) -> Client {
        self.place = place.to_string();
        self
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends `method path` (with `body`), and reads the answer as the API's
    /// type for it, or its error answer as an [`ApiError`].
    async fn send<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T> {
        let mut request = self.request(method.clone(), path);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("the server at {} did not answer", self.base))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("the server's answer to {method} {path} was cut off"))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).with_context(|| {
                format!("the server's answer to {method} {path} is not what this gantry knows")
            });
        }
        let error = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            ErrorBody::new(
                "unknown",
                format!("the server refused {method} {path} ({status})"),
            )
        });
        Err(anyhow!(ApiError {
            body: error,
            status: status.as_u16(),
            place: self.place.clone(),
        }))
    }

    /// `GET path`, read as the API's type for it.
    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send(reqwest::Method::GET, path, None::<&()>).await
    }

    /// `POST path` with a typed body, the answer read as `T`.
    pub(crate) async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &(impl Serialize + ?Sized),
    ) -> Result<T> {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub(crate) async fn put<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &(impl Serialize + ?Sized),
    ) -> Result<T> {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    pub(crate) async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send(reqwest::Method::DELETE, path, None::<&()>).await
    }

    /// One execution.
    pub(crate) async fn execution(&self, id: &str) -> Result<gantry_api::ExecutionView> {
        self.get(&format!("/api/v1/executions/{id}")).await
    }

    /// Waits (up to `timeout`) for any change after `version`; returns the new version.
    pub(crate) async fn changes(&self, version: u64, timeout: Duration) -> Result<u64> {
        let changes: gantry_api::Changes = self
            .get(&format!(
                "/api/v1/changes?after={version}&timeout_ms={}",
                timeout.as_millis()
            ))
            .await?;
        Ok(changes.version)
    }
}

/// The variable naming a PEM file of extra trusted certificates, for a
/// server whose certificate no system root signs (a self-signed one).
pub(crate) const CA_CERT_ENV: &str = "GANTRY_CA_CERT";

/// An HTTP client for `base` that trusts the certificates in
/// `GANTRY_CA_CERT` and `ca` (a file that cannot be read or parsed is
/// reported and skipped). The system's roots are loaded only for a remote
/// `https` server: plain HTTP needs none, and a local server's own
/// certificate is the one to trust (loading ~150 system roots costs a
/// command several milliseconds).
fn http_client(base: &str, ca: Option<&Path>) -> reqwest::Client {
    let mut certificates = Vec::new();
    let extra = std::env::var_os(CA_CERT_ENV)
        .map(PathBuf::from)
        .into_iter()
        .chain(ca.map(Path::to_path_buf));
    for path in extra {
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|pem| reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| e.to_string()))
        {
            Ok(found) => certificates.extend(found),
            Err(error) => eprintln!("warning: {}: {error}", path.display()),
        }
    }
    let builder = reqwest::Client::builder();
    let builder = if base.starts_with("https://") && ca.is_none() {
        builder.tls_certs_merge(certificates)
    } else {
        builder.tls_certs_only(certificates)
    };
    builder.build().unwrap_or_else(|_| reqwest::Client::new())
}

/// `the data dir DIR`, absolute, for errors.
pub(crate) fn place_of(data_dir: &Path) -> String {
    let shown = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    format!("the data dir {}", shown.display())
}

/// Starts `gantry server` detached from this terminal, logging to
/// `DATA_DIR/server.log`, and waits until it publishes `server.json`. A
/// server that exits at once says why in its log: that is the error (unless
/// another process's server took the data dir first, which is then used).
async fn spawn_background_server(data_dir: &Path) -> Result<()> {
    use std::io::{Read, Seek};
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let log_path = data_dir.join("server.log");
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let written_before = log.metadata().map(|m| m.len()).unwrap_or(0);
    let exe = std::env::current_exe().context("cannot find the gantry executable")?;
    let mut child = std::process::Command::new(exe)
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--registry-listen",
            "127.0.0.1:0",
            "--idle-exit",
            "10",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().context("server log")?)
        .stderr(log.try_clone().context("server log")?)
        // Its own process group: Ctrl-C in this terminal must not stop it.
        .process_group(0)
        .spawn()
        .context("cannot start a background server")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut lost_the_race = false;
    while live_server(data_dir).is_none() {
        if !lost_the_race && let Ok(Some(status)) = child.try_wait() {
            let mut said = String::new();
            let _ = log.seek(std::io::SeekFrom::Start(written_before));
            let _ = log.read_to_string(&mut said);
            if said.contains("another gantry server") {
                // Another command's server took the data dir first: use it.
                lost_the_race = true;
            } else {
                let last: Vec<&str> = said.lines().filter(|l| !l.trim().is_empty()).collect();
                let last = last[last.len().saturating_sub(5)..].join("\n");
                bail!(
                    "the background server for {} exited ({status}); it said:\n{last}",
                    data_dir.display()
                );
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "the background server for {} did not start; see {}",
                data_dir.display(),
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
