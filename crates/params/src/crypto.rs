//! SecureString encryption at rest and the master key.
//!
//! Each SecureString version is sealed with XChaCha20-Poly1305 under the store's
//! 32-byte master key, with a fresh random 24-byte nonce (large enough that random
//! nonces never repeat in practice) and associated data binding the ciphertext to its
//! parameter name and version. A ciphertext copied to another row therefore fails to
//! authenticate instead of decrypting as the wrong parameter's value.
//!
//! Every ciphertext is stored with the [`KeyId`] of the key that sealed it, so opening
//! a store with the wrong key is reported as [`ParamError::WrongMasterKey`] before any
//! decryption is tried, rather than as a vague authentication failure.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::ParamError;
use crate::name::ParamName;
use crate::secret::SecretValue;

/// Environment variable holding the master key as 64 hexadecimal characters.
pub const MASTER_KEY_ENV: &str = "GANTRY_MASTER_KEY";
/// File name of the generated master key inside the data directory.
pub const MASTER_KEY_FILE: &str = "params-master.key";

const KEY_LEN: usize = 32;
pub(crate) const NONCE_LEN: usize = 24;
/// Versioned so a future format can be told apart from this one.
const AAD_CONTEXT: &[u8] = b"gantry-params/xchacha20poly1305/v1\0";

/// Identifies a master key without revealing it: the first 8 bytes of the key's SHA-256.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; 8]);

impl KeyId {
    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }

    pub(crate) fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// The 32-byte key that encrypts every SecureString of a store.
///
/// Sources, in the order [`MasterKey::load_or_create`] tries them:
/// 1. the environment variable `GANTRY_MASTER_KEY`, as **64 hexadecimal characters**
///    (surrounding whitespace ignored; an empty variable counts as unset);
/// 2. the file `params-master.key` in the data directory (same hex format);
/// 3. otherwise a new random key is written to that file with mode 0600.
///
/// The bytes are wiped from memory when the key is dropped; `Debug` shows only the
/// [`KeyId`].
#[derive(Clone)]
pub struct MasterKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    id: KeyId,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).finish()
    }
}

/// A sealed SecureString value as stored.
pub(crate) struct Sealed {
    pub(crate) key_id: KeyId,
    pub(crate) nonce: [u8; NONCE_LEN],
    pub(crate) ciphertext: Vec<u8>,
}

