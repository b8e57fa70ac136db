//! Test support: an in-memory [`RegistryAuth`] with a few fixed tokens.

#![allow(dead_code, unreachable_pub)]

pub mod fixture;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use gantry_registry::{
    AuthDenied, AuthFuture, RegistryAccess, RegistryAuditRecord, RegistryAuth, RegistryLimits,
    RegistryOptions,
};

/// The token every test request carries unless it says otherwise.
pub const TOKEN: &str = "gantry-test-token-8f1c2a";

/// What a token may do.
#[derive(Debug, Clone)]
pub enum Allowed {
    Everything,
    /// Only `Base` and pulls.
    PullOnly,
    /// `Base`, and anything on these repositories.
    Repositories(Vec<String>),
}

/// Fixed tokens, each with a principal and what it may do; records every
/// audit record it receives. Tests only: the registry ships no allow-all.
#[derive(Default)]
pub struct StaticTokens {
    tokens: Mutex<HashMap<String, (String, Allowed)>>,
    pub records: Mutex<Vec<RegistryAuditRecord>>,
}

impl StaticTokens {
    /// [`TOKEN`] for `tester`, allowed everything.
    pub fn new() -> Arc<StaticTokens> {
        let auth = StaticTokens::default();
        auth.add(TOKEN, "tester", Allowed::Everything);
        Arc::new(auth)
    }

    pub fn add(&self, token: &str, principal: &str, allowed: Allowed) {
        self.tokens
            .lock()
            .unwrap()
            .insert(token.to_string(), (principal.to_string(), allowed));
    }

    pub fn revoke(&self, token: &str) {
        self.tokens.lock().unwrap().remove(token);
    }

    pub fn records(&self) -> Vec<RegistryAuditRecord> {
        self.records.lock().unwrap().clone()
    }

    pub fn options(self: &Arc<Self>, limits: RegistryLimits) -> RegistryOptions {
        RegistryOptions {
            auth: self.clone(),
            limits,
        }
    }
}

impl RegistryAuth for StaticTokens {
    fn authorize<'a>(&'a self, secret: &'a str, access: RegistryAccess<'a>) -> AuthFuture<'a> {
        let found = self.tokens.lock().unwrap().get(secret).cloned();
        Box::pin(async move {
            let (principal, allowed) = found.ok_or(AuthDenied::Unauthenticated)?;
            let ok = match (&allowed, access) {
                (Allowed::Everything, _) | (_, RegistryAccess::Base) => true,
                (Allowed::PullOnly, RegistryAccess::Pull { .. }) => true,
                (Allowed::PullOnly, _) => false,
                (
                    Allowed::Repositories(repos),
                    RegistryAccess::Pull { repository }
                    | RegistryAccess::Push { repository }
                    | RegistryAccess::Delete { repository },
                ) => repos.iter().any(|r| r == repository),
                (Allowed::Repositories(_), RegistryAccess::Catalog) => false,
            };
            if ok {
                Ok(principal)
            } else {
                Err(AuthDenied::Forbidden)
            }
        })
    }

    fn audit(&self, record: RegistryAuditRecord) {
        self.records.lock().unwrap().push(record);
    }
}

/// Standard base64, for Basic headers.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `Basic base64(user:password)`.
pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}
