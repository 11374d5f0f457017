//! Secrets at rest: AES-256-GCM with a random 96-bit nonce per value and the
//! value's address (`service/environment/key`) as associated data, so a
//! ciphertext copied to another row fails to decrypt. The key comes from
//! `LAUNCH_SECRET_KEY` (base64 of 32 bytes) or `<data-dir>/secret.key`, which
//! is created 0600 at first start. Plaintext exists only in memory, on its
//! way to the service's own agent.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use launch_core::private_file;

pub const KEY_ENV: &str = "LAUNCH_SECRET_KEY";
pub const KEY_FILE: &str = "secret.key";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "{origin} is not base64 of 32 bytes: generate one with `head -c 32 /dev/urandom | base64`"
    )]
    BadKey { origin: String },
    #[error("cannot read or create the secret key {path}: {source}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot decrypt secret {address}: the secret key differs from the one it was stored with (check LAUNCH_SECRET_KEY or <data-dir>/secret.key)"
    )]
    Decrypt { address: String },
}

/// Encrypts and decrypts secret values with the server's key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
    fingerprint: String,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

/// Parses the base64 text of a 32-byte key; `origin` names where it came from.
pub fn parse_key(text: &str, origin: &str) -> Result<[u8; 32], SecretError> {
    let bad = || SecretError::BadKey {
        origin: origin.to_owned(),
    };
    let bytes = BASE64.decode(text.trim()).map_err(|_| bad())?;
    bytes.try_into().map_err(|_| bad())
}

impl SecretBox {
    pub fn new(key: [u8; 32]) -> Self {
        SecretBox {
            cipher: Aes256Gcm::new(&key.into()),
            fingerprint: fingerprint(&key),
        }
    }

    /// The key's [`fingerprint`].
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The key given, else `<data_dir>/secret.key`, created 0600 when absent.
    pub fn load(given: Option<[u8; 32]>, data_dir: &Path) -> Result<Self, SecretError> {
        if let Some(key) = given {
            return Ok(Self::new(key));
        }
        let path = data_dir.join(KEY_FILE);
        let file_error = |source| SecretError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Self::new(parse_key(&text, &path.display().to_string())?)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                private_file::write_private(&path, format!("{}\n", BASE64.encode(key)).as_bytes())
                    .map_err(file_error)?;
                Ok(Self::new(key))
            }
            Err(err) => Err(file_error(err)),
        }
    }

    /// `(nonce, ciphertext)` of `value` stored at `address`.
    pub fn seal(&self, address: &str, value: &str) -> (Vec<u8>, Vec<u8>) {
        let nonce: [u8; 12] = rand::random();
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: address.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of an in-memory value cannot fail");
        (nonce.to_vec(), ciphertext)
    }

    pub fn open(
        &self,
        address: &str,
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Result<String, SecretError> {
        let fail = || SecretError::Decrypt {
            address: address.to_owned(),
        };
        if nonce.len() != 12 {
            return Err(fail());
        }
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: address.as_bytes(),
                },
            )
            .map_err(|_| fail())?;
        String::from_utf8(plain).map_err(|_| fail())
    }
}

/// A short, non-reversible name for a key (the first 8 bytes of its
/// sha256, in hex), stored so a server can tell a wrong key at start.
pub fn fingerprint(key: &[u8; 32]) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(key)[..8])
}

/// The associated data of a secret: where it lives.
pub fn address(service: &str, environment: &str, key: &str) -> String {
    format!("{service}/{environment}/{key}")
}

/// Secret keys are environment variable names: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_value_opens_only_at_its_address() {
        let secrets = SecretBox::new([7; 32]);
        let (nonce, ciphertext) = secrets.seal("hello/prod/DB_PASSWORD", "hunter2");
        assert!(!ciphertext.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(
            secrets
                .open("hello/prod/DB_PASSWORD", &nonce, &ciphertext)
                .unwrap(),
            "hunter2"
        );
        assert!(
            secrets
                .open("hello/staging/DB_PASSWORD", &nonce, &ciphertext)
                .is_err()
        );
        assert!(
            SecretBox::new([8; 32])
                .open("hello/prod/DB_PASSWORD", &nonce, &ciphertext)
                .is_err()
        );
    }

    #[test]
    fn secret_keys_are_environment_variable_names() {
        for ok in ["A", "_X", "DB_PASSWORD", "a1"] {
            assert!(valid_key(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B", "é"] {
            assert!(!valid_key(bad), "{bad}");
        }
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = SecretBox::load(None, dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (nonce, ciphertext) = first.seal("a/b/C", "v");
        let second = SecretBox::load(None, dir.path()).unwrap();
        assert_eq!(second.open("a/b/C", &nonce, &ciphertext).unwrap(), "v");
    }
}
