//! Certificates from an ACME CA (RFC 8555) for an environment's https
//! listener (formats.md §4, `acme`).
//!
//! What a listener with `acme` gets, in order:
//!
//! - At apply, the certificate kept in the parameter store (`STORE/cert`, a
//!   String, and `STORE/key`, a SecureString) if it is whole (key matches,
//!   not expired); otherwise, until the first one is issued, a self-signed
//!   placeholder for its domains (a client sees an untrusted certificate,
//!   never a refused handshake). Certificates given in `certificates` come
//!   first and stay the SNI default.
//! - A renewal task per listener, started by apply (and stopped by the next
//!   apply, which starts its own): it orders a certificate when none is
//!   kept, when the kept one does not cover every domain, and
//!   `renew_before` it expires. Each order proves every domain with an
//!   HTTP-01 challenge: the key authorization is served at
//!   `/.well-known/acme-challenge/TOKEN` by the environment's http
//!   listeners (a rule ahead of their redirect), and withdrawn afterwards.
//!   The account key (`STORE/account`, SecureString) is made once and
//!   reused. The new chain and key are written as new parameter versions,
//!   then swapped into the listener at once: open connections keep theirs,
//!   so a renewal fails no request.
//! - A failed order (the CA is down, refuses, or cannot reach the
//!   challenge) changes nothing the listener serves; it is logged and
//!   tried again after 10 s, doubling to an hour.
//!
//! The private key and the account key never reach a log or an error.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use gantry_api::environment::{AcmeStatus, ListenerCertificate};
use gantry_params::{ParamName, ParamStore, ParamType, PutParameter, Selector};
use gantry_proxy::{Action, Certificate, Conditions, FixedResponse, Rule};
use gantry_spec::environment as spec;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};

use crate::deployer::EnvState;

/// Who the parameter versions an issuance writes are recorded as made by.
const MODIFIED_BY: &str = "gantry acme";

/// The longest one order may take, challenges and download included.
const ORDER_TIMEOUT: Duration = Duration::from_secs(300);

/// The first wait after a failed order; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The shortest time between two issuances: a `renew_before` longer than
/// the CA's certificates are valid would otherwise order without end.
const MIN_RENEWAL_INTERVAL: Duration = Duration::from_secs(3600);

/// The path HTTP-01 challenges are asked at (RFC 8555 §8.3).
const CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

/// Where a listener's account and certificate are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Paths {
    pub(crate) account: String,
    pub(crate) cert: String,
    pub(crate) key: String,
}

impl Paths {
    pub(crate) fn of(environment: &str, listener: &spec::Listener, acme: &spec::Acme) -> Self {
        let store = acme
            .store
            .clone()
            .unwrap_or_else(|| format!("/gantry/acme/{environment}/{}", listener.name));
        let store = store.trim_end_matches('/');
        Self {
            account: format!("{store}/account"),
            cert: format!("{store}/cert"),
            key: format!("{store}/key"),
        }
    }
}

/// An issued certificate as the parameter store keeps it.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub(crate) certificate: Certificate,
    pub(crate) pin: ListenerCertificate,
    /// Seconds since the Unix epoch.
    pub(crate) not_after: u64,
    /// Whether it is valid for every domain of the listener's `acme`.
    pub(crate) covers: bool,
}

