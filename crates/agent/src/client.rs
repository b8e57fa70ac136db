//! The agent's calls to the server: `/api/v1/agent/…` with its token.

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use gantry_api::{
    AgentFinishRequest, AgentHeartbeatAnswer, AgentHeartbeatRequest, AgentLogRequest,
    AgentPollAnswer, AgentPollRequest, ErrorBody,
};
use gantry_store::ArtifactStore;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// How long a call but a poll or a blob may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a blob's transfer may stall.
const BLOB_STALL: Duration = Duration::from_secs(60);

/// A call that failed: the server's error (status, code, message) or the
/// network's.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the server answered {status}: {message} [{code}]")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("cannot reach the server at {url}: {reason}")]
    Network { url: String, reason: String },
    #[error("{0}")]
    Local(String),
}

impl ClientError {
    /// The job's attempt ended: nothing more is taken about it.
    pub fn is_gone(&self) -> bool {
        matches!(self, ClientError::Api { code, .. } if code == "agent.job_gone")
    }

    /// An answer that polling again will not change: a token refused, a
    /// version the server does not run, a request it finds invalid.
    pub fn is_fatal(&self) -> bool {
        matches!(self, ClientError::Api { status, .. } if matches!(status, 400 | 401 | 403 | 409))
    }
}

/// The agent's HTTP client.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(server: &str, token: &str, ca_cert: Option<&Path>) -> Result<Client, ClientError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("gantry-agent/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_cert {
            let pem = std::fs::read(path).map_err(|e| {
                ClientError::Local(format!("cannot read the CA {}: {e}", path.display()))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                ClientError::Local(format!("the CA {} is not PEM: {e}", path.display()))
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Local(format!("HTTP client: {e}")))?;
        Ok(Client {
            base: server.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn network(&self, path: &str, error: reqwest::Error) -> ClientError {
        ClientError::Network {
            url: self.url(path),
            reason: error.without_url().to_string(),
        }
    }

    /// The answer if it succeeded, else its error body.
    async fn check(&self, response: reqwest::Response) -> Result<reqwest::Response, ClientError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.bytes().await.unwrap_or_default();
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(error) => (error.code, error.message),
            Err(_) => (
                "http".to_string(),
                String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            ),
        };
        Err(ClientError::Api {
            status: status.as_u16(),
            code,
            message,
        })
    }

    async fn post<B: serde::Serialize, A: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<A, ClientError> {
        let response = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| self.network(path, e))?;
        self.check(response)
            .await?
            .json()
            .await
            .map_err(|e| self.network(path, e))
    }

    /// Asks for a job, waiting up to `wait` for one.
    pub async fn poll(
        &self,
        name: &str,
        labels: &[String],
        version: &str,
        wait: Duration,
    ) -> Result<AgentPollAnswer, ClientError> {
        let request = AgentPollRequest {
            name: name.to_string(),
            labels: labels.to_vec(),
            version: version.to_string(),
            wait_ms: Some(u64::try_from(wait.as_millis()).unwrap_or(20_000)),
        };
        self.post("/api/v1/agent/poll", &request, wait + CALL_TIMEOUT)
            .await
    }

    pub async fn heartbeat(
        &self,
        name: &str,
        jobs: Vec<String>,
    ) -> Result<AgentHeartbeatAnswer, ClientError> {
        let request = AgentHeartbeatRequest {
            name: name.to_string(),
            jobs,
        };
        self.post("/api/v1/agent/heartbeat", &request, CALL_TIMEOUT)
            .await
    }

    pub async fn log(&self, job: &str, lines: Vec<String>) -> Result<(), ClientError> {
        let _: gantry_api::Ack = self
            .post(
                &format!("/api/v1/agent/jobs/{job}/log"),
                &AgentLogRequest { lines },
                CALL_TIMEOUT,
            )
            .await?;
        Ok(())
    }

    pub async fn finish(&self, job: &str, request: &AgentFinishRequest) -> Result<(), ClientError> {
        let _: gantry_api::Ack = self
            .post(
                &format!("/api/v1/agent/jobs/{job}/finish"),
                request,
                CALL_TIMEOUT * 4,
            )
            .await?;
        Ok(())
    }

    /// Fetches a blob of the job's inputs into `store`, through a temp file
    /// in `tmp`, kept only when its bytes hash to `digest`.
    pub async fn fetch_blob(
        &self,
        job: &str,
        digest: &str,
        store: &ArtifactStore,
        tmp: &Path,
    ) -> Result<(), ClientError> {
        let path = format!("/api/v1/agent/jobs/{job}/blobs/{digest}");
        let response = self
            .http
            .get(self.url(&path))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| self.network(&path, e))?;
        let response = self.check(response).await?;
        // One name per job and blob: jobs running at once may fetch the
        // same blob.
        let temp = tmp.join(format!("{}.{job}", digest.trim_start_matches("sha256:")));
        let local = |e: std::io::Error| ClientError::Local(format!("{}: {e}", temp.display()));
        let mut file = tokio::fs::File::create(&temp).await.map_err(local)?;
        let mut hasher = Sha256::new();
        let mut stream = response.bytes_stream();
        let outcome = async {
            loop {
                match tokio::time::timeout(BLOB_STALL, stream.next()).await {
                    Err(_) => return Err(ClientError::Local(format!("fetching {digest} stalled"))),
                    Ok(None) => break,
                    Ok(Some(Err(e))) => return Err(self.network(&path, e)),
                    Ok(Some(Ok(chunk))) => {
                        hasher.update(&chunk);
                        file.write_all(&chunk).await.map_err(local)?;
                    }
                }
            }
            file.flush().await.map_err(local)?;
            let got = hex(&hasher.finalize());
            if format!("sha256:{got}") != digest {
                return Err(ClientError::Local(format!(
                    "blob {digest} arrived as sha256:{got}"
                )));
            }
            let (store, at, digest) = (store.clone(), temp.clone(), digest.to_string());
            tokio::task::spawn_blocking(move || store.put_verified_file(&at, &digest))
                .await
                .map_err(|e| ClientError::Local(e.to_string()))?
                .map_err(|e| ClientError::Local(e.to_string()))?;
            Ok(())
        }
        .await;
        if outcome.is_err() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
        outcome
    }

    /// Uploads a blob of the job's outputs.
    pub async fn put_blob(
        &self,
        job: &str,
        digest: &str,
        file: std::fs::File,
    ) -> Result<(), ClientError> {
        let path = format!("/api/v1/agent/jobs/{job}/blobs/{digest}");
        let length = file.metadata().map(|m| m.len()).unwrap_or(0);
        let stream =
            tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(file), 64 << 10);
        let response = self
            .http
            .put(self.url(&path))
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, length)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .map_err(|e| self.network(&path, e))?;
        self.check(response).await?;
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
