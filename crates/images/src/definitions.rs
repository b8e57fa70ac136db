//! The deploy hand-off files CodePipeline's ECS actions read.
//!
//! `imagedefinitions.json` (standard ECS deploy) is an array of
//! `{"name": CONTAINER, "imageUri": IMAGE}`; `imageDetail.json` (blue/green) is one
//! object with `ImageURI` and, from gantry, `ImageDigest`. Both are at most
//! 100 KB. Reading validates everything and reports every problem at once, each
//! with its place in the file; writing validates first, so gantry never hands a
//! deploy a file it would itself refuse.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::reference::Reference;

/// The largest hand-off file accepted, as CodePipeline documents.
pub const MAX_DEFINITIONS_BYTES: usize = 100 * 1024;
/// The conventional name of the standard deploy's file.
pub const IMAGE_DEFINITIONS_FILE: &str = "imagedefinitions.json";
/// The fixed name of the blue/green deploy's file.
pub const IMAGE_DETAIL_FILE: &str = "imageDetail.json";

/// Why a hand-off file was refused.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionsError {
    /// The file is over 100 KB.
    #[error("{file}: {size} bytes, more than the 100 KB allowed")]
    TooLarge {
        /// The file.
        file: String,
        /// Its size.
        size: usize,
    },
    /// The file is not JSON of the expected shape.
    #[error("{file}: {source}")]
    Json {
        /// The file.
        file: String,
        /// The parse error, with line and column.
        source: serde_json::Error,
    },
    /// The content breaks the rules; every problem is listed.
    #[error("{file}: {}", errors.join("; "))]
    Invalid {
        /// The file.
        file: String,
        /// Every problem, each prefixed with where it is.
        errors: Vec<String>,
    },
    /// A digest reference was asked of an image named only by tag.
    #[error("image {name:?} ({image_uri}) is not pinned by a digest")]
    NotPinned {
        /// The container (or file) it belongs to.
        name: String,
        /// Its image URI.
        image_uri: String,
    },
    /// Reading or writing the file failed.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The IO error.
        source: std::io::Error,
    },
}

/// One container's image in `imagedefinitions.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageDefinition {
    /// The container name in the task definition.
    pub name: String,
    /// The image: `registry/repo:tag`, `…@sha256:…`, or a Docker Hub short name.
    #[serde(rename = "imageUri")]
    pub image_uri: String,
}

impl ImageDefinition {
    /// The definition of container `name` running `image`.
    pub fn new(name: impl Into<String>, image: &Reference) -> ImageDefinition {
        ImageDefinition {
            name: name.into(),
            image_uri: image.to_string(),
        }
    }

    /// The image URI as a validated, normalised reference.
    pub fn reference(&self) -> Result<Reference, DefinitionsError> {
        Reference::parse(&self.image_uri).map_err(|e| DefinitionsError::Invalid {
            file: IMAGE_DEFINITIONS_FILE.to_owned(),
            errors: vec![format!("{:?}: imageUri: {e}", self.name)],
        })
    }

    /// `registry/repo@sha256:…`: what a deploy should pull, immune to tag moves.
    /// Fails when the URI carries no digest.
    pub fn digest_reference(&self) -> Result<Reference, DefinitionsError> {
        pinned(&self.reference()?, &self.name, &self.image_uri)
    }
}

fn pinned(
    reference: &Reference,
    name: &str,
    image_uri: &str,
) -> Result<Reference, DefinitionsError> {
    match reference.digest() {
        Some(digest) => Ok(reference.with_digest(digest)),
        None => Err(DefinitionsError::NotPinned {
            name: name.to_owned(),
            image_uri: image_uri.to_owned(),
        }),
    }
}

/// Parses and validates `imagedefinitions.json` text.
pub fn parse_image_definitions(text: &[u8]) -> Result<Vec<ImageDefinition>, DefinitionsError> {
    parse_definitions_in(IMAGE_DEFINITIONS_FILE, text)
}

fn parse_definitions_in(file: &str, text: &[u8]) -> Result<Vec<ImageDefinition>, DefinitionsError> {
    check_size(file, text.len())?;
    let definitions: Vec<ImageDefinition> =
        serde_json::from_slice(text).map_err(|source| DefinitionsError::Json {
            file: file.to_owned(),
            source,
        })?;
    validate_definitions(file, &definitions)?;
    Ok(definitions)
}

