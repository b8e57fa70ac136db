//! Image references: `[registry/]repository[:tag][@sha256:…]`.
//!
//! Parsing follows the Docker CLI's normalisation so that a reference means the
//! same image here as it does to `docker pull`: a first path component holding a
//! `.` or a `:`, or being `localhost`, names the registry; otherwise the registry is
//! Docker Hub (`docker.io`), where one-component names live under `library/`. A
//! reference with neither tag nor digest gets the tag `latest`.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// Docker Hub's canonical registry name, as references spell it.
pub const DOCKER_HUB: &str = "docker.io";

/// The longest repository name (registry excluded) the distribution spec allows.
const MAX_REPOSITORY_LEN: usize = 255;

/// A validated image reference.
///
/// The fields are private so that every `Reference` in the program has been
/// validated and normalised; `Display` gives back the canonical text, which parses
/// to the same value.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The text is empty.
    #[error("empty image reference")]
    Empty,
    /// The registry part is not `host[:port]`.
    #[error("invalid image reference {reference:?}: registry {registry:?} is not HOST[:PORT]")]
    Registry {
        /// The whole reference.
        reference: String,
        /// The registry part.
        registry: String,
    },
    /// The repository name breaks the OCI name grammar.
    #[error("invalid image reference {reference:?}: repository {repository:?} {reason}")]
    Repository {
        /// The whole reference.
        reference: String,
        /// The repository part.
        repository: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The tag breaks `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    #[error(
        "invalid image reference {reference:?}: tag {tag:?} must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"
    )]
    Tag {
        /// The whole reference.
        reference: String,
        /// The tag part.
        tag: String,
    },
    /// The digest part is not a sha256 digest.
    #[error("invalid image reference {reference:?}: {source}")]
    Digest {
        /// The whole reference.
        reference: String,
        /// What is wrong with the digest.
        source: DigestError,
    },
}

impl Reference {
    /// Parses like [`Reference::parse`], but a reference that names no
    /// registry host (`shop/web:1`, `web`) is in `local`, gantry's embedded
    /// registry (`127.0.0.1:7701`), not Docker Hub: what a person deploys
    /// is usually what gantry built. `docker.io/…` still names Docker Hub.
    pub fn parse_local(text: &str, local: &str) -> Result<Reference, ReferenceError> {
        let name = text.rsplit_once('@').map_or(text, |(name, _)| name);
        // The same rule as `split_registry`: a first component with a dot,
        // a colon, or `localhost` is a host.
        let names_a_host = name.split_once('/').is_some_and(|(first, _)| {
            first.contains('.') || first.contains(':') || first == "localhost"
        });
        if names_a_host || text.is_empty() {
            Reference::parse(text)
        } else {
            Reference::parse(&format!("{local}/{text}"))
        }
    }

    /// Parses and normalises `[registry/]repository[:tag][@sha256:…]`.
    pub fn parse(text: &str) -> Result<Reference, ReferenceError> {
        if text.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match text.rsplit_once('@') {
            Some((rest, digest)) => {
                let digest = Digest::parse(digest).map_err(|source| ReferenceError::Digest {
                    reference: text.to_owned(),
                    source,
                })?;
                (rest, Some(digest))
            }
            None => (text, None),
        };
        // A ':' after the last '/' separates the tag; one before it is a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest.get(last_slash..).and_then(|tail| tail.rfind(':')) {
            Some(colon) => {
                let at = last_slash + colon;
                (&rest[..at], Some(&rest[at + 1..]))
            }
            None => (rest, None),
        };
        let (registry, repository) = split_registry(name);
        let registry = normalise_registry(registry);
        if !valid_registry(&registry) {
            return Err(ReferenceError::Registry {
                reference: text.to_owned(),
                registry,
            });
        }
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_owned()
        };
        if let Err(reason) = check_repository(&repository) {
            return Err(ReferenceError::Repository {
                reference: text.to_owned(),
                repository,
                reason,
            });
        }
        if let Some(tag) = tag
            && !valid_tag(tag)
        {
            return Err(ReferenceError::Tag {
                reference: text.to_owned(),
                tag: tag.to_owned(),
            });
        }
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_owned()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_owned()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The registry host, with its port if any (`docker.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry (`library/httpd`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference is pinned.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same repository at `tag`, without a digest: a tag names what is to be
    /// resolved, so keeping an old digest beside it would contradict it.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        if !valid_tag(tag) {
            return Err(ReferenceError::Tag {
                reference: format!("{}/{}:{tag}", self.registry, self.repository),
                tag: tag.to_owned(),
            });
        }
        Ok(Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: Some(tag.to_owned()),
            digest: None,
        })
    }

    /// The same repository pinned at `digest` (`registry/repo@sha256:…`), without a
    /// tag: registries and runtimes ignore a tag beside a digest, so dropping it
    /// keeps the text honest about what is pulled.
    pub fn with_digest(&self, digest: &Digest) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest.clone()),
        }
    }

    /// Another repository of the same registry, tag `latest`.
    pub fn with_repository(&self, repository: &str) -> Result<Reference, ReferenceError> {
        Reference::parse(&format!("{}/{repository}", self.registry))
    }

    /// What goes after `/manifests/` in a request: the digest when pinned, else the tag.
    pub fn manifest_reference(&self) -> &str {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.as_str(),
            (None, Some(tag)) => tag,
            // `parse` gives every digest-less reference a tag; "latest" keeps this total.
            (None, None) => "latest",
        }
    }

    /// Whether `other` lives in the same registry (so blobs can be mounted).
    pub fn same_registry(&self, other: &Reference) -> bool {
        self.registry == other.registry
    }

    /// Whether `other` names the same repository of the same registry.
    pub fn same_repository(&self, other: &Reference) -> bool {
        self.same_registry(other) && self.repository == other.repository
    }
}

