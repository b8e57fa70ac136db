//! Manifests: which media types the registry accepts, and what a manifest
//! references (the blobs of an image, the manifests of an index), so a PUT
//! can refuse a manifest whose references are not all present.

use serde::Deserialize;

use crate::error::{ApiError, ErrorCode};
use crate::names::Digest;

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The largest manifest accepted; the OCI specification suggests registries
/// accept at least 4 MiB, and a larger one is refused before it is parsed.
pub(crate) const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// Content types that say nothing about the manifest's kind: the media type
/// then comes from the JSON's own `mediaType`.
const GENERIC_TYPES: &[&str] = &["", "application/json", "application/octet-stream"];

/// A manifest that passed validation: its media type, the blobs it
/// references (config and layers), the manifests it references (index),
/// and what the referrers API lists about it when it has a `subject`.
#[derive(Debug)]
pub(crate) struct ParsedManifest {
    pub media_type: &'static str,
    pub blobs: Vec<Digest>,
    pub children: Vec<Digest>,
    /// The manifest this one refers to (a signature's image, say). It need
    /// not exist: the specification lets referrers be pushed first.
    pub subject: Option<Digest>,
    /// The `artifactType` a referrers list gives it: its own, else (for an
    /// image manifest) its config's media type; none for an index without.
    pub artifact_type: Option<String>,
    /// Its `annotations`, when they are a JSON object.
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    // Read leniently: a manifest accepted before referrers existed must
    // still be accepted, whatever these two hold.
    artifact_type: Option<serde_json::Value>,
    annotations: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    digest: String,
    media_type: Option<serde_json::Value>,
    #[serde(default)]
    urls: Vec<String>,
}

/// A non-empty string, or nothing.
fn text(value: Option<&serde_json::Value>) -> Option<String> {
    value
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::ManifestInvalid, message)
}

fn known(media_type: &str) -> Option<&'static str> {
    [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST]
        .into_iter()
        .find(|t| *t == media_type)
}

