//! gantry's embedded OCI registry: the Distribution API (`/v2/…`) that
//! `docker push`/`pull`, skopeo, buildah and containerd speak, so pipelines
//! build, store and deploy images without Docker Hub.
//!
//! # Concepts
//!
//! - A **repository** (`test/tiny`) is a namespace of manifests and tags.
//!   Its name follows the OCI grammar and is only ever a database key.
//! - A **blob** (a layer or an image config) is bytes named by their
//!   SHA-256 digest. Blobs live in gantry's [`ArtifactStore`], shared with
//!   build artifacts, so identical bytes are stored once whoever wrote them.
//!   A repository serves a blob only once it is **linked** to it (a row in
//!   `registry_blobs`): by an upload into that repository, a cross-repository
//!   mount, or a manifest that references a blob already in the store.
//! - An **upload** receives a blob in one or more requests into a file under
//!   `<data_dir>/registry/uploads/<uuid>`; see the `uploads` module.
//! - A **manifest** (OCI image manifest or index, Docker schema 2 manifest
//!   or manifest list) is stored byte-exact in gantry's database (SQLite or
//!   PostgreSQL), keyed by the digest of those bytes; a **tag** points at
//!   one manifest of its repository.
//! - A **referrer** is a manifest whose `subject` names another manifest
//!   (a signature or an SBOM of an image). Referrers are indexed when they
//!   are pushed (`registry_referrers`) and listed by
//!   `GET /v2/<name>/referrers/<digest>`, the OCI 1.1 referrers API; the
//!   subject need not exist, so clients may push in either order.
//! - The **catalog** (the `catalog` module) answers what the registry
//!   holds for people rather than clients: tags and digests, one image's
//!   layers and config, and the copy of an image to another repository or
//!   tag by digest ([`Registry::copy_image`]), which links blobs and stores
//!   the same manifest bytes, moving none.
//!
//! # Invariants
//!
//! - Names, tags and digests are validated types before they reach storage,
//!   and storage is by digest only: no request can name a file path, so
//!   `..`, `%2e%2e` or absolute paths have nothing to traverse.
//! - A blob becomes visible only after the SHA-256 of every byte uploaded
//!   matched the digest the client claimed; on a mismatch nothing is stored
//!   or linked and the upload is discarded.
//! - A manifest is stored only if every blob and child manifest it
//!   references is present; the manifest, the links it adds and its tag are
//!   written in one transaction.
//! - Bodies are streamed: an upload is written in 2 MiB blocks and a blob is
//!   read from its file, so memory does not grow with blob size.
//! - Deleting a blob or manifest only removes registry metadata; blob
//!   bytes, which other repositories and gantry's artifacts may share, are
//!   removed only by garbage collection ([`Registry::collect_garbage`], see
//!   the `gc` module), once no repository links them and the caller does
//!   not keep them.
//!
//! # Authentication and limits
//!
//! Every `/v2` request is authorized by the server's [`RegistryAuth`]: the
//! request's secret (a gantry API token, sent as `Bearer` or as the password
//! of `Basic`) and what the request wants ([`RegistryAccess`]: pull, push or
//! delete on a repository, the catalog, or the base endpoint) go to
//! [`RegistryAuth::authorize`]. Without credentials, or with bad ones, the
//! answer is `401 UNAUTHORIZED` with a `WWW-Authenticate: Bearer` challenge
//! naming `/v2/token`, where Docker's token flow trades Basic credentials for
//! a five-minute registry token (see the `auth` module); a refused access is
//! `403 DENIED`, and nothing changes. Mutations and refusals are reported to
//! [`RegistryAuth::audit`]. The registry ships no allow-all implementation.
//!
//! [`RegistryLimits`] caps blob and manifest sizes, the bytes a repository
//! and the whole registry may link, and the number of open uploads; uploads
//! untouched for `upload_idle_timeout` are swept by a background task that
//! [`Registry::open`] starts and that stops when the registry is dropped.
//!
//! ```no_run
//! # async fn demo(store: gantry_store::Store, artifacts: gantry_store::ArtifactStore,
//! #               auth: std::sync::Arc<dyn gantry_registry::RegistryAuth>) {
//! use gantry_registry::{Registry, RegistryLimits, RegistryOptions};
//! let data_dir = std::path::Path::new("/var/lib/gantry");
//! let options = RegistryOptions { auth, limits: RegistryLimits::default() };
//! let registry = Registry::open(&store, artifacts, data_dir, options).await.unwrap();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await.unwrap();
//! // `ConnectInfo` gives the audit log the client's address.
//! let app = gantry_registry::router(registry)
//!     .into_make_service_with_connect_info::<std::net::SocketAddr>();
//! axum::serve(listener, app).await.unwrap();
//! # }
//! ```

mod api;
mod auth;
mod catalog;
mod error;
mod gc;
mod manifest;
mod metadata;
mod names;
mod uploads;

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use gantry_store::ArtifactStore;

pub use api::router;

/// Creates the registry's tables in a database if they are missing
/// (`gantry migrate-store` makes a new database's tables before it copies).
pub async fn create_tables(db: gantry_db::Db) -> Result<(), sqlx::Error> {
    Metadata::open(db).await.map(drop)
}
pub use auth::{AuthDenied, AuthFuture, RegistryAccess, RegistryAuditRecord, RegistryAuth};
pub use catalog::{CopiedImage, ImageBlob, ImageDetails, ImageError, ImageName, ListedImage};
pub use error::RegistryError;
pub use gc::{GcBlob, GcFile, GcManifest, GcOptions, GcReport};

use auth::Tokens;
use metadata::Metadata;
use uploads::Uploads;

