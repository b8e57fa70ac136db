//! The registry client: the OCI distribution API over reqwest.
//!
//! One `RegistryClient` talks to any number of registries; each call names the
//! image it is about (a [`Call`]), and every error names it back. A request is
//! wrapped in three concerns, innermost first, each in its own module:
//!
//! - **Transport** (here): plain HTTP for loopback registries and those listed
//!   as insecure; HTTPS (rustls, platform roots plus any given) otherwise.
//! - **Retry** (`retry`): 5xx answers and connection errors are tried again (3
//!   tries by default, 200 ms × 2^n apart); 4xx answers are final and reported
//!   verbatim (`error`, `answer`). Uploads and downloads into files are retried
//!   as a whole.
//! - **Auth** (`auth`): a `401` is answered once, with a token from the
//!   registry's realm (the Docker token flow) or Basic credentials; credentials
//!   go only to the registry itself, or to a realm over HTTPS or on its own host.
//!
//! What the calls do is in `blobs` (look for, fetch, upload, mount, copy; always
//! streamed) and `manifests` (fetch and store exact bytes, resolve digests, list
//! tags).

mod answer;
mod auth;
mod blobs;
mod error;
mod manifests;
mod retry;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};

pub use auth::Credentials;
pub use error::RegistryError;
pub use manifests::RawManifest;
pub use retry::RetryPolicy;

use crate::reference::{DOCKER_HUB, Reference};

/// Docker Hub's API host; references say `docker.io`.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// How a [`RegistryClient`] reaches registries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Credentials per registry (as references spell it: `docker.io`, `host:5000`).
    pub credentials: HashMap<String, Credentials>,
    /// Registries spoken to over plain HTTP although not on loopback.
    pub insecure: Vec<String>,
    /// Whether loopback registries (`127.0.0.0/8`, `::1`, `localhost`) get plain
    /// HTTP, as Docker allows; turn off for a loopback registry serving HTTPS.
    pub loopback_plain_http: bool,
    /// Extra trusted root certificates (PEM bundles), for registries signed by a
    /// private CA; they add to the platform's roots.
    pub root_certificates_pem: Vec<Vec<u8>>,
    /// Retry of 5xx answers and connection errors.
    pub retry: RetryPolicy,
    /// Blobs up to this size are uploaded with one `PUT`; larger ones in `PATCH`
    /// chunks of this size.
    pub chunk_size: u64,
    /// How long to wait for a TCP (and TLS) connection.
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            credentials: HashMap::new(),
            insecure: Vec::new(),
            loopback_plain_http: true,
            root_certificates_pem: Vec::new(),
            retry: RetryPolicy::default(),
            chunk_size: 64 * 1024 * 1024,
            connect_timeout: Duration::from_secs(30),
        }
    }
}

/// A client for OCI distribution registries. Cheap to clone.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: std::sync::OnceLock<reqwest::Client>,
    /// Extra trusted roots, for the client built on first use.
    roots: Vec<reqwest::Certificate>,
    options: ClientOptions,
    /// Credentials and cached tokens, seen by every clone.
    auth: auth::AuthState,
}

/// One registry call: who it is about and what access it needs.
struct Call<'a> {
    image: &'a Reference,
    what: String,
    /// The token scope, e.g. `repository:app:pull,push`.
    scope: String,
}

