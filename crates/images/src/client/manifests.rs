//! Manifests, and the tags that name them: fetched and stored as the
//! registry's exact bytes, resolved to digests, listed.
//!
//! A manifest's digest is the sha256 of its bytes, so the bytes are never
//! re-serialised: what is fetched is what is pushed elsewhere. Every manifest
//! read is checked against the digest it was asked for (a pinned reference) or
//! the one the registry announced (`Docker-Content-Digest`); every manifest
//! stored is checked against the digest the registry says it stored.

use reqwest::header::{ACCEPT, CONTENT_TYPE, LINK};
use reqwest::{Method, Response, StatusCode, Url};

use super::answer::{expect, header_str, read_capped, status_error};
use super::{Call, RegistryClient, RegistryError};
use crate::digest::Digest;
use crate::manifest::{MANIFEST_ACCEPT, MAX_MANIFEST_BYTES};
use crate::reference::Reference;

/// The header in which a registry names a manifest's digest.
const CONTENT_DIGEST: &str = "docker-content-digest";

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

impl RegistryClient {
    /// Fetches the manifest `image` names (by digest if pinned, else by tag), as bytes.
    pub async fn get_manifest_raw(&self, image: &Reference) -> Result<RawManifest, RegistryError> {
        let call = self.call(image, "GET manifest".to_owned(), false);
        let response = self.request_manifest(&call, Method::GET).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::ManifestNotFound {
                image: image.to_string(),
            });
        }
        let response = expect(&call, response, &[StatusCode::OK]).await?;
        let header_digest = header_str(response.headers(), CONTENT_DIGEST).map(str::to_owned);
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
            return Err(call.digest_mismatch(expected, digest.to_string()));
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
            return Err(call.digest_mismatch(pinned.to_string(), digest.to_string()));
        }
        let url = self.manifest_url(&call)?;
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
        if let Some(stored) = header_str(response.headers(), CONTENT_DIGEST)
            && stored.starts_with("sha256:")
            && stored != digest.as_str()
        {
            return Err(call.digest_mismatch(digest.to_string(), stored.to_owned()));
        }
        Ok(digest)
    }

    /// The digest of the manifest `image` names (a `HEAD`), or `None` if absent.
    pub async fn manifest_digest(
        &self,
        image: &Reference,
    ) -> Result<Option<Digest>, RegistryError> {
        let call = self.call(image, "HEAD manifest".to_owned(), false);
        let response = self.request_manifest(&call, Method::HEAD).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::OK => {
                match header_str(response.headers(), CONTENT_DIGEST).map(Digest::parse) {
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
                .map_err(|e| call.protocol(format!("tag list: {e}")))?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(next) => url = url.join(&next).map_err(|e| call.protocol(e.to_string()))?,
                None => return Ok(tags),
            }
        }
        Err(call.protocol("tag list pagination did not end".to_owned()))
    }

    /// The URL of the manifest the call's image names: by digest if pinned, else by tag.
    fn manifest_url(&self, call: &Call<'_>) -> Result<Url, RegistryError> {
        let image = call.image;
        let path = format!(
            "{}/manifests/{}",
            image.repository(),
            image.manifest_reference()
        );
        self.url(call, &path)
    }

    /// A `GET` or `HEAD` of the call's manifest, accepting every manifest kind.
    async fn request_manifest(
        &self,
        call: &Call<'_>,
        method: Method,
    ) -> Result<Response, RegistryError> {
        let url = self.manifest_url(call)?;
        self.execute(call, true, || {
            Ok(self
                .request(method.clone(), url.clone())
                .header(ACCEPT, MANIFEST_ACCEPT))
        })
        .await
    }
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
}
