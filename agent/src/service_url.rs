//! The URL a deploy reports for its service: one a person can open. A
//! routed service is reached by its first host name through the front
//! door, over HTTPS when the agent's ACME client can certify that name (a
//! public name, or any name with a private ACME server), else over HTTP.
//! Any other service is reached at its published port on the address the
//! provider registered for the host (`Mission.host_address`), else the
//! `--advertise-host` an operator gave, else the local address this host
//! uses toward the control plane: never the kernel hostname, which on a
//! cloud host resolves only inside its network (`ip-10-0-1-5`).

use std::net::IpAddr;

use crate::config::Config;

/// The URL of a service the front door does not route: `port` (from
/// `launch.toml`) on the best address known; empty without a port.
pub async fn unrouted(config: &Config, registered: &str, port: Option<u16>) -> String {
    let Some(port) = port else {
        return String::new();
    };
    let local = if registered.is_empty() && config.advertise_host == config.hostname {
        local_address_toward(&config.control_urls.current()).await
    } else {
        None
    };
    let host = host_for(registered, &config.advertise_host, &config.hostname, local);
    direct(&host, port)
}

/// The registered address, else an `--advertise-host` that is not the
/// kernel hostname (its default), else the local address, else the hostname.
fn host_for(registered: &str, advertised: &str, hostname: &str, local: Option<IpAddr>) -> String {
    if !registered.is_empty() {
        registered.to_owned()
    } else if advertised != hostname {
        advertised.to_owned()
    } else if let Some(ip) = local {
        ip.to_string()
    } else {
        hostname.to_owned()
    }
}

/// The address of this host's interface that routes to the control plane:
/// what connecting a UDP socket picks (no packet is sent).
async fn local_address_toward(control_url: &str) -> Option<IpAddr> {
    let endpoint = crate::resolve::endpoint(control_url).await.ok()?;
    let uri = endpoint.uri();
    let ip: IpAddr = uri
        .host()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let port = uri.port_u16().unwrap_or(80);
    let any: IpAddr = if ip.is_ipv4() {
        [0, 0, 0, 0].into()
    } else {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    };
    let socket = std::net::UdpSocket::bind((any, 0)).ok()?;
    socket.connect((ip, port)).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

/// `https://host/` (or `http://host:port/`), the ports left out when default.
pub fn routed(host: &str, tls: bool, http_port: u16, https_port: u16) -> String {
    match (tls, http_port, https_port) {
        (true, _, 443) => format!("https://{host}/"),
        (true, _, port) => format!("https://{host}:{port}/"),
        (false, 80, _) => format!("http://{host}/"),
        (false, port, _) => format!("http://{host}:{port}/"),
    }
}

/// `http://address:port/`, an IPv6 address in brackets.
fn direct(address: &str, port: u16) -> String {
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("http://[{v6}]:{port}/"),
        _ => format!("http://{address}:{port}/"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routed_urls_use_https_when_the_name_gets_a_certificate() {
        assert_eq!(
            routed("hello.example.com", true, 80, 443),
            "https://hello.example.com/"
        );
        assert_eq!(routed("a.test", true, 8080, 8443), "https://a.test:8443/");
        assert_eq!(routed("a.localhost", false, 80, 443), "http://a.localhost/");
        assert_eq!(
            routed("a.localhost", false, 41000, 41001),
            "http://a.localhost:41000/"
        );
    }

    #[test]
    fn the_registered_address_wins_and_the_kernel_hostname_comes_last() {
        let local = Some(IpAddr::from([10, 0, 1, 5]));
        let table = [
            ("203.0.113.7", "ip-10-0-1-5", local, "203.0.113.7"),
            ("", "hello.lan", local, "hello.lan"),
            ("", "ip-10-0-1-5", local, "10.0.1.5"),
            ("", "ip-10-0-1-5", None, "ip-10-0-1-5"),
        ];
        for (registered, advertised, local, expected) in table {
            assert_eq!(
                host_for(registered, advertised, "ip-10-0-1-5", local),
                expected,
                "{registered:?} {advertised:?} {local:?}"
            );
        }
        assert_eq!(direct("203.0.113.7", 8080), "http://203.0.113.7:8080/");
        assert_eq!(direct("2001:db8::1", 80), "http://[2001:db8::1]:80/");
    }

    #[tokio::test]
    async fn the_local_address_is_the_one_that_routes_to_the_control_plane() {
        assert_eq!(
            local_address_toward("http://127.0.0.1:7400").await,
            Some(IpAddr::from([127, 0, 0, 1]))
        );
        assert_eq!(
            local_address_toward("https://localhost:7400").await,
            Some(IpAddr::from([127, 0, 0, 1]))
        );
    }
}
