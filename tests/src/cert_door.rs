//! The agent's certificate manager (`launch_agent::ingress::certs`) behind
//! two tiny listeners, as the front door uses it: plain HTTP on the port
//! pebble validates HTTP-01 against, answering
//! `/.well-known/acme-challenge/<token>` from `http01_response`, and TLS on a
//! free port with `resolver()` picking the certificate by SNI. Threads and
//! the manager stop on drop, so a test can start another door on the same
//! data dir (an agent restart).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use launch_agent::ingress::Certificates;
use launch_agent::ingress::acme::AcmeServer;
use launch_agent::ingress::certs::{AcmeCertificates, AcmeSettings, Backoff, Clock};
use tokio_util::sync::CancellationToken;

use crate::pebble::{Pebble, client_config};
use crate::unique::free_port;

pub struct CertDoor {
    pub certs: Arc<AcmeCertificates>,
    pub https_port: u16,
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: CancellationToken,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl CertDoor {
    /// Starts the manager on `data_dir` against `pebble` (retries from 300 ms,
    /// clock checked every 200 ms) and both listeners.
    pub fn start(pebble: &Pebble, data_dir: &Path, clock: Clock) -> CertDoor {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut settings = AcmeSettings::new(AcmeServer {
            directory: pebble.directory_url(),
            ca_root_pem: Some(pebble.listener_root_pem.clone().into_bytes()),
            email: Some("ops@example.com".into()),
        });
        settings.retry = Backoff {
            first: Duration::from_millis(300),
            max: Duration::from_secs(2),
        };
        settings.recheck = Duration::from_millis(200);
        settings.clock = clock;
        let shutdown = CancellationToken::new();
        let certs = runtime
            .block_on(async { AcmeCertificates::start(settings, data_dir, shutdown.clone()) });
        let stop = Arc::new(AtomicBool::new(false));
        let http =
            TcpListener::bind(("127.0.0.1", pebble.http_port)).expect("bind the HTTP-01 port");
        let https_port = free_port();
        let https = TcpListener::bind(("127.0.0.1", https_port)).expect("bind the HTTPS port");
        let tls = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(certs.resolver()),
        );
        let answers = certs.clone();
        let threads = vec![
            serve(http, stop.clone(), move |stream| {
                answer_http01(stream, &answers)
            }),
            serve(https, stop.clone(), move |stream| {
                answer_tls(stream, tls.clone())
            }),
        ];
        CertDoor {
            certs,
            https_port,
            runtime: Some(runtime),
            shutdown,
            stop,
            threads,
        }
    }

    /// The body served over HTTPS with SNI `host`, trusting only `root_pem`.
    pub fn get(&self, root_pem: &str, host: &str) -> Result<String, String> {
        let request = format!("GET / HTTP/1.0\r\nHost: {host}\r\n\r\n");
        let reply = crate::pebble::tls_exchange(
            root_pem,
            "127.0.0.1",
            self.https_port,
            host,
            request.as_bytes(),
        )?;
        let reply = String::from_utf8_lossy(&reply).into_owned();
        Ok(reply
            .split_once("\r\n\r\n")
            .map_or(reply.clone(), |(_, body)| body.to_owned()))
    }

    /// The DER of the leaf certificate served for `host`.
    pub fn leaf(&self, root_pem: &str, host: &str) -> Result<Vec<u8>, String> {
        let name =
            rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
        let mut connection = rustls::ClientConnection::new(client_config(root_pem), name)
            .map_err(|e| e.to_string())?;
        let mut tcp =
            TcpStream::connect(("127.0.0.1", self.https_port)).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
        while connection.is_handshaking() {
            connection
                .complete_io(&mut tcp)
                .map_err(|e| format!("TLS: {e}"))?;
        }
        let leaf = connection
            .peer_certificates()
            .and_then(|chain| chain.first())
            .ok_or("no certificate")?;
        Ok(leaf.to_vec())
    }
}

impl Drop for CertDoor {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        if let Some(runtime) = self.runtime.take() {
            let certs = self.certs.clone();
            runtime.block_on(async move { certs.stopped().await });
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// Accepts connections until `stop`, each handled on its own thread.
fn serve(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    handle: impl Fn(TcpStream) + Send + Sync + 'static,
) -> JoinHandle<()> {
    listener.set_nonblocking(true).unwrap();
    let handle = Arc::new(handle);
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).ok();
                    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
                    let handle = handle.clone();
                    std::thread::spawn(move || handle(stream));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    })
}

fn answer_http01(mut stream: TcpStream, certs: &AcmeCertificates) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("");
    let answer = path
        .strip_prefix("/.well-known/acme-challenge/")
        .and_then(|token| certs.http01_response(token));
    let reply = match answer {
        Some(key_authorization) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{key_authorization}",
            key_authorization.len()
        ),
        None => {
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
        }
    };
    let _ = stream.write_all(reply.as_bytes());
}

fn answer_tls(stream: TcpStream, config: Arc<rustls::ServerConfig>) {
    let Ok(connection) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(connection, stream);
    let mut buf = [0u8; 1024];
    // Reading drives the handshake; a name without a certificate ends here
    // with an alert to the client.
    if tls.read(&mut buf).is_err() {
        return;
    }
    let host = tls.conn.server_name().unwrap_or("-").to_owned();
    let body = format!("hello from {host}");
    let _ = write!(
        tls,
        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.conn.send_close_notify();
    let _ = tls.flush();
}