/// The certificate kept for a listener, if a whole one is: both
/// parameters exist, the key is a SecureString that matches the chain,
/// and the chain is within its validity window.
pub(crate) async fn stored(
    params: &ParamStore,
    paths: &Paths,
    acme: &spec::Acme,
) -> Result<Option<Issued>, String> {
    let (Some(cert), Some(key)) = (
        read(params, &paths.cert).await?,
        read(params, &paths.key).await?,
    ) else {
        return Ok(None);
    };
    if !key.param_type.is_secure() {
        return Err(format!(
            "the ACME key parameter {} must be a SecureString",
            paths.key
        ));
    }
    let (Some(chain), Some(key_pem)) = (cert.value.expose(), key.value.expose()) else {
        return Ok(None);
    };
    let certificate = Certificate::new(
        format!("{}:{}", paths.cert, cert.version),
        chain.to_owned(),
        key_pem.to_owned(),
    );
    if gantry_proxy::check_certificates(std::slice::from_ref(&certificate)).is_err() {
        // A pair torn by an interrupted renewal, or expired: issue anew.
        return Ok(None);
    }
    let Some((_, not_after)) = gantry_proxy::certificate_validity(chain) else {
        return Ok(None);
    };
    Ok(Some(Issued {
        covers: acme
            .domains
            .iter()
            .all(|domain| gantry_proxy::certificate_covers(chain, domain)),
        certificate,
        pin: ListenerCertificate {
            cert: paths.cert.clone(),
            cert_version: cert.version,
            key: paths.key.clone(),
            key_version: key.version,
        },
        not_after,
    }))
}

