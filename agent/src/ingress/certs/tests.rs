//! The certificate manager's schedule on tokio's paused clock, with a local
//! issuer standing in for the ACME server (the e2e tests use real pebble):
//! what is ordered when, what is served, and what survives a restart.

use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

const DAY: Duration = Duration::from_secs(86_400);

/// Issues certificates valid for `lifetime` from the (tokio-following)
/// clock's now, or fails while `failing` is set; records every order.
#[derive(Clone)]
struct LocalIssuer {
    clock: Clock,
    lifetime: Duration,
    failing: Arc<AtomicBool>,
    orders: Arc<Mutex<Vec<(String, tokio::time::Instant)>>>,
}

impl LocalIssuer {
    fn new(clock: &Clock, lifetime: Duration) -> LocalIssuer {
        LocalIssuer {
            clock: clock.clone(),
            lifetime,
            failing: Arc::default(),
            orders: Arc::default(),
        }
    }

    fn orders(&self) -> Vec<String> {
        self.orders
            .lock()
            .unwrap()
            .iter()
            .map(|(h, _)| h.clone())
            .collect()
    }
}

impl Issuer for LocalIssuer {
    fn issue<'a>(
        &'a mut self,
        host: &'a str,
        _challenges: &'a Challenges,
    ) -> Pin<Box<dyn Future<Output = Result<Issued, String>> + Send + 'a>> {
        self.orders
            .lock()
            .unwrap()
            .push((host.to_owned(), tokio::time::Instant::now()));
        let failing = self.failing.load(Ordering::SeqCst);
        let now = self.clock.now();
        let lifetime = self.lifetime;
        Box::pin(async move {
            if failing {
                return Err("connect to acme.test:443: connection refused".to_owned());
            }
            let mut params = rcgen::CertificateParams::new(vec![host.to_owned()]).unwrap();
            params.not_before = now.into();
            params.not_after = (now + lifetime).into();
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            Ok(Issued {
                key_pem: key.serialize_pem(),
                chain_pem: cert.pem(),
            })
        })
    }
}

/// A private ACME server (its own root, as pebble): it may issue for `*.test`.
fn settings(clock: &Clock) -> AcmeSettings {
    let mut settings = AcmeSettings::new(AcmeServer {
        directory: "https://acme.test/dir".into(),
        ca_root_pem: Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
        email: None,
    });
    settings.clock = clock.clone();
    settings
}

fn start(
    dir: &Path,
    issuer: &LocalIssuer,
    clock: &Clock,
    shutdown: &CancellationToken,
) -> Arc<AcmeCertificates> {
    AcmeCertificates::start_with(
        settings(clock),
        Store::new(dir),
        issuer.clone(),
        shutdown.clone(),
    )
}

/// Lets the manager run until `done` holds, in one-minute steps of paused
/// time, for at most a day.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..24 * 60 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    panic!("never happened: {what}");
}

fn names(hosts: &[&str]) -> Vec<String> {
    hosts.iter().map(|h| (*h).to_owned()).collect()
}

#[tokio::test(start_paused = true)]
async fn a_certificate_is_ordered_once_then_renewed_at_two_thirds_of_its_lifetime() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::following_tokio();
    let issuer = LocalIssuer::new(&clock, 90 * DAY);
    let shutdown = CancellationToken::new();
    let certs = start(dir.path(), &issuer, &clock, &shutdown);
    certs.set_names(&names(&["hello.test"]));
    until("the first certificate", || {
        certs.has_certificate("hello.test")
    })
    .await;
    let first_expiry = match &certs.status()[0].state {
        CertificateState::Issued {
            expires, renew_at, ..
        } => {
            let renew_at = renew_at.unwrap();
            assert!(renew_at > clock.now() + 55 * DAY && renew_at <= clock.now() + 60 * DAY);
            *expires
        }
        other => panic!("not issued: {other:?}"),
    };

    // Before two-thirds (minus the most jitter, 4.5 days) nothing is ordered.
    tokio::time::sleep(55 * DAY).await;
    assert_eq!(issuer.orders(), ["hello.test"]);
    // After two-thirds it has been renewed once.
    tokio::time::sleep(6 * DAY).await;
    assert_eq!(issuer.orders(), ["hello.test", "hello.test"]);
    match &certs.status()[0].state {
        CertificateState::Issued { expires, .. } => assert!(*expires > first_expiry + 55 * DAY),
        other => panic!("not issued: {other:?}"),
    }
    shutdown.cancel();
    certs.stopped().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_renewal_is_retried_with_backoff_while_the_old_certificate_serves() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::following_tokio();
    let issuer = LocalIssuer::new(&clock, 90 * DAY);
    let shutdown = CancellationToken::new();
    let certs = start(dir.path(), &issuer, &clock, &shutdown);
    certs.set_names(&names(&["hello.test"]));
    until("the first certificate", || {
        certs.has_certificate("hello.test")
    })
    .await;

    issuer.failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(60 * DAY).await; // past the renewal time
    until("four failed attempts", || issuer.orders().len() >= 5).await;
    let times: Vec<_> = issuer
        .orders
        .lock()
        .unwrap()
        .iter()
        .map(|(_, t)| *t)
        .collect();
    let gaps: Vec<u64> = times[1..]
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs())
        .collect();
    assert_eq!(gaps[..3], [60, 120, 240], "retries double from 60 s");
    match &certs.status()[0].state {
        CertificateState::Failed {
            error,
            attempts,
            expires,
            ..
        } => {
            assert!(error.contains("connection refused"), "{error}");
            assert!(*attempts >= 4);
            assert!(expires.is_some(), "the old certificate is still live");
        }
        other => panic!("not failed: {other:?}"),
    }
    assert!(
        certs.has_certificate("hello.test"),
        "the old certificate still serves"
    );
    let line = certs.status()[0].to_string();
    assert!(
        line.contains("failed") && line.contains("still serving"),
        "{line}"
    );

    // The ACME server is back: the next retry succeeds and the failure clears.
    issuer.failing.store(false, Ordering::SeqCst);
    until("a renewed certificate", || {
        matches!(certs.status()[0].state, CertificateState::Issued { .. })
    })
    .await;
    shutdown.cancel();
    certs.stopped().await;
}

