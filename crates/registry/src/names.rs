//! Validated names: repository names, tags, digests, and the parse of a
//! `/v2/…` path into the endpoint it addresses.
//!
//! Validation is hand-written against the grammars of the OCI Distribution
//! specification rather than a regex engine: the grammars are small, and a
//! string that passes is ASCII from a closed alphabet, which is what lets
//! the rest of the crate treat these types as safe everywhere (none of them
//! can hold `/..`, `%`, a NUL or an absolute path).

use std::fmt;

use crate::error::{ApiError, ErrorCode};

/// The longest repository name the specification allows.
const MAX_NAME_LEN: usize = 255;

/// A repository name such as `library/ubuntu`: components of
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` joined by `/`, at most 255 bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct RepoName(String);

impl RepoName {
    pub(crate) fn parse(s: &str) -> Result<RepoName, ApiError> {
        if s.is_empty() || s.len() > MAX_NAME_LEN || !s.split('/').all(valid_component) {
            return Err(ApiError::new(
                ErrorCode::NameInvalid,
                format!("invalid repository name {s:?}"),
            ));
        }
        Ok(RepoName(s.to_string()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        let run = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == run {
            // Empty component, leading separator or two separators in a row.
            return false;
        }
        if i == b.len() {
            return true;
        }
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if b.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tag(String);

impl Tag {
    pub(crate) fn parse(s: &str) -> Option<Tag> {
        let b = s.as_bytes();
        let first_ok = b
            .first()
            .is_some_and(|&x| x.is_ascii_alphanumeric() || x == b'_');
        let rest_ok = b
            .iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'));
        (first_ok && rest_ok && b.len() <= 128).then(|| Tag(s.to_string()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// A content digest. Only `sha256:<64 lowercase hex>` is accepted: it is the
/// only algorithm the artifact store keys blobs by, and refusing the others
/// up front keeps one canonical spelling per blob.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Digest(String);

impl Digest {
    pub(crate) fn parse(s: &str) -> Result<Digest, ApiError> {
        let ok = s.strip_prefix("sha256:").is_some_and(|hex| {
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if ok {
            Ok(Digest(s.to_string()))
        } else {
            Err(ApiError::new(
                ErrorCode::DigestInvalid,
                format!("invalid digest {s:?}: only sha256:<64 lowercase hex> is supported"),
            ))
        }
    }

    /// The digest of `bytes`.
    pub(crate) fn of(bytes: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest(format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(bytes))
        ))
    }

    pub(crate) fn from_hasher(hasher: sha2::Sha256) -> Digest {
        use sha2::Digest as _;
        Digest(format!("sha256:{}", hex::encode(hasher.finalize())))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a manifest path names: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl Reference {
    /// A reference a manifest is pushed under: an invalid one is refused.
    pub(crate) fn parse(s: &str) -> Result<Reference, ApiError> {
        Reference::lookup(s)?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::ManifestInvalid,
                format!("invalid reference {s:?}: neither a tag nor a sha256 digest"),
            )
        })
    }

    /// A reference a manifest is looked up (or deleted) by: `None` for a
    /// string that is no tag, which can name nothing stored, so the
    /// specification's answer is `404 MANIFEST_UNKNOWN`, not a 400. A
    /// malformed digest is still `DIGEST_INVALID`.
    pub(crate) fn lookup(s: &str) -> Result<Option<Reference>, ApiError> {
        // A tag can't hold ':', so a colon means the client meant a digest.
        if s.contains(':') {
            return Digest::parse(s).map(|d| Some(Reference::Digest(d)));
        }
        Ok(Tag::parse(s).map(Reference::Tag))
    }
}

/// The endpoint a `/v2/…` path addresses, with its parts still raw: each is
/// validated by the handler, so that a bad name and a bad digest get their
/// own error codes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Catalog,
    Blob { name: String, digest: String },
    UploadStart { name: String },
    Upload { name: String, id: String },
    Manifest { name: String, reference: String },
    Tags { name: String },
    Referrers { name: String, digest: String },
}

/// Parses the part of the path after `/v2/`. Names have any number of
/// segments, so the endpoint is recognised from the right: the second-last
/// segment (`manifests`, `tags`, `uploads`, `blobs`, `referrers`) says which endpoint it
/// is, and everything before the keyword is the name. Each segment is
/// percent-decoded on its own, so an encoded `/` or `..` ends up inside one
/// segment, where the name grammar refuses it.
pub(crate) fn parse_route(rest: &str) -> Option<Route> {
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    let segments: Vec<String> = rest.split('/').map(percent_decode).collect::<Option<_>>()?;
    let n = segments.len();
    if n < 3 {
        return None;
    }
    let name = |end: usize| segments[..end].join("/");
    let last = &segments[n - 1];
    match segments[n - 2].as_str() {
        "manifests" => Some(Route::Manifest {
            name: name(n - 2),
            reference: last.clone(),
        }),
        "tags" if last == "list" => Some(Route::Tags { name: name(n - 2) }),
        "referrers" => Some(Route::Referrers {
            name: name(n - 2),
            digest: last.clone(),
        }),
        "uploads" if n >= 4 && segments[n - 3] == "blobs" => {
            if last.is_empty() {
                Some(Route::UploadStart { name: name(n - 3) })
            } else {
                Some(Route::Upload {
                    name: name(n - 3),
                    id: last.clone(),
                })
            }
        }
        "blobs" if last == "uploads" => Some(Route::UploadStart { name: name(n - 2) }),
        "blobs" => Some(Route::Blob {
            name: name(n - 2),
            digest: last.clone(),
        }),
        _ => None,
    }
}

/// Decodes `%XX` escapes; `None` for a malformed escape or non-UTF-8 result.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            // from_str_radix alone would take a sign, as in "%+1".
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The decoded `key=value` pairs of a query string.
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_follow_the_oci_grammar() {
        for ok in [
            "a",
            "library/ubuntu",
            "a.b_c__d---e/f0",
            "test/tiny",
            "a/b/c/d",
            "x9",
        ] {
            assert!(RepoName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "A", "a/", "/a", "a//b", "..", "a/../b", "a/./b", ".a", "a.", "a..b", "a___b",
            "a_-b", "a%2e%2e", "a b", "a\0b", "-a",
        ] {
            assert!(RepoName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(RepoName::parse(&"a".repeat(255)).is_ok());
        assert!(RepoName::parse(&"a".repeat(256)).is_err());
    }

    #[test]
    fn tags_follow_the_oci_grammar() {
        for ok in ["1", "latest", "_x", "v1.2.3-rc_1", &"a".repeat(128)] {
            assert!(Tag::parse(ok).is_some(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", "..", &"a".repeat(129)] {
            assert!(Tag::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn only_lowercase_sha256_digests_are_accepted() {
        let hex = "a".repeat(64);
        assert!(Digest::parse(&format!("sha256:{hex}")).is_ok());
        for bad in [
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha512:{}", "a".repeat(128)),
            format!("sha256:{}/..", "a".repeat(62)),
            "sha256:".to_string(),
        ] {
            assert!(Digest::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn routes_are_recognised_from_the_right() {
        let r = |s| parse_route(s);
        assert_eq!(
            r("a/b/manifests/latest"),
            Some(Route::Manifest {
                name: "a/b".into(),
                reference: "latest".into()
            })
        );
        // Keywords inside a name stay part of the name.
        assert_eq!(
            r("blobs/uploads/manifests/tags/list"),
            Some(Route::Tags {
                name: "blobs/uploads/manifests".into()
            })
        );
        assert_eq!(
            r("x/blobs/uploads/"),
            Some(Route::UploadStart { name: "x".into() })
        );
        assert_eq!(
            r("x/blobs/uploads"),
            Some(Route::UploadStart { name: "x".into() })
        );
        assert_eq!(
            r("x/y/blobs/uploads/abc"),
            Some(Route::Upload {
                name: "x/y".into(),
                id: "abc".into()
            })
        );
        assert_eq!(
            r("x/blobs/sha256%3Aab"),
            Some(Route::Blob {
                name: "x".into(),
                digest: "sha256:ab".into()
            })
        );
        // An encoded slash stays inside its segment, where the grammar
        // refuses it later.
        let Some(Route::Manifest { name, .. }) = r("a%2F..%2Fb/manifests/1") else {
            panic!("not a manifest route");
        };
        assert_eq!(name, "a/../b");
        assert!(RepoName::parse(&name).is_err());
        assert_eq!(
            r("a/referrers/sha256:ab"),
            Some(Route::Referrers {
                name: "a".into(),
                digest: "sha256:ab".into()
            })
        );
        // A repository may be called `referrers`.
        assert_eq!(
            r("referrers/manifests/1"),
            Some(Route::Manifest {
                name: "referrers".into(),
                reference: "1".into()
            })
        );
        assert_eq!(r("x/whatever"), None);
        assert_eq!(r("x/blobs/a/b/c"), None);
        assert_eq!(r("x/%zz/manifests/1"), None);
        assert_eq!(r("x/%+1/manifests/1"), None);
        assert_eq!(r("x/%2/manifests/1"), None);
    }
}
