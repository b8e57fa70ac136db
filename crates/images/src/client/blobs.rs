//! Blobs: content-addressed layers and configs, looked for, fetched, uploaded
//! and mounted, always streamed.
//!
//! A blob never passes through memory whole: a download is hashed as it
//! streams to a writer and checked against its digest at the end; an upload
//! streams from a file, in one `PUT` up to `chunk_size` and in `PATCH` chunks of
//! that size above it; a copy between registries pipes a download's body into
//! an upload, and the destination checks the digest when the upload closes.
//! Within one registry a blob is *mounted* from another repository instead of
//! sent at all.
//!
//! An upload is retried as a whole, in a new session: a session whose `PATCH`
//! failed has an offset nobody knows. A request body that is a one-shot stream
//! is rebuilt from the file when an auth challenge makes the client send it
//! again.

use std::io::{Seek, SeekFrom};
use std::path::Path;

use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::{Body, Method, Response, StatusCode, Url};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use super::answer::{expect, header_str, status_error};
use super::{Call, RegistryClient, RegistryError};
use crate::digest::Digest;
use crate::reference::Reference;

/// The read size when streaming a file into a request body.
const STREAM_BUFFER: usize = 256 * 1024;

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

impl UploadSource<'_> {
    /// The body of the closing `PUT` when the source fits in one and can be read
    /// again (bytes, or a file up to `chunk_size`), with its length; `None` for a
    /// chunked file or another registry's blob.
    fn whole_body(&self, chunk_size: u64) -> std::io::Result<Option<(Body, u64)>> {
        Ok(match self {
            UploadSource::Bytes(bytes) => Some((Body::from(bytes.to_vec()), bytes.len() as u64)),
            UploadSource::File { path, size } if *size <= chunk_size => {
                Some((file_body(path, 0, *size)?, *size))
            }
            _ => None,
        })
    }
}

impl RegistryClient {
    /// Whether the repository of `image` holds blob `digest`.
    pub async fn blob_exists(
        &self,
        image: &Reference,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let call = self.call(image, format!("HEAD blob {digest}"), false);
        let url = self.blob_url(&call, digest)?;
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
        let mut response = self.open_blob(&call, digest).await?;
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|source| call.unreachable(1, source))?
        {
            hasher.update(&chunk);
            out.write_all(&chunk)
                .await
                .map_err(|source| call.io_error(source))?;
            written += chunk.len() as u64;
        }
        out.flush().await.map_err(|source| call.io_error(source))?;
        let actual = Digest::from_hasher(hasher);
        if &actual != digest {
            return Err(call.digest_mismatch(digest.to_string(), actual.to_string()));
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
        let call = self.call(image, format!("GET blob {digest}"), false);
        self.retry_operation(&call, || async {
            let mut file =
                tokio::fs::File::create(path)
                    .await
                    .map_err(|source| RegistryError::Io {
                        image: image.to_string(),
                        what: format!("creating {}", path.display()),
                        source,
                    })?;
            self.get_blob(image, digest, &mut file).await
        })
        .await
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
            .map_err(|source| call.io_error(source))?
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
                if let Ok(location) = location(&call, &url, &response) {
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

    /// The URL of blob `digest` in the call's repository.
    fn blob_url(&self, call: &Call<'_>, digest: &Digest) -> Result<Url, RegistryError> {
        self.url(call, &format!("{}/blobs/{digest}", call.image.repository()))
    }

    /// Starts the download of blob `digest`: the answer, its body not yet read.
    async fn open_blob(&self, call: &Call<'_>, digest: &Digest) -> Result<Response, RegistryError> {
        let url = self.blob_url(call, digest)?;
        let response = self
            .execute(call, true, || Ok(self.request(Method::GET, url.clone())))
            .await?;
        expect(call, response, &[StatusCode::OK]).await
    }

    /// Runs a whole upload (session, body, close), starting it over on a
    /// transient failure.
    async fn upload_retrying(
        &self,
        call: &Call<'_>,
        digest: &Digest,
        source: &UploadSource<'_>,
    ) -> Result<(), RegistryError> {
        self.retry_operation(call, || self.upload_once(call, digest, source))
            .await
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
        let mut session = location(call, &start_url, &response)?;

        let chunk_size = self.inner.options.chunk_size.max(1);
        let final_body: Option<(Body, u64)> = match source {
            UploadSource::File { path, size } if *size > chunk_size => {
                let mut offset = 0u64;
                while offset < *size {
                    let len = chunk_size.min(size - offset);
                    let body = file_body(path, offset, len).map_err(|e| call.io_error(e))?;
                    let mut body = Some(body);
                    let patch_url = session.clone();
                    let response = self
                        .execute(call, false, || {
                            // A chunk body is a one-shot stream; the only reason to build
                            // this request twice is an auth retry, which re-opens the file.
                            let body = match body.take() {
                                Some(body) => body,
                                None => {
                                    file_body(path, offset, len).map_err(|e| call.io_error(e))?
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
                    session = location(call, &patch_url, &response)?;
                    offset += len;
                }
                None
            }
            UploadSource::Blob { from, digest, size } => {
                let get_call = self.call(from, format!("GET blob {digest}"), false);
                let response = self.open_blob(&get_call, digest).await?;
                let len = response.content_length().unwrap_or(*size);
                Some((Body::wrap_stream(response.bytes_stream()), len))
            }
            _ => source
                .whole_body(chunk_size)
                .map_err(|e| call.io_error(e))?,
        };

        let mut put_url = session.clone();
        put_url
            .query_pairs_mut()
            .append_pair("digest", digest.as_str());
        let mut body = final_body;
        let response = self
            .execute(call, false, || {
                let request = self
                    .request(Method::PUT, put_url.clone())
                    .header(CONTENT_TYPE, "application/octet-stream");
                // Either the chunks went by PATCH, or this is a rebuild after a 401
                // and the one-shot body is gone; a rebuilt stream is reopened.
                let body = match body.take() {
                    Some(body) => Some(body),
                    None => source
                        .whole_body(chunk_size)
                        .map_err(|e| call.io_error(e))?,
                };
                Ok(match body {
                    Some((body, len)) => request.header(CONTENT_LENGTH, len).body(body),
                    None => request.header(CONTENT_LENGTH, 0),
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
}

/// The absolute URL of an upload session from a `Location` header.
fn location(call: &Call<'_>, base: &Url, response: &Response) -> Result<Url, RegistryError> {
    let location = header_str(response.headers(), LOCATION.as_str())
        .ok_or_else(|| call.protocol("upload answer has no Location header".to_owned()))?;
    base.join(location)
        .map_err(|e| call.protocol(format!("bad Location {location:?}: {e}")))
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
