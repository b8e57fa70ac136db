//! Blob uploads in progress: one file per upload under
//! `<data_dir>/registry/uploads/<uuid>`, appended to as chunks arrive and
//! hashed as they are written.
//!
//! The file is the truth about an upload: its length is the offset a client
//! resumes from, whatever happened to the request that was writing it. The
//! running SHA-256 is kept in memory beside the bytes it has seen
//! (`hashed`); when the two disagree (after a restart, or a write that
//! failed half-way) the missing tail is read back from the file and hashed
//! before anything else, so the digest is always that of the file's bytes
//! and a gigabyte is never hashed twice in the normal case.
//!
//! One lock per upload orders the requests on it. The lock travels with the
//! blocking write it protects, so a request that is dropped mid-write (the
//! client hung up) still holds it until its last block is on disk.

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::OwnedMutexGuard;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::error::{ApiError, ErrorCode, RegistryError, io_err};
use crate::names::Digest;

/// How much of a request body is gathered before it is written: large
/// enough that a gigabyte is a few hundred writes, small enough to never
/// matter for memory.
const BLOCK: usize = 2 * 1024 * 1024;

/// The state of one upload that outlives a single request.
#[derive(Default)]
pub(crate) struct Session {
    hasher: Sha256,
    /// How many leading bytes of the file `hasher` has seen.
    hashed: u64,
    /// Set when the upload completed or was cancelled; a request that was
    /// waiting on the lock then finds the upload gone.
    closed: bool,
}

type SessionLock = Arc<tokio::sync::Mutex<Session>>;

pub(crate) struct Uploads {
    dir: PathBuf,
    sessions: Mutex<HashMap<Uuid, SessionLock>>,
}

impl std::fmt::Debug for Uploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploads").field("dir", &self.dir).finish()
    }
}

/// Parses an upload id. Only a UUID is accepted, and the file name is its
/// canonical spelling, so an id never reaches the file system as given.
pub(crate) fn parse_id(s: &str) -> Option<Uuid> {
    Uuid::parse_str(s).ok()
}

impl Uploads {
    pub(crate) fn open(dir: PathBuf) -> Result<Uploads, RegistryError> {
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(Uploads {
            dir,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: Uuid) -> PathBuf {
        self.dir.join(id.hyphenated().to_string())
    }

    /// Starts an upload: an empty file with a fresh id.
    pub(crate) fn create(&self) -> Result<Uuid, RegistryError> {
        let id = Uuid::now_v7();
        let path = self.path(id);
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(&path))?;
        Ok(id)
    }

    /// The number of bytes received so far, or `None` if the upload's file
    /// is gone. Takes no lock: a status request must answer even while a
    /// dead connection's request still holds the upload.
    pub(crate) fn size(&self, id: Uuid) -> Option<u64> {
        fs::metadata(self.path(id)).ok().map(|m| m.len())
    }

    fn session(&self, id: Uuid) -> SessionLock {
        let mut sessions = self
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        sessions.entry(id).or_default().clone()
    }

    fn forget(&self, id: Uuid) {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&id);
    }

    /// Takes the upload's lock and opens its file for appending; `None` when
    /// the upload no longer exists.
    pub(crate) async fn writer(&self, id: Uuid) -> Result<Option<Appender>, RegistryError> {
        let session = self.session(id).lock_owned().await;
        if session.closed {
            return Ok(None);
        }
        self.open_appender(id, session).await
    }

