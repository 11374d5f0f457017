//! How `status` and `services` show a service's front door, as its agent
//! last reported it: each route with the release it sends traffic to, and
//! each host name with its certificate (issued and when it expires,
//! renewing, pending, or failed with the ACME error and the next try).

use launch_proto::{CertificateState, FrontDoorCertificate, FrontDoorRoute, ServiceInfo};
use serde_json::{Value, json};

fn time(unix_ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_ms.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

fn state_label(state: i32) -> &'static str {
    match CertificateState::try_from(state).unwrap_or_default() {
        CertificateState::Unspecified => "none",
        CertificateState::Pending => "pending",
        CertificateState::Issued => "issued",
        CertificateState::Renewing => "renewing",
        CertificateState::Failed => "failed",
    }
}

/// One host's certificate in words.
pub fn certificate_text(certificate: Option<&FrontDoorCertificate>) -> String {
    let Some(c) = certificate else {
        return "no certificate (plain HTTP)".to_owned();
    };
    let expires = (c.expires_unix_ms > 0).then(|| time(c.expires_unix_ms));
    match CertificateState::try_from(c.state).unwrap_or_default() {
        CertificateState::Issued => format!(
            "certificate issued{}, expires {}",
            if c.user_provided {
                " (user-provided)"
            } else {
                ""
            },
            expires.unwrap_or_default()
        ),
        CertificateState::Renewing => {
            format!(
                "certificate renewing, expires {}",
                expires.unwrap_or_default()
            )
        }
        CertificateState::Failed => {
            let mut text = format!(
                "certificate failed ({} attempts): {}; next try {}",
                c.attempts,
                c.error,
                time(c.retry_unix_ms)
            );
            if let Some(expires) = expires {
                text.push_str(&format!(
                    "; still serving the certificate expiring {expires}"
                ));
            }
            text
        }
        CertificateState::Pending | CertificateState::Unspecified => {
            "certificate pending".to_owned()
        }
    }
}

/// The lines under the services table for every service with routes.
pub fn print(services: &[ServiceInfo]) {
    for service in services.iter().filter(|s| !s.routes.is_empty()) {
        let target = service.target.clone().unwrap_or_default();
        for route in &service.routes {
            let release = if route.release_id.is_empty() {
                "no healthy release (503)".to_owned()
            } else {
                format!("release {}", route.release_id)
            };
            println!(
                "{}/{} front door: {} → {release}",
                target.service, target.environment, route.route
            );
            for host in &route.hosts {
                let certificate = route.certificates.iter().find(|c| &c.host == host);
                println!("  {host}: {}", certificate_text(certificate));
            }
        }
    }
}

/// The routes in `status --output json`.
pub fn json(routes: &[FrontDoorRoute]) -> Value {
    Value::Array(
        routes
            .iter()
            .map(|route| {
                json!({
                    "route": route.route,
                    "hosts": route.hosts,
                    "release_id": route.release_id,
                    "certificates": route.certificates.iter().map(|c| json!({
                        "host": c.host,
                        "state": state_label(c.state),
                        "expires_unix_ms": c.expires_unix_ms,
                        "error": c.error,
                        "attempts": c.attempts,
                        "retry_unix_ms": c.retry_unix_ms,
                        "user_provided": c.user_provided,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(state: CertificateState) -> FrontDoorCertificate {
        FrontDoorCertificate {
            host: "hello.test".into(),
            state: state as i32,
            expires_unix_ms: 86_400_000,
            error: "connection refused".into(),
            attempts: 3,
            retry_unix_ms: 60_000,
            user_provided: false,
        }
    }

    #[test]
    fn each_certificate_state_reads_with_its_times_and_error() {
        assert_eq!(
            certificate_text(Some(&certificate(CertificateState::Issued))),
            "certificate issued, expires 1970-01-02T00:00:00Z"
        );
        assert_eq!(
            certificate_text(Some(&certificate(CertificateState::Renewing))),
            "certificate renewing, expires 1970-01-02T00:00:00Z"
        );
        assert_eq!(
            certificate_text(Some(&certificate(CertificateState::Failed))),
            "certificate failed (3 attempts): connection refused; next try 1970-01-01T00:01:00Z; still serving the certificate expiring 1970-01-02T00:00:00Z"
        );
        assert_eq!(
            certificate_text(Some(&certificate(CertificateState::Pending))),
            "certificate pending"
        );
        assert_eq!(certificate_text(None), "no certificate (plain HTTP)");
    }

    #[test]
    fn routes_in_json_name_states_as_labels() {
        let routes = [FrontDoorRoute {
            route: "web".into(),
            hosts: vec!["hello.test".into()],
            release_id: "rel-1".into(),
            certificates: vec![certificate(CertificateState::Failed)],
        }];
        let value = json(&routes);
        assert_eq!(value[0]["release_id"], "rel-1");
        assert_eq!(value[0]["hosts"][0], "hello.test");
        assert_eq!(value[0]["certificates"][0]["state"], "failed");
        assert_eq!(value[0]["certificates"][0]["error"], "connection refused");
    }
}
