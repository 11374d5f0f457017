//! TLS on the control plane's one port (`launch server --tls-cert --tls-key`).
//! The certificate chain and key are PEM files read once at start (a bad
//! file is a config error, exit 64, before any port is bound). rustls runs on
//! the `ring` provider and offers ALPN `h2` (gRPC from agents and the CLI) and
//! `http/1.1` (`curl https://…/healthz`, the downloads), and hyper's auto
//! builder serves whichever the client picked with the same axum router the
//! plain listener serves. A client that speaks plain HTTP to the TLS port is
//! told so: it gets a `400` naming `https://` and the server logs a warning,
//! instead of both sides seeing only a broken connection.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// The rustls server configuration.
pub type ServerTlsConfig = rustls::ServerConfig;

/// How long a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the answer to a plain-HTTP client waits for the rest of its request.
const LINGER: Duration = Duration::from_secs(1);
/// The most of it read and dropped.
const LINGER_BYTES: usize = 64 * 1024;

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What a plain-HTTP client gets from the TLS port.
const PLAIN_HTTP_BODY: &str =
    "this port speaks TLS: connect with https:// (and --ca-cert for a private CA)\n";

fn plain_http_answer() -> String {
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{PLAIN_HTTP_BODY}",
        PLAIN_HTTP_BODY.len()
    )
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "cannot read the TLS certificate {path}: {reason}; give a PEM file with the server certificate (and its chain)"
    )]
    Cert { path: String, reason: String },
    #[error(
        "cannot read the TLS key {path}: {reason}; give the PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert"
    )]
    Key { path: String, reason: String },
    #[error(
        "the TLS key does not fit the certificate: {0}; check that --tls-cert and --tls-key belong together"
    )]
    Mismatch(String),
}

/// A rustls server config (ring, ALPN h2 + http/1.1) from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerTlsConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|iter| iter.collect::<Result<_, _>>())
        .map_err(|e| TlsError::Cert {
            path: cert.display().to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Cert {
            path: cert.display().to_string(),
            reason: "it holds no CERTIFICATE block".to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Mismatch(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Mismatch(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `app` over TLS on `listener` until `shutdown`, then waits for open
/// connections to finish their requests (the caller bounds the wait).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    config: Arc<ServerTlsConfig>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(config);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off briefly.
                    warn!(cause = %err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if let Err(err) = tcp.set_nodelay(true) {
            warn!(cause = %err, "cannot set TCP_NODELAY");
        }
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        connections.spawn(async move {
            let Some(tls) = handshake(tcp, peer, &acceptor).await else {
                return;
            };
            let builder = Builder::new(TokioExecutor::new());
            let connection =
                builder.serve_connection(TokioIo::new(tls), TowerToHyperService::new(app));
            if let Err(err) = watcher.watch(connection.into_owned()).await {
                debug!(%peer, cause = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    connections.shutdown().await;
    Ok(())
}

async fn handshake(
    mut tcp: TcpStream,
    peer: SocketAddr,
    acceptor: &TlsAcceptor,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        Ok(_) | Err(_) => return None,
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        warn!(%peer, "a client spoke plain HTTP to this TLS port: it must connect with https://");
        let _ = tcp.write_all(plain_http_answer().as_bytes()).await;
        let _ = tcp.shutdown().await;
        linger(&mut tcp).await;
        return None;
    }
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(err)) => {
            warn!(%peer, cause = %err, "TLS handshake failed (does the client trust this server's CA? give it --ca-cert)");
            None
        }
        Err(_) => {
            warn!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// Reads and drops what a plain-HTTP client still sends after our answer and
/// FIN, until it closes, for at most [`LINGER`] and [`LINGER_BYTES`]. The
/// answer goes out after the first byte, and a socket closed with bytes
/// unread (or arriving) is reset by the kernel: a client writing its request
/// in pieces then failed with `Broken pipe` instead of reading the 400.
async fn linger(tcp: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    let mut read = 0;
    let _ = tokio::time::timeout(LINGER, async {
        while read < LINGER_BYTES {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_and_its_key_load_and_a_missing_file_says_what_to_give() {
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
        let config = server_config(&cert_path, &key_path).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );

        let err = server_config(&dir.path().join("nope.pem"), &key_path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nope.pem") && err.contains("PEM file"),
            "{err}"
        );
        let err = server_config(&cert_path, &cert_path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("TLS key"), "{err}");
        let other = rcgen::generate_simple_self_signed(vec!["other".to_owned()]).unwrap();
        std::fs::write(&key_path, other.key_pair.serialize_pem()).unwrap();
        let err = server_config(&cert_path, &key_path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("belong together"), "{err}");
    }
}
