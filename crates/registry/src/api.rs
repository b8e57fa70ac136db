//! The HTTP layer: one catch-all route under `/v2/` whose path is parsed
//! from the right (names have any number of segments), then a handler per
//! endpoint of the OCI Distribution API.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use crate::Registry;
use crate::error::{ApiError, ErrorCode, RegistryError};
use crate::manifest::{self, MAX_MANIFEST_SIZE};
use crate::metadata::NewManifest;
use crate::names::{Digest, Reference, RepoName, Route, parse_route, query_pairs};
use crate::uploads::{self, Appender};

const API_VERSION: &str = "Docker-Distribution-API-Version";
const CONTENT_DIGEST: &str = "Docker-Content-Digest";
const UPLOAD_UUID: &str = "Docker-Upload-UUID";

/// The router serving `/v2/…`. Every response carries
/// `Docker-Distribution-API-Version: registry/2.0`.
pub fn router(registry: Registry) -> Router {
    Router::new()
        .route("/v2", get(base))
        .route("/v2/", get(base))
        .route("/v2/{*rest}", any(dispatch))
        .with_state(registry)
        .layer(axum::middleware::map_response(
            |mut response: Response| async move {
                response
                    .headers_mut()
                    .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
                response
            },
        ))
}

async fn base() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], "{}").into_response()
}

