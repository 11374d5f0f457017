//! Automatic TLS for the front door: [`AcmeCertificates`] keeps a live
//! certificate for every name the route table hands it (`set_names`), and for
//! no other name: a TLS handshake for an unknown SNI gets no certificate, and
//! never causes an order (on-demand issuance for any SNI is how ACME accounts
//! get abused). Certificates are loaded from the data dir at start, so a
//! restarted agent serves at once and orders nothing for a valid certificate;
//! they are renewed at two-thirds of their lifetime (with jitter); a failed
//! order is retried with backoff while the existing certificate keeps being
//! served. There is no self-signed fallback: a name without a certificate
//! gets a TLS alert, and its state says why (`status`, and each order's
//! outcome for the service's log: `outcomes`). A certificate/key pair given by
//! the user replaces ACME for its name.
//!
//! # Layout
//! - `schedule`: renewal times, retry backoff, the clock.
//! - `store`: the files in `<data dir>/tls/`.
//! - `validity`: notBefore/notAfter from a certificate's DER.

mod schedule;
mod store;
mod validity;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use schedule::{Backoff, Clock};
pub use store::{Source, StoreError};

use super::Certificates;
use super::acme::{AcmeClient, AcmeServer, Challenges, Issued};
use store::{Store, Stored};

/// Longest one order (account, challenge, validation, certificate) may take.
const ORDER_DEADLINE: Duration = Duration::from_secs(180);

/// What [`AcmeCertificates::start`] needs: the ACME server and the timing.
#[derive(Clone)]
pub struct AcmeSettings {
    pub server: AcmeServer,
    /// Wait after the first failed order; doubled per failure up to `retry.max`.
    pub retry: Backoff,
    /// Longest the manager sleeps before looking at the clock again.
    pub recheck: Duration,
    pub clock: Clock,
}

impl AcmeSettings {
    pub fn new(server: AcmeServer) -> AcmeSettings {
        AcmeSettings {
            server,
            retry: Backoff {
                first: Duration::from_secs(60),
                max: Duration::from_secs(6 * 3600),
            },
            recheck: Duration::from_secs(3600),
            clock: Clock::system(),
        }
    }

    pub fn from_config(config: &crate::Config) -> AcmeSettings {
        AcmeSettings::new(AcmeServer {
            directory: config.acme_directory.clone(),
            ca_root_pem: config.acme_ca_root.clone(),
            email: config.acme_email.clone(),
        })
    }
}

/// The state of one name's certificate, for `launch status` and the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertificateState {
    /// No certificate yet; an order is due or under way.
    Pending,
    /// A live certificate, renewed from `renew_at` on.
    Issued {
        source: Source,
        expires: SystemTime,
        renew_at: Option<SystemTime>,
    },
    /// A live certificate being renewed right now.
    Renewing { expires: SystemTime },
    /// The last order failed with `error`; the next is at `retry_at`. A
    /// certificate that has not expired (`expires`) is still served.
    Failed {
        error: String,
        attempts: u32,
        retry_at: SystemTime,
        expires: Option<SystemTime>,
    },
}

/// One name and the state of its certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateStatus {
    pub host: String,
    pub state: CertificateState,
}