/// Splits off the registry when the first component looks like a host.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, rest)
        }
        _ => (DOCKER_HUB, name),
    }
}

/// Docker Hub has several names; references use one so comparisons work.
fn normalise_registry(registry: &str) -> String {
    match registry {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_owned(),
        other => other.to_owned(),
    }
}

/// `host[:port]`: DNS labels, an IPv4 address, or `[IPv6]`, then an optional port.
fn valid_registry(registry: &str) -> bool {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return false;
        };
        if inside.is_empty() || !inside.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => ("x", None),
            _ => match after.strip_prefix(':') {
                Some(port) => ("x", Some(port)),
                None => return false,
            },
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        }
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok());
    let label_ok = |label: &str| {
        let bytes = label.as_bytes();
        !bytes.is_empty()
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
    };
    port_ok && host.split('.').all(label_ok)
}

/// The OCI distribution name grammar:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
fn check_repository(repository: &str) -> Result<(), &'static str> {
    if repository.len() > MAX_REPOSITORY_LEN {
        return Err("is longer than 255 characters");
    }
    for component in repository.split('/') {
        check_component(component)?;
    }
    Ok(())
}

fn check_component(component: &str) -> Result<(), &'static str> {
    let bytes = component.as_bytes();
    if bytes.is_empty() {
        return Err("has an empty path component");
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes
        .iter()
        .all(|&b| alnum(b) || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("may only hold lowercase letters, digits, '.', '_', '-' and '/'");
    }
    if !bytes.first().copied().is_some_and(alnum) || !bytes.last().copied().is_some_and(alnum) {
        return Err("components must start and end with a lowercase letter or digit");
    }
    // Separators between alphanumeric runs: one '.', one or two '_', or any number of '-'.
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = separator == "."
            || separator == "_"
            || separator == "__"
            || separator.bytes().all(|b| b == b'-');
        if !ok {
            return Err("separates components with something other than '.', '_', '__' or dashes");
        }
    }
    Ok(())
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub(crate) fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    !bytes.is_empty()
        && bytes.len() <= 128
        && bytes.first().is_some_and(word)
        && bytes.iter().all(|b| word(b) || *b == b'.' || *b == b'-')
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Reference::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// Parses `input` and checks its canonical form; canonical text parses to itself.
    fn check(input: &str, canonical: &str) {
        let reference = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(reference.to_string(), canonical, "{input}");
        assert_eq!(Reference::parse(canonical).as_ref(), Ok(&reference));
    }

    #[test]
    fn docker_hub_names_are_normalised_like_the_docker_cli() {
        check("httpd", "docker.io/library/httpd:latest");
        check("httpd:2.4", "docker.io/library/httpd:2.4");
        check("user/app:tag", "docker.io/user/app:tag");
        check("docker.io/httpd", "docker.io/library/httpd:latest");
        check("index.docker.io/user/app", "docker.io/user/app:latest");
        check(
            &format!("httpd@{D}"),
            &format!("docker.io/library/httpd@{D}"),
        );
    }

    #[test]
    fn a_first_component_with_dot_colon_or_localhost_is_the_registry() {
        check("127.0.0.1:5000/app", "127.0.0.1:5000/app:latest");
        check("localhost/app:v1", "localhost/app:v1");
        check("localhost:5000/team/app:v1", "localhost:5000/team/app:v1");
        check("ghcr.io/org/app:1.0", "ghcr.io/org/app:1.0");
        check("[::1]:5000/app:1", "[::1]:5000/app:1");
        // Without a dot, colon or "localhost" it is a Docker Hub namespace.
        check("registry/app", "docker.io/registry/app:latest");
        let local = |text: &str| {
            Reference::parse_local(text, "127.0.0.1:7701")
                .unwrap()
                .to_string()
        };
        assert_eq!(local("shop/web:1"), "127.0.0.1:7701/shop/web:1");
        assert_eq!(local("web"), "127.0.0.1:7701/web:latest");
        assert_eq!(
            local(&format!("web@{D}")),
            format!("127.0.0.1:7701/web@{D}")
        );
        assert_eq!(local("docker.io/shop/web:1"), "docker.io/shop/web:1");
        assert_eq!(local("docker.io/httpd"), "docker.io/library/httpd:latest");
        assert_eq!(local("ghcr.io/o/web:2"), "ghcr.io/o/web:2");
        assert_eq!(local("localhost/web:2"), "localhost/web:2");
        assert_eq!(local("127.0.0.1:5000/web:2"), "127.0.0.1:5000/web:2");
    }

    #[test]
    fn tag_and_digest_parse_apart_from_a_registry_port() {
        let r = Reference::parse(&format!("reg.example:5000/a/b:v1.2@{D}")).unwrap();
        assert_eq!(r.registry(), "reg.example:5000");
        assert_eq!(r.repository(), "a/b");
        assert_eq!(r.tag(), Some("v1.2"));
        assert_eq!(r.digest().map(Digest::as_str), Some(D));
        assert_eq!(r.manifest_reference(), D);
        let r = Reference::parse("reg.example:5000/a/b").unwrap();
        assert_eq!(r.tag(), Some("latest"));
        assert_eq!(r.manifest_reference(), "latest");
    }

    #[test]
    fn with_tag_and_with_digest_replace_what_the_reference_points_at() {
        let r = Reference::parse("127.0.0.1:5000/app:v1").unwrap();
        let d = Digest::parse(D).unwrap();
        assert_eq!(
            r.with_digest(&d).to_string(),
            format!("127.0.0.1:5000/app@{D}")
        );
        assert_eq!(
            r.with_digest(&d).with_tag("v2").unwrap().to_string(),
            "127.0.0.1:5000/app:v2"
        );
        assert!(r.with_tag("-bad").is_err());
        assert_eq!(
            r.with_repository("other/x").unwrap().to_string(),
            "127.0.0.1:5000/other/x:latest"
        );
    }

    #[test]
    fn invalid_references_are_refused_with_the_part_that_is_wrong() {
        for bad in [
            "",
            "UPPER/app",
            "app:",
            "app:-tag",
            "app:tag with space",
            "a//b",
            "a/b/",
            "/a",
            "a..b",
            "a___b",
            "-a",
            "a-",
            "app@sha256:short",
            "app@md5:abc",
            "reg.example:notaport/app",
            "reg.example:99999/app",
            "bad_host.example/app",
            "[::1/app",
            "app\u{0}",
            "ümlaut",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let long = format!("a:{}", "t".repeat(129));
        assert!(matches!(
            Reference::parse(&long),
            Err(ReferenceError::Tag { .. })
        ));
        let long = format!("reg.example/{}", "a".repeat(256));
        assert!(matches!(
            Reference::parse(&long),
            Err(ReferenceError::Repository { .. })
        ));
        assert!(matches!(
            Reference::parse("Reg.example/App"),
            Err(ReferenceError::Repository { .. })
        ));
    }

    #[test]
    fn separators_follow_the_oci_grammar() {
        for good in ["a.b", "a_b", "a__b", "a-b", "a---b", "a-b.c_d", "0/1"] {
            assert!(Reference::parse(good).is_ok(), "{good}");
        }
        for bad in ["a.-b", "a_.b", "a.._b", "a-_b"] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn serde_round_trips_through_the_canonical_text() {
        let r: Reference = serde_json::from_str("\"httpd\"").unwrap();
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            "\"docker.io/library/httpd:latest\""
        );
        assert!(serde_json::from_str::<Reference>("\"BAD\"").is_err());
    }
}