    async fn open_appender(
        &self,
        id: Uuid,
        session: OwnedMutexGuard<Session>,
    ) -> Result<Option<Appender>, RegistryError> {
        let path = self.path(id);
        tokio::task::spawn_blocking(move || {
            let file = match fs::OpenOptions::new().read(true).append(true).open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io_err(&path)(e)),
            };
            let len = file.metadata().map_err(io_err(&path))?.len();
            Ok(Some(Appender {
                id,
                session,
                file,
                len,
                path,
            }))
        })
        .await?
    }

    /// Like [`Uploads::writer`], but `None` at once when a request holds
    /// the upload's lock.
    pub(crate) async fn try_writer(&self, id: Uuid) -> Result<Option<Appender>, RegistryError> {
        let Ok(session) = self.session(id).try_lock_owned() else {
            return Ok(None);
        };
        if session.closed {
            return Ok(None);
        }
        self.open_appender(id, session).await
    }

    /// The uploads whose file was last written more than `max_age` ago.
    pub(crate) fn idle(&self, max_age: Duration) -> Result<Vec<Uuid>, RegistryError> {
        let mut idle = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            let Some(id) = entry.file_name().to_str().and_then(parse_id) else {
                continue;
            };
            if entry.metadata().ok().is_some_and(|m| idle_for(&m, max_age)) {
                idle.push(id);
            }
        }
        Ok(idle)
    }

    /// Ends an upload without keeping its bytes.
    pub(crate) async fn discard(&self, mut appender: Appender) -> Result<(), RegistryError> {
        appender.session.closed = true;
        self.forget(appender.id);
        let path = appender.path.clone();
        tokio::task::spawn_blocking(move || match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        })
        .await?
    }

    /// Moves a verified upload into the artifact store as `digest`.
    pub(crate) async fn commit(
        &self,
        mut appender: Appender,
        digest: &Digest,
        artifacts: &gantry_store::ArtifactStore,
    ) -> Result<u64, RegistryError> {
        appender.session.closed = true;
        self.forget(appender.id);
        let artifacts = artifacts.clone();
        let digest = digest.as_str().to_string();
        tokio::task::spawn_blocking(move || {
            // The file must be closed before it is renamed read-only.
            let Appender { file, path, .. } = appender;
            drop(file);
            artifacts
                .put_verified_file(&path, &digest)
                .map_err(RegistryError::from)
        })
        .await?
    }

    /// Removes upload files that are older than `max_age` or that `keep`
    /// does not list; returns the ids of the uploads that remain.
    pub(crate) fn clean(
        &self,
        keep: &[String],
        max_age: Duration,
    ) -> Result<Vec<String>, RegistryError> {
        let now = gantry_clock::now();
        let mut remaining = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let fresh = entry
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age < max_age);
            if fresh && keep.contains(&name) {
                remaining.push(name);
            } else {
                tracing::info!(upload = %name, "removing abandoned registry upload");
                // A file that can't be removed now is tried again next time;
                // it must not keep the registry from opening.
                if let Err(e) = fs::remove_file(entry.path()) {
                    tracing::warn!(upload = %name, error = %e, "cannot remove upload");
                }
            }
        }
        Ok(remaining)
    }
}

/// Whether a file was last modified more than `max_age` ago.
fn idle_for(metadata: &fs::Metadata, max_age: Duration) -> bool {
    metadata
        .modified()
        .ok()
        .and_then(|t| gantry_clock::now().duration_since(t).ok())
        .is_some_and(|age| age > max_age)
}

/// An open upload, holding its lock: appends blocks and computes the digest.
pub(crate) struct Appender {
    id: Uuid,
    session: OwnedMutexGuard<Session>,
    file: fs::File,
    /// The file's length.
    len: u64,
    path: PathBuf,
}

enum Writer {
    Idle(Appender),
    Busy(JoinHandle<(Appender, Result<(), RegistryError>)>),
}

impl Writer {
    async fn settle(self) -> Result<Appender, RegistryError> {
        match self {
            Writer::Idle(a) => Ok(a),
            Writer::Busy(handle) => {
                let (a, result) = handle.await?;
                result.map(|()| a)
            }
        }
    }
}

