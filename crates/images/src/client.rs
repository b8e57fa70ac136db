//! The registry client: the OCI distribution API over reqwest.
//!
//! One `RegistryClient` talks to any number of registries; each call names the
//! image it is about, and every error names it back. Three concerns wrap each
//! request, innermost first:
//!
//! - **Retry**: 5xx answers and connection errors are tried again (3 tries by
//!   default, 200 ms × 2^n apart); 4xx answers are final and reported verbatim.
//!   Uploads are retried as a whole (a new upload session), because a failed
//!   `PATCH` leaves the session's offset unknown.
//! - **Auth**: a `401` with `WWW-Authenticate: Bearer realm=…,service=…,scope=…`
//!   sends the client to the realm for a token, cached per registry and scope; a
//!   `Basic` challenge is answered with the registry's credentials. The registry
//!   names the realm, so a registry could name any host: credentials go to a realm
//!   only over HTTPS or on the registry's own host and port, and otherwise the
//!   token is asked for anonymously. Tokens and credentials are only ever added to
//!   requests to the registry itself, and a redirect to another origin (a storage
//!   host) drops the `Authorization` header.
//! - **Transport**: plain HTTP for loopback registries and those listed as
//!   insecure; HTTPS (rustls, platform roots) otherwise.
//!
//! Blobs never pass through memory whole: uploads stream from a file (in `PATCH`
//! chunks above `chunk_size`), downloads stream to a writer while hashing, and
//! cross-registry copies pipe a download's body into an upload.

use std::collections::HashMap;
use std::fmt;
use std::io::{Seek, SeekFrom};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use reqwest::header::{
    ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, LINK, LOCATION,
    WWW_AUTHENTICATE,
};
use reqwest::{Body, Method, RequestBuilder, Response, StatusCode, Url};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use crate::digest::Digest;
use crate::manifest::{MANIFEST_ACCEPT, MAX_MANIFEST_BYTES};
use crate::reference::{DOCKER_HUB, Reference};

/// Docker Hub's API host; references say `docker.io`.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// How much of a registry's error body an error message keeps.
const MAX_ERROR_BODY: usize = 4096;
/// The largest token response read from an auth realm.
const MAX_TOKEN_BODY: u64 = 1024 * 1024;
/// The read size when streaming a file into a request body.
const STREAM_BUFFER: usize = 256 * 1024;

/// A username and password for one registry.
#[derive(Clone)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or access token.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password must never reach a log line through a `{:?}`.
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How often and how patiently a failed request is tried again.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries in all, the first included (at least 1).
    pub attempts: u32,
    /// The wait before the second try; it doubles for each later one.
    pub base_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(200),
        }
    }
}

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

/// A registry call that failed, naming the image (or registry) it was about.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered with an error status; `body` is its error JSON.
    #[error("{what} for {image}: registry answered {status}: {body}")]
    Status {
        /// The image (or registry) the call was about.
        image: String,
        /// What was being done.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The registry's answer, verbatim (cut at 4 KiB).
        body: String,
    },
    /// The manifest (tag or digest) does not exist.
    #[error("image {image} not found: the registry has no such manifest")]
    ManifestNotFound {
        /// The image asked for.
        image: String,
    },
    /// The registry could not be reached, even after retries.
    #[error("{what} for {image}: registry unreachable after {attempts} tries: {source}")]
    Unreachable {
        /// The image (or registry) the call was about.
        image: String,
        /// What was being done.
        what: String,
        /// How many tries were made.
        attempts: u32,
        /// The last transport error.
        source: reqwest::Error,
    },
    /// Content did not hash to the digest it was fetched or stored under.
    #[error("{what} for {image}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The image the content belongs to.
        image: String,
        /// What was being done.
        what: String,
        /// The digest asked for.
        expected: String,
        /// The digest found.
        actual: String,
    },
    /// The registry broke the protocol (missing header, oversized manifest, …).
    #[error("{what} for {image}: {reason}")]
    Protocol {
        /// The image the call was about.
        image: String,
        /// What was being done.
        what: String,
        /// What was wrong.
        reason: String,
    },
    /// Getting a token from the registry's auth realm failed.
    #[error("authentication for {image} failed: {reason}")]
    Auth {
        /// The image the call was about.
        image: String,
        /// What was wrong.
        reason: String,
    },
    /// Reading or writing local data failed.
    #[error("{what} for {image}: {source}")]
    Io {
        /// The image the data belongs to.
        image: String,
        /// What was being done.
        what: String,
        /// The IO error.
        source: std::io::Error,
    },
}