/// Validates a manifest's bytes. `content_type` is the request's header;
/// when it names a manifest type it must agree with the JSON's `mediaType`.
pub(crate) fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<ParsedManifest, ApiError> {
    let raw: RawManifest = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
    if raw.schema_version != Some(2) {
        return Err(invalid("only schemaVersion 2 manifests are supported"));
    }
    let header_type = content_type
        .map(|ct| ct.split(';').next().unwrap_or("").trim())
        .filter(|ct| !GENERIC_TYPES.contains(ct));
    let header_type = match header_type {
        Some(ct) => Some(
            known(ct).ok_or_else(|| invalid(format!("unsupported manifest media type {ct}")))?,
        ),
        None => None,
    };
    let json_type = match raw.media_type.as_deref() {
        Some(mt) => Some(
            known(mt).ok_or_else(|| invalid(format!("unsupported manifest media type {mt}")))?,
        ),
        None => None,
    };
    let media_type = match (header_type, json_type) {
        (Some(h), Some(j)) if h != j => {
            return Err(invalid(format!(
                "Content-Type {h} disagrees with the manifest's mediaType {j}"
            )));
        }
        (Some(t), _) | (None, Some(t)) => t,
        // An OCI manifest may omit mediaType; its shape tells which it is.
        (None, None) if raw.manifests.is_some() => OCI_INDEX,
        (None, None) if raw.config.is_some() => OCI_MANIFEST,
        (None, None) => return Err(invalid("cannot tell the manifest's media type")),
    };
    let digest_of = |d: &Descriptor| {
        Digest::parse(&d.digest)
            .map_err(|_| invalid(format!("unsupported digest {:?} in manifest", d.digest)))
    };
    let subject = raw.subject.as_ref().map(digest_of).transpose()?;
    let annotations = match raw.annotations {
        Some(serde_json::Value::Object(map)) => Some(map),
        _ => None,
    };
    let artifact_type = text(raw.artifact_type.as_ref());
    // The artifact type of a referrer is indexed as text, which PostgreSQL
    // cannot hold with a NUL in it; no media type has one, so such a
    // manifest is refused on every backend alike.
    let indexable = |t: Option<String>| match t {
        Some(t) if subject.is_some() && t.contains('\0') => {
            Err(invalid("the artifact type contains a NUL character"))
        }
        t => Ok(t),
    };
    match media_type {
        OCI_INDEX | DOCKER_LIST => {
            let Some(manifests) = raw.manifests else {
                return Err(invalid("an index needs a manifests list"));
            };
            Ok(ParsedManifest {
                media_type,
                blobs: Vec::new(),
                children: manifests.iter().map(digest_of).collect::<Result<_, _>>()?,
                artifact_type: indexable(artifact_type)?,
                subject,
                annotations,
            })
        }
        _ => {
            let (Some(config), Some(layers)) = (raw.config, raw.layers) else {
                return Err(invalid("an image manifest needs config and layers"));
            };
            let artifact_type =
                indexable(artifact_type.or_else(|| text(config.media_type.as_ref())))?;
            let mut blobs = vec![digest_of(&config)?];
            for layer in &layers {
                let digest = digest_of(layer)?;
                // A foreign layer (one with URLs, as Windows base layers
                // have) is fetched from elsewhere and never pushed here.
                if layer.urls.is_empty() {
                    blobs.push(digest);
                }
            }
            Ok(ParsedManifest {
                media_type,
                blobs,
                children: Vec::new(),
                subject,
                artifact_type,
                annotations,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn the_media_type_comes_from_the_header_the_json_or_the_shape() {
        let image = format!(r#"{{"schemaVersion":2,"config":{{"digest":"{D}"}},"layers":[]}}"#);
        assert_eq!(
            parse(image.as_bytes(), None).unwrap().media_type,
            OCI_MANIFEST
        );
        assert_eq!(
            parse(image.as_bytes(), Some(DOCKER_MANIFEST))
                .unwrap()
                .media_type,
            DOCKER_MANIFEST
        );
        let typed = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[{{"digest":"{D}"}}]}}"#
        );
        let parsed = parse(typed.as_bytes(), Some("application/json")).unwrap();
        assert_eq!(parsed.media_type, DOCKER_LIST);
        assert_eq!(parsed.children.len(), 1);
        assert!(parse(typed.as_bytes(), Some(OCI_INDEX)).is_err());
    }

    #[test]
    fn bad_manifests_are_refused() {
        for bad in [
            "not json",
            "[]",
            r#"{"schemaVersion":1}"#,
            r#"{"schemaVersion":2}"#,
            r#"{"schemaVersion":2,"mediaType":"text/plain","layers":[]}"#,
            r#"{"schemaVersion":2,"config":{"digest":"md5:x"},"layers":[]}"#,
        ] {
            assert!(parse(bad.as_bytes(), None).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_subject_artifact_type_and_annotations_are_read_for_referrers() {
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/x.sbom","digest":"{D}"}},
               "layers":[],"subject":{{"digest":"{D}"}},"annotations":{{"k":"v"}}}}"#
        );
        let parsed = parse(m.as_bytes(), None).unwrap();
        assert_eq!(parsed.subject.unwrap().as_str(), D);
        // Without its own artifactType, an image manifest's is its config's.
        assert_eq!(parsed.artifact_type.as_deref(), Some("application/x.sbom"));
        assert_eq!(parsed.annotations.unwrap()["k"], "v");

        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[],
               "subject":{{"digest":"{D}"}},"annotations":"not an object"}}"#
        );
        let parsed = parse(index.as_bytes(), None).unwrap();
        assert_eq!(parsed.artifact_type, None);
        assert!(parsed.annotations.is_none());

        let bad = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{D}"}},"layers":[],"subject":{{"digest":"md5:x"}}}}"#
        );
        assert!(parse(bad.as_bytes(), None).is_err());

        // An artifact type with a NUL could not be indexed on PostgreSQL;
        // it is refused alike everywhere (but only matters for a referrer).
        let nul = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"a\u0000b","digest":"{D}"}},
               "layers":[],"subject":{{"digest":"{D}"}}}}"#
        );
        assert!(parse(nul.as_bytes(), None).is_err());
        let no_subject = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"a\u0000b","digest":"{D}"}},"layers":[]}}"#
        );
        assert!(parse(no_subject.as_bytes(), None).is_ok());
    }

    #[test]
    fn foreign_layers_are_not_required() {
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{D}"}},
               "layers":[{{"digest":"sha256:{}","urls":["https://example.com/x"]}}]}}"#,
            "b".repeat(64)
        );
        assert_eq!(parse(m.as_bytes(), None).unwrap().blobs.len(), 1);
    }
}
