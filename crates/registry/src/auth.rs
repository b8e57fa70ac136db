//! Who may use the registry: the hook the server implements
//! ([`RegistryAuth`]), the credentials a request carries, and the short-lived
//! registry tokens of Docker's token flow.
//!
//! The registry knows no users. Every request hands the secret it carries (a
//! gantry API token, as `Bearer` or as a `Basic` password) to
//! [`RegistryAuth::authorize`] together with what the request wants to do.
//! Docker and skopeo speak the token flow: they meet a `401` with a
//! `WWW-Authenticate: Bearer realm=…/v2/token` challenge, trade their Basic
//! credentials at `/v2/token` for a registry token, and send that as
//! `Bearer`. A registry token is only a handle on the caller's original
//! secret, kept in memory for [`TOKEN_LIFETIME`]: each request that carries
//! it is authorized with the original secret again, so revoking the gantry
//! token takes effect at once.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::{HeaderMap, header};
use tokio::time::Instant;

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryAccess<'a> {
    /// `GET /v2/` (the API check every client starts with) and the token
    /// endpoint.
    Base,
    /// `GET /v2/_catalog`.
    Catalog,
    /// Reading blobs, manifests and tags of a repository.
    Pull { repository: &'a str },
    /// Uploading blobs and putting manifests into a repository.
    Push { repository: &'a str },
    /// Deleting blobs, manifests or tags of a repository.
    Delete { repository: &'a str },
}

/// Why [`RegistryAuth::authorize`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthDenied {
    /// The secret is unknown, expired or revoked: answered `401`.
    Unauthenticated,
    /// The secret is valid but may not do this: answered `403`.
    Forbidden,
}

impl AuthDenied {
    /// The outcome written into audit records.
    pub fn code(self) -> &'static str {
        match self {
            AuthDenied::Unauthenticated => "auth.unauthenticated",
            AuthDenied::Forbidden => "auth.forbidden",
        }
    }
}

/// A boxed future, as [`RegistryAuth::authorize`] returns it.
pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = Result<String, AuthDenied>> + Send + 'a>>;

/// Decides who a secret (a gantry API token, given as Bearer or as a Basic
/// password) is and whether it may do `access`. The registry ships no
/// implementation: the server provides one backed by its identities.
pub trait RegistryAuth: Send + Sync + 'static {
    /// Returns the principal's display name, used in audit records.
    fn authorize<'a>(&'a self, secret: &'a str, access: RegistryAccess<'a>) -> AuthFuture<'a>;

    /// Records a mutation (a manifest pushed, a blob upload finished or
    /// mounted, a delete) or a refused attempt, for the audit log. Never
    /// carries a secret. Called on the request's task: it must not block.
    fn audit(&self, record: RegistryAuditRecord);
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryAuditRecord {
    /// Who, as [`RegistryAuth::authorize`] named them; `None` when the
    /// request was not authenticated.
    pub principal: Option<String>,
    /// What, e.g. `registry.push_manifest`, `registry.push_blob`,
    /// `registry.mount_blob`, `registry.delete_manifest`, `registry.pull`.
    pub action: String,
    /// On what: `repo:tag`, `repo@sha256:…`, `repo` (an upload session),
    /// `_catalog` or `/v2/`.
    pub target: String,
    /// The client's address, when the server put `ConnectInfo` into the
    /// request's extensions.
    pub remote: Option<SocketAddr>,
    /// `ok`, `auth.unauthenticated`, `auth.forbidden`, or `registry.` and
    /// the OCI error code in lower case (`registry.denied`, …).
    pub outcome: String,
}

/// How long a registry token issued by `/v2/token` stays valid.
pub(crate) const TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// Registry tokens start with this, so one that expired is recognised and
/// never handed to [`RegistryAuth::authorize`] as if it were a gantry secret.
const TOKEN_PREFIX: &str = "grt_";

/// More outstanding tokens than this are not issued: each is a copy of a
/// secret in memory, and a client that asks for one per request should not
/// grow the map without bound within five minutes.
const MAX_TOKENS: usize = 100_000;

/// The credentials a request carries.
#[derive(PartialEq, Eq)]
pub(crate) enum Presented {
    None,
    /// A secret, from a Bearer or a Basic password.
    Secret(String),
    /// An `Authorization` header that could not be read.
    Malformed,
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A secret must never reach a log line through a `{:?}`.
        f.write_str(match self {
            Presented::None => "None",
            Presented::Secret(_) => "Secret(<redacted>)",
            Presented::Malformed => "Malformed",
        })
    }
}

impl Presented {
    /// Reads `Authorization: Bearer X` or `Authorization: Basic
    /// base64(user:password)`; the user name is ignored.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Presented {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Presented::None;
        };
        let Ok(value) = value.to_str() else {
            return Presented::Malformed;
        };
        let value = value.trim();
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        let secret = if scheme.eq_ignore_ascii_case("bearer") {
            Some(rest.to_string())
        } else if scheme.eq_ignore_ascii_case("basic") {
            decode_base64(rest)
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .and_then(|pair| {
                    pair.split_once(':')
                        .map(|(_, password)| password.to_string())
                })
        } else {
            None
        };
        match secret {
            Some(secret) if !secret.is_empty() => Presented::Secret(secret),
            _ => Presented::Malformed,
        }
    }
}