impl std::fmt::Display for CertificateStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let time = |t: &SystemTime| humantime::format_rfc3339_seconds(*t);
        match &self.state {
            CertificateState::Pending => write!(f, "{}: pending", self.host),
            CertificateState::Issued {
                source, expires, ..
            } => {
                let by = if *source == Source::User {
                    " (user-provided)"
                } else {
                    ""
                };
                write!(f, "{}: issued{by}, expires {}", self.host, time(expires))
            }
            CertificateState::Renewing { expires } => {
                write!(f, "{}: renewing, expires {}", self.host, time(expires))
            }
            CertificateState::Failed {
                error,
                attempts,
                retry_at,
                expires,
            } => {
                write!(
                    f,
                    "{}: failed ({attempts} attempts): {error}; next try {}",
                    self.host,
                    time(retry_at)
                )?;
                match expires {
                    Some(expires) => write!(
                        f,
                        "; still serving the certificate expiring {}",
                        time(expires)
                    ),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Certificates for the front door, issued and renewed by ACME (HTTP-01).
pub struct AcmeCertificates {
    shared: Arc<Shared>,
    challenges: Challenges,
    store: Store,
    task: Mutex<Option<JoinHandle<()>>>,
    /// The ACME server is a private one (`--acme-ca-root`): it may issue for
    /// names no public CA can (`*.test`, `*.localhost`, …).
    private_ca: bool,
}

/// Special-use names (RFC 6761, 6762, 8375, 9476 and ICANN's `.internal`)
/// that can never be in public DNS: a public CA refuses them, so asking one
/// only spends its rate limit (and, offline, a connection that cannot work).
const SPECIAL_USE_SUFFIXES: [&str; 9] = [
    "localhost",
    "test",
    "invalid",
    "example",
    "local",
    "internal",
    "home.arpa",
    "onion",
    "alt",
];

/// Whether a public CA could ever issue for `host`: it has a dot and is not
/// a special-use name.
pub fn publicly_issuable(host: &str) -> bool {
    host.contains('.')
        && !SPECIAL_USE_SUFFIXES
            .iter()
            .any(|suffix| host == *suffix || host.ends_with(&format!(".{suffix}")))
}

/// What the manager task and the TLS resolver share.
struct Shared {
    state: Mutex<State>,
    clock: Clock,
    wake: Notify,
    /// Each order's outcome, as the name's state right after it.
    outcomes: broadcast::Sender<CertificateStatus>,
}

#[derive(Default)]
struct State {
    names: BTreeSet<String>,
    certificates: HashMap<String, Held>,
    failures: HashMap<String, Failure>,
    ordering: Option<String>,
}

struct Held {
    stored: Stored,
    renew_at: SystemTime,
}

struct Failure {
    error: String,
    attempts: u32,
    retry_at: SystemTime,
}

/// What places orders: ACME in the agent, a local issuer in unit tests.
pub(crate) trait Issuer: Send + 'static {
    fn issue<'a>(
        &'a mut self,
        host: &'a str,
        challenges: &'a Challenges,
    ) -> Pin<Box<dyn Future<Output = Result<Issued, String>> + Send + 'a>>;
}

/// The agent's issuer: an ACME account, registered on the first order.
struct Acme {
    server: AcmeServer,
    acme_dir: std::path::PathBuf,
    client: Option<AcmeClient>,
}

impl Issuer for Acme {
    fn issue<'a>(
        &'a mut self,
        host: &'a str,
        challenges: &'a Challenges,
    ) -> Pin<Box<dyn Future<Output = Result<Issued, String>> + Send + 'a>> {
        Box::pin(async move {
            if self.client.is_none() {
                let client = AcmeClient::connect(&self.server, &self.acme_dir)
                    .await
                    .map_err(|e| e.to_string())?;
                self.client = Some(client);
            }
            let client = self.client.as_ref().expect("connected above");
            client
                .issue(host, challenges)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

impl AcmeCertificates {
    /// Loads the certificates in `data_dir` and starts the task that orders
    /// and renews them until `shutdown`. Nothing is ordered before
    /// [`Certificates::set_names`] names a host.
    pub fn start(
        settings: AcmeSettings,
        data_dir: &Path,
        shutdown: CancellationToken,
    ) -> Arc<AcmeCertificates> {
        let store = Store::new(data_dir);
        let issuer = Acme {
            server: settings.server.clone(),
            acme_dir: store.acme_dir(),
            client: None,
        };
        Self::start_with(settings, store, issuer, shutdown)
    }

    pub(crate) fn start_with(
        settings: AcmeSettings,
        store: Store,
        issuer: impl Issuer,
        shutdown: CancellationToken,
    ) -> Arc<AcmeCertificates> {
        let private_ca = settings.server.ca_root_pem.is_some();
        let mut state = State::default();
        let (found, broken) = store.load_all();
        for (path, error) in broken {
            tracing::warn!(path = %path.display(), %error, "ignoring an unreadable certificate file");
        }
        for (host, stored) in found {
            tracing::info!(%host, expires = %humantime::format_rfc3339_seconds(stored.not_after), "certificate loaded from disk");
            state.certificates.insert(host, held(stored));
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            clock: settings.clock.clone(),
            wake: Notify::new(),
            outcomes: broadcast::channel(64).0,
        });
        let challenges = Challenges::default();
        let task = tokio::spawn(manage(
            shared.clone(),
            store.clone(),
            challenges.clone(),
            issuer,
            settings,
            shutdown,
        ));
        Arc::new(AcmeCertificates {
            shared,
            challenges,
            store,
            task: Mutex::new(Some(task)),
            private_ca,
        })
    }

    /// Every name of the route table and the state of its certificate.
    pub fn status(&self) -> Vec<CertificateStatus> {
        let state = self.shared.state.lock().unwrap();
        let now = self.shared.clock.now();
        state
            .names
            .iter()
            .map(|host| CertificateStatus {
                host: host.clone(),
                state: state.of(host, now),
            })
            .collect()
    }

    /// The state of a name after each order (issued, or failed with the
    /// ACME error): one per attempt, so retries with backoff are never spam.
    pub fn outcomes(&self) -> broadcast::Receiver<CertificateStatus> {
        self.shared.outcomes.subscribe()
    }

    /// Serves `cert_pem`/`key_pem` for `host` instead of ordering one; saved
    /// 0600 in the data dir, so it survives restarts.
    pub fn install_user_certificate(
        &self,
        host: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<(), StoreError> {
        let mut pem = key_pem.trim_end().to_owned();
        pem.push('\n');
        pem.push_str(cert_pem);
        let stored = self.store.save(Source::User, host, &pem)?;
        tracing::info!(%host, expires = %humantime::format_rfc3339_seconds(stored.not_after), "user certificate installed");
        let mut state = self.shared.state.lock().unwrap();
        state.failures.remove(host);
        state.certificates.insert(host.to_owned(), held(stored));
        Ok(())
    }

    /// Waits for the manager task to end (after `shutdown`).
    pub async fn stopped(&self) {
        let task = self.task.lock().unwrap().take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Certificates for AcmeCertificates {
    fn resolver(&self) -> Arc<dyn ResolvesServerCert> {
        Arc::new(Resolver(self.shared.clone()))
    }

    fn has_certificate(&self, host: &str) -> bool {
        self.shared.live(&host.to_ascii_lowercase()).is_some()
    }

    fn http01_response(&self, token: &str) -> Option<String> {
        self.challenges.response(token)
    }

    fn set_names(&self, names: &[String]) {
        let mut wanted = BTreeSet::new();
        for name in names {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            match store::check_name(&name) {
                Ok(()) if !self.private_ca && !publicly_issuable(&name) => tracing::info!(
                    host = %name,
                    "no certificate ordered: a public CA cannot issue for a special-use name (give --acme-ca-root for a private ACME server, or route a public DNS name)"
                ),
                Ok(()) => {
                    wanted.insert(name);
                }
                Err(error) => tracing::warn!(%error, "no certificate for this name"),
            }
        }
        let mut state = self.shared.state.lock().unwrap();
        state.failures.retain(|host, _| wanted.contains(host));
        state.names = wanted;
        drop(state);
        self.shared.wake.notify_one();
    }

    fn forget(&self, names: &[String]) {
        let mut state = self.shared.state.lock().unwrap();
        for name in names {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if state.names.contains(&name) {
                continue; // routed again meanwhile
            }
            if state
                .certificates
                .get(&name)
                .is_some_and(|held| held.stored.source == Source::Acme)
            {
                state.certificates.remove(&name);
            }
            if let Err(error) = self.store.forget(Source::Acme, &name) {
                tracing::warn!(host = %name, %error, "cannot delete a certificate");
            }
        }
    }
}

fn held(stored: Stored) -> Held {
    let renew_at = schedule::renew_at(stored.not_before, stored.not_after, rand::random::<f64>());
    Held { stored, renew_at }
}

impl State {
    fn of(&self, host: &str, now: SystemTime) -> CertificateState {
        let live = self
            .certificates
            .get(host)
            .filter(|held| held.stored.not_after > now);
        let expires = live.map(|held| held.stored.not_after);
        if let Some(failure) = self.failures.get(host) {
            return CertificateState::Failed {
                error: failure.error.clone(),
                attempts: failure.attempts,
                retry_at: failure.retry_at,
                expires,
            };
        }
        match (live, self.ordering.as_deref() == Some(host)) {
            (Some(held), true) => CertificateState::Renewing {
                expires: held.stored.not_after,
            },
            (Some(held), false) => CertificateState::Issued {
                source: held.stored.source,
                expires: held.stored.not_after,
                renew_at: (held.stored.source == Source::Acme).then_some(held.renew_at),
            },
            (None, _) => CertificateState::Pending,
        }
    }

    /// The names that need an order at `now`, and when the next one will.
    fn due(&self, now: SystemTime) -> (Vec<String>, Option<SystemTime>) {
        let mut due = Vec::new();
        let mut next: Option<SystemTime> = None;
        for host in &self.names {
            let mut at = match self.certificates.get(host) {
                Some(held) if held.stored.source == Source::User => continue,
                Some(held) => held.renew_at,
                None => now,
            };
            if let Some(failure) = self.failures.get(host) {
                at = at.max(failure.retry_at);
            }
            if at <= now {
                due.push(host.clone());
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        (due, next)
    }
}

impl Shared {
    /// The certificate to present for `host`, if it is routed and live.
    fn live(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        let now = self.clock.now();
        let state = self.state.lock().unwrap();
        if !state.names.contains(host) {
            return None;
        }
        let held = state.certificates.get(host)?;
        (held.stored.not_before <= now + Duration::from_secs(300) && held.stored.not_after > now)
            .then(|| held.stored.key.clone())
    }
}

/// The HTTPS listener's certificate lookup by SNI.
struct Resolver(Arc<Shared>);

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let host = client_hello.server_name()?.to_ascii_lowercase();
        self.0.live(&host)
    }
}

/// Orders what is due, sleeps until the next renewal or retry (or a change
/// of names, or `recheck`), until `shutdown`.
async fn manage(
    shared: Arc<Shared>,
    store: Store,
    challenges: Challenges,
    mut issuer: impl Issuer,
    settings: AcmeSettings,
    shutdown: CancellationToken,
) {
    loop {
        let (due, _) = shared.state.lock().unwrap().due(shared.clock.now());
        for host in due {
            {
                let mut state = shared.state.lock().unwrap();
                if !state.names.contains(&host) {
                    continue; // removed from the routes meanwhile
                }
                state.ordering = Some(host.clone());
            }
            let renewing = shared
                .state
                .lock()
                .unwrap()
                .certificates
                .contains_key(&host);
            tracing::info!(%host, renewing, "ordering a certificate");
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => return,
                outcome = tokio::time::timeout(ORDER_DEADLINE, issuer.issue(&host, &challenges)) => outcome,
            };
            let outcome = match outcome {
                Ok(Ok(issued)) => store
                    .save(
                        Source::Acme,
                        &host,
                        &format!("{}\n{}", issued.key_pem.trim_end(), issued.chain_pem),
                    )
                    .map_err(|e| format!("the issued certificate: {e}")),
                Ok(Err(error)) => Err(error),
                Err(_) => Err(format!(
                    "the order took longer than {}s",
                    ORDER_DEADLINE.as_secs()
                )),
            };
            let now = shared.clock.now();
            let mut state = shared.state.lock().unwrap();
            state.ordering = None;
            match outcome {
                Ok(stored) => {
                    let mut held = held(stored);
                    // Even a very short-lived certificate is not re-ordered at once.
                    held.renew_at = held.renew_at.max(now + settings.retry.first);
                    tracing::info!(
                        %host,
                        expires = %humantime::format_rfc3339_seconds(held.stored.not_after),
                        renew_at = %humantime::format_rfc3339_seconds(held.renew_at),
                        "certificate issued"
                    );
                    state.failures.remove(&host);
                    state.certificates.insert(host.clone(), held);
                }
                Err(error) => {
                    let attempts = state.failures.get(&host).map_or(0, |f| f.attempts) + 1;
                    let wait = settings.retry.delay(attempts);
                    let serving = state
                        .certificates
                        .get(&host)
                        .filter(|held| held.stored.not_after > now)
                        .is_some();
                    tracing::warn!(%host, %error, attempts, retry_in = ?wait, serving, "certificate order failed");
                    state.failures.insert(
                        host.clone(),
                        Failure {
                            error,
                            attempts,
                            retry_at: now + wait,
                        },
                    );
                }
            }
            let outcome = CertificateStatus {
                state: state.of(&host, now),
                host,
            };
            drop(state);
            let _ = shared.outcomes.send(outcome);
        }
        let now = shared.clock.now();
        let (due, next) = shared.state.lock().unwrap().due(now);
        if !due.is_empty() {
            continue;
        }
        let wait = next
            .and_then(|next| next.duration_since(now).ok())
            .map_or(settings.recheck, |wait| wait.min(settings.recheck));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests;
