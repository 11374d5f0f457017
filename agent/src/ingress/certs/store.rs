//! Certificates on disk, in `<data dir>/tls/`: `acme/<host>.pem` for the
//! ones ACME issued and `user/<host>.pem` for pairs the user gave, each one
//! file holding the private key then the chain, written 0600 in one atomic
//! rename (a crash never pairs a new key with an old chain). Host names are
//! file names here, so only valid DNS names are accepted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use launch_core::private_file;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use rustls::sign::CertifiedKey;

use super::validity::validity;

/// Who provided a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Acme,
    User,
}

impl Source {
    fn dir(self) -> &'static str {
        match self {
            Source::Acme => "acme",
            Source::User => "user",
        }
    }
}

/// A certificate ready for the TLS listener, with what the schedule needs.
#[derive(Clone, Debug)]
pub struct Stored {
    pub key: Arc<CertifiedKey>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub source: Source,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "{0:?} is not a valid host name (letters, digits, '-' and '.', e.g. hello.example.com)"
    )]
    BadName(String),
    #[error("no PEM CERTIFICATE block: give the certificate chain, leaf first")]
    NoCertificate,
    #[error("no PEM private key (PKCS#8, PKCS#1 or SEC1): give the certificate's private key")]
    NoKey,
    #[error("the private key is not usable for TLS: {0}")]
    BadKey(String),
    #[error("the private key does not belong to the certificate")]
    KeyMismatch,
    #[error("the certificate cannot be read: {0}")]
    BadCertificate(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The certificates under one data dir.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

/// What [`Store::load_all`] found: certificates by host, and the files it could not read.
pub type Loaded = (Vec<(String, Stored)>, Vec<(PathBuf, StoreError)>);

impl Store {
    pub fn new(data_dir: &Path) -> Store {
        Store {
            dir: data_dir.join("tls"),
        }
    }

    /// Where the ACME account files live.
    pub fn acme_dir(&self) -> PathBuf {
        self.dir.clone()
    }

    /// Writes `pem` (key and chain) for `host` and returns it parsed. Nothing
    /// is written unless it parses.
    pub fn save(&self, source: Source, host: &str, pem: &str) -> Result<Stored, StoreError> {
        check_name(host)?;
        let stored = parse(source, pem.as_bytes())?;
        let dir = self.dir.join(source.dir());
        let path = dir.join(format!("{host}.pem"));
        private_file::create_private_dir(&dir)
            .and_then(|()| private_file::write_private(&path, pem.as_bytes()))
            .map_err(|source| StoreError::Io { path, source })?;
        Ok(stored)
    }

    /// Deletes `host`'s certificate file; a missing one is not an error.
    pub fn forget(&self, source: Source, host: &str) -> Result<(), StoreError> {
        check_name(host)?;
        let path = self.dir.join(source.dir()).join(format!("{host}.pem"));
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    /// Every certificate on disk by host, and what could not be read.
    pub fn load_all(&self) -> Loaded {
        let mut found = Vec::new();
        let mut broken = Vec::new();
        for source in [Source::Acme, Source::User] {
            let Ok(entries) = std::fs::read_dir(self.dir.join(source.dir())) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Some(host) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".pem"))
                    .filter(|h| check_name(h).is_ok())
                    .map(str::to_owned)
                else {
                    continue; // temp files of an interrupted write, strays
                };
                match std::fs::read(&path) {
                    Ok(pem) => match parse(source, &pem) {
                        Ok(stored) => found.push((host, stored)),
                        Err(e) => broken.push((path, e)),
                    },
                    Err(source) => broken.push((path.clone(), StoreError::Io { path, source })),
                }
            }
        }
        (found, broken)
    }
}

/// A key and chain in PEM, checked to belong together.
pub fn parse(source: Source, pem: &[u8]) -> Result<Stored, StoreError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| StoreError::BadCertificate(e.to_string()))?;
    let leaf = chain.first().ok_or(StoreError::NoCertificate)?;
    let (not_before, not_after) = validity(leaf).map_err(StoreError::BadCertificate)?;
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|_| StoreError::NoKey)?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| StoreError::BadKey(e.to_string()))?;
    let key = CertifiedKey::new(chain, signing);
    match key.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(_)) => return Err(StoreError::KeyMismatch),
        // Unknown is "cannot tell" (e.g. no SPKI to compare): accepted.
        Err(_) => {}
    }
    Ok(Stored {
        key: Arc::new(key),
        not_before,
        not_after,
        source,
    })
}

/// Host names become file names and ACME identifiers: DNS names only.
pub fn check_name(host: &str) -> Result<(), StoreError> {
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(StoreError::BadName(host.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(host: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![host.into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn host_names_are_dns_names_only() {
        for good in ["hello.test", "a-b.example.com", "x1"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../etc",
            "a/b",
            "Hello.test",
            "-a.test",
            "a..b",
            "*.test",
            "a b",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_saved_pair_is_0600_and_loads_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let (cert, key) = pair("hello.test");
        store
            .save(Source::User, "hello.test", &format!("{key}{cert}"))
            .unwrap();
        let path = dir.path().join("tls/user/hello.test.pem");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (found, broken) = store.load_all();
        assert!(broken.is_empty(), "{broken:?}");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "hello.test");
        assert_eq!(found[0].1.source, Source::User);
    }

    #[test]
    fn a_forgotten_certificate_is_gone_from_disk_and_forgetting_twice_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        for host in ["pr-1.hello.test", "hello.test"] {
            let (cert, key) = pair(host);
            store
                .save(Source::Acme, host, &format!("{key}{cert}"))
                .unwrap();
        }
        store.forget(Source::Acme, "pr-1.hello.test").unwrap();
        store.forget(Source::Acme, "pr-1.hello.test").unwrap();
        let (found, _) = store.load_all();
        let hosts: Vec<&str> = found.iter().map(|(host, _)| host.as_str()).collect();
        assert_eq!(
            hosts,
            ["hello.test"],
            "only the other name's certificate is left"
        );
        assert!(store.forget(Source::Acme, "../escape").is_err());
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let (cert, _) = pair("hello.test");
        let (_, other_key) = pair("other.test");
        let error = store
            .save(Source::User, "hello.test", &format!("{other_key}{cert}"))
            .unwrap_err();
        assert!(matches!(error, StoreError::KeyMismatch), "{error}");
        assert!(matches!(
            store.save(Source::User, "hello.test", &cert),
            Err(StoreError::NoKey)
        ));
        assert!(!dir.path().join("tls/user/hello.test.pem").exists());
    }
}