async fn dispatch(State(registry): State<Registry>, request: Request) -> Response {
    match handle(&registry, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

/// A response with headers and no body.
fn empty(status: StatusCode, headers: &[(&str, String)]) -> Response {
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(*name, value.as_str());
    }
    response = response.header(header::CONTENT_LENGTH, "0");
    response
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The `Range` header of an upload holding `len` bytes. The inclusive end
/// of an empty upload is written `0-0`, as distribution/distribution does
/// and clients expect.
pub(crate) fn range_value(len: u64) -> HeaderValue {
    let end = len.saturating_sub(1);
    HeaderValue::from_str(&format!("0-{end}")).unwrap_or(HeaderValue::from_static("0-0"))
}

fn query(request_query: Option<&str>, key: &str) -> Option<String> {
    query_pairs(request_query)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

async fn handle(registry: &Registry, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let rest = parts.uri.path().strip_prefix("/v2/").unwrap_or("");
    let Some(route) = parse_route(rest) else {
        return Err(ApiError::new(
            ErrorCode::Unsupported,
            format!("no registry endpoint at {}", parts.uri.path()),
        )
        .with_status(StatusCode::NOT_FOUND));
    };
    let q = parts.uri.query();
    let method = parts.method;
    let head = method == Method::HEAD;
    match route {
        Route::Catalog if method == Method::GET => catalog(registry, q).await,
        Route::Blob { name, digest } if method == Method::GET || head => {
            get_blob(registry, &name, &digest, head, &parts.headers).await
        }
        Route::Blob { name, digest } if method == Method::DELETE => {
            delete_blob(registry, &name, &digest).await
        }
        Route::UploadStart { name } if method == Method::POST => {
            start_upload(registry, &name, q, body).await
        }
        Route::Upload { name, id } if method == Method::PATCH => {
            patch_upload(registry, &name, &id, &parts.headers, body).await
        }
        Route::Upload { name, id } if method == Method::PUT => {
            put_upload(registry, &name, &id, q, body).await
        }
        Route::Upload { name, id } if method == Method::GET => {
            upload_status(registry, &name, &id).await
        }
        Route::Upload { name, id } if method == Method::DELETE => {
            cancel_upload(registry, &name, &id).await
        }
        Route::Manifest { name, reference } if method == Method::GET || head => {
            get_manifest(registry, &name, &reference, head).await
        }
        Route::Manifest { name, reference } if method == Method::PUT => {
            put_manifest(registry, &name, &reference, &parts.headers, body).await
        }
        Route::Manifest { name, reference } if method == Method::DELETE => {
            delete_manifest(registry, &name, &reference).await
        }
        Route::Tags { name } if method == Method::GET => tags(registry, &name, q).await,
        _ => Err(ApiError::new(
            ErrorCode::Unsupported,
            format!("{method} is not supported on {}", parts.uri.path()),
        )),
    }
}

fn blob_unknown(digest: &Digest) -> ApiError {
    ApiError::new(ErrorCode::BlobUnknown, format!("blob {digest} is unknown"))
        .with_detail(serde_json::json!({ "digest": digest.as_str() }))
}

// ---------------------------------------------------------------- blobs

/// What a `Range` request header asks of a blob of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum ByteRange {
    Whole,
    /// Inclusive bounds.
    Part(u64, u64),
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-` and `bytes=-n`. Anything else (several
/// ranges, other units, garbage) is ignored and the whole blob is sent,
/// which HTTP allows.
fn byte_range(header: Option<&HeaderValue>, size: u64) -> ByteRange {
    let Some(spec) = header
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.trim().strip_prefix("bytes="))
    else {
        return ByteRange::Whole;
    };
    if spec.contains(',') {
        return ByteRange::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return ByteRange::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => (start, end.min(size.saturating_sub(1))),
        (Ok(start), Err(_)) if b.is_empty() => (start, size.saturating_sub(1)),
        (Err(_), Ok(n)) if a.is_empty() && n > 0 => {
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        _ => return ByteRange::Whole,
    };
    if start >= size {
        ByteRange::Unsatisfiable
    } else {
        ByteRange::Part(start, end)
    }
}

async fn get_blob(
    registry: &Registry,
    name: &str,
    digest: &str,
    head: bool,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let repo = RepoName::parse(name)?;
    let digest = Digest::parse(digest)?;
    let inner = &registry.inner;
    let Some(size) = inner.metadata.blob_size(&repo, &digest).await? else {
        return Err(blob_unknown(&digest));
    };
    let artifacts = inner.artifacts.clone();
    let key = digest.as_str().to_string();
    let file = match tokio::task::spawn_blocking(move || artifacts.open_blob(&key))
        .await
        .map_err(RegistryError::from)?
    {
        Ok(file) => file,
        Err(gantry_store::ArtifactError::NotFound(_)) => return Err(blob_unknown(&digest)),
        Err(e) => return Err(RegistryError::from(e).into()),
    };
    let common = |status: StatusCode, len: u64| {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, len)
            .header(header::ACCEPT_RANGES, "bytes")
            .header(CONTENT_DIGEST, digest.as_str())
    };
    let (builder, start, len) = match byte_range(headers.get(header::RANGE), size) {
        _ if head => (common(StatusCode::OK, size), 0, 0),
        ByteRange::Whole => (common(StatusCode::OK, size), 0, size),
        ByteRange::Part(start, end) => {
            let len = end - start + 1;
            let builder = common(StatusCode::PARTIAL_CONTENT, len)
                .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
            (builder, start, len)
        }
        ByteRange::Unsatisfiable => {
            return Ok(Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                .header(header::CONTENT_LENGTH, 0)
                .body(Body::empty())
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()));
        }
    };
    let body = if head || len == 0 {
        Body::empty()
    } else {
        let mut file = tokio::fs::File::from_std(file);
        if start > 0 {
            file.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(|e| RegistryError::Io {
                    path: digest.to_string(),
                    source: e,
                })?;
        }
        Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
            file.take(len),
            256 * 1024,
        ))
    };
    Ok(builder
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

async fn delete_blob(registry: &Registry, name: &str, digest: &str) -> Result<Response, ApiError> {
    let repo = RepoName::parse(name)?;
    let digest = Digest::parse(digest)?;
    if registry.inner.metadata.unlink_blob(&repo, &digest).await? {
        Ok(empty(StatusCode::ACCEPTED, &[]))
    } else {
        Err(blob_unknown(&digest))
    }
}

// -------------------------------------------------------------- uploads

fn upload_location(repo: &RepoName, id: uuid::Uuid) -> String {
    format!("/v2/{repo}/blobs/uploads/{}", id.hyphenated())
}

/// The answer to an upload that is open and holds `len` bytes.
fn upload_accepted(status: StatusCode, repo: &RepoName, id: uuid::Uuid, len: u64) -> Response {
    let range = range_value(len).to_str().unwrap_or("0-0").to_string();
    empty(
        status,
        &[
            ("Location", upload_location(repo, id)),
            ("Range", range),
            (UPLOAD_UUID, id.hyphenated().to_string()),
        ],
    )
}

fn blob_created(repo: &RepoName, digest: &Digest) -> Response {
    empty(
        StatusCode::CREATED,
        &[
            ("Location", format!("/v2/{repo}/blobs/{digest}")),
            (CONTENT_DIGEST, digest.to_string()),
        ],
    )
}

async fn start_upload(
    registry: &Registry,
    name: &str,
    q: Option<&str>,
    body: Body,
) -> Result<Response, ApiError> {
    let repo = RepoName::parse(name)?;
    let inner = &registry.inner;
    if let Some(mount) = query(q, "mount") {
        let digest = Digest::parse(&mount)?;
        let found = match query(q, "from") {
            Some(from) => {
                let from = RepoName::parse(&from)?;
                inner.metadata.blob_size(&from, &digest).await?
            }
            // OCI 1.1 lets a client mount without naming the source; any
            // repository holding the blob will do.
            None => inner.metadata.blob_size_anywhere(&digest).await?,
        };
        if let Some(size) = found
            && inner.artifacts.blob_exists(digest.as_str())
        {
            inner.metadata.link_blob(&repo, &digest, size).await?;
            return Ok(blob_created(&repo, &digest));
        }
        // The specification's fallback: an ordinary upload session.
    } else if let Some(expected) = query(q, "digest") {
        // A monolithic upload: the whole blob in this request's body.
        let expected = Digest::parse(&expected)?;
        let id = create_upload(registry, &repo).await?;
        let Some(appender) = inner.uploads.writer(id).await? else {
            return Err(upload_unknown());
        };
        return finish_upload(registry, &repo, appender, body, &expected).await;
    }
    let id = create_upload(registry, &repo).await?;
    Ok(upload_accepted(StatusCode::ACCEPTED, &repo, id, 0))
}

async fn create_upload(registry: &Registry, repo: &RepoName) -> Result<uuid::Uuid, ApiError> {
    let inner = &registry.inner;
    let id = inner.uploads.create()?;
    if let Err(e) = inner
        .metadata
        .insert_upload(&id.hyphenated().to_string(), repo)
        .await
    {
        if let Some(appender) = inner.uploads.writer(id).await? {
            inner.uploads.discard(appender).await?;
        }
        return Err(e.into());
    }
    Ok(id)
}

fn upload_unknown() -> ApiError {
    ApiError::new(ErrorCode::BlobUploadUnknown, "upload is unknown")
}

/// Resolves an upload id within a repository: an id started in another
/// repository is as unknown as one never started.
async fn upload_id(registry: &Registry, repo: &RepoName, id: &str) -> Result<uuid::Uuid, ApiError> {
    let id = uploads::parse_id(id).ok_or_else(upload_unknown)?;
    let owner = registry
        .inner
        .metadata
        .upload_repository(&id.hyphenated().to_string())
        .await?;
    if owner.as_deref() == Some(repo.as_str()) {
        Ok(id)
    } else {
        Err(upload_unknown())
    }
}

/// Parses `Content-Range: a-b` (or `bytes a-b/total`) into its start.
fn content_range_start(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::new(ErrorCode::BlobUploadInvalid, "malformed Content-Range")
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
    };
    let text = value.to_str().map_err(|_| bad())?.trim();
    let text = text.strip_prefix("bytes ").unwrap_or(text);
    let text = text.split('/').next().unwrap_or(text);
    let (start, end) = text.split_once('-').ok_or_else(bad)?;
    let start = start.trim().parse::<u64>().map_err(|_| bad())?;
    let end = end.trim().parse::<u64>().map_err(|_| bad())?;
    if end < start {
        return Err(bad());
    }
    Ok(Some(start))
}

async fn patch_upload(
    registry: &Registry,
    name: &str,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let repo = RepoName::parse(name)?;
    let id = upload_id(registry, &repo, id).await?;
    let start = content_range_start(headers)?;
    let Some(appender) = registry.inner.uploads.writer(id).await? else {
        return Err(upload_unknown());
    };
    let appender = appender.append(body, start).await?;
    Ok(upload_accepted(
        StatusCode::ACCEPTED,
        &repo,
        appender.id(),
        appender.len(),
    ))
}

async fn put_upload(
    registry: &Registry,
    name: &str,
    id: &str,
    q: Option<&str>,
    body: Body,
) -> Result<Response, ApiError> {
    let repo = RepoName::parse(name)?;
    let id = upload_id(registry, &repo, id).await?;
    let expected = query(q, "digest").ok_or_else(|| {
        ApiError::new(
            ErrorCode::DigestInvalid,
            "completing an upload needs ?digest=",
        )
    })?;
    let expected = Digest::parse(&expected)?;
    let Some(appender) = registry.inner.uploads.writer(id).await? else {
        return Err(upload_unknown());
    };
    finish_upload(registry, &repo, appender, body, &expected).await
}

/// Appends the final chunk, checks the digest of the whole upload and, if
/// it matches, moves the blob into the store and links it. On a mismatch
/// the upload is discarded and nothing becomes visible.
async fn finish_upload(
    registry: &Registry,
    repo: &RepoName,
    appender: Appender,
    body: Body,
    expected: &Digest,
) -> Result<Response, ApiError> {
    let inner = &registry.inner;
    let id = appender.id();
    let key = id.hyphenated().to_string();
    let appender = appender.append(body, None).await?;
    let (appender, actual) = appender.digest().await?;
    if &actual != expected {
        inner.uploads.discard(appender).await?;
        inner.metadata.delete_upload(&key).await?;
        return Err(ApiError::new(
            ErrorCode::DigestInvalid,
            format!("the upload's digest is {actual}, not {expected}"),
        )
        .with_detail(serde_json::json!({
            "expected": expected.as_str(),
            "actual": actual.as_str(),
        })));
    }
    let size = inner
        .uploads
        .commit(appender, expected, &inner.artifacts)
        .await?;
    inner
        .metadata
        .complete_upload(&key, repo, expected, size)
        .await?;
    tracing::debug!(repository = %repo, digest = %expected, size, "blob pushed");
    Ok(blob_created(repo, expected))
}

async fn upload_status(registry: &Registry, name: &str, id: &str) -> Result<Response, ApiError> {
    let repo = RepoName::parse(name)?;
    let id = upload_id(registry, &repo, id).await?;
    let len = registry.inner.uploads.size(id).ok_or_else(upload_unknown)?;
    Ok(upload_accepted(StatusCode::NO_CONTENT, &repo, id, len))
}

async fn cancel_upload(registry: &Registry, name: &str, id: &str) -> Result<Response, ApiError> {
    let repo = RepoName::parse(name)?;
    let id = upload_id(registry, &repo, id).await?;
    let inner = &registry.inner;
    if let Some(appender) = inner.uploads.writer(id).await? {
        inner.uploads.discard(appender).await?;
    }
    inner
        .metadata
        .delete_upload(&id.hyphenated().to_string())
        .await?;
    Ok(empty(StatusCode::NO_CONTENT, &[]))
}

// ------------------------------------------------------------ manifests

fn manifest_unknown(reference: &str) -> ApiError {
    ApiError::new(
        ErrorCode::ManifestUnknown,
        format!("manifest {reference} is unknown"),
    )
}

/// The digest a reference names in `repo`, if any.
async fn resolve(
    registry: &Registry,
    repo: &RepoName,
    reference: &Reference,
) -> Result<Option<Digest>, ApiError> {
    Ok(match reference {
        Reference::Digest(d) => Some(d.clone()),
        Reference::Tag(t) => registry.inner.metadata.tag(repo, t.as_str()).await?,
    })
}

async fn get_manifest(
    registry: &Registry,
    name: &str,
    reference: &str,
    head: bool,
) -> Result<Response, ApiError> {
    let repo = RepoName::parse(name)?;
    let parsed = Reference::parse(reference)?;
    let metadata = &registry.inner.metadata;
    let found = match resolve(registry, &repo, &parsed).await? {
        Some(digest) => metadata.manifest(&repo, &digest).await?,
        None => None,
    };
    let Some(manifest) = found else {
        if !metadata.repository_exists(&repo).await? {
            return Err(ApiError::new(
                ErrorCode::NameUnknown,
                format!("repository {repo} is unknown"),
            ));
        }
        return Err(manifest_unknown(reference));
    };
    let len = manifest.content.len();
    let body = if head {
        Body::empty()
    } else {
        Body::from(manifest.content)
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, manifest.media_type)
        .header(header::CONTENT_LENGTH, len)
        .header(CONTENT_DIGEST, manifest.digest.as_str())
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::ManifestInvalid,
        format!("manifest is larger than {MAX_MANIFEST_SIZE} bytes"),
    )
    .with_status(StatusCode::PAYLOAD_TOO_LARGE)
}

/// Reads a body of at most `limit` bytes; `None` when it is longer.
async fn read_limited(body: Body, limit: usize) -> Result<Option<Vec<u8>>, ApiError> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                ErrorCode::ManifestInvalid,
                format!("the request body broke off: {e}"),
            )
        })?;
        if out.len() + chunk.len() > limit {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out))
}

async fn put_manifest(
    registry: &Registry,
    name: &str,
    reference: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let repo = RepoName::parse(name)?;
    let reference = Reference::parse(reference)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_MANIFEST_SIZE as u64) {
        return Err(too_large());
    }
    let Some(bytes) = read_limited(body, MAX_MANIFEST_SIZE).await? else {
        return Err(too_large());
    };
    let digest = Digest::of(&bytes);
    if let Reference::Digest(claimed) = &reference
        && claimed != &digest
    {
        return Err(ApiError::new(
            ErrorCode::DigestInvalid,
            format!("the manifest's digest is {digest}, not {claimed}"),
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let parsed = manifest::parse(&bytes, content_type)?;

    let inner = &registry.inner;
    let mut links = Vec::new();
    for blob in &parsed.blobs {
        if inner.metadata.blob_size(&repo, blob).await?.is_some() {
            continue;
        }
        // A blob already in the store (pushed to another repository, or
        // written by gantry itself) needs no upload: link it.
        let artifacts = inner.artifacts.clone();
        let key = blob.as_str().to_string();
        let size = tokio::task::spawn_blocking(move || {
            artifacts
                .open_blob(&key)
                .ok()
                .and_then(|f| f.metadata().ok())
                .map(|m| m.len())
        })
        .await
        .map_err(RegistryError::from)?;
        match size {
            Some(size) => links.push((blob.clone(), size)),
            None => {
                return Err(ApiError::new(
                    ErrorCode::ManifestBlobUnknown,
                    format!("blob {blob} referenced by the manifest is unknown"),
                )
                .with_detail(serde_json::json!({ "digest": blob.as_str() })));
            }
        }
    }
    for child in &parsed.children {
        if !inner.metadata.manifest_exists(&repo, child).await? {
            return Err(ApiError::new(
                ErrorCode::ManifestBlobUnknown,
                format!("manifest {child} referenced by the index is unknown"),
            )
            .with_detail(serde_json::json!({ "digest": child.as_str() })));
        }
    }
    let tag = match &reference {
        Reference::Tag(t) => Some(t.as_str()),
        Reference::Digest(_) => None,
    };
    inner
        .metadata
        .put_manifest(NewManifest {
            repo: &repo,
            digest: &digest,
            media_type: parsed.media_type,
            content: &bytes,
            tag,
            links: &links,
        })
        .await?;
    tracing::info!(repository = %repo, tag = tag.unwrap_or(""), digest = %digest, "manifest pushed");
    Ok(empty(
        StatusCode::CREATED,
        &[
            ("Location", format!("/v2/{repo}/manifests/{digest}")),
            (CONTENT_DIGEST, digest.to_string()),
        ],
    ))
}

async fn delete_manifest(
    registry: &Registry,
    name: &str,
    reference: &str,
) -> Result<Response, ApiError> {
    let repo = RepoName::parse(name)?;
    let metadata = &registry.inner.metadata;
    let deleted = match Reference::parse(reference)? {
        Reference::Digest(d) => metadata.delete_manifest(&repo, &d).await?,
        // Deleting by tag removes the tag; the manifest stays reachable by
        // digest and through other tags.
        Reference::Tag(t) => metadata.delete_tag(&repo, t.as_str()).await?,
    };
    if deleted {
        Ok(empty(StatusCode::ACCEPTED, &[]))
    } else {
        Err(manifest_unknown(reference))
    }
}

// ---------------------------------------------------------------- lists

/// `n` and `last` of a paginated list; without `n` the whole list.
fn page(q: Option<&str>) -> Result<(Option<i64>, String), ApiError> {
    let n = match query(q, "n") {
        Some(n) => Some(n.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::new(ErrorCode::Unsupported, format!("invalid page size n={n}"))
                .with_status(StatusCode::BAD_REQUEST)
        })?),
        None => None,
    };
    Ok((n, query(q, "last").unwrap_or_default()))
}

/// A JSON list answer, with a `Link` to the next page when this one is full.
fn list_response(
    path: &str,
    n: Option<i64>,
    items: &[String],
    body: serde_json::Value,
) -> Response {
    let mut response = (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let (Some(n), Some(last)) = (n, items.last())
        && i64::try_from(items.len()).is_ok_and(|len| len == n)
        && let Ok(link) =
            HeaderValue::from_str(&format!("<{path}?n={n}&last={last}>; rel=\"next\""))
    {
        response.headers_mut().insert(header::LINK, link);
    }
    response
}

async fn tags(registry: &Registry, name: &str, q: Option<&str>) -> Result<Response, ApiError> {
    let repo = RepoName::parse(name)?;
    let metadata = &registry.inner.metadata;
    if !metadata.repository_exists(&repo).await? {
        return Err(ApiError::new(
            ErrorCode::NameUnknown,
            format!("repository {repo} is unknown"),
        ));
    }
    let (n, last) = page(q)?;
    let tags = metadata.tags(&repo, &last, n.unwrap_or(i64::MAX)).await?;
    let body = serde_json::json!({ "name": repo.as_str(), "tags": tags });
    Ok(list_response(
        &format!("/v2/{repo}/tags/list"),
        n,
        &tags,
        body,
    ))
}

async fn catalog(registry: &Registry, q: Option<&str>) -> Result<Response, ApiError> {
    let (n, last) = page(q)?;
    let repositories = registry
        .inner
        .metadata
        .repositories(&last, n.unwrap_or(i64::MAX))
        .await?;
    let body = serde_json::json!({ "repositories": repositories });
    Ok(list_response("/v2/_catalog", n, &repositories, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(byte_range(None, 10), ByteRange::Whole);
        assert_eq!(byte_range(Some(&h("bytes=2-4")), 10), ByteRange::Part(2, 4));
        assert_eq!(byte_range(Some(&h("bytes=2-")), 10), ByteRange::Part(2, 9));
        assert_eq!(byte_range(Some(&h("bytes=-3")), 10), ByteRange::Part(7, 9));
        assert_eq!(
            byte_range(Some(&h("bytes=5-100")), 10),
            ByteRange::Part(5, 9)
        );
        assert_eq!(
            byte_range(Some(&h("bytes=10-")), 10),
            ByteRange::Unsatisfiable
        );
        assert_eq!(byte_range(Some(&h("bytes=0-1,3-4")), 10), ByteRange::Whole);
        assert_eq!(byte_range(Some(&h("items=0-1")), 10), ByteRange::Whole);
        assert_eq!(byte_range(Some(&h("bytes=4-2")), 10), ByteRange::Whole);
    }
}
