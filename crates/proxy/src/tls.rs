//! HTTPS listeners: TLS termination with rustls.
//!
//! A listener's certificates are an ordered list; a client's SNI name picks
//! the first certificate valid for it, and the first certificate serves
//! clients without SNI or with a name none covers (ALB's default
//! certificate). Only TLS 1.2 and 1.3 with rustls' modern suites are
//! offered, and ALPN announces `h2` then `http/1.1`: a client that picks
//! `h2` is served HTTP/2, any other (or one without ALPN) HTTP/1.1.
//!
//! The certificates live behind an [`ArcSwap`] read by the resolver at each
//! handshake, so [`Certificates::replace`] rotates them without touching
//! open connections: a handshake in progress uses the set it started with,
//! the next one the new set. A set is checked whole before the swap (the
//! key matches the certificate, the certificate is within its validity
//! window), so a bad rotation leaves the old certificates serving.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::error::ProxyError;

/// A certificate chain and its private key, both PEM. The key is never
/// printed: `Debug` shows the chain's length only.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    /// What the certificate is called in errors (such as its parameter).
    pub name: String,
    pub chain_pem: String,
    key_pem: String,
}

impl Certificate {
    pub fn new(name: impl Into<String>, chain_pem: String, key_pem: String) -> Self {
        Self {
            name: name.into(),
            chain_pem,
            key_pem,
        }
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("name", &self.name)
            .field("chain_pem_bytes", &self.chain_pem.len())
            .finish_non_exhaustive()
    }
}

/// Checks certificates (PEM, key matches certificate, validity window)
/// without serving them: what a caller does before changing anything.
pub fn check_certificates(certificates: &[Certificate]) -> Result<(), ProxyError> {
    Certificates::check(certificates)
}

/// One loaded certificate: the leaf's DER (for SNI matching) and the key.
struct Loaded {
    leaf: CertificateDer<'static>,
    key: Arc<CertifiedKey>,
}

/// The certificates of a listener, replaceable while it serves.
pub(crate) struct Certificates {
    current: ArcSwap<Vec<Loaded>>,
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates")
            .field("count", &self.current.load().len())
            .finish()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl Certificates {
    pub(crate) fn new(certificates: &[Certificate]) -> Result<Self, ProxyError> {
        Ok(Self {
            current: ArcSwap::from_pointee(load_all(certificates)?),
        })
    }

    /// Checks a set as [`LoadBalancer::start_https`] would, serving nothing.
    ///
    /// [`LoadBalancer::start_https`]: crate::LoadBalancer::start_https
    pub(crate) fn check(certificates: &[Certificate]) -> Result<(), ProxyError> {
        load_all(certificates).map(|_| ())
    }

    /// Checks every certificate, then swaps them in at once; on an error
    /// the current ones stay.
    pub(crate) fn replace(&self, certificates: &[Certificate]) -> Result<(), ProxyError> {
        let loaded = load_all(certificates)?;
        self.current.store(Arc::new(loaded));
        Ok(())
    }

    /// The server configuration of a listener resolving through `self`.
    pub(crate) fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, ProxyError> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|error| ProxyError::Tls {
                certificate: String::new(),
                reason: error.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(self.clone())));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

fn load_all(certificates: &[Certificate]) -> Result<Vec<Loaded>, ProxyError> {
    if certificates.is_empty() {
        return Err(ProxyError::Tls {
            certificate: String::new(),
            reason: "an https listener needs at least one certificate".to_owned(),
        });
    }
    certificates.iter().map(load).collect()
}

fn load(certificate: &Certificate) -> Result<Loaded, ProxyError> {
    let fail = |reason: String| ProxyError::Tls {
        certificate: certificate.name.clone(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(certificate.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|error| fail(format!("the certificate chain is not PEM: {error}")))?;
    let Some(leaf) = chain.first().cloned() else {
        return Err(fail(
            "the certificate chain holds no certificate".to_owned(),
        ));
    };
    // The key's own parse error could echo key material; say only what failed.
    let key = PrivateKeyDer::from_pem_slice(certificate.key_pem.as_bytes())
        .map_err(|_| fail("the private key is not a PEM private key".to_owned()))?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|_| fail("the private key's algorithm is not supported".to_owned()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|_| fail("the private key does not match the certificate".to_owned()))?;
    webpki::EndEntityCert::try_from(&leaf)
        .map_err(|error| fail(format!("the certificate does not parse: {error}")))?;
    check_validity(&leaf).map_err(fail)?;
    Ok(Loaded {
        leaf,
        key: Arc::new(certified),
    })
}

/// Refuses a certificate outside its validity window, now.
fn check_validity(leaf: &CertificateDer<'_>) -> Result<(), String> {
    let (not_before, not_after) = crate::tls_validity::validity(leaf.as_ref())
        .ok_or("the certificate's validity does not parse")?;
    let now = UnixTime::now().as_secs();
    if now < not_before {
        return Err("the certificate is not valid yet".to_owned());
    }
    if now > not_after {
        return Err("the certificate has expired".to_owned());
    }
    Ok(())
}

#[derive(Debug)]
struct Resolver(Arc<Certificates>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let certificates = self.0.current.load();
        let default = certificates.first()?;
        let Some(name) = hello.server_name() else {
            return Some(default.key.clone());
        };
        let Ok(name) = ServerName::try_from(name) else {
            return Some(default.key.clone());
        };
        let chosen = certificates.iter().find(|loaded| {
            webpki::EndEntityCert::try_from(&loaded.leaf)
                .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
        });
        Some(chosen.unwrap_or(default).key.clone())
    }
}