impl RegistryClient {
    /// A client with the given options.
    pub fn new(options: ClientOptions) -> Result<RegistryClient, RegistryError> {
        let mut roots = Vec::new();
        for pem in &options.root_certificates_pem {
            let certificates = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                RegistryError::Protocol {
                    image: "(client)".to_owned(),
                    what: "reading root certificates".to_owned(),
                    reason: e.to_string(),
                }
            })?;
            roots.extend(certificates);
        }
        // A certificate the TLS stack refuses is refused here, up front;
        // building with these roots only loads no system roots, so it is cheap.
        reqwest::Client::builder()
            .tls_certs_only(roots.clone())
            .build()
            .map_err(|source| RegistryError::Unreachable {
                image: "(client)".to_owned(),
                what: "building the HTTP client".to_owned(),
                attempts: 0,
                source,
            })?;
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                http: std::sync::OnceLock::new(),
                roots,
                auth: auth::AuthState::new(options.credentials.clone()),
                options,
            }),
        })
    }

    /// Checks that `registry` speaks the v2 API (and that credentials work).
    pub async fn ping(&self, registry: &str) -> Result<(), RegistryError> {
        // Any repository does: `/v2/` itself needs no scope.
        let image =
            Reference::parse(&format!("{registry}/ping")).map_err(|e| RegistryError::Protocol {
                image: registry.to_owned(),
                what: "ping".to_owned(),
                reason: e.to_string(),
            })?;
        let call = Call {
            image: &image,
            what: format!("ping {registry}"),
            scope: String::new(),
        };
        let url = self.url(&call, "")?;
        let response = self
            .execute(&call, true, || Ok(self.request(Method::GET, url.clone())))
            .await?;
        answer::expect(&call, response, &[StatusCode::OK])
            .await
            .map(drop)
    }

    /// The base URL of a registry's API, `http(s)://host/v2/`.
    fn base_url(&self, registry: &str) -> Result<Url, String> {
        let host = if registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            registry
        };
        let scheme = if self.is_plain_http(registry) {
            "http"
        } else {
            "https"
        };
        Url::parse(&format!("{scheme}://{host}/v2/")).map_err(|e| e.to_string())
    }

    /// Loopback registries and those listed as insecure get plain HTTP.
    fn is_plain_http(&self, registry: &str) -> bool {
        let host = match registry.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(rest),
            None => registry.split(':').next().unwrap_or(registry),
        };
        let loopback = host == "localhost"
            || host == "::1"
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback());
        (loopback && self.inner.options.loopback_plain_http)
            || self.inner.options.insecure.iter().any(|r| r == registry)
    }

    fn url(&self, call: &Call<'_>, path: &str) -> Result<Url, RegistryError> {
        let base = self
            .base_url(call.image.registry())
            .map_err(|reason| call.protocol(reason))?;
        base.join(path).map_err(|e| call.protocol(e.to_string()))
    }

    fn call<'a>(&self, image: &'a Reference, what: String, push: bool) -> Call<'a> {
        let actions = if push { "pull,push" } else { "pull" };
        Call {
            image,
            what,
            scope: format!("repository:{}:{actions}", image.repository()),
        }
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.http().request(method, url)
    }

    /// The HTTP client, built on first use: building it loads the system's
    /// root certificates (~150 files), which a server that never talks to a
    /// registry over HTTPS (or a short-lived CLI command) should not pay.
    fn http(&self) -> &reqwest::Client {
        self.inner.http.get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(self.inner.options.connect_timeout)
                .tls_certs_merge(self.inner.roots.clone())
                .build()
                .unwrap_or_else(|error| {
                    tracing::error!(%error, "Building the registry HTTP client failed; using the defaults.");
                    reqwest::Client::new()
                })
        })
    }

    /// Sends a request built by `build`, answering an auth challenge once and,
    /// when `retry`, trying again on 5xx and connection errors. Returns the final
    /// response whatever its status; callers decide which statuses are success.
    async fn execute<F>(
        &self,
        call: &Call<'_>,
        retry: bool,
        mut build: F,
    ) -> Result<Response, RegistryError>
    where
        F: FnMut() -> Result<RequestBuilder, RegistryError>,
    {
        let response = self.send_retrying(call, retry, &mut build).await?;
        if response.status() != StatusCode::UNAUTHORIZED
            || !self.answer_challenge(call, &response).await?
        {
            return Ok(response);
        }
        drop(response);
        self.send_retrying(call, retry, &mut build).await
    }
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("options", &self.inner.options)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_get_plain_http_and_others_https() {
        let client = RegistryClient::new(ClientOptions {
            insecure: vec!["build.internal:5000".into()],
            ..ClientOptions::default()
        })
        .unwrap();
        for (registry, scheme) in [
            ("127.0.0.1:5000", "http"),
            ("127.1.2.3", "http"),
            ("localhost:5000", "http"),
            ("[::1]:5000", "http"),
            ("build.internal:5000", "http"),
            ("ghcr.io", "https"),
        ] {
            assert_eq!(
                client.base_url(registry).unwrap().scheme(),
                scheme,
                "{registry}"
            );
        }
        assert_eq!(
            client.base_url("docker.io").unwrap().as_str(),
            "https://registry-1.docker.io/v2/"
        );
    }
}
