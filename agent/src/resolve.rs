//! Turning the control URL's host name into an address without glibc. The
//! release agent is linked statically (`+crt-static`) so it runs on any
//! x86_64 Linux, and a static glibc cannot load the NSS modules that
//! `getaddrinfo` needs. So names are resolved here, in Rust (`/etc/hosts`,
//! then the nameservers of `/etc/resolv.conf`), and tonic is handed the
//! address with the original URL as the request origin. Resolution happens
//! on every (re)connect, so a changed DNS record is picked up.

use std::net::IpAddr;
use std::str::FromStr;

use hickory_resolver::TokioResolver;
use tonic::transport::{Endpoint, Uri};

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{url:?} is not a URL: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(
        "cannot resolve {host}: {reason}; check DNS on this host, or use an IP address in --control-url"
    )]
    Lookup { host: String, reason: String },
}

/// An endpoint for `control_url` whose host is already an IP address.
pub async fn endpoint(control_url: &str) -> Result<Endpoint, ResolveError> {
    let bad = |reason: String| ResolveError::BadUrl {
        url: control_url.to_owned(),
        reason,
    };
    let uri = Uri::from_str(control_url).map_err(|e| bad(e.to_string()))?;
    let host = uri.host().ok_or_else(|| bad("it has no host".into()))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() {
        return Endpoint::from_shared(control_url.to_owned()).map_err(|e| bad(e.to_string()));
    }
    let ip = lookup(bare).await?;
    let scheme = uri.scheme_str().unwrap_or("http");
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let address = match ip {
        IpAddr::V4(v4) => format!("{scheme}://{v4}:{port}"),
        IpAddr::V6(v6) => format!("{scheme}://[{v6}]:{port}"),
    };
    tracing::debug!(%host, %ip, "resolved the control plane's host name");
    Endpoint::from_shared(address)
        .map(|e| e.origin(uri))
        .map_err(|e| bad(e.to_string()))
}

pub(crate) async fn lookup(host: &str) -> Result<IpAddr, ResolveError> {
    let failed = |reason: String| ResolveError::Lookup {
        host: host.to_owned(),
        reason,
    };
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::from([127, 0, 0, 1]));
    }
    let resolver = TokioResolver::builder_tokio()
        .map_err(|e| failed(format!("no usable /etc/resolv.conf ({e})")))?
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let found = resolver
        .lookup_ip(host)
        .await
        .map_err(|e| failed(e.to_string()))?;
    // Prefer IPv4: most control planes listen on a v4 address.
    let mut ips: Vec<IpAddr> = found.iter().collect();
    ips.sort_by_key(|ip| ip.is_ipv6());
    ips.into_iter()
        .next()
        .ok_or_else(|| failed("no address records".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ip_urls_are_used_as_they_are() {
        let endpoint = endpoint("http://127.0.0.1:7400").await.unwrap();
        assert_eq!(endpoint.uri().to_string(), "http://127.0.0.1:7400/");
    }

    #[tokio::test]
    async fn names_resolve_to_an_address_and_keep_the_name_as_origin() {
        let endpoint = endpoint("http://localhost:7400").await.unwrap();
        assert_eq!(endpoint.uri().host(), Some("127.0.0.1"));
        assert_eq!(endpoint.uri().port_u16(), Some(7400));
    }

    #[tokio::test]
    async fn an_unknown_name_says_what_to_do() {
        let err = endpoint("http://no-such-host.invalid:7400")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot resolve no-such-host.invalid"), "{err}");
        assert!(err.contains("IP address"), "{err}");
    }
}