/// The latest version of a parameter, decrypted; `None` when it does not
/// exist.
async fn read(params: &ParamStore, name: &str) -> Result<Option<gantry_params::Parameter>, String> {
    let name = ParamName::parse(name).map_err(|e| format!("parameter {name}: {e}"))?;
    match params.get(&Selector::latest(name.clone()), true).await {
        Ok(param) => Ok(Some(param)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(format!("parameter {name}: {e}")),
    }
}

/// A self-signed certificate for `domains`, served until the first one is
/// issued so the listener can start.
pub(crate) fn placeholder(domains: &[String]) -> Result<Certificate, String> {
    let made = rcgen::generate_simple_self_signed(domains.to_vec())
        .map_err(|e| format!("cannot make a placeholder certificate: {e}"))?;
    Ok(Certificate::new(
        "ACME placeholder (self-signed, until the first certificate is issued)",
        made.cert.pem(),
        made.signing_key.serialize_pem(),
    ))
}

/// When the next order is due, in seconds since the Unix epoch: now for no
/// certificate or one that misses a domain, else `renew_before` its end.
pub(crate) fn renewal_due(issued: Option<&Issued>, acme: &spec::Acme) -> u64 {
    match issued {
        Some(issued) if issued.covers => {
            issued.not_after.saturating_sub(acme.renew_before.as_secs())
        }
        _ => 0,
    }
}

/// Whether the CA's directory answers as an ACME directory, within 10 s:
/// asked at apply when an order is due, so a CA that is down or a wrong
/// URL is an error there rather than a retry loop in the log.
pub(crate) async fn check_directory(directory: &str, ca_pem: Option<&str>) -> Result<(), String> {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = ca_pem {
        let root = reqwest::Certificate::from_pem(pem.as_bytes())
            .map_err(|e| format!("directory_ca is no PEM certificate: {e}"))?;
        builder = builder.tls_certs_merge([root]);
    }
    let client = builder.build().map_err(|e| e.to_string())?;
    let unreachable =
        |reason: String| format!("the ACME directory {directory} cannot be read: {reason}");
    let response = client
        .get(directory)
        .send()
        .await
        .map_err(|e| unreachable(error_chain(&e)))?;
    if !response.status().is_success() {
        return Err(unreachable(format!("it answered {}", response.status())));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let json: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|_| unreachable("its answer is not JSON".to_owned()))?;
    if json.get("newOrder").and_then(|v| v.as_str()).is_none() {
        return Err(unreachable("its answer has no newOrder URL".to_owned()));
    }
    Ok(())
}

/// An error with its causes, which say what failed (refused, certificate).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// HTTP-01 key authorizations to serve, by token.
pub(crate) type Challenges = std::sync::Mutex<BTreeMap<String, String>>;

/// The rules that answer the pending challenges, ahead of anything else
/// on an http listener.
pub(crate) fn challenge_rules(challenges: &Challenges) -> Vec<Rule> {
    let challenges = challenges
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    challenges
        .iter()
        .zip(1..)
        .map(|((token, key_authorization), priority)| Rule {
            priority,
            conditions: Conditions {
                path: vec![format!("{CHALLENGE_PATH}{token}")],
                method: vec!["GET".to_owned(), "HEAD".to_owned()],
                ..Conditions::default()
            },
            action: Action::FixedResponse(FixedResponse {
                status: 200,
                content_type: Some("text/plain".to_owned()),
                body: key_authorization.clone(),
            }),
        })
        .collect()
}

/// What a renewal task works on.
pub(crate) struct Renewal {
    pub(crate) params: Arc<ParamStore>,
    pub(crate) environment: Weak<EnvState>,
    pub(crate) listener: String,
    pub(crate) acme: spec::Acme,
    pub(crate) paths: Paths,
    /// The listener's `certificates`, served before the ACME one.
    pub(crate) explicit: Vec<Certificate>,
    pub(crate) issued: Option<Issued>,
    /// The PEM of `directory_ca`, read at apply.
    pub(crate) ca_pem: Option<String>,
}

/// A running renewal task, stopped when dropped.
pub(crate) struct RenewalTask(tokio::task::JoinHandle<()>);

impl Drop for RenewalTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Renewal {
    pub(crate) fn spawn(self) -> RenewalTask {
        if let Some(environment) = self.environment.upgrade() {
            let issued = self.issued.as_ref().filter(|i| i.covers);
            self.report(
                &environment,
                if issued.is_some() {
                    "issued"
                } else {
                    "ordering"
                },
                None,
            );
        }
        RenewalTask(tokio::spawn(self.run()))
    }

    /// Sets what the environment's status says of this listener's ACME
    /// certificate.
    fn report(&self, environment: &EnvState, state: &str, error: Option<String>) {
        let issued = self.issued.as_ref().filter(|i| i.covers);
        let ms = |secs: u64| i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000);
        *environment
            .acme_status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(AcmeStatus {
            domains: self.acme.domains.clone(),
            directory: self.acme.directory.clone(),
            state: state.to_owned(),
            not_after: issued.map(|i| ms(i.not_after)),
            renews_at: issued.map(|_| ms(renewal_due(self.issued.as_ref(), &self.acme))),
            error,
        });
    }

    async fn run(mut self) {
        let mut backoff = FIRST_BACKOFF;
        let mut last_issued: Option<tokio::time::Instant> = None;
        loop {
            let mut due = renewal_due(self.issued.as_ref(), &self.acme);
            if let Some(at) = last_issued {
                // Never twice within the minimum interval.
                let earliest =
                    now_secs() + (MIN_RENEWAL_INTERVAL.saturating_sub(at.elapsed())).as_secs();
                due = due.max(earliest);
            }
            let wait = due.saturating_sub(now_secs());
            if wait > 0 {
                // In slices, so a suspended machine or a moved clock is
                // noticed within hours.
                tokio::time::sleep(Duration::from_secs(wait.min(6 * 3600))).await;
                continue;
            }
            let Some(environment) = self.environment.upgrade() else {
                return;
            };
            self.report(&environment, "ordering", None);
            let result = tokio::time::timeout(ORDER_TIMEOUT, self.order(&environment)).await;
            clear_challenges(&environment).await;
            let outcome = match result {
                Ok(outcome) => outcome,
                Err(_) => Err(format!(
                    "the order took longer than {} s",
                    ORDER_TIMEOUT.as_secs()
                )),
            };
            match outcome.and_then(|issued| self.install(&environment, issued)) {
                Ok(()) => {
                    backoff = FIRST_BACKOFF;
                    last_issued = Some(tokio::time::Instant::now());
                    self.report(&environment, "issued", None);
                }
                Err(reason) => {
                    self.report(&environment, "failed", Some(reason.clone()));
                    tracing::warn!(
                        environment = %environment.name,
                        listener = %self.listener,
                        directory = %self.acme.directory,
                        "ACME certificate not issued, retrying in {} s: {reason}",
                        backoff.as_secs()
                    );
                    drop(environment);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Serves `issued` (after the explicit certificates) and pins it.
    fn install(&mut self, environment: &EnvState, issued: Issued) -> Result<(), String> {
        let mut served = self.explicit.clone();
        served.push(issued.certificate.clone());
        environment
            .lb
            .set_certificates(&served)
            .map_err(|e| e.to_string())?;
        {
            let mut pins = environment
                .certificates
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            pins.retain(|pin| pin.cert != issued.pin.cert);
            pins.push(issued.pin.clone());
        }
        tracing::info!(
            environment = %environment.name,
            listener = %self.listener,
            not_after = issued.not_after,
            "ACME certificate {} version {} (key version {}) serves {}",
            issued.pin.cert,
            issued.pin.cert_version,
            issued.pin.key_version,
            self.acme.domains.join(", "),
        );
        self.issued = Some(issued);
        Ok(())
    }

    /// One order: account, challenges, finalization, download, store.
    async fn order(&self, environment: &EnvState) -> Result<Issued, String> {
        let account = self.account().await?;
        let identifiers: Vec<Identifier> = self
            .acme
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(|e| format!("new order: {}", problem(&e)))?;
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization =
                authorization.map_err(|e| format!("authorization: {}", problem(&e)))?;
            match authorization.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => return Err(format!("an authorization is {other:?}")),
            }
            let identifier = authorization.identifier().to_string();
            let mut challenge = authorization
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| format!("the CA offers no http-01 challenge for {identifier}"))?;
            // RFC 8555 §8.3: a token is base64url. Anything else would be
            // read as a path pattern (`*`, `?`) by the challenge rule.
            let token_ok = (1..=256).contains(&challenge.token.len())
                && challenge
                    .token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !token_ok {
                return Err(format!(
                    "the CA's http-01 token for {identifier} is not base64url"
                ));
            }
            let key_authorization = challenge.key_authorization().as_str().to_owned();
            environment
                .acme_challenges
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(challenge.token.clone(), key_authorization);
            refresh_challenge_routes(environment).await;
            challenge
                .set_ready()
                .await
                .map_err(|e| format!("challenge for {identifier}: {}", problem(&e)))?;
        }
        let retries = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .timeout(Duration::from_secs(120));
        let status = order
            .poll_ready(&retries)
            .await
            .map_err(|e| format!("waiting for validation: {}", problem(&e)))?;
        if status != OrderStatus::Ready {
            return Err(format!(
                "the order is {status:?}: the CA could not validate {} over HTTP-01 (it asks http://DOMAIN{CHALLENGE_PATH}… on port 80 of each domain's address, which an http listener must answer)",
                self.acme.domains.join(", ")
            ));
        }
        let key_pem = order
            .finalize()
            .await
            .map_err(|e| format!("finalize: {}", problem(&e)))?;
        let chain = order
            .poll_certificate(&retries)
            .await
            .map_err(|e| format!("download: {}", problem(&e)))?;
        let certificate = Certificate::new(self.paths.cert.clone(), chain.clone(), key_pem.clone());
        gantry_proxy::check_certificates(std::slice::from_ref(&certificate))
            .map_err(|e| format!("the issued certificate: {e}"))?;
        let key_version = put(
            &self.params,
            &self.paths.key,
            &key_pem,
            ParamType::SecureString,
        )
        .await?;
        let cert_version = put(&self.params, &self.paths.cert, &chain, ParamType::String).await?;
        let (_, not_after) = gantry_proxy::certificate_validity(&chain)
            .ok_or_else(|| "the issued certificate has no readable validity".to_owned())?;
        Ok(Issued {
            certificate: Certificate::new(
                format!("{}:{cert_version}", self.paths.cert),
                chain,
                key_pem,
            ),
            pin: ListenerCertificate {
                cert: self.paths.cert.clone(),
                cert_version,
                key: self.paths.key.clone(),
                key_version,
            },
            not_after,
            covers: true,
        })
    }

    /// The account kept for this directory, or a new one (then kept).
    async fn account(&self) -> Result<Account, String> {
        let builder = || -> Result<instant_acme::AccountBuilder, String> {
            match &self.ca_file()? {
                Some(file) => Account::builder_with_root(file.path()),
                None => Account::builder(),
            }
            .map_err(|e| format!("ACME client: {e}"))
        };
        if let Some(kept) = read(&self.params, &self.paths.account).await? {
            let kept: Option<KeptAccount> = kept
                .value
                .expose()
                .and_then(|text| serde_json::from_str(text).ok());
            if let Some(kept) = kept.filter(|k| k.directory == self.acme.directory) {
                return builder()?
                    .from_credentials(kept.credentials)
                    .await
                    .map_err(|e| format!("account: {}", problem(&e)));
            }
        }
        let contact: Vec<&str> = self.acme.contact.iter().map(String::as_str).collect();
        let (account, credentials) = builder()?
            .create(
                &NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.acme.directory.clone(),
                None,
            )
            .await
            .map_err(|e| format!("new account at {}: {}", self.acme.directory, problem(&e)))?;
        let kept = serde_json::to_string(&KeptAccount {
            directory: self.acme.directory.clone(),
            credentials,
        })
        .map_err(|e| format!("account: {e}"))?;
        put(
            &self.params,
            &self.paths.account,
            &kept,
            ParamType::SecureString,
        )
        .await?;
        Ok(account)
    }

    /// The directory's root certificate in a file, for the ACME client.
    fn ca_file(&self) -> Result<Option<tempfile::NamedTempFile>, String> {
        let Some(pem) = &self.ca_pem else {
            return Ok(None);
        };
        let mut file = tempfile::NamedTempFile::new().map_err(|e| format!("directory_ca: {e}"))?;
        std::io::Write::write_all(&mut file, pem.as_bytes())
            .map_err(|e| format!("directory_ca: {e}"))?;
        Ok(Some(file))
    }
}

/// An account as kept in `STORE/account`: for which directory, and the
/// client's credentials (its key).
#[derive(serde::Serialize, serde::Deserialize)]
struct KeptAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// Writes a new version of a parameter; its version number.
async fn put(
    params: &ParamStore,
    name: &str,
    value: &str,
    param_type: ParamType,
) -> Result<u64, String> {
    let parsed = ParamName::parse(name).map_err(|e| format!("parameter {name}: {e}"))?;
    params
        .put(PutParameter::new(&parsed, value, param_type, MODIFIED_BY).overwrite(true))
        .await
        .map_err(|e| format!("parameter {name}: {e}"))
}

/// An ACME error as a person reads it: the CA's problem detail when it
/// sent one.
fn problem(error: &instant_acme::Error) -> String {
    match error {
        instant_acme::Error::Api(problem) => match (&problem.r#type, &problem.detail) {
            (Some(kind), Some(detail)) => format!("{detail} ({kind})"),
            (None, Some(detail)) => detail.clone(),
            (Some(kind), None) => kind.clone(),
            (None, None) => "the CA refused without a reason".to_owned(),
        },
        other => other.to_string(),
    }
}

/// Sets the environment's http listeners' routing: the pending challenges,
/// then their redirect.
pub(crate) async fn refresh_challenge_routes(environment: &EnvState) {
    let rules = challenge_rules(&environment.acme_challenges);
    let redirects = environment.redirects.lock().await;
    for (_, lb) in redirects.iter() {
        let port = environment.lb.local_addr().port();
        lb.set_routing(rules.clone(), Some(crate::apply::redirect_to_https(port)));
    }
}

async fn clear_challenges(environment: &EnvState) {
    environment
        .acme_challenges
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();
    refresh_challenge_routes(environment).await;
}

fn now_secs() -> u64 {
    u64::try_from(gantry_clock::now_ms() / 1000).unwrap_or(0)
}