impl RegistryError {
    /// A stable code for APIs and tests.
    pub fn code(&self) -> &'static str {
        match self {
            RegistryError::Status { .. } => "registry_status",
            RegistryError::ManifestNotFound { .. } => "manifest_not_found",
            RegistryError::Unreachable { .. } => "registry_unreachable",
            RegistryError::DigestMismatch { .. } => "digest_mismatch",
            RegistryError::Protocol { .. } => "registry_protocol",
            RegistryError::Auth { .. } => "registry_auth",
            RegistryError::Io { .. } => "io",
        }
    }

    /// Whether trying the whole operation again may help (5xx, connection loss).
    fn is_transient(&self) -> bool {
        match self {
            RegistryError::Status { status, .. } => *status >= 500,
            RegistryError::Unreachable { .. } => true,
            _ => false,
        }
    }
}

/// A manifest exactly as the registry stored it.
#[derive(Debug, Clone)]
pub struct RawManifest {
    /// The manifest's bytes, unchanged.
    pub bytes: Vec<u8>,
    /// Its media type (from `Content-Type`, else its `mediaType` field).
    pub media_type: String,
    /// The sha256 of `bytes`.
    pub digest: Digest,
}

/// A client for OCI distribution registries. Cheap to clone.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    options: ClientOptions,
    /// Credentials per registry: those of `options`, and any given later by
    /// [`RegistryClient::set_credentials`] (seen by every clone).
    credentials: RwLock<HashMap<String, Credentials>>,
    /// Bearer tokens by (registry, scope), and registries that asked for Basic.
    auth: Mutex<AuthCache>,
}

#[derive(Default)]
struct AuthCache {
    tokens: HashMap<(String, String), String>,
    basic: Vec<String>,
}