/// Every problem with a list of definitions: names (1–255 of `A-Za-z0-9_-`,
/// unique), image URIs (valid references), and at least one entry.
fn validate_definitions(
    file: &str,
    definitions: &[ImageDefinition],
) -> Result<(), DefinitionsError> {
    let mut errors = Vec::new();
    if definitions.is_empty() {
        errors.push("lists no images".to_owned());
    }
    let mut seen = HashSet::new();
    for (i, definition) in definitions.iter().enumerate() {
        let name = &definition.name;
        if let Err(reason) = check_container_name(name) {
            errors.push(format!("[{i}].name {name:?}: {reason}"));
        }
        if !seen.insert(name.as_str()) {
            errors.push(format!("[{i}].name {name:?}: listed more than once"));
        }
        if let Err(e) = Reference::parse(&definition.image_uri) {
            errors.push(format!("[{i}].imageUri: {e}"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(DefinitionsError::Invalid {
            file: file.to_owned(),
            errors,
        })
    }
}

/// ECS container names: 1–255 letters, digits, hyphens and underscores.
fn check_container_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 255 {
        return Err("must be 1-255 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("may only hold letters, digits, '-' and '_'");
    }
    Ok(())
}

/// The JSON text of `definitions`, validated.
pub fn image_definitions_json(definitions: &[ImageDefinition]) -> Result<String, DefinitionsError> {
    validate_definitions(IMAGE_DEFINITIONS_FILE, definitions)?;
    let text = serde_json::to_string(definitions).map_err(|source| DefinitionsError::Json {
        file: IMAGE_DEFINITIONS_FILE.to_owned(),
        source,
    })?;
    check_size(IMAGE_DEFINITIONS_FILE, text.len())?;
    Ok(text)
}

/// Reads and validates an `imagedefinitions.json` file.
pub fn read_image_definitions(path: &Path) -> Result<Vec<ImageDefinition>, DefinitionsError> {
    let text = read_bounded(path)?;
    parse_definitions_in(&path.display().to_string(), &text)
}

/// Validates `definitions` and writes them to `path`.
pub fn write_image_definitions(
    path: &Path,
    definitions: &[ImageDefinition],
) -> Result<(), DefinitionsError> {
    let text = image_definitions_json(definitions)?;
    std::fs::write(path, text).map_err(|source| DefinitionsError::Io {
        file: path.display().to_string(),
        source,
    })
}

/// `imageDetail.json`: the image a blue/green deploy substitutes into its task definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageDetail {
    /// The image.
    #[serde(rename = "ImageURI")]
    pub image_uri: String,
    /// Its manifest digest, when known.
    #[serde(
        rename = "ImageDigest",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub image_digest: Option<String>,
    /// Compressed size of config and layers.
    #[serde(
        rename = "ImageSizeInBytes",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub image_size_in_bytes: Option<u64>,
    /// The repository name inside the registry.
    #[serde(
        rename = "RepositoryName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub repository_name: Option<String>,
    /// The registry.
    #[serde(
        rename = "RegistryId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub registry_id: Option<String>,
    /// Tags the image was pushed under.
    #[serde(rename = "ImageTags", default, skip_serializing_if = "Vec::is_empty")]
    pub image_tags: Vec<String>,
    /// When it was pushed (RFC 3339), if the writer knows.
    #[serde(
        rename = "ImagePushedAt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub image_pushed_at: Option<String>,
    /// A version label, if any.
    #[serde(rename = "Version", default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl ImageDetail {
    /// The detail of `image` (which may carry a tag) with manifest `digest`.
    pub fn new(image: &Reference, digest: &Digest, size: Option<u64>) -> ImageDetail {
        ImageDetail {
            image_uri: image.with_digest(digest).to_string(),
            image_digest: Some(digest.to_string()),
            image_size_in_bytes: size,
            repository_name: Some(image.repository().to_owned()),
            registry_id: Some(image.registry().to_owned()),
            image_tags: image.tag().map(str::to_owned).into_iter().collect(),
            image_pushed_at: None,
            version: None,
        }
    }

    /// `registry/repo@sha256:…`, from the URI's digest or else `ImageDigest`.
    pub fn digest_reference(&self) -> Result<Reference, DefinitionsError> {
        let invalid = |error: String| DefinitionsError::Invalid {
            file: IMAGE_DETAIL_FILE.to_owned(),
            errors: vec![error],
        };
        let reference =
            Reference::parse(&self.image_uri).map_err(|e| invalid(format!("ImageURI: {e}")))?;
        match (&reference.digest(), &self.image_digest) {
            (Some(_), _) => pinned(&reference, IMAGE_DETAIL_FILE, &self.image_uri),
            (None, Some(digest)) => {
                let digest =
                    Digest::parse(digest).map_err(|e| invalid(format!("ImageDigest: {e}")))?;
                Ok(reference.with_digest(&digest))
            }
            (None, None) => pinned(&reference, IMAGE_DETAIL_FILE, &self.image_uri),
        }
    }

    fn validate(&self, file: &str) -> Result<(), DefinitionsError> {
        let mut errors = Vec::new();
        let reference = match Reference::parse(&self.image_uri) {
            Ok(reference) => Some(reference),
            Err(e) => {
                errors.push(format!("ImageURI: {e}"));
                None
            }
        };
        if let Some(digest) = &self.image_digest {
            match Digest::parse(digest) {
                Ok(digest) => {
                    if let Some(uri_digest) = reference.as_ref().and_then(Reference::digest)
                        && uri_digest != &digest
                    {
                        errors.push(format!("ImageDigest {digest} differs from the digest in ImageURI ({uri_digest})"));
                    }
                }
                Err(e) => errors.push(format!("ImageDigest: {e}")),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(DefinitionsError::Invalid {
                file: file.to_owned(),
                errors,
            })
        }
    }
}

/// Parses and validates `imageDetail.json` text.
pub fn parse_image_detail(text: &[u8]) -> Result<ImageDetail, DefinitionsError> {
    parse_detail_in(IMAGE_DETAIL_FILE, text)
}

fn parse_detail_in(file: &str, text: &[u8]) -> Result<ImageDetail, DefinitionsError> {
    check_size(file, text.len())?;
    let detail: ImageDetail =
        serde_json::from_slice(text).map_err(|source| DefinitionsError::Json {
            file: file.to_owned(),
            source,
        })?;
    detail.validate(file)?;
    Ok(detail)
}

/// The JSON text of `detail`, validated.
pub fn image_detail_json(detail: &ImageDetail) -> Result<String, DefinitionsError> {
    detail.validate(IMAGE_DETAIL_FILE)?;
    serde_json::to_string(detail).map_err(|source| DefinitionsError::Json {
        file: IMAGE_DETAIL_FILE.to_owned(),
        source,
    })
}

/// Reads and validates an `imageDetail.json` file.
pub fn read_image_detail(path: &Path) -> Result<ImageDetail, DefinitionsError> {
    let text = read_bounded(path)?;
    parse_detail_in(&path.display().to_string(), &text)
}

/// Validates `detail` and writes it to `path`.
pub fn write_image_detail(path: &Path, detail: &ImageDetail) -> Result<(), DefinitionsError> {
    let text = image_detail_json(detail)?;
    std::fs::write(path, text).map_err(|source| DefinitionsError::Io {
        file: path.display().to_string(),
        source,
    })
}

fn check_size(file: &str, size: usize) -> Result<(), DefinitionsError> {
    if size > MAX_DEFINITIONS_BYTES {
        return Err(DefinitionsError::TooLarge {
            file: file.to_owned(),
            size,
        });
    }
    Ok(())
}

/// Reads at most one byte past the limit, so a huge file is refused without
/// being read whole.
fn read_bounded(path: &Path) -> Result<Vec<u8>, DefinitionsError> {
    use std::io::Read;
    let io = |source| DefinitionsError::Io {
        file: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut text = Vec::new();
    file.take(MAX_DEFINITIONS_BYTES as u64 + 1)
        .read_to_end(&mut text)
        .map_err(io)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn errors_of(text: &str) -> Vec<String> {
        match parse_image_definitions(text.as_bytes()) {
            Err(DefinitionsError::Invalid { errors, .. }) => errors,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn the_codepipeline_example_parses() {
        let defs = parse_image_definitions(
            br#"[{"name":"web","imageUri":"httpd:2.4"},{"name":"api_2","imageUri":"127.0.0.1:5000/api@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}]"#,
        )
        .unwrap();
        assert_eq!(defs.len(), 2);
        assert_eq!(
            defs[0].reference().unwrap().to_string(),
            "docker.io/library/httpd:2.4"
        );
        assert_eq!(
            defs[1].digest_reference().unwrap().to_string(),
            format!("127.0.0.1:5000/api@{D}")
        );
        assert!(matches!(
            defs[0].digest_reference(),
            Err(DefinitionsError::NotPinned { .. })
        ));
    }

    #[test]
    fn a_digest_reference_drops_the_tag() {
        let def = ImageDefinition {
            name: "web".into(),
            image_uri: format!("reg.example/team/web:v3@{D}"),
        };
        assert_eq!(
            def.digest_reference().unwrap().to_string(),
            format!("reg.example/team/web@{D}")
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let errors = errors_of(
            r#"[{"name":"web","imageUri":"httpd"},{"name":"web","imageUri":"BAD"},{"name":"","imageUri":"x"},{"name":"a b","imageUri":"x"}]"#,
        );
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(
            errors[0].starts_with("[1].name \"web\": listed more than once"),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("[1].imageUri: invalid image reference \"BAD\""),
            "{errors:?}"
        );
        assert!(errors[2].starts_with("[2].name \"\""), "{errors:?}");
        assert!(errors[3].starts_with("[3].name \"a b\""), "{errors:?}");
        assert_eq!(errors_of("[]"), ["lists no images"]);
    }

    #[test]
    fn wrong_shapes_and_oversized_files_are_refused() {
        for text in [
            "{}",
            r#"[{"name":"web"}]"#,
            "not json",
            r#"[{"name":1,"imageUri":"x"}]"#,
        ] {
            assert!(
                matches!(
                    parse_image_definitions(text.as_bytes()),
                    Err(DefinitionsError::Json { .. })
                ),
                "{text}"
            );
        }
        let big = format!(
            r#"[{{"name":"web","imageUri":"httpd"}}]{}"#,
            " ".repeat(MAX_DEFINITIONS_BYTES)
        );
        assert!(matches!(
            parse_image_definitions(big.as_bytes()),
            Err(DefinitionsError::TooLarge { .. })
        ));
    }

    #[test]
    fn definitions_round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(IMAGE_DEFINITIONS_FILE);
        let image = Reference::parse("127.0.0.1:5000/app:v1").unwrap();
        let defs = vec![ImageDefinition::new("app", &image)];
        write_image_definitions(&path, &defs).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            r#"[{"name":"app","imageUri":"127.0.0.1:5000/app:v1"}]"#
        );
        assert_eq!(read_image_definitions(&path).unwrap(), defs);
        let dup = vec![defs[0].clone(), defs[0].clone()];
        assert!(write_image_definitions(&path, &dup).is_err());
    }

    #[test]
    fn image_detail_round_trips_and_checks_its_digest() {
        let image = Reference::parse("127.0.0.1:5000/app:v1").unwrap();
        let digest = Digest::parse(D).unwrap();
        let detail = ImageDetail::new(&image, &digest, Some(42));
        let text = image_detail_json(&detail).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"ImageURI":"127.0.0.1:5000/app@{D}","ImageDigest":"{D}","ImageSizeInBytes":42,"RepositoryName":"app","RegistryId":"127.0.0.1:5000","ImageTags":["v1"]}}"#
            )
        );
        let parsed = parse_image_detail(text.as_bytes()).unwrap();
        assert_eq!(parsed, detail);
        assert_eq!(
            parsed.digest_reference().unwrap().to_string(),
            format!("127.0.0.1:5000/app@{D}")
        );

        // The CodePipeline minimum: ImageURI alone.
        let minimal = parse_image_detail(br#"{"ImageURI":"httpd:2.4"}"#).unwrap();
        assert!(matches!(
            minimal.digest_reference(),
            Err(DefinitionsError::NotPinned { .. })
        ));
        let with_digest = parse_image_detail(
            format!(r#"{{"ImageURI":"httpd:2.4","ImageDigest":"{D}"}}"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(
            with_digest.digest_reference().unwrap().to_string(),
            format!("docker.io/library/httpd@{D}")
        );

        let other = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        let conflicting = format!(r#"{{"ImageURI":"httpd@{D}","ImageDigest":"{other}"}}"#);
        assert!(matches!(
            parse_image_detail(conflicting.as_bytes()),
            Err(DefinitionsError::Invalid { .. })
        ));
        assert!(matches!(
            parse_image_detail(b"{}"),
            Err(DefinitionsError::Json { .. })
        ));
    }
}
