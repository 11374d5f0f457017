//! Certificates for TLS tests, made with rcgen: a test CA, a server
//! certificate it signed for `localhost` and 127.0.0.1, and an unrelated CA
//! that must not be trusted. Shared by `security` (the CLI and agents over
//! TLS) and `provider_mirror` (terraform installing over TLS).

use std::path::PathBuf;

use tempfile::TempDir;

/// A test CA, a server certificate it signed, and an unrelated CA.
pub struct Certs {
    dir: TempDir,
}

impl Certs {
    pub fn new() -> Certs {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
        let dir = tempfile::Builder::new()
            .prefix("launch-e2e-certs-")
            .tempdir()
            .unwrap();
        let ca = |name: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            let key = KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            (cert, key)
        };
        let (ca_cert, ca_key) = ca("Launch test CA");
        let (other_cert, _) = ca("Some other CA");
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        write("ca.pem", ca_cert.pem());
        write("other-ca.pem", other_cert.pem());
        write("server.pem", cert.pem());
        write("server.key", key.serialize_pem());
        Certs { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}
