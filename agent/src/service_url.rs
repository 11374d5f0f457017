//! The URL a deploy reports for its service: one a person can open. A
//! routed service is reached by its first host name through the front
//! door, over HTTPS when the agent's ACME client can certify that name (a
//! public name, or any name with a private ACME server), else over HTTP.
//! Any other service is reached at its published port on the address the
//! provider registered for the host (`Mission.host_address`), falling back
//! to `--advertise-host` (the kernel hostname when not given, which on a
//! cloud host often resolves only inside its network).

use std::net::IpAddr;

/// `https://host/` (or `http://host:port/`), the ports left out when default.
pub fn routed(host: &str, tls: bool, http_port: u16, https_port: u16) -> String {
    match (tls, http_port, https_port) {
        (true, _, 443) => format!("https://{host}/"),
        (true, _, port) => format!("https://{host}:{port}/"),
        (false, 80, _) => format!("http://{host}/"),
        (false, port, _) => format!("http://{host}:{port}/"),
    }
}

/// `http://address:port/` on the registered address, else the advertised one.
pub fn direct(registered: &str, advertised: &str, port: u16) -> String {
    let address = if registered.is_empty() {
        advertised
    } else {
        registered
    };
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
    fn direct_urls_prefer_the_registered_address_over_the_hostname() {
        assert_eq!(
            direct("203.0.113.7", "ip-10-0-1-5", 8080),
            "http://203.0.113.7:8080/"
        );
        assert_eq!(direct("", "127.0.0.1", 8080), "http://127.0.0.1:8080/");
        assert_eq!(direct("2001:db8::1", "h", 80), "http://[2001:db8::1]:80/");
    }
}
