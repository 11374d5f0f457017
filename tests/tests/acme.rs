//! Automatic TLS against a real ACME server: Debian's pebble validating
//! HTTP-01 for real (through challtestsrv's DNS, to the door's HTTP port),
//! the agent's certificate manager ordering, storing, serving and renewing,
//! and a rustls client trusting only pebble's root checking what is served.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use launch_agent::ingress::Certificates;
use launch_agent::ingress::certs::{CertificateState, Clock, Source};
use launch_e2e::cert_door::CertDoor;
use launch_e2e::pebble::{Pebble, PebbleOptions};
use launch_e2e::poll::eventually;
use launch_e2e::unique::free_port;

const ISSUE: Duration = Duration::from_secs(60);

fn pebble(validity: Option<Duration>) -> Pebble {
    Pebble::start(PebbleOptions {
        http_port: free_port(),
        validity,
    })
}

fn names(hosts: &[&str]) -> Vec<String> {
    hosts.iter().map(|h| (*h).to_owned()).collect()
}

/// Waits until `host` is served over HTTPS with a certificate from `root`.
fn served(door: &CertDoor, root: &str, host: &str) {
    let body = eventually(ISSUE, &format!("an HTTPS answer for {host}"), || {
        door.get(root, host)
    });
    assert_eq!(body, format!("hello from {host}"));
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn acme_issues_a_certificate_only_for_routed_names_and_serves_it_by_sni() {
    let pebble = pebble(None);
    let data = tempfile::tempdir().unwrap();
    let door = CertDoor::start(&pebble, data.path(), Clock::system());
    let root = pebble.issuing_root_pem();

    door.certs.set_names(&names(&["hello.test"]));
    served(&door, &root, "hello.test");
    assert_eq!(pebble.orders(), 1);
    match &door.certs.status()[..] {
        [status] => {
            assert_eq!(status.host, "hello.test");
            assert!(
                matches!(
                    status.state,
                    CertificateState::Issued {
                        source: Source::Acme,
                        ..
                    }
                ),
                "{status}"
            );
        }
        other => panic!("one name expected: {other:?}"),
    }

    // A name the route table does not hold: a TLS alert, and no order.
    let refused = door.get(&root, "other.test").unwrap_err();
    assert!(refused.contains("alert"), "{refused}");
    assert!(!door.certs.has_certificate("other.test"));
    // The manager is alive and ordering (a name added later gets its
    // certificate), yet the unrouted name got no order.
    door.certs.set_names(&names(&["hello.test", "late.test"]));
    served(&door, &root, "late.test");
    assert_eq!(
        pebble.orders(),
        2,
        "orders for hello.test and late.test only"
    );
    assert!(door.get(&root, "other.test").is_err());

    // The account key and certificates are 0600; the walk finds them.
    let files = files_under(data.path());
    let named = |suffix: &str| files.iter().any(|f| f.to_string_lossy().ends_with(suffix));
    assert!(
        named("/tls/acme/hello.test.pem") && named("/tls/acme/late.test.pem"),
        "{files:?}"
    );
    assert!(
        files.iter().any(|f| f
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("account-")),
        "{files:?}"
    );
    for file in &files {
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
}

#[test]
fn a_restarted_agent_serves_its_certificate_from_disk_without_a_new_order() {
    let pebble = pebble(None);
    let data = tempfile::tempdir().unwrap();
    let root = pebble.issuing_root_pem();
    let door = CertDoor::start(&pebble, data.path(), Clock::system());
    door.certs.set_names(&names(&["hello.test"]));
    served(&door, &root, "hello.test");
    assert_eq!(pebble.orders(), 1);
    drop(door);

    let door = CertDoor::start(&pebble, data.path(), Clock::system());
    door.certs.set_names(&names(&["hello.test"]));
    // Served at once, before any ACME exchange could have finished.
    assert_eq!(
        door.get(&root, "hello.test").unwrap(),
        "hello from hello.test"
    );
    // A new name is still ordered (the manager runs), the old one is not.
    door.certs.set_names(&names(&["hello.test", "two.test"]));
    served(&door, &root, "two.test");
    assert_eq!(pebble.orders(), 2);
}

#[test]
fn a_short_lived_certificate_is_renewed_without_a_failed_handshake() {
    // 24 s certificates: renewed at 16 s (up to 1.2 s earlier with jitter).
    let pebble = pebble(Some(Duration::from_secs(24)));
    let data = tempfile::tempdir().unwrap();
    let root = pebble.issuing_root_pem();
    let door = CertDoor::start(&pebble, data.path(), Clock::system());
    door.certs.set_names(&names(&["hello.test"]));
    served(&door, &root, "hello.test");
    let first = door.leaf(&root, "hello.test").unwrap();
    let mut handshakes = 0;
    eventually(Duration::from_secs(45), "a renewed certificate", || {
        // Every handshake along the way must succeed.
        let leaf = door
            .leaf(&root, "hello.test")
            .unwrap_or_else(|e| panic!("handshake {handshakes} failed during renewal: {e}"));
        handshakes += 1;
        if leaf != first {
            Ok(())
        } else {
            Err(format!(
                "still the first certificate after {handshakes} handshakes"
            ))
        }
    });
    assert_eq!(pebble.orders(), 2);
}

#[test]
fn acme_down_shows_the_error_retries_with_backoff_and_the_certificate_keeps_serving() {
    let mut pebble = pebble(Some(Duration::from_secs(3600)));
    let data = tempfile::tempdir().unwrap();
    let root = pebble.issuing_root_pem();
    // The agent's clock, which the test can move ahead.
    let ahead = Arc::new(AtomicU64::new(0));
    let offset = ahead.clone();
    let clock = Clock::from_fn(move || {
        SystemTime::now() + Duration::from_secs(offset.load(Ordering::SeqCst))
    });
    let door = CertDoor::start(&pebble, data.path(), clock);
    door.certs.set_names(&names(&["hello.test"]));
    served(&door, &root, "hello.test");

    pebble.stop();
    // 50 minutes into a 60-minute certificate: past the renewal time.
    ahead.store(50 * 60, Ordering::SeqCst);
    let (error, attempts) =
        eventually(
            Duration::from_secs(30),
            "three failed attempts",
            || match &door.certs.status()[0].state {
                CertificateState::Failed {
                    error,
                    attempts,
                    expires,
                    ..
                } if *attempts >= 3 => {
                    assert!(expires.is_some(), "the old certificate counts as live");
                    Ok((error.clone(), *attempts))
                }
                other => Err(format!("{other:?}")),
            },
        );
    assert!(error.contains(&pebble.directory_url()), "{error}");
    assert!(error.contains("connect"), "{error}");
    let line = door.certs.status()[0].to_string();
    assert!(
        line.contains("failed") && line.contains("still serving"),
        "{line}"
    );
    // Backoff: retries are spaced out (300 ms, 600 ms, 1.2 s, then 2 s), so
    // one more second adds at most two attempts.
    std::thread::sleep(Duration::from_secs(1));
    match &door.certs.status()[0].state {
        CertificateState::Failed { attempts: now, .. } => {
            assert!(*now <= attempts + 2, "{attempts} then {now} attempts")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        door.get(&root, "hello.test").unwrap(),
        "hello from hello.test"
    );
}