/// A `WWW-Authenticate: Bearer …` challenge.
#[derive(Debug, Default, PartialEq)]
struct BearerChallenge {
    realm: String,
    service: Option<String>,
    scope: Option<String>,
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
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .tls_certs_merge(roots)
            .build()
            .map_err(|source| RegistryError::Unreachable {
                image: "(client)".to_owned(),
                what: "building the HTTP client".to_owned(),
                attempts: 0,
                source,
            })?;
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                http,
                credentials: RwLock::new(options.credentials.clone()),
                options,
                auth: Mutex::new(AuthCache::default()),
            }),
        })
    }

    /// Sets the credentials for `registry` (as references spell it, e.g.
    /// `127.0.0.1:5000`), replacing any it had, for this client and every clone
    /// of it. Tokens obtained with earlier credentials are forgotten.
    pub fn set_credentials(&self, registry: &str, credentials: Credentials) {
        self.inner
            .credentials
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(registry.to_owned(), credentials);
        lock(&self.inner.auth)
            .tokens
            .retain(|(r, _), _| r != registry);
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
            .map_err(|reason| protocol(call, reason))?;
        base.join(path).map_err(|e| protocol(call, e.to_string()))
    }

    fn call<'a>(&self, image: &'a Reference, what: String, push: bool) -> Call<'a> {
        let actions = if push { "pull,push" } else { "pull" };
        Call {
            image,
            what,
            scope: format!("repository:{}:{actions}", image.repository()),
        }
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
        expect(&call, response, &[StatusCode::OK]).await.map(drop)
    }

    /// Whether the repository of `image` holds blob `digest`.
    pub async fn blob_exists(
        &self,
        image: &Reference,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let call = self.call(image, format!("HEAD blob {digest}"), false);
        let url = self.url(&call, &format!("{}/blobs/{digest}", image.repository()))?;
        let response = self
            .execute(&call, true, || Ok(self.request(Method::HEAD, url.clone())))
            .await?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_error(&call, response).await),
        }
    }

    /// Streams blob `digest` of `image` into `out`, checking it hashes to `digest`.
    /// Returns the number of bytes written. Only the request is retried: once bytes
    /// have reached `out` they cannot be taken back.
    pub async fn get_blob<W>(
        &self,
        image: &Reference,
        digest: &Digest,
        out: &mut W,
    ) -> Result<u64, RegistryError>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let call = self.call(image, format!("GET blob {digest}"), false);
        let url = self.url(&call, &format!("{}/blobs/{digest}", image.repository()))?;
        let response = self
            .execute(&call, true, || Ok(self.request(Method::GET, url.clone())))
            .await?;
        let mut response = expect(&call, response, &[StatusCode::OK]).await?;
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|source| unreachable(&call, 1, source))?
        {
            hasher.update(&chunk);
            out.write_all(&chunk)
                .await
                .map_err(|source| io_error(&call, source))?;
            written += chunk.len() as u64;
        }
        out.flush()
            .await
            .map_err(|source| io_error(&call, source))?;
        let actual = Digest::from_hasher(hasher);
        if &actual != digest {
            return Err(RegistryError::DigestMismatch {
                image: image.to_string(),
                what: call.what,
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(written)
    }

    /// Downloads blob `digest` into the file `path` (created or truncated), checking
    /// its digest. Unlike [`get_blob`](Self::get_blob) a broken download is retried
    /// from the start, since the file can be truncated.
    pub async fn get_blob_to_file(
        &self,
        image: &Reference,
        digest: &Digest,
        path: &Path,
    ) -> Result<u64, RegistryError> {
        let policy = self.inner.options.retry;
        let mut attempt = 0;
        loop {
            let result = async {
                let mut file =
                    tokio::fs::File::create(path)
                        .await
                        .map_err(|source| RegistryError::Io {
                            image: image.to_string(),
                            what: format!("creating {}", path.display()),
                            source,
                        })?;
                self.get_blob(image, digest, &mut file).await
            }
            .await;
            match result {
                Err(e) if e.is_transient() && attempt + 1 < policy.attempts.max(1) => {
                    backoff(&policy, attempt, image, &e).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Uploads the file at `path` as blob `digest` of `image`'s repository: one
    /// `PUT` up to `chunk_size`, `PATCH` chunks above it, streamed from the file.
    /// Does not check whether the blob is already there; see [`blob_exists`](Self::blob_exists).
    pub async fn push_blob(
        &self,
        image: &Reference,
        digest: &Digest,
        path: &Path,
    ) -> Result<u64, RegistryError> {
        let call = self.call(image, format!("upload blob {digest}"), true);
        let size = std::fs::metadata(path)
            .map_err(|source| io_error(&call, source))?
            .len();
        let source = UploadSource::File { path, size };
        self.upload_retrying(&call, digest, &source).await?;
        Ok(size)
    }

    /// Uploads small in-memory content (a config) as blob `digest`.
    pub async fn push_blob_bytes(
        &self,
        image: &Reference,
        digest: &Digest,
        bytes: &[u8],
    ) -> Result<(), RegistryError> {
        let call = self.call(image, format!("upload blob {digest}"), true);
        let source = UploadSource::Bytes(bytes);
        self.upload_retrying(&call, digest, &source).await
    }

    /// Asks the registry to link blob `digest` from `from`'s repository into `to`'s
    /// without transferring it. `true` if mounted; `false` if the registry declined
    /// (a different registry, or it lacks or will not share the blob).
    pub async fn mount_blob(
        &self,
        from: &Reference,
        to: &Reference,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        if !from.same_registry(to) {
            return Ok(false);
        }
        let mut call = self.call(
            to,
            format!("mount blob {digest} from {}", from.repository()),
            true,
        );
        call.scope = format!("{} repository:{}:pull", call.scope, from.repository());
        let mut url = self.url(&call, &format!("{}/blobs/uploads/", to.repository()))?;
        url.query_pairs_mut()
            .append_pair("mount", digest.as_str())
            .append_pair("from", from.repository());
        let response = self
            .execute(&call, true, || Ok(self.request(Method::POST, url.clone())))
            .await?;
        match response.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                // The registry opened an ordinary upload instead; close it so it does
                // not linger until the registry's upload purge.
                if let Ok(location) = self.location(&call, &url, &response) {
                    let _ = self
                        .execute(&call, false, || {
                            Ok(self.request(Method::DELETE, location.clone()))
                        })
                        .await;
                }
                Ok(false)
            }
            _ => Err(status_error(&call, response).await),
        }
    }

    /// Copies blob `digest` (of `size` bytes) from `from` to `to`, piping the
    /// download into the upload so it is never held whole. The destination
    /// registry checks the digest when the upload is closed.
    pub async fn copy_blob(
        &self,
        from: &Reference,
        to: &Reference,
        digest: &Digest,
        size: u64,
    ) -> Result<(), RegistryError> {
        let call = self.call(to, format!("copy blob {digest} from {from}"), true);
        let source = UploadSource::Blob { from, digest, size };
        self.upload_retrying(&call, digest, &source).await
    }

    /// Fetches the manifest `image` names (by digest if pinned, else by tag), as bytes.
    pub async fn get_manifest_raw(&self, image: &Reference) -> Result<RawManifest, RegistryError> {
        let call = self.call(image, "GET manifest".to_owned(), false);
        let url = self.url(
            &call,
            &format!(
                "{}/manifests/{}",
                image.repository(),
                image.manifest_reference()
            ),
        )?;
        let response = self
            .execute(&call, true, || {
                Ok(self
                    .request(Method::GET, url.clone())
                    .header(ACCEPT, MANIFEST_ACCEPT))
            })
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::ManifestNotFound {
                image: image.to_string(),
            });
        }
        let response = expect(&call, response, &[StatusCode::OK]).await?;
        let header_digest =
            header_str(response.headers(), "docker-content-digest").map(str::to_owned);
        let content_type = header_str(response.headers(), CONTENT_TYPE.as_str()).map(str::to_owned);
        let bytes = read_capped(&call, response, MAX_MANIFEST_BYTES).await?;
        let digest = Digest::of(&bytes);
        let expected = image
            .digest()
            .map(Digest::to_string)
            .or(header_digest.filter(|d| d.starts_with("sha256:")));
        if let Some(expected) = expected
            && expected != digest.as_str()
        {
            return Err(RegistryError::DigestMismatch {
                image: image.to_string(),
                what: call.what,
                expected,
                actual: digest.to_string(),
            });
        }
        let media_type = match content_type
            .as_deref()
            .map(|t| t.split(';').next().unwrap_or(t).trim())
        {
            Some(t) if crate::manifest::manifest_kind(t).is_some() => t.to_owned(),
            // Some registries answer `application/json`; the document says what it is.
            _ => media_type_field(&bytes).unwrap_or_else(|| content_type.unwrap_or_default()),
        };
        Ok(RawManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Stores `bytes` as the manifest `image` names (its tag, or its digest) and
    /// returns the digest, which is the sha256 of `bytes`: they are sent unchanged.
    pub async fn put_manifest_raw(
        &self,
        image: &Reference,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Digest, RegistryError> {
        let call = self.call(image, "PUT manifest".to_owned(), true);
        let digest = Digest::of(bytes);
        if let Some(pinned) = image.digest()
            && pinned != &digest
        {
            return Err(RegistryError::DigestMismatch {
                image: image.to_string(),
                what: call.what,
                expected: pinned.to_string(),
                actual: digest.to_string(),
            });
        }
        let url = self.url(
            &call,
            &format!(
                "{}/manifests/{}",
                image.repository(),
                image.manifest_reference()
            ),
        )?;
        let body = bytes.to_vec();
        let response = self
            .execute(&call, true, || {
                Ok(self
                    .request(Method::PUT, url.clone())
                    .header(CONTENT_TYPE, media_type)
                    .body(body.clone()))
            })
            .await?;
        let response = expect(&call, response, &[StatusCode::CREATED, StatusCode::OK]).await?;
        if let Some(stored) = header_str(response.headers(), "docker-content-digest")
            && stored.starts_with("sha256:")
            && stored != digest.as_str()
        {
            return Err(RegistryError::DigestMismatch {
                image: image.to_string(),
                what: call.what,
                expected: digest.to_string(),
                actual: stored.to_owned(),
            });
        }
        Ok(digest)
    }

    /// The digest of the manifest `image` names (a `HEAD`), or `None` if absent.
    pub async fn manifest_digest(
        &self,
        image: &Reference,
    ) -> Result<Option<Digest>, RegistryError> {
        let call = self.call(image, "HEAD manifest".to_owned(), false);
        let url = self.url(
            &call,
            &format!(
                "{}/manifests/{}",
                image.repository(),
                image.manifest_reference()
            ),
        )?;
        let response = self
            .execute(&call, true, || {
                Ok(self
                    .request(Method::HEAD, url.clone())
                    .header(ACCEPT, MANIFEST_ACCEPT))
            })
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::OK => {
                match header_str(response.headers(), "docker-content-digest").map(Digest::parse) {
                    Some(Ok(digest)) => Ok(Some(digest)),
                    // Without a usable header the only way to know is to hash the manifest.
                    _ => match self.get_manifest_raw(image).await {
                        Ok(raw) => Ok(Some(raw.digest)),
                        Err(RegistryError::ManifestNotFound { .. }) => Ok(None),
                        Err(e) => Err(e),
                    },
                }
            }
            _ => Err(status_error(&call, response).await),
        }
    }

    /// Every tag of `image`'s repository, following `Link` pagination.
    pub async fn list_tags(&self, image: &Reference) -> Result<Vec<String>, RegistryError> {
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let call = self.call(image, "list tags".to_owned(), false);
        let mut url = self.url(&call, &format!("{}/tags/list", image.repository()))?;
        let mut tags = Vec::new();
        // A bound on pages keeps a registry that links a page to itself from looping forever.
        for _ in 0..10_000 {
            let page_url = url.clone();
            let response = self
                .execute(&call, true, || {
                    Ok(self.request(Method::GET, page_url.clone()))
                })
                .await?;
            let response = expect(&call, response, &[StatusCode::OK]).await?;
            let next = header_str(response.headers(), LINK.as_str()).and_then(next_link);
            let bytes = read_capped(&call, response, MAX_MANIFEST_BYTES).await?;
            let page: TagList = serde_json::from_slice(&bytes)
                .map_err(|e| protocol(&call, format!("tag list: {e}")))?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(next) => {
                    url = url
                        .join(&next)
                        .map_err(|e| protocol(&call, e.to_string()))?
                }
                None => return Ok(tags),
            }
        }
        Err(protocol(
            &call,
            "tag list pagination did not end".to_owned(),
        ))
    }

    // ---- uploads ----

    /// Runs a whole upload (session, body, close) and starts it over on a
    /// transient failure: a session whose `PATCH` failed has an unknown offset.
    async fn upload_retrying(
        &self,
        call: &Call<'_>,
        digest: &Digest,
        source: &UploadSource<'_>,
    ) -> Result<(), RegistryError> {
        let policy = self.inner.options.retry;
        let mut attempt = 0;
        loop {
            match self.upload_once(call, digest, source).await {
                Err(e) if e.is_transient() && attempt + 1 < policy.attempts.max(1) => {
                    backoff(&policy, attempt, call.image, &e).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn upload_once(
        &self,
        call: &Call<'_>,
        digest: &Digest,
        source: &UploadSource<'_>,
    ) -> Result<(), RegistryError> {
        let start_url = self.url(call, &format!("{}/blobs/uploads/", call.image.repository()))?;
        let response = self
            .execute(call, false, || {
                Ok(self
                    .request(Method::POST, start_url.clone())
                    .header(CONTENT_LENGTH, 0))
            })
            .await?;
        let response = expect(call, response, &[StatusCode::ACCEPTED]).await?;
        let mut location = self.location(call, &start_url, &response)?;

        let chunk_size = self.inner.options.chunk_size.max(1);
        let final_body: Option<(Body, u64)> = match source {
            UploadSource::Bytes(bytes) => Some((Body::from(bytes.to_vec()), bytes.len() as u64)),
            UploadSource::File { path, size } if *size <= chunk_size => Some((
                file_body(path, 0, *size).map_err(|e| io_error(call, e))?,
                *size,
            )),
            UploadSource::File { path, size } => {
                let mut offset = 0u64;
                while offset < *size {
                    let len = chunk_size.min(size - offset);
                    let body = file_body(path, offset, len).map_err(|e| io_error(call, e))?;
                    let mut body = Some(body);
                    let patch_url = location.clone();
                    let response = self
                        .execute(call, false, || {
                            // A chunk body is a one-shot stream; the only reason to build
                            // this request twice is an auth retry, which re-opens the file.
                            let body = match body.take() {
                                Some(body) => body,
                                None => {
                                    file_body(path, offset, len).map_err(|e| io_error(call, e))?
                                }
                            };
                            Ok(self
                                .request(Method::PATCH, patch_url.clone())
                                .header(CONTENT_TYPE, "application/octet-stream")
                                .header(CONTENT_LENGTH, len)
                                .header(CONTENT_RANGE, format!("{}-{}", offset, offset + len - 1))
                                .body(body))
                        })
                        .await?;
                    let response = expect(
                        call,
                        response,
                        &[StatusCode::ACCEPTED, StatusCode::NO_CONTENT],
                    )
                    .await?;
                    location = self.location(call, &patch_url, &response)?;
                    offset += len;
                }
                None
            }
            UploadSource::Blob { from, digest, size } => {
                let get_call = self.call(from, format!("GET blob {digest}"), false);
                let url = self.url(&get_call, &format!("{}/blobs/{digest}", from.repository()))?;
                let response = self
                    .execute(&get_call, true, || {
                        Ok(self.request(Method::GET, url.clone()))
                    })
                    .await?;
                let response = expect(&get_call, response, &[StatusCode::OK]).await?;
                let len = response.content_length().unwrap_or(*size);
                Some((Body::wrap_stream(response.bytes_stream()), len))
            }
        };

        let mut put_url = location.clone();
        put_url
            .query_pairs_mut()
            .append_pair("digest", digest.as_str());
        let mut body = final_body;
        let response = self
            .execute(call, false, || {
                let request = self
                    .request(Method::PUT, put_url.clone())
                    .header(CONTENT_TYPE, "application/octet-stream");
                Ok(match body.take() {
                    Some((body, len)) => request.header(CONTENT_LENGTH, len).body(body),
                    // Either the chunks went by PATCH, or this is a rebuild after a 401
                    // and the one-shot body is gone; a rebuilt stream is reopened.
                    None => match source {
                        UploadSource::File { path, size } if *size <= chunk_size => request
                            .header(CONTENT_LENGTH, *size)
                            .body(file_body(path, 0, *size).map_err(|e| io_error(call, e))?),
                        UploadSource::Bytes(bytes) => request
                            .header(CONTENT_LENGTH, bytes.len())
                            .body(bytes.to_vec()),
                        _ => request.header(CONTENT_LENGTH, 0),
                    },
                })
            })
            .await?;
        expect(
            call,
            response,
            &[StatusCode::CREATED, StatusCode::NO_CONTENT],
        )
        .await
        .map(drop)
    }

    /// The absolute URL of an upload session from a `Location` header.
    fn location(
        &self,
        call: &Call<'_>,
        base: &Url,
        response: &Response,
    ) -> Result<Url, RegistryError> {
        let location = header_str(response.headers(), LOCATION.as_str())
            .ok_or_else(|| protocol(call, "upload answer has no Location header".to_owned()))?;
        base.join(location)
            .map_err(|e| protocol(call, format!("bad Location {location:?}: {e}")))
    }

    // ---- requests, retry and auth ----

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.inner.http.request(method, url)
    }

    /// Sends a request built by `build`, answering auth challenges once and, when
    /// `retry`, trying again on 5xx and connection errors. Returns the final
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
        let mut challenged = false;
        loop {
            let response = self.send_retrying(call, retry, &mut build).await?;
            if response.status() != StatusCode::UNAUTHORIZED || challenged {
                return Ok(response);
            }
            challenged = true;
            let header =
                header_str(response.headers(), WWW_AUTHENTICATE.as_str()).unwrap_or_default();
            if let Some(challenge) = parse_bearer_challenge(header) {
                let token = self.fetch_token(call, &challenge).await?;
                let key = (call.image.registry().to_owned(), call.scope.clone());
                lock(&self.inner.auth).tokens.insert(key, token);
            } else if header
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("basic")
                && self.credentials(call.image.registry()).is_some()
            {
                lock(&self.inner.auth)
                    .basic
                    .push(call.image.registry().to_owned());
            } else {
                return Ok(response);
            }
        }
    }

    async fn send_retrying<F>(
        &self,
        call: &Call<'_>,
        retry: bool,
        build: &mut F,
    ) -> Result<Response, RegistryError>
    where
        F: FnMut() -> Result<RequestBuilder, RegistryError>,
    {
        let policy = self.inner.options.retry;
        let attempts = if retry { policy.attempts.max(1) } else { 1 };
        let mut attempt = 0;
        loop {
            let request = self.authorize(call, build()?)?;
            match request.send().await {
                Ok(response) if response.status().is_server_error() && attempt + 1 < attempts => {
                    tracing::warn!(image = %call.image, what = %call.what, status = %response.status(), attempt, "registry error, retrying");
                }
                Ok(response) => return Ok(response),
                Err(source) if attempt + 1 < attempts && is_transient_transport(&source) => {
                    tracing::warn!(image = %call.image, what = %call.what, error = %source, attempt, "registry unreachable, retrying");
                }
                Err(source) => return Err(unreachable(call, attempt + 1, source)),
            }
            tokio::time::sleep(delay(&policy, attempt)).await;
            attempt += 1;
        }
    }

    /// Adds the cached token, or basic credentials, when the request goes to the
    /// registry itself (never to a redirect or storage host).
    fn authorize(
        &self,
        call: &Call<'_>,
        request: RequestBuilder,
    ) -> Result<RequestBuilder, RegistryError> {
        let registry = call.image.registry();
        let (client, built) = request.build_split();
        let built = built.map_err(|source| unreachable(call, 0, source))?;
        let same_origin = self
            .base_url(registry)
            .is_ok_and(|base| base.origin() == built.url().origin());
        let request = RequestBuilder::from_parts(client, built);
        if !same_origin {
            return Ok(request);
        }
        let cache = lock(&self.inner.auth);
        if let Some(token) = cache.tokens.get(&(registry.to_owned(), call.scope.clone())) {
            return Ok(request.bearer_auth(token));
        }
        if cache.basic.iter().any(|r| r == registry)
            && let Some(credentials) = self.credentials(registry)
        {
            return Ok(request.basic_auth(&credentials.username, Some(&credentials.password)));
        }
        Ok(request)
    }

    fn credentials(&self, registry: &str) -> Option<Credentials> {
        self.inner
            .credentials
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(registry)
            .cloned()
    }

    /// Whether a registry's credentials may be sent to the token realm `realm`:
    /// only over HTTPS, where the realm's host is who its certificate says, or to
    /// the registry's own host and port, which has them anyway. A plain-HTTP realm
    /// elsewhere could be anyone on the path, or a host the registry was tricked
    /// into naming.
    fn may_send_credentials(&self, registry: &str, realm: &Url) -> bool {
        if realm.scheme() == "https" {
            return true;
        }
        self.base_url(registry).is_ok_and(|base| {
            base.host_str() == realm.host_str()
                && base.port_or_known_default() == realm.port_or_known_default()
        })
    }

    /// The Docker token flow: GET the realm with service and scopes (and basic
    /// credentials when configured); the answer carries `token` or `access_token`.
    async fn fetch_token(
        &self,
        call: &Call<'_>,
        challenge: &BearerChallenge,
    ) -> Result<String, RegistryError> {
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let auth_error = |reason: String| RegistryError::Auth {
            image: call.image.to_string(),
            reason,
        };
        let mut url = Url::parse(&challenge.realm)
            .map_err(|e| auth_error(format!("bad realm {:?}: {e}", challenge.realm)))?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = &challenge.service {
                query.append_pair("service", service);
            }
            // Ask for what the registry challenged for and what this call needs, so
            // that one token serves e.g. both sides of a cross-repository mount.
            let mut scopes: Vec<&str> = challenge
                .scope
                .as_deref()
                .unwrap_or_default()
                .split(' ')
                .collect();
            scopes.extend(call.scope.split(' '));
            scopes.retain(|s| !s.is_empty());
            scopes.sort_unstable();
            scopes.dedup();
            for scope in scopes {
                query.append_pair("scope", scope);
            }
        }
        let registry = call.image.registry();
        let credentials = self
            .credentials(registry)
            .filter(|_| self.may_send_credentials(registry, &url));
        if credentials.is_none() && self.credentials(registry).is_some() {
            tracing::warn!(image = %call.image, realm = %challenge.realm, "the registry's token realm is plain HTTP on another host: asking it for a token without credentials");
        }
        let token_call = Call {
            image: call.image,
            what: format!("token from {}", challenge.realm),
            scope: String::new(),
        };
        let response = self
            .send_retrying(&token_call, true, &mut || {
                let request = self.inner.http.get(url.clone());
                Ok(match &credentials {
                    Some(c) => request.basic_auth(&c.username, Some(&c.password)),
                    None => request,
                })
            })
            .await?;
        if !response.status().is_success() {
            let status = response.status();
            let body = error_body(response).await;
            return Err(auth_error(format!(
                "{} answered {status}: {body}",
                challenge.realm
            )));
        }
        let bytes = read_capped(&token_call, response, MAX_TOKEN_BODY).await?;
        let answer: TokenAnswer =
            serde_json::from_slice(&bytes).map_err(|e| auth_error(format!("token answer: {e}")))?;
        answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| auth_error("token answer holds no token".to_owned()))
    }
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("options", &self.inner.options)
            .finish()
    }
}

/// Where an upload's bytes come from.
enum UploadSource<'a> {
    Bytes(&'a [u8]),
    File {
        path: &'a Path,
        size: u64,
    },
    Blob {
        from: &'a Reference,
        digest: &'a Digest,
        size: u64,
    },
}

/// A request body streaming `len` bytes of the file at `path` from `offset`.
fn file_body(path: &Path, offset: u64, len: u64) -> std::io::Result<Body> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let reader = tokio::fs::File::from_std(file).take(len);
    Ok(Body::wrap_stream(ReaderStream::with_capacity(
        reader,
        STREAM_BUFFER,
    )))
}

