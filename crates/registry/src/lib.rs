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
//!   or manifest list) is stored byte-exact in SQLite, keyed by the digest of
//!   those bytes; a **tag** points at one manifest of its repository.
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
//! - Deleting a blob or manifest only removes registry metadata. Blob bytes
//!   are never deleted here: other repositories and gantry's artifacts may
//!   share them (garbage collection is future work).
//!
//! There is no authentication: the registry is meant to listen on loopback
//! next to the control plane. Put it behind an authenticating proxy before
//! exposing it.
//!
//! ```no_run
//! # async fn demo(store: gantry_store::Store, artifacts: gantry_store::ArtifactStore) {
//! let data_dir = std::path::Path::new("/var/lib/gantry");
//! let registry = gantry_registry::Registry::open(&store, artifacts, data_dir).await.unwrap();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await.unwrap();
//! axum::serve(listener, gantry_registry::router(registry)).await.unwrap();
//! # }
//! ```

mod api;
mod error;
mod manifest;
mod metadata;
mod names;
mod uploads;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gantry_store::ArtifactStore;

pub use api::router;
pub use error::RegistryError;

use metadata::Metadata;
use uploads::Uploads;

/// Uploads untouched for this long are considered abandoned and removed
/// when the registry opens. A day leaves room for a slow client on a bad
/// link, and nothing legitimate pauses an upload longer.
const ABANDONED_UPLOAD_AGE: Duration = Duration::from_secs(24 * 60 * 60);

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
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("uploads", &self.inner.uploads)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Opens the registry of a data dir: creates its `registry_` tables if
    /// needed and removes abandoned uploads.
    pub async fn open(
        store: &gantry_store::Store,
        artifacts: ArtifactStore,
        data_dir: &Path,
    ) -> Result<Registry, RegistryError> {
        let metadata = Metadata::open(store.pool().clone()).await?;
        let uploads = Uploads::open(data_dir.join("registry").join("uploads"))?;
        let known = metadata.upload_ids().await?;
        let remaining = uploads.clean(&known, ABANDONED_UPLOAD_AGE)?;
        for id in known.iter().filter(|id| !remaining.contains(id)) {
            metadata.delete_upload(id).await?;
        }
        tracing::debug!(dir = %uploads.dir().display(), open_uploads = remaining.len(), "registry opened");
        Ok(Registry {
            inner: Arc::new(Inner {
                metadata,
                artifacts,
                uploads,
            }),
        })
    }
}