/// Decodes standard base64, padded or not. Written here rather than adding
/// a dependency for the few bytes of a Basic header.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A single leftover character carries fewer than 8 bits: not base64.
    (bits < 6).then_some(out)
}

struct Issued {
    secret: String,
    expires: Instant,
}

/// Registry tokens issued by `/v2/token`, mapped to the secret they stand
/// for. In memory only: a restart makes clients fetch new ones, which they
/// do on the next `401`.
#[derive(Default)]
pub(crate) struct Tokens {
    issued: Mutex<HashMap<String, Issued>>,
}

/// A token just issued.
pub(crate) struct NewToken {
    pub(crate) token: String,
    pub(crate) expires_in: Duration,
}

impl Tokens {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Issued>> {
        self.issued
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Issues a fresh token for `secret`; `None` when too many are
    /// outstanding.
    pub(crate) fn issue(&self, secret: &str) -> Option<NewToken> {
        let mut random = [0u8; 32];
        if let Err(e) = getrandom::fill(&mut random) {
            tracing::error!(error = %e, "no randomness for a registry token");
            return None;
        }
        let token = format!("{TOKEN_PREFIX}{}", hex::encode(random));
        let now = Instant::now();
        let mut issued = self.lock();
        if issued.len() >= MAX_TOKENS {
            issued.retain(|_, t| t.expires > now);
            if issued.len() >= MAX_TOKENS {
                return None;
            }
        }
        issued.insert(
            token.clone(),
            Issued {
                secret: secret.to_string(),
                expires: now + TOKEN_LIFETIME,
            },
        );
        Some(NewToken {
            token,
            expires_in: TOKEN_LIFETIME,
        })
    }

    /// The secret a presented credential stands for: the original secret of
    /// a live registry token, the credential itself when it is not a
    /// registry token, `None` for an expired or unknown registry token.
    pub(crate) fn resolve(&self, presented: &str) -> Option<String> {
        if !presented.starts_with(TOKEN_PREFIX) {
            return Some(presented.to_string());
        }
        let mut issued = self.lock();
        match issued.get(presented) {
            Some(t) if t.expires > Instant::now() => Some(t.secret.clone()),
            Some(_) => {
                issued.remove(presented);
                None
            }
            None => None,
        }
    }

    /// Forgets expired tokens.
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        self.lock().retain(|_, t| t.expires > now);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn presented(value: &str) -> Presented {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        Presented::from_headers(&headers)
    }

    #[test]
    fn base64_decodes_padded_and_unpadded() {
        assert_eq!(decode_base64("dXNlcjpzZWNyZXQ=").unwrap(), b"user:secret");
        assert_eq!(decode_base64("dXNlcjpzZWNyZXQ").unwrap(), b"user:secret");
        assert_eq!(decode_base64("YQ==").unwrap(), b"a");
        assert_eq!(decode_base64("YWI=").unwrap(), b"ab");
        assert_eq!(decode_base64("").unwrap(), b"");
        assert_eq!(decode_base64("a"), None);
        assert_eq!(decode_base64("a$b="), None);
    }

    #[test]
    fn credentials_come_from_bearer_or_the_basic_password() {
        assert_eq!(presented("Bearer abc"), Presented::Secret("abc".into()));
        assert_eq!(presented("bearer  abc "), Presented::Secret("abc".into()));
        // "anyone:pa:ss" — the password may hold colons, the user may not.
        assert_eq!(
            presented("Basic YW55b25lOnBhOnNz"),
            Presented::Secret("pa:ss".into())
        );
        assert_eq!(presented("Basic !!"), Presented::Malformed);
        assert_eq!(presented("Bearer"), Presented::Malformed);
        assert_eq!(presented("Digest x"), Presented::Malformed);
        assert_eq!(Presented::from_headers(&HeaderMap::new()), Presented::None);
        assert_eq!(
            format!("{:?}", presented("Bearer abc")),
            "Secret(<redacted>)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_stand_for_their_secret_until_they_expire() {
        let tokens = Tokens::default();
        let t = tokens.issue("s3cret").unwrap();
        assert!(t.token.starts_with(TOKEN_PREFIX) && t.token.len() == 4 + 64);
        assert!(!t.token.contains("s3cret"));
        assert_eq!(tokens.resolve(&t.token).as_deref(), Some("s3cret"));
        assert_eq!(tokens.resolve("plain").as_deref(), Some("plain"));
        assert_eq!(tokens.resolve("grt_unknown"), None);
        tokio::time::advance(TOKEN_LIFETIME + Duration::from_secs(1)).await;
        let other = tokens.issue("other").unwrap();
        assert_eq!(tokens.len(), 2);
        tokens.sweep();
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens.resolve(&t.token), None);
        assert_eq!(tokens.resolve(&other.token).as_deref(), Some("other"));
    }
}