/// Whether a transport error may go away on its own.
fn is_transient_transport(error: &reqwest::Error) -> bool {
    error.is_connect() || error.is_timeout() || error.is_request() || error.is_body()
}

fn delay(policy: &RetryPolicy, attempt: u32) -> Duration {
    policy.base_delay.saturating_mul(1u32 << attempt.min(16))
}

async fn backoff(policy: &RetryPolicy, attempt: u32, image: &Reference, error: &RegistryError) {
    tracing::warn!(image = %image, error = %error, attempt, "transient registry failure, starting over");
    tokio::time::sleep(delay(policy, attempt)).await;
}

fn lock(mutex: &Mutex<AuthCache>) -> std::sync::MutexGuard<'_, AuthCache> {
    // A panic while holding the cache cannot leave it inconsistent (single inserts).
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The `mediaType` field of a JSON manifest.
fn media_type_field(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Typed {
        media_type: Option<String>,
    }
    serde_json::from_slice::<Typed>(bytes).ok()?.media_type
}

/// Checks the status is one of `ok`, or turns the answer into an error.
async fn expect(
    call: &Call<'_>,
    response: Response,
    ok: &[StatusCode],
) -> Result<Response, RegistryError> {
    if ok.contains(&response.status()) {
        Ok(response)
    } else {
        Err(status_error(call, response).await)
    }
}

