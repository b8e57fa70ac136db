//! Auth: answering a registry's `401` with a bearer token or Basic credentials,
//! and never handing either to anyone but the registry itself.
//!
//! - **The Docker token flow.** A `401` with `WWW-Authenticate: Bearer
//!   realm=…,service=…,scope=…` sends the client to the realm for a token (with
//!   the registry's Basic credentials, when it has some), asking for the scopes
//!   the registry challenged for and those the call needs. Tokens are cached per
//!   registry and scope.
//! - **Basic.** A `Basic` challenge is answered with the registry's
//!   credentials, and the registry is remembered as one that wants them.
//! - **Credentials go only to the registry.** The registry names the realm, so
//!   it could name any host: credentials go to a realm only over HTTPS (where the
//!   host is who its certificate says) or on the registry's own host and port
//!   (which has them anyway); otherwise the token is asked for anonymously.
//!   Tokens and credentials are only ever added to requests to the registry's own
//!   origin, so a redirect to another origin (a storage host) carries neither.
//!
//! A challenge is answered once per request: a second `401` is the answer.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use reqwest::header::WWW_AUTHENTICATE;
use reqwest::{RequestBuilder, Response, Url};

use super::answer::{error_body, header_str, read_capped};
use super::{Call, RegistryClient, RegistryError};

/// The largest token response read from an auth realm.
const MAX_TOKEN_BODY: u64 = 1024 * 1024;

/// A username and password for one registry.
#[derive(Clone)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or access token.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password must never reach a log line through a `{:?}`.
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What a client knows to authenticate with, shared by all its clones.
pub(super) struct AuthState {
    /// Credentials per registry: those of the options, and any given later by
    /// [`RegistryClient::set_credentials`].
    credentials: RwLock<HashMap<String, Credentials>>,
    /// Bearer tokens by (registry, scope), and registries that asked for Basic.
    cache: Mutex<AuthCache>,
}

#[derive(Default)]
struct AuthCache {
    tokens: HashMap<(String, String), String>,
    basic: Vec<String>,
}

impl AuthState {
    pub(super) fn new(credentials: HashMap<String, Credentials>) -> AuthState {
        AuthState {
            credentials: RwLock::new(credentials),
            cache: Mutex::new(AuthCache::default()),
        }
    }

    fn credentials(&self, registry: &str) -> Option<Credentials> {
        self.credentials
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(registry)
            .cloned()
    }

    fn cache(&self) -> MutexGuard<'_, AuthCache> {
        // A panic while holding the cache cannot leave it inconsistent (single inserts).
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A `WWW-Authenticate: Bearer …` challenge.
#[derive(Debug, Default, PartialEq)]
struct BearerChallenge {
    realm: String,
    service: Option<String>,
    scope: Option<String>,
}

impl RegistryClient {
    /// Sets the credentials for `registry` (as references spell it, e.g.
    /// `127.0.0.1:5000`), replacing any it had, for this client and every clone
    /// of it. Tokens obtained with earlier credentials are forgotten.
    pub fn set_credentials(&self, registry: &str, credentials: Credentials) {
        let auth = &self.inner.auth;
        auth.credentials
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(registry.to_owned(), credentials);
        auth.cache().tokens.retain(|(r, _), _| r != registry);
    }

