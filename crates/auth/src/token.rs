//! Token values: generated from 256 random bits, shown once, stored hashed.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::AuthError;

/// The prefix every gantry token carries, so leaked tokens are recognisable
/// (and secret scanners can find them).
pub const TOKEN_PREFIX: &str = "gantry_";

/// A token's value. Its `Debug` and `Display` never show it; only
/// [`Secret::expose`] does, for the one place that must print or send it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A new random token: `gantry_` and 64 hex digits.
    pub fn generate() -> Result<Secret, AuthError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| AuthError::Randomness(e.to_string()))?;
        Ok(Secret(format!("{TOKEN_PREFIX}{}", hex::encode(bytes))))
    }

    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The SHA-256 of the value: what the store keeps and looks up. A token
    /// has 256 bits of entropy, so a fast hash is enough (no password
    /// stretching needed, and lookups stay cheap).
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A token's SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub(crate) [u8; 32]);

impl TokenHash {
    pub(crate) fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    pub(crate) fn from_hex(text: &str) -> Option<TokenHash> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(TokenHash(out))
    }
}

/// A short random id naming a token in listings (`tok_` and 12 hex digits).
pub(crate) fn token_id() -> Result<String, AuthError> {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).map_err(|e| AuthError::Randomness(e.to_string()))?;
    Ok(format!("tok_{}", hex::encode(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_distinct_prefixed_and_never_printed() {
        let a = Secret::generate().unwrap();
        let b = Secret::generate().unwrap();
        assert_ne!(a, b);
        assert!(a.expose().starts_with(TOKEN_PREFIX));
        assert_eq!(a.expose().len(), TOKEN_PREFIX.len() + 64);
        assert_eq!(format!("{a:?}"), "Secret(***)");
        assert_eq!(TokenHash::from_hex(&a.hash().to_hex()), Some(a.hash()));
    }
}
