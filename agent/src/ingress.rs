//! The front door's seam to certificate management: what the HTTP(S)
//! listeners ask of it (a resolver for the TLS handshake, whether a host has a
//! live certificate, the answer to an ACME HTTP-01 challenge) and what they
//! tell it (the names the route table holds). ACME itself lives in
//! `ingress::certs` and `ingress::acme`.

pub mod acme;
pub mod certs;

/// What the front door needs from certificate management (ACME lives in `ingress::certs`).
pub trait Certificates: Send + Sync + 'static {
    /// The resolver for the HTTPS listener: only names with a live certificate resolve.
    fn resolver(&self) -> std::sync::Arc<dyn rustls::server::ResolvesServerCert>;
    /// True when `host` has a live certificate (plain HTTP then redirects to HTTPS).
    fn has_certificate(&self, host: &str) -> bool;
    /// The key authorization for an HTTP-01 token while an order for it is pending.
    fn http01_response(&self, token: &str) -> Option<String>;
    /// The names the route table holds now; certificates are ordered only for these.
    fn set_names(&self, names: &[String]);
}