impl Appender {
    pub(crate) fn id(&self) -> Uuid {
        self.id
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Whether the upload's file was last written more than `max_age` ago.
    pub(crate) fn idle_for(&self, max_age: Duration) -> bool {
        self.file.metadata().is_ok_and(|m| idle_for(&m, max_age))
    }

    /// Hashes any bytes of the file the hasher has not seen yet.
    fn catch_up(&mut self) -> Result<(), RegistryError> {
        if self.session.hashed > self.len {
            // The file is shorter than what was hashed: only possible if
            // something outside gantry truncated it. Start over from it.
            self.session.hasher = Sha256::new();
            self.session.hashed = 0;
        }
        let mut buf = vec![0u8; BLOCK];
        while self.session.hashed < self.len {
            let want = usize::try_from(self.len - self.session.hashed)
                .unwrap_or(BLOCK)
                .min(BLOCK);
            let n = self
                .file
                .read_at(&mut buf[..want], self.session.hashed)
                .map_err(io_err(&self.path))?;
            if n == 0 {
                break;
            }
            self.session.hasher.update(&buf[..n]);
            self.session.hashed += n as u64;
        }
        Ok(())
    }

    fn write_block(&mut self, block: &[u8]) -> Result<(), RegistryError> {
        self.catch_up()?;
        if let Err(e) = self.file.write_all(block) {
            // Part of the block may be on disk: the file's length says how
            // much, and the next catch_up hashes it.
            self.len = self.file.metadata().map_or(self.len, |m| m.len());
            return Err(io_err(&self.path)(e));
        }
        self.session.hasher.update(block);
        self.session.hashed += block.len() as u64;
        self.len += block.len() as u64;
        Ok(())
    }

    /// Appends a request body. With `start`, the body must continue the
    /// upload exactly where it stands (a `Content-Range` from the client);
    /// anything else is answered 416 with the upload's true range. Writes
    /// of one block overlap with receiving the next.
    /// The upload may not grow beyond `max_len` bytes: the first chunk that
    /// would take it further ends the request with `413 SIZE_INVALID`,
    /// before that chunk is written (the caller discards the upload).
    pub(crate) async fn append(
        self,
        body: Body,
        start: Option<u64>,
        max_len: u64,
    ) -> Result<Appender, ApiError> {
        if let Some(start) = start
            && start != self.len
        {
            return Err(ApiError::new(
                ErrorCode::BlobUploadInvalid,
                format!(
                    "upload is at offset {}, the chunk starts at {start}",
                    self.len
                ),
            )
            .with_status(axum::http::StatusCode::RANGE_NOT_SATISFIABLE)
            .with_header(axum::http::header::RANGE, crate::api::range_value(self.len)));
        }
        let mut stream = body.into_data_stream();
        let mut received = self.len;
        let mut writer = Writer::Idle(self);
        let mut buf = Vec::with_capacity(BLOCK);
        let mut interrupted = None;
        let mut too_large = false;
        loop {
            let end = match stream.next().await {
                Some(Ok(bytes)) => {
                    received += bytes.len() as u64;
                    if received > max_len {
                        too_large = true;
                        true
                    } else {
                        buf.extend_from_slice(&bytes);
                        false
                    }
                }
                Some(Err(e)) => {
                    interrupted = Some(e);
                    true
                }
                None => true,
            };
            // What did arrive is kept even when the body broke off: the
            // client resumes from the file's length.
            if buf.len() >= BLOCK || (end && !buf.is_empty()) {
                let mut appender = writer.settle().await?;
                let block = std::mem::replace(&mut buf, Vec::with_capacity(BLOCK));
                writer = Writer::Busy(tokio::task::spawn_blocking(move || {
                    let result = appender.write_block(&block);
                    (appender, result)
                }));
            }
            if end {
                break;
            }
        }
        let appender = writer.settle().await?;
        if too_large {
            return Err(blob_too_large(max_len));
        }
        if let Some(e) = interrupted {
            return Err(ApiError::new(
                ErrorCode::BlobUploadInvalid,
                format!("the request body broke off: {e}"),
            ));
        }
        Ok(appender)
    }

    /// The digest of everything uploaded.
    pub(crate) async fn digest(mut self) -> Result<(Appender, Digest), RegistryError> {
        tokio::task::spawn_blocking(move || {
            self.catch_up()?;
            let digest = Digest::from_hasher(self.session.hasher.clone());
            Ok((self, digest))
        })
        .await?
    }
}

/// The answer to an upload that grew beyond the registry's blob size limit.
pub(crate) fn blob_too_large(max_len: u64) -> ApiError {
    ApiError::new(
        ErrorCode::SizeInvalid,
        format!("blob is larger than the registry's limit of {max_len} bytes"),
    )
    .with_status(axum::http::StatusCode::PAYLOAD_TOO_LARGE)
    .with_detail(serde_json::json!({ "limit": max_len }))
}
