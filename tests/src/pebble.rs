//! An ACME server per test: Debian's `pebble` with real validation (no random
//! sleep, no rejected nonces, `PEBBLE_VA_ALWAYS_VALID` unset) and
//! `pebble-challtestsrv` as its DNS, answering every A query with 127.0.0.1,
//! so pebble validates `hello.test` by connecting to `127.0.0.1:<http_port>`,
//! where the test's front door answers HTTP-01. The listener certificate is
//! made here with rcgen; the root that signs issued certificates is fetched
//! from pebble's management interface. Both processes die with the value.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};

use crate::poll::eventually;
use crate::process::Process;
use crate::unique::free_port;

pub struct Pebble {
    pub pebble: Process,
    pub dns: Process,
    /// The ACME (WFE) port: the directory is `https://127.0.0.1:<port>/dir`.
    pub port: u16,
    pub management_port: u16,
    /// Where pebble connects to validate HTTP-01 challenges.
    pub http_port: u16,
    /// PEM of pebble's own TLS listener certificate (what an ACME client trusts).
    pub listener_root_pem: String,
    pub dir: tempfile::TempDir,
}

/// How to run pebble.
#[derive(Clone, Copy, Debug)]
pub struct PebbleOptions {
    /// Where pebble connects for HTTP-01 (the front door's HTTP port).
    pub http_port: u16,
    /// Lifetime of issued certificates (pebble's default is five years).
    pub validity: Option<Duration>,
}

impl Pebble {
    pub fn start(options: PebbleOptions) -> Pebble {
        let dir = tempfile::tempdir().expect("temp dir for pebble");
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        let listener = params.self_signed(&key).unwrap();
        let cert_path = dir.path().join("listener.pem");
        let key_path = dir.path().join("listener.key");
        std::fs::write(&cert_path, listener.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();

        let (port, management_port, dns_port, dns_management) =
            (free_port(), free_port(), free_port(), free_port());
        let mut config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management_port}"),
            "certificate": cert_path,
            "privateKey": key_path,
            "httpPort": options.http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        if let Some(validity) = options.validity {
            config["pebble"]["certificateValidityPeriod"] = validity.as_secs().into();
        }
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();

        let mut dns = Command::new("pebble-challtestsrv");
        dns.args([
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
            "-dns01",
            &format!("127.0.0.1:{dns_port}"),
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-management",
            &format!("127.0.0.1:{dns_management}"),
        ]);
        let dns = Process::spawn("challtestsrv", dns);
        eventually(Duration::from_secs(20), "challtestsrv to listen", || {
            TcpStream::connect(("127.0.0.1", dns_management))
                .map(drop)
                .map_err(|e| e.to_string())
        });

        let mut command = Command::new("pebble");
        command
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env_remove("PEBBLE_VA_ALWAYS_VALID");
        let pebble = Process::spawn("pebble", command);
        let pebble = Pebble {
            pebble,
            dns,
            port,
            management_port,
            http_port: options.http_port,
            listener_root_pem: listener.pem(),
            dir,
        };
        eventually(
            Duration::from_secs(30),
            "pebble to serve its directory",
            || {
                pebble
                    .https_get(port, "/dir")
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
        );
        pebble
    }

    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// The listener certificate written to a file, for `--acme-ca-root`.
    pub fn listener_root_file(&self) -> PathBuf {
        let path = self.dir.path().join("listener-root.pem");
        std::fs::write(&path, &self.listener_root_pem).unwrap();
        path
    }

    /// The root that signs the certificates this pebble issues (new at
    /// every start), PEM.
    pub fn issuing_root_pem(&self) -> String {
        self.https_get(self.management_port, "/roots/0")
            .unwrap_or_else(|e| panic!("GET /roots/0 from pebble: {e}"))
    }

    /// How many orders pebble has accepted (its `new-order` requests).
    pub fn orders(&self) -> usize {
        let count = |text: String| {
            text.lines()
                .filter(|l| l.contains("POST /order-plz"))
                .count()
        };
        count(self.pebble.stdout.text()) + count(self.pebble.stderr.text())
    }

    /// Kills pebble (the ACME server goes down; challtestsrv stays).
    pub fn stop(&mut self) {
        self.pebble.kill_hard();
    }

    fn https_get(&self, port: u16, path: &str) -> Result<String, String> {
        https_get(
            &self.listener_root_pem,
            "127.0.0.1",
            port,
            "localhost",
            path,
        )
    }
}

/// A TLS client config that trusts only `root_pem` (ring, whatever else the
/// build enables).
pub fn client_config(root_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(cert.expect("a PEM certificate")).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Connects to `address:port` with TLS and SNI `server_name`, trusting only
/// `root_pem`, and returns everything the server sends after `request`.
pub fn tls_exchange(
    root_pem: &str,
    address: &str,
    port: u16,
    server_name: &str,
    request: &[u8],
) -> Result<Vec<u8>, String> {
    let name = ServerName::try_from(server_name.to_owned()).map_err(|e| e.to_string())?;
    let connection =
        rustls::ClientConnection::new(client_config(root_pem), name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect((address, port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.write_all(request).map_err(|e| format!("TLS: {e}"))?;
    let mut reply = Vec::new();
    match tls.read_to_end(&mut reply) {
        Ok(_) => Ok(reply),
        // A server that closes without close_notify still sent its reply.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !reply.is_empty() => Ok(reply),
        Err(e) => Err(format!("TLS: {e}")),
    }
}

fn https_get(
    root_pem: &str,
    address: &str,
    port: u16,
    server_name: &str,
    path: &str,
) -> Result<String, String> {
    let request = format!("GET {path} HTTP/1.0\r\nHost: {server_name}\r\n\r\n");
    let reply = tls_exchange(root_pem, address, port, server_name, request.as_bytes())?;
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let (head, body) = reply.split_once("\r\n\r\n").ok_or("no HTTP reply")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(head.lines().next().unwrap_or_default().to_owned());
    }
    Ok(body.to_owned())
}
