//! The front door as a heartbeat reports it: every route of the table with
//! its host names, routed release and the state of each name's certificate,
//! and every route's counters under the agent's counter epoch. The control
//! plane keeps the latest state for `launch status` and turns the counters
//! into totals for `/metrics`.

use std::sync::Arc;
use std::time::SystemTime;

use launch_proto::{
    CertificateState as State, FrontDoorCertificate, FrontDoorReport, FrontDoorRoute,
};

use super::Router;
use super::certs::{AcmeCertificates, CertificateState, CertificateStatus, Source};

/// Builds the heartbeat's [`FrontDoorReport`].
#[derive(Clone)]
pub struct Reporter {
    router: Arc<Router>,
    certificates: Arc<AcmeCertificates>,
}

impl Reporter {
    pub fn new(router: Arc<Router>, certificates: Arc<AcmeCertificates>) -> Reporter {
        Reporter {
            router,
            certificates,
        }
    }

    /// The routes, certificates and counters as they are now.
    pub fn report(&self) -> FrontDoorReport {
        report(
            &self.router,
            &self.certificates.status(),
            self.router.counters().epoch(),
        )
    }
}

fn report(router: &Router, certificates: &[CertificateStatus], epoch: &str) -> FrontDoorReport {
    let routes = router
        .snapshot()
        .routes
        .into_iter()
        .map(|(route, entry)| FrontDoorRoute {
            certificates: entry
                .hosts
                .iter()
                .filter_map(|host| certificates.iter().find(|c| &c.host == host))
                .map(certificate)
                .collect(),
            route,
            hosts: entry.hosts,
            release_id: if entry.upstream.is_some() {
                entry.release_id
            } else {
                String::new()
            },
        })
        .collect();
    FrontDoorReport {
        counters_epoch: epoch.to_owned(),
        routes,
        counters: router.counters().snapshot(),
    }
}

fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

fn certificate(status: &CertificateStatus) -> FrontDoorCertificate {
    let mut out = FrontDoorCertificate {
        host: status.host.clone(),
        ..Default::default()
    };
    match &status.state {
        CertificateState::Pending => out.state = State::Pending as i32,
        CertificateState::Issued {
            source, expires, ..
        } => {
            out.state = State::Issued as i32;
            out.expires_unix_ms = unix_ms(*expires);
            out.user_provided = *source == Source::User;
        }
        CertificateState::Renewing { expires } => {
            out.state = State::Renewing as i32;
            out.expires_unix_ms = unix_ms(*expires);
        }
        CertificateState::Failed {
            error,
            attempts,
            retry_at,
            expires,
        } => {
            out.state = State::Failed as i32;
            out.error = error.clone();
            out.attempts = *attempts;
            out.retry_unix_ms = unix_ms(*retry_at);
            out.expires_unix_ms = expires.map(unix_ms).unwrap_or_default();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ingress::NoCertificates;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn the_report_holds_each_route_its_release_certificates_and_counters() {
        let dir = tempfile::tempdir().unwrap();
        let router =
            Router::restore(dir.path().join("routes.json"), Arc::new(NoCertificates)).unwrap();
        let upstream = "127.0.0.1:8080".parse().unwrap();
        router
            .switch(
                "web",
                &[
                    "hello.test".into(),
                    "www.hello.test".into(),
                    "plain.localhost".into(),
                ],
                Some((upstream, "rel-2")),
            )
            .unwrap();
        router.switch("api", &["api.test".into()], None).unwrap();
        router
            .counters()
            .route("web")
            .response(200, Duration::from_millis(1));
        let certificates = [
            CertificateStatus {
                host: "hello.test".into(),
                state: CertificateState::Issued {
                    source: Source::Acme,
                    expires: at(2_000),
                    renew_at: Some(at(1_500)),
                },
            },
            CertificateStatus {
                host: "www.hello.test".into(),
                state: CertificateState::Failed {
                    error: "connection refused".into(),
                    attempts: 2,
                    retry_at: at(1_100),
                    expires: None,
                },
            },
            CertificateStatus {
                host: "api.test".into(),
                state: CertificateState::Renewing { expires: at(3_000) },
            },
        ];

        let report = report(&router, &certificates, "epoch-1");

        assert_eq!(report.counters_epoch, "epoch-1");
        let api = &report.routes[0];
        assert_eq!(
            (api.route.as_str(), api.release_id.as_str()),
            ("api", ""),
            "a route without a healthy release names none"
        );
        assert_eq!(api.certificates[0].state, State::Renewing as i32);
        assert_eq!(api.certificates[0].expires_unix_ms, 3_000_000);
        let web = &report.routes[1];
        assert_eq!(web.route, "web");
        assert_eq!(web.release_id, "rel-2");
        assert_eq!(
            web.hosts,
            ["hello.test", "plain.localhost", "www.hello.test"]
        );
        let states: Vec<(&str, i32)> = web
            .certificates
            .iter()
            .map(|c| (c.host.as_str(), c.state))
            .collect();
        assert_eq!(
            states,
            [
                ("hello.test", State::Issued as i32),
                ("www.hello.test", State::Failed as i32)
            ],
            "a name without a managed certificate has no entry"
        );
        assert_eq!(web.certificates[0].expires_unix_ms, 2_000_000);
        assert!(!web.certificates[0].user_provided);
        let failed = &web.certificates[1];
        assert_eq!(
            (failed.error.as_str(), failed.attempts, failed.retry_unix_ms),
            ("connection refused", 2, 1_100_000)
        );
        assert_eq!(failed.expires_unix_ms, 0);
        assert_eq!(report.counters.len(), 1);
        assert_eq!(report.counters[0].route, "web");
        assert_eq!(report.counters[0].responses_by_class[1], 1);
    }
}