    /// Answers the challenge of a `401`: fetches and caches a bearer token, or
    /// notes that the registry wants Basic credentials. `true` when the request
    /// should be sent again; `false` when there is nothing to answer with.
    pub(super) async fn answer_challenge(
        &self,
        call: &Call<'_>,
        response: &Response,
    ) -> Result<bool, RegistryError> {
        let auth = &self.inner.auth;
        let registry = call.image.registry();
        let header = header_str(response.headers(), WWW_AUTHENTICATE.as_str()).unwrap_or_default();
        if let Some(challenge) = parse_bearer_challenge(header) {
            let token = self.fetch_token(call, &challenge).await?;
            let key = (registry.to_owned(), call.scope.clone());
            auth.cache().tokens.insert(key, token);
            Ok(true)
        } else if header
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("basic")
            && auth.credentials(registry).is_some()
        {
            auth.cache().basic.push(registry.to_owned());
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Adds the cached token, or basic credentials, when the request goes to the
    /// registry itself (never to a redirect or storage host).
    pub(super) fn authorize(
        &self,
        call: &Call<'_>,
        request: RequestBuilder,
    ) -> Result<RequestBuilder, RegistryError> {
        let registry = call.image.registry();
        let (client, built) = request.build_split();
        let built = built.map_err(|source| call.unreachable(0, source))?;
        let same_origin = self
            .base_url(registry)
            .is_ok_and(|base| base.origin() == built.url().origin());
        let request = RequestBuilder::from_parts(client, built);
        if !same_origin {
            return Ok(request);
        }
        let auth = &self.inner.auth;
        let cache = auth.cache();
        if let Some(token) = cache.tokens.get(&(registry.to_owned(), call.scope.clone())) {
            return Ok(request.bearer_auth(token));
        }
        if cache.basic.iter().any(|r| r == registry)
            && let Some(credentials) = auth.credentials(registry)
        {
            return Ok(request.basic_auth(&credentials.username, Some(&credentials.password)));
        }
        Ok(request)
    }

    /// Whether a registry's credentials may be sent to the token realm `realm`:
    /// only over HTTPS, where the realm's host is who its certificate says, or to
    /// the registry's own host and port, which has them anyway. A plain-HTTP realm
    /// elsewhere could be anyone on the path, or a host the registry was tricked
    /// into naming.
    fn may_send_credentials(&self, registry: &str, realm: &Url) -> bool {
        if realm.scheme() == "https" {
            return true;
        }
        self.base_url(registry).is_ok_and(|base| {
            base.host_str() == realm.host_str()
                && base.port_or_known_default() == realm.port_or_known_default()
        })
    }

    /// The Docker token flow: GET the realm with service and scopes (and basic
    /// credentials when configured); the answer carries `token` or `access_token`.
    async fn fetch_token(
        &self,
        call: &Call<'_>,
        challenge: &BearerChallenge,
    ) -> Result<String, RegistryError> {
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let mut url = Url::parse(&challenge.realm)
            .map_err(|e| call.auth_error(format!("bad realm {:?}: {e}", challenge.realm)))?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = &challenge.service {
                query.append_pair("service", service);
            }
            // Ask for what the registry challenged for and what this call needs, so
            // that one token serves e.g. both sides of a cross-repository mount.
            let mut scopes: Vec<&str> = challenge
                .scope
                .as_deref()
                .unwrap_or_default()
                .split(' ')
                .collect();
            scopes.extend(call.scope.split(' '));
            scopes.retain(|s| !s.is_empty());
            scopes.sort_unstable();
            scopes.dedup();
            for scope in scopes {
                query.append_pair("scope", scope);
            }
        }
        let registry = call.image.registry();
        let configured = self.inner.auth.credentials(registry);
        let credentials = configured
            .clone()
            .filter(|_| self.may_send_credentials(registry, &url));
        if credentials.is_none() && configured.is_some() {
            tracing::warn!(image = %call.image, realm = %challenge.realm, "the registry's token realm is plain HTTP on another host: asking it for a token without credentials");
        }
        let token_call = Call {
            image: call.image,
            what: format!("token from {}", challenge.realm),
            scope: String::new(),
        };
        let response = self
            .send_retrying(&token_call, true, &mut || {
                let request = self.http().get(url.clone());
                Ok(match &credentials {
                    Some(c) => request.basic_auth(&c.username, Some(&c.password)),
                    None => request,
                })
            })
            .await?;
        if !response.status().is_success() {
            let status = response.status();
            let body = error_body(response).await;
            return Err(call.auth_error(format!("{} answered {status}: {body}", challenge.realm)));
        }
        let bytes = read_capped(&token_call, response, MAX_TOKEN_BODY).await?;
        let answer: TokenAnswer = serde_json::from_slice(&bytes)
            .map_err(|e| call.auth_error(format!("token answer: {e}")))?;
        answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| call.auth_error("token answer holds no token".to_owned()))
    }
}

/// Parses `Bearer realm="…",service="…",scope="…"`; `None` for other schemes.
fn parse_bearer_challenge(header: &str) -> Option<BearerChallenge> {
    let header = header.trim();
    let scheme_end = header.find(char::is_whitespace)?;
    if !header[..scheme_end].eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut challenge = BearerChallenge::default();
    let mut rest = header[scheme_end..].trim_start();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remainder) = if let Some(quoted) = after.strip_prefix('"') {
            // Quoted values may hold commas (scopes do); a backslash escapes the next char.
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, next)) = chars.next() {
                            value.push(next);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end?..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        match key.as_str() {
            "realm" => challenge.realm = value,
            "service" => challenge.service = Some(value),
            "scope" => challenge.scope = Some(value),
            _ => {}
        }
        rest = remainder.trim_start().trim_start_matches(',').trim_start();
    }
    (!challenge.realm.is_empty()).then_some(challenge)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClientOptions;

    #[test]
    fn bearer_challenges_parse_with_quoted_commas() {
        let challenge = parse_bearer_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/httpd:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            challenge,
            BearerChallenge {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/httpd:pull,push".into()),
            }
        );
        assert_eq!(parse_bearer_challenge(r#"Basic realm="x""#), None);
        assert_eq!(parse_bearer_challenge("Bearer"), None);
        assert_eq!(
            parse_bearer_challenge(r#"Bearer realm="unterminated"#),
            None
        );
        assert_eq!(parse_bearer_challenge("Bearer service=x"), None);
        let unquoted = parse_bearer_challenge("bearer realm=http://a/t, service=s").unwrap();
        assert_eq!(unquoted.realm, "http://a/t");
        assert_eq!(unquoted.service.as_deref(), Some("s"));
    }

    #[test]
    fn credentials_go_to_https_realms_and_to_the_registry_itself() {
        let client = RegistryClient::new(ClientOptions::default()).unwrap();
        let may = |registry: &str, realm: &str| {
            client.may_send_credentials(registry, &Url::parse(realm).unwrap())
        };
        assert!(may("docker.io", "https://auth.docker.io/token"));
        assert!(may("127.0.0.1:5000", "https://auth.example/token"));
        assert!(may("127.0.0.1:5000", "http://127.0.0.1:5000/v2/token"));
        assert!(!may("127.0.0.1:5000", "http://127.0.0.1:5001/token"));
        assert!(!may("127.0.0.1:5000", "http://evil.example:5000/token"));
        assert!(!may("127.0.0.1", "http://127.0.0.1:8080/token"));
        assert!(may("127.0.0.1", "http://127.0.0.1/token"));
        // An HTTPS registry's realm on its own host but over plain HTTP is
        // another origin an attacker on the path could answer.
        assert!(!may("ghcr.io", "http://ghcr.io/token"));
    }
}