#[tokio::test(start_paused = true)]
async fn a_public_ca_is_never_asked_for_a_special_use_name() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::following_tokio();
    let issuer = LocalIssuer::new(&clock, 90 * DAY);
    let shutdown = CancellationToken::new();
    let mut public = settings(&clock);
    public.server.ca_root_pem = None;
    let certs = AcmeCertificates::start_with(
        public,
        Store::new(dir.path()),
        issuer.clone(),
        shutdown.clone(),
    );
    certs.set_names(&names(&[
        "hello.test",
        "web.localhost",
        "intranet",
        "hello.example.com",
    ]));
    // The positive control: the public name is ordered and served.
    until("the public name's certificate", || {
        certs.has_certificate("hello.example.com")
    })
    .await;
    tokio::time::sleep(DAY).await;
    assert_eq!(issuer.orders(), ["hello.example.com"]);
    shutdown.cancel();
    certs.stopped().await;
}

#[test]
fn special_use_names_are_not_publicly_issuable() {
    for name in [
        "hello.example.com",
        "a.b.co",
        "testing.com",
        "localhost.example.org",
    ] {
        assert!(publicly_issuable(name), "{name}");
    }
    for name in [
        "hello.test",
        "web.localhost",
        "localhost",
        "x.invalid",
        "printer.local",
        "db.internal",
        "nas.home.arpa",
        "intranet",
        "x.onion",
        "a.example",
        "b.alt",
    ] {
        assert!(!publicly_issuable(name), "{name}");
    }
}

#[tokio::test(start_paused = true)]
async fn only_names_in_the_route_table_are_ordered_and_served() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::following_tokio();
    let issuer = LocalIssuer::new(&clock, 90 * DAY);
    let shutdown = CancellationToken::new();
    let certs = start(dir.path(), &issuer, &clock, &shutdown);
    certs.set_names(&names(&["hello.test", "Bad/Name", "../x"]));
    until("the certificate", || certs.has_certificate("hello.test")).await;
    tokio::time::sleep(DAY).await;
    assert_eq!(issuer.orders(), ["hello.test"]);
    assert!(!certs.has_certificate("other.test"));
    assert_eq!(certs.status().len(), 1, "invalid names are dropped");

    // A name leaving the table stops being served (its file stays).
    certs.set_names(&[]);
    assert!(!certs.has_certificate("hello.test"));
    certs.set_names(&names(&["HELLO.test."]));
    assert!(certs.has_certificate("hello.test"));
    assert_eq!(issuer.orders(), ["hello.test"]);
    shutdown.cancel();
    certs.stopped().await;
}

#[tokio::test(start_paused = true)]
async fn a_restarted_manager_serves_from_disk_and_orders_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::following_tokio();
    let issuer = LocalIssuer::new(&clock, 90 * DAY);
    let shutdown = CancellationToken::new();
    let certs = start(dir.path(), &issuer, &clock, &shutdown);
    certs.set_names(&names(&["hello.test"]));
    until("the certificate", || certs.has_certificate("hello.test")).await;
    shutdown.cancel();
    certs.stopped().await;

    let again = LocalIssuer::new(&clock, 90 * DAY);
    let shutdown = CancellationToken::new();
    let certs = start(dir.path(), &again, &clock, &shutdown);
    certs.set_names(&names(&["hello.test"]));
    assert!(certs.has_certificate("hello.test"));
    tokio::time::sleep(DAY).await;
    assert!(again.orders().is_empty(), "ordered {:?}", again.orders());
    shutdown.cancel();
    certs.stopped().await;
}

#[tokio::test(start_paused = true)]
async fn a_user_certificate_is_served_and_never_ordered_or_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::following_tokio();
    let issuer = LocalIssuer::new(&clock, 90 * DAY);
    let shutdown = CancellationToken::new();
    let certs = start(dir.path(), &issuer, &clock, &shutdown);
    let mut own = LocalIssuer::new(&clock, 30 * DAY);
    let pair = own
        .issue("shop.test", &Challenges::default())
        .await
        .unwrap();
    certs
        .install_user_certificate("shop.test", &pair.chain_pem, &pair.key_pem)
        .unwrap();
    certs.set_names(&names(&["shop.test"]));
    assert!(certs.has_certificate("shop.test"));
    tokio::time::sleep(25 * DAY).await;
    assert!(issuer.orders().is_empty(), "ordered {:?}", issuer.orders());
    assert!(
        matches!(
            certs.status()[0].state,
            CertificateState::Issued {
                source: Source::User,
                ..
            }
        ),
        "{:?}",
        certs.status()
    );
    let wrong = certs.install_user_certificate("shop.test", &pair.chain_pem, "not a key");
    assert!(matches!(wrong, Err(StoreError::NoKey)), "{wrong:?}");
    shutdown.cancel();
    certs.stopped().await;
}
