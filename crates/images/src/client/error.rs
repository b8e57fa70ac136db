//! Registry errors: every failure names the image (or registry) it is about and
//! what was being done, and keeps the registry's own words.
//!
//! A [`Call`] knows both, so errors are made from it (`call.protocol(…)`), never
//! by spelling out the image and the action at each place that fails. Whether an
//! error is worth trying again is decided in `retry`, with the retry policy.

use super::Call;

/// A registry call that failed, naming the image (or registry) it was about.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered with an error status; `body` is its error JSON.
    #[error("{what} for {image}: registry answered {status}: {body}")]
    Status {
        /// The image (or registry) the call was about.
        image: String,
        /// What was being done.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The registry's answer, verbatim (cut at 4 KiB).
        body: String,
    },
    /// The manifest (tag or digest) does not exist.
    #[error("image {image} not found: the registry has no such manifest")]
    ManifestNotFound {
        /// The image asked for.
        image: String,
    },
    /// The registry could not be reached, even after retries.
    #[error("{what} for {image}: registry unreachable after {attempts} tries: {source}")]
    Unreachable {
        /// The image (or registry) the call was about.
        image: String,
        /// What was being done.
        what: String,
        /// How many tries were made.
        attempts: u32,
        /// The last transport error.
        source: reqwest::Error,
    },
    /// Content did not hash to the digest it was fetched or stored under.
    #[error("{what} for {image}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The image the content belongs to.
        image: String,
        /// What was being done.
        what: String,
        /// The digest asked for.
        expected: String,
        /// The digest found.
        actual: String,
    },
    /// The registry broke the protocol (missing header, oversized manifest, …).
    #[error("{what} for {image}: {reason}")]
    Protocol {
        /// The image the call was about.
        image: String,
        /// What was being done.
        what: String,
        /// What was wrong.
        reason: String,
    },
    /// Getting a token from the registry's auth realm failed.
    #[error("authentication for {image} failed: {reason}")]
    Auth {
        /// The image the call was about.
        image: String,
        /// What was wrong.
        reason: String,
    },
    /// Reading or writing local data failed.
    #[error("{what} for {image}: {source}")]
    Io {
        /// The image the data belongs to.
        image: String,
        /// What was being done.
        what: String,
        /// The IO error.
        source: std::io::Error,
    },
}

impl RegistryError {
    /// A stable code for APIs and tests.
    pub fn code(&self) -> &'static str {
        match self {
            RegistryError::Status { .. } => "registry_status",
            RegistryError::ManifestNotFound { .. } => "manifest_not_found",
            RegistryError::Unreachable { .. } => "registry_unreachable",
            RegistryError::DigestMismatch { .. } => "digest_mismatch",
            RegistryError::Protocol { .. } => "registry_protocol",
            RegistryError::Auth { .. } => "registry_auth",
            RegistryError::Io { .. } => "io",
        }
    }
}

impl Call<'_> {
    pub(super) fn protocol(&self, reason: String) -> RegistryError {
        RegistryError::Protocol {
            image: self.image.to_string(),
            what: self.what.clone(),
            reason,
        }
    }

    pub(super) fn unreachable(&self, attempts: u32, source: reqwest::Error) -> RegistryError {
        RegistryError::Unreachable {
            image: self.image.to_string(),
            what: self.what.clone(),
            attempts,
            source,
        }
    }

    pub(super) fn io_error(&self, source: std::io::Error) -> RegistryError {
        RegistryError::Io {
            image: self.image.to_string(),
            what: self.what.clone(),
            source,
        }
    }

    pub(super) fn auth_error(&self, reason: String) -> RegistryError {
        RegistryError::Auth {
            image: self.image.to_string(),
            reason,
        }
    }

    pub(super) fn digest_mismatch(&self, expected: String, actual: String) -> RegistryError {
        RegistryError::DigestMismatch {
            image: self.image.to_string(),
            what: self.what.clone(),
            expected,
            actual,
        }
    }
}
