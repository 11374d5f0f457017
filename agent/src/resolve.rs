//! Turning the control URL's host name into an address without glibc. The
//! release agent is linked statically (`+crt-static`) so it runs on any
//! x86_64 Linux, and a static glibc cannot load the NSS modules that
//! `getaddrinfo` needs. So names are resolved here, in Rust (`/etc/hosts`,
//! then the nameservers of `/etc/resolv.conf`), and tonic is handed the
//! address with the original URL as the request origin. Resolution happens
//! on every (re)connect, so a changed DNS record is picked up; a name with
//! several addresses (replicas behind one name) gives an endpoint for each,
//! IPv4 first, which `identity::channel` tries in turn.

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

/// An endpoint for `control_url` whose host is already an IP address (the
/// first of its addresses).
pub async fn endpoint(control_url: &str) -> Result<Endpoint, ResolveError> {
    let mut endpoints = endpoints(control_url).await?;
    Ok(endpoints.remove(0))
}

/// An endpoint for each address of `control_url`'s host, in the order to
/// try them; never empty.
pub async fn endpoints(control_url: &str) -> Result<Vec<Endpoint>, ResolveError> {
    let bad = |reason: String| ResolveError::BadUrl {
        url: control_url.to_owned(),
        reason,
    };
    let uri = Uri::from_str(control_url).map_err(|e| bad(e.to_string()))?;
    let host = uri.host().ok_or_else(|| bad("it has no host".into()))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() {
        return Endpoint::from_shared(control_url.to_owned())
            .map(|endpoint| vec![endpoint])
            .map_err(|e| bad(e.to_string()));
    }
    let ips = lookup_all(bare).await?;
    tracing::debug!(%host, ?ips, "resolved the control plane's host name");
    ips.into_iter()
        .map(|ip| {
            Endpoint::from_shared(address(&uri, ip))
                .map(|e| e.origin(uri.clone()))
                .map_err(|e| bad(e.to_string()))
        })
        .collect()
}

/// `uri`'s scheme and port (or the scheme's) at `ip`.
fn address(uri: &Uri, ip: IpAddr) -> String {
    let scheme = uri.scheme_str().unwrap_or("http");
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    match ip {
        IpAddr::V4(v4) => format!("{scheme}://{v4}:{port}"),
        IpAddr::V6(v6) => format!("{scheme}://[{v6}]:{port}"),
    }
}

/// The first address of `host` (IPv4 preferred).
pub(crate) async fn lookup(host: &str) -> Result<IpAddr, ResolveError> {
    lookup_all(host).await.map(|ips| ips[0])
}

/// Every address of `host`, IPv4 first (most control planes listen on a
/// v4 address); never empty.
async fn lookup_all(host: &str) -> Result<Vec<IpAddr>, ResolveError> {
    let failed = |reason: String| ResolveError::Lookup {
        host: host.to_owned(),
        reason,
    };
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(vec![IpAddr::from([127, 0, 0, 1])]);
    }
    let resolver = TokioResolver::builder_tokio()
        .map_err(|e| failed(format!("no usable /etc/resolv.conf ({e})")))?
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let found = resolver
        .lookup_ip(host)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let mut ips: Vec<IpAddr> = found.iter().collect();
    ips.sort_by_key(|ip| ip.is_ipv6());
    if ips.is_empty() {
        return Err(failed("no address records".into()));
    }
    Ok(ips)
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

    #[test]
    fn each_address_keeps_the_scheme_and_port() {
        let uri: Uri = "https://launch.example.com:7400".parse().unwrap();
        assert_eq!(address(&uri, [10, 0, 0, 5].into()), "https://10.0.0.5:7400");
        assert_eq!(
            address(&uri, "fd00::5".parse().unwrap()),
            "https://[fd00::5]:7400"
        );
        let default_port: Uri = "https://launch.example.com".parse().unwrap();
        assert_eq!(
            address(&default_port, [10, 0, 0, 6].into()),
            "https://10.0.0.6:443"
        );
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