fn associated_data(name: &ParamName, version: u64) -> Vec<u8> {
    // Names never contain NUL, so the separator makes the encoding unambiguous.
    let mut aad = Vec::with_capacity(AAD_CONTEXT.len() + name.as_str().len() + 9);
    aad.extend_from_slice(AAD_CONTEXT);
    aad.extend_from_slice(name.as_str().as_bytes());
    aad.push(0);
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let bytes = Zeroizing::new(bytes);
        let digest = Sha256::digest(&bytes[..]);
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        Self {
            bytes,
            id: KeyId(id),
        }
    }

    /// Parses 64 hexadecimal characters (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, ParamError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        hex::decode_to_slice(text.trim(), &mut bytes[..]).map_err(|_| {
            // The text may be a mistyped key: never echo it.
            ParamError::MasterKeyInvalid {
                reason: format!(
                    "expected {} hexadecimal characters ({} bytes)",
                    KEY_LEN * 2,
                    KEY_LEN
                ),
            }
        })?;
        Ok(Self::from_bytes(*bytes))
    }

    /// A new random key from the operating system.
    pub fn generate() -> Result<Self, ParamError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(&mut bytes[..]).map_err(ParamError::Randomness)?;
        Ok(Self::from_bytes(*bytes))
    }

    /// The key as 64 hexadecimal characters, for backing it up or exporting it as
    /// `GANTRY_MASTER_KEY`.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(&self.bytes[..]))
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    /// Loads the key from `GANTRY_MASTER_KEY`, else from `params-master.key` in
    /// `data_dir`, else creates that file with a new random key (mode 0600).
    pub fn load_or_create(data_dir: &Path) -> Result<Self, ParamError> {
        let env = match std::env::var(MASTER_KEY_ENV) {
            Ok(value) => Some(value),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(ParamError::MasterKeyInvalid {
                    reason: format!("{MASTER_KEY_ENV} is not valid text"),
                });
            }
        };
        Self::load_or_create_from(env.as_deref(), data_dir)
    }

    /// [`MasterKey::load_or_create`] with the environment variable's value passed in,
    /// so tests need not mutate the process environment.
    pub fn load_or_create_from(
        env_value: Option<&str>,
        data_dir: &Path,
    ) -> Result<Self, ParamError> {
        if let Some(value) = env_value.filter(|v| !v.trim().is_empty()) {
            // A set but broken variable is an error, not a reason to fall back to the
            // file: silently using another key would hide the misconfiguration.
            return Self::from_hex(value).map_err(|e| ParamError::MasterKeyInvalid {
                reason: format!("{MASTER_KEY_ENV}: {e}"),
            });
        }
        let path = data_dir.join(MASTER_KEY_FILE);
        match read_key_file(&path) {
            Ok(key) => Ok(key),
            Err(ParamError::KeyFile { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                create_key_file(data_dir, &path)
            }
            Err(e) => Err(e),
        }
    }

    fn cipher(&self) -> Result<XChaCha20Poly1305, ParamError> {
        XChaCha20Poly1305::new_from_slice(&self.bytes[..]).map_err(|_| {
            ParamError::MasterKeyInvalid {
                reason: "key has the wrong length".into(),
            }
        })
    }

    /// Seals `plaintext` as version `version` of `name`, with a fresh random nonce.
    pub(crate) fn seal(
        &self,
        name: &ParamName,
        version: u64,
        plaintext: &str,
    ) -> Result<Sealed, ParamError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(ParamError::Randomness)?;
        let aad = associated_data(name, version);
        let ciphertext = self
            .cipher()?
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| ParamError::EncryptionFailed {
                name: name.to_string(),
                version,
            })?;
        Ok(Sealed {
            key_id: self.id,
            nonce,
            ciphertext,
        })
    }

    /// Opens a sealed value, checking first that it was sealed with this key.
    pub(crate) fn open(
        &self,
        name: &ParamName,
        version: u64,
        sealed: &Sealed,
    ) -> Result<SecretValue, ParamError> {
        if sealed.key_id != self.id {
            return Err(ParamError::WrongMasterKey {
                name: name.to_string(),
                version,
                found: sealed.key_id,
                expected: self.id,
            });
        }
        let failed = || ParamError::DecryptionFailed {
            name: name.to_string(),
            version,
        };
        let aad = associated_data(name, version);
        let plaintext = Zeroizing::new(
            self.cipher()?
                .decrypt(
                    &XNonce::from(sealed.nonce),
                    Payload {
                        msg: &sealed.ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| failed())?,
        );
        let text = std::str::from_utf8(&plaintext).map_err(|_| failed())?;
        Ok(SecretValue::new(text))
    }
}

fn key_file_error(path: &Path, source: std::io::Error) -> ParamError {
    ParamError::KeyFile {
        path: path.to_path_buf(),
        source,
    }
}

fn read_key_file(path: &Path) -> Result<MasterKey, ParamError> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| key_file_error(path, e))?);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)
            .map_err(|e| key_file_error(path, e))?
            .permissions()
            .mode();
        // Like ssh with private keys: a key others can read is no longer a secret, and
        // saying so beats quietly trusting it.
        if mode & 0o077 != 0 {
            return Err(ParamError::MasterKeyInvalid {
                reason: format!(
                    "{} is accessible by group or others (mode {:o}); run chmod 600 on it",
                    path.display(),
                    mode & 0o777
                ),
            });
        }
    }
    MasterKey::from_hex(&text).map_err(|e| ParamError::MasterKeyInvalid {
        reason: format!("{}: {e}", path.display()),
    })
}