async fn status_error(call: &Call<'_>, response: Response) -> RegistryError {
    let status = response.status().as_u16();
    RegistryError::Status {
        image: call.image.to_string(),
        what: call.what.clone(),
        status,
        body: error_body(response).await,
    }
}

/// The start of an error answer's body, as text.
async fn error_body(mut response: Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_ERROR_BODY);
    let text = String::from_utf8_lossy(&body).trim().to_owned();
    if text.is_empty() {
        "(empty body)".to_owned()
    } else {
        text
    }
}

/// Reads a whole body, refusing one larger than `cap`.
async fn read_capped(
    call: &Call<'_>,
    mut response: Response,
    cap: u64,
) -> Result<Vec<u8>, RegistryError> {
    let too_big = || protocol(call, format!("answer is larger than {cap} bytes"));
    if response.content_length().is_some_and(|n| n > cap) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|source| unreachable(call, 1, source))?
    {
        if (body.len() + chunk.len()) as u64 > cap {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn protocol(call: &Call<'_>, reason: String) -> RegistryError {
    RegistryError::Protocol {
        image: call.image.to_string(),
        what: call.what.clone(),
        reason,
    }
}

fn unreachable(call: &Call<'_>, attempts: u32, source: reqwest::Error) -> RegistryError {
    RegistryError::Unreachable {
        image: call.image.to_string(),
        what: call.what.clone(),
        attempts,
        source,
    }
}

fn io_error(call: &Call<'_>, source: std::io::Error) -> RegistryError {
    RegistryError::Io {
        image: call.image.to_string(),
        what: call.what.clone(),
        source,
    }
}

/// Parses `Bearer realm="…",service="…",scope="…"`; `None` for other schemes.
fn parse_bearer_challenge(header: &str) -> Option<BearerChallenge> {
    let header = header.trim();
    let scheme_end = header.find(char::is_whitespace)?;
    if !header[..scheme_end].eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut challenge = BearerChallenge::default();
    let mut rest = header[scheme_end..].trim_start();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remainder) = if let Some(quoted) = after.strip_prefix('"') {
            // Quoted values may hold commas (scopes do); a backslash escapes the next char.
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, next)) = chars.next() {
                            value.push(next);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end?..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        match key.as_str() {
            "realm" => challenge.realm = value,
            "service" => challenge.service = Some(value),
            "scope" => challenge.scope = Some(value),
            _ => {}
        }
        rest = remainder.trim_start().trim_start_matches(',').trim_start();
    }
    (!challenge.realm.is_empty()).then_some(challenge)
}