/// How the registry decides who may do what, and how much it holds.
#[derive(Clone)]
pub struct RegistryOptions {
    /// Authorizes every request and receives the audit records.
    pub auth: Arc<dyn RegistryAuth>,
    /// Sizes, quotas and upload caps.
    pub limits: RegistryLimits,
}

impl std::fmt::Debug for RegistryOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryOptions")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Resource caps. Each is answered with an OCI error naming the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryLimits {
    /// The largest blob an upload may grow to; more is answered
    /// `413 SIZE_INVALID` while streaming and the upload is discarded.
    pub max_blob_size: u64,
    /// The largest manifest accepted (`413 MANIFEST_INVALID` beyond).
    pub max_manifest_size: usize,
    /// Bytes of blobs one repository may link; `None` for no limit.
    /// Exceeding it is answered `403 DENIED`.
    pub repository_quota: Option<u64>,
    /// Bytes of distinct blobs all repositories together may link; `None`
    /// for no limit.
    pub total_quota: Option<u64>,
    /// Open upload sessions in the whole registry; one more is answered
    /// `429 TOOMANYREQUESTS`.
    pub max_uploads: usize,
    /// Open upload sessions in one repository.
    pub max_uploads_per_repository: usize,
    /// An upload no request touched for this long is abandoned: the
    /// sweeper removes it (and [`Registry::open`] removes such uploads
    /// left by an earlier run).
    pub upload_idle_timeout: Duration,
    /// How often the sweeper looks for abandoned uploads and expired
    /// registry tokens.
    pub sweep_interval: Duration,
}

impl Default for RegistryLimits {
    fn default() -> Self {
        RegistryLimits {
            max_blob_size: 10 * 1024 * 1024 * 1024,
            max_manifest_size: manifest::MAX_MANIFEST_SIZE,
            repository_quota: None,
            total_quota: None,
            max_uploads: 1000,
            max_uploads_per_repository: 100,
            upload_idle_timeout: Duration::from_secs(60 * 60),
            sweep_interval: Duration::from_secs(60),
        }
    }
}

/// The registry: metadata in gantry's database, blobs in its artifact store,
/// uploads in progress under the data dir. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    metadata: Metadata,
    artifacts: ArtifactStore,
    uploads: Uploads,
    auth: Arc<dyn RegistryAuth>,
    limits: RegistryLimits,
    tokens: Tokens,
    /// Held exclusively by garbage collection, and shared by every request
    /// from the checks that find a blob or manifest to the write that
    /// links or references it.
    gc: tokio::sync::RwLock<()>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("uploads", &self.inner.uploads)
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Opens the registry of a data dir: creates its `registry_` tables if
    /// needed, removes abandoned uploads, and starts the sweeper: a task on
    /// the current tokio runtime that every `limits.sweep_interval` removes
    /// uploads idle for `limits.upload_idle_timeout` and forgets expired
    /// registry tokens. The sweeper holds only a weak reference and ends
    /// once every clone of the registry (and its router) is dropped.
    pub async fn open(
        store: &gantry_store::Store,
        artifacts: ArtifactStore,
        data_dir: &Path,
        options: RegistryOptions,
    ) -> Result<Registry, RegistryError> {
        let metadata = Metadata::open(store.db().clone()).await?;
        let uploads = Uploads::open(data_dir.join("registry").join("uploads"))?;
        let known = metadata.upload_ids().await?;
        let remaining = uploads.clean(&known, options.limits.upload_idle_timeout)?;
        for id in known.iter().filter(|id| !remaining.contains(id)) {
            metadata.delete_upload(id).await?;
        }
        tracing::debug!(dir = %uploads.dir().display(), open_uploads = remaining.len(), "registry opened");
        let registry = Registry {
            inner: Arc::new(Inner {
                metadata,
                artifacts,
                uploads,
                auth: options.auth,
                limits: options.limits,
                tokens: Tokens::default(),
                gc: tokio::sync::RwLock::new(()),
            }),
        };
        tokio::spawn(sweep_periodically(Arc::downgrade(&registry.inner)));
        Ok(registry)
    }

    /// Removes uploads idle for longer than `limits.upload_idle_timeout`
    /// and forgets expired registry tokens; the sweeper calls this every
    /// `limits.sweep_interval`. Returns how many uploads were removed.
    pub async fn sweep(&self) -> Result<usize, RegistryError> {
        let inner = &self.inner;
        inner.tokens.sweep();
        let mut removed = 0;
        for id in inner.uploads.idle(inner.limits.upload_idle_timeout)? {
            // An upload a request is writing to right now is not abandoned,
            // whatever its file's age says: it is skipped until next time.
            if let Some(appender) = inner.uploads.try_writer(id).await? {
                if !appender.idle_for(inner.limits.upload_idle_timeout) {
                    continue;
                }
                tracing::info!(upload = %id, "removing abandoned registry upload");
                inner.uploads.discard(appender).await?;
                removed += 1;
            }
            inner
                .metadata
                .delete_upload(&id.hyphenated().to_string())
                .await?;
        }
        // A row whose file is gone (removed by hand, or a crash between the
        // two) would count against the upload caps forever.
        for id in inner.metadata.upload_ids().await? {
            if uploads::parse_id(&id).is_none_or(|uuid| inner.uploads.size(uuid).is_none()) {
                inner.metadata.delete_upload(&id).await?;
            }
        }
        Ok(removed)
    }
}

async fn sweep_periodically(registry: Weak<Inner>) {
    let Some(interval) = registry.upgrade().map(|inner| inner.limits.sweep_interval) else {
        return;
    };
    let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; open has just cleaned.
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(inner) = registry.upgrade() else {
            return;
        };
        if let Err(e) = (Registry { inner }).sweep().await {
            tracing::warn!(error = %e, "sweeping registry uploads failed; trying again later");
        }
    }
}