/// Writes a new key so that the file appears complete or not at all: the key goes to a
/// private temporary file first and is hard-linked into place, which fails if another
/// process created the key meanwhile (then that key wins and is loaded).
fn create_key_file(data_dir: &Path, path: &Path) -> Result<MasterKey, ParamError> {
    std::fs::create_dir_all(data_dir).map_err(|e| key_file_error(data_dir, e))?;
    let key = MasterKey::generate()?;
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).map_err(ParamError::Randomness)?;
    let tmp: PathBuf = data_dir.join(format!(".{MASTER_KEY_FILE}.{}.tmp", hex::encode(suffix)));

    let write_tmp = || -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        let mut line = key.to_hex();
        line.push('\n');
        file.write_all(line.as_bytes())?;
        file.sync_all()
    };
    let written = write_tmp().and_then(|()| std::fs::hard_link(&tmp, path));
    // The temporary name is never needed again, whatever happened.
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => {
            // Make the new directory entry durable, so a crash can't lose a key that
            // already encrypted data. Best effort: not every filesystem allows it.
            if let Ok(dir) = std::fs::File::open(data_dir) {
                let _ = dir.sync_all();
            }
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_key_file(path),
        Err(e) => Err(key_file_error(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ParamName {
        ParamName::parse(s).unwrap()
    }

    #[test]
    fn seal_then_open_round_trips() {
        let key = MasterKey::generate().unwrap();
        let sealed = key.seal(&name("/db/password"), 3, "s3cr3t").unwrap();
        assert_eq!(sealed.nonce.len(), 24);
        assert!(!sealed.ciphertext.windows(6).any(|w| w == b"s3cr3t"));
        let opened = key.open(&name("/db/password"), 3, &sealed).unwrap();
        assert_eq!(opened.expose(), "s3cr3t");
    }

    #[test]
    fn nonces_differ_per_seal() {
        let key = MasterKey::generate().unwrap();
        let a = key.seal(&name("/a"), 1, "x").unwrap();
        let b = key.seal(&name("/a"), 1, "x").unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn ciphertext_is_bound_to_name_and_version() {
        let key = MasterKey::generate().unwrap();
        let sealed = key.seal(&name("/a"), 1, "x").unwrap();
        for (n, v) in [("/b", 1), ("/a", 2)] {
            let err = key.open(&name(n), v, &sealed).unwrap_err();
            assert_eq!(err.code(), "param.decrypt_failed");
        }
    }

    #[test]
    fn wrong_key_is_reported_by_key_id() {
        let key = MasterKey::generate().unwrap();
        let other = MasterKey::generate().unwrap();
        let sealed = key.seal(&name("/a"), 1, "x").unwrap();
        let err = other.open(&name("/a"), 1, &sealed).unwrap_err();
        assert_eq!(err.code(), "param.wrong_master_key");
        assert!(err.to_string().contains(&key.id().to_string()));
    }

    #[test]
    fn key_id_is_sha256_prefix() {
        let key = MasterKey::from_bytes([7u8; 32]);
        let digest = Sha256::digest([7u8; 32]);
        assert_eq!(key.id().as_bytes()[..], digest[..8]);
        assert_eq!(
            format!("{key:?}"),
            format!("MasterKey {{ id: KeyId({}) }}", key.id())
        );
    }

    #[test]
    fn hex_round_trip_and_rejects_bad_text() {
        let key = MasterKey::generate().unwrap();
        let again = MasterKey::from_hex(&format!("  {}\n", key.to_hex().as_str())).unwrap();
        assert_eq!(again.id(), key.id());
        for bad in ["", "abcd", &"zz".repeat(32), &"00".repeat(33)] {
            let err = MasterKey::from_hex(bad).unwrap_err();
            assert_eq!(err.code(), "param.master_key_invalid");
        }
    }

    #[test]
    fn env_value_wins_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let hex = "11".repeat(32);
        let key = MasterKey::load_or_create_from(Some(&hex), dir.path()).unwrap();
        assert_eq!(key.id(), MasterKey::from_bytes([0x11; 32]).id());
        assert!(!dir.path().join(MASTER_KEY_FILE).exists());
        let err = MasterKey::load_or_create_from(Some("not-hex"), dir.path()).unwrap_err();
        assert_eq!(err.code(), "param.master_key_invalid");
        assert!(!err.to_string().contains("not-hex"));
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_created_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = MasterKey::load_or_create_from(None, &data).unwrap();
        let path = data.join(MASTER_KEY_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = MasterKey::load_or_create_from(Some(""), &data).unwrap();
        assert_eq!(first.id(), second.id());
        // Only the key file is left behind, no temporary files.
        assert_eq!(std::fs::read_dir(&data).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn readable_key_file_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        MasterKey::load_or_create_from(None, dir.path()).unwrap();
        let path = dir.path().join(MASTER_KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = MasterKey::load_or_create_from(None, dir.path()).unwrap_err();
        assert_eq!(err.code(), "param.master_key_invalid");
        assert!(err.to_string().contains("chmod 600"));
    }

    #[test]
    fn corrupt_key_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        MasterKey::load_or_create_from(None, dir.path()).unwrap();
        let path = dir.path().join(MASTER_KEY_FILE);
        std::fs::write(&path, "truncat").unwrap();
        let err = MasterKey::load_or_create_from(None, dir.path()).unwrap_err();
        assert_eq!(err.code(), "param.master_key_invalid");
    }
}