/// The target of `Link: <…>; rel="next"`.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next")
            .then(|| target.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_parse_with_quoted_commas() {
        let challenge = parse_bearer_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/httpd:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            challenge,
            BearerChallenge {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/httpd:pull,push".into()),
            }
        );
        assert_eq!(parse_bearer_challenge(r#"Basic realm="x""#), None);
        assert_eq!(parse_bearer_challenge("Bearer"), None);
        assert_eq!(
            parse_bearer_challenge(r#"Bearer realm="unterminated"#),
            None
        );
        assert_eq!(parse_bearer_challenge("Bearer service=x"), None);
        let unquoted = parse_bearer_challenge("bearer realm=http://a/t, service=s").unwrap();
        assert_eq!(unquoted.realm, "http://a/t");
        assert_eq!(unquoted.service.as_deref(), Some("s"));
    }

    #[test]
    fn next_links_are_found_among_other_relations() {
        assert_eq!(
            next_link(r#"</v2/app/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/app/tags/list?n=2&last=b")
        );
        assert_eq!(
            next_link(r#"<a>; rel="prev", <b>; rel="next""#).as_deref(),
            Some("b")
        );
        assert_eq!(next_link("garbage"), None);
    }

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

    #[test]
    fn credentials_go_to_https_realms_and_to_the_registry_itself() {
        let client = RegistryClient::new(ClientOptions::default()).unwrap();
        let may = |registry: &str, realm: &str| {
            client.may_send_credentials(registry, &Url::parse(realm).unwrap())
        };
        assert!(may("docker.io", "https://auth.docker.io/token"));
        assert!(may("127.0.0.1:5000", "https://auth.example/token"));
        assert!(may("127.0.0.1:5000", "http://127.0.0.1:5000/v2/token"));
        assert!(!may("127.0.0.1:5000", "http://127.0.0.1:5001/token"));
        assert!(!may("127.0.0.1:5000", "http://evil.example:5000/token"));
        assert!(!may("127.0.0.1", "http://127.0.0.1:8080/token"));
        assert!(may("127.0.0.1", "http://127.0.0.1/token"));
        // An HTTPS registry's realm on its own host but over plain HTTP is
        // another origin an attacker on the path could answer.
        assert!(!may("ghcr.io", "http://ghcr.io/token"));
    }

    #[test]
    fn backoff_doubles_from_the_base_delay() {
        let policy = RetryPolicy::default();
        assert_eq!(delay(&policy, 0), Duration::from_millis(200));
        assert_eq!(delay(&policy, 1), Duration::from_millis(400));
        assert_eq!(delay(&policy, 2), Duration::from_millis(800));
        assert!(delay(&policy, 100) >= Duration::from_millis(200));
    }
}
