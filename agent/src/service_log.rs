//! What the agent itself says in the service's log between missions, so
//! `launch logs` shows it next to the containers' output: each certificate
//! order's outcome (failed with the ACME error and when it is tried again,
//! or issued). One line per order: retries already back off, so a broken ACME
//! server costs one line per attempt, never a line per request. A line goes
//! to the service's newest mission (the one running, else the one whose
//! release runs), redacted with that release's secrets like every line.

use std::sync::Arc;

use launch_core::redact::Redactor;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::config::Config;
use crate::ingress::certs::{AcmeCertificates, CertificateStatus};
use crate::journal::Journal;
use crate::release::{self, ServiceDir};
use crate::uplink::{Sink, Uplink};

/// Sends each certificate order's outcome to the service's log until `shutdown`.
pub async fn certificates(
    certificates: Arc<AcmeCertificates>,
    config: Arc<Config>,
    journal: Arc<Journal>,
    uplink: Uplink,
    shutdown: CancellationToken,
) {
    let mut outcomes = certificates.outcomes();
    loop {
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            outcome = outcomes.recv() => outcome,
        };
        match outcome {
            Ok(status) => match newest_mission(&config, &journal, &uplink) {
                Some(sink) => sink.say(&line(&status)),
                None => debug!(%status, "no mission to log the certificate outcome to"),
            },
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        }
    }
}

/// The log line for one order's outcome.
pub fn line(status: &CertificateStatus) -> String {
    format!("certificate {status}")
}

/// A sink for the service's newest mission: the one running (its record
/// still holds the secrets), else the newest finished one (its release's
/// `.env` holds them).
fn newest_mission(config: &Config, journal: &Journal, uplink: &Uplink) -> Option<Sink> {
    if let Some(record) = journal.unfinished().pop() {
        let redactor = Redactor::new(record.secrets.values().map(String::as_str));
        return Some(uplink.sink(&record.mission_id, Arc::new(redactor)));
    }
    let record = journal.latest_finished()?;
    let dir = ServiceDir::new(&config.data_dir, config.labels.service.as_str());
    let secrets = dir
        .current()
        .map(|current| release::secret_values(&dir.release(&current)))
        .unwrap_or_default();
    let redactor = Redactor::new(secrets.iter().map(String::as_str));
    Some(uplink.sink(&record.mission_id, Arc::new(redactor)))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::ingress::certs::CertificateState;

    #[test]
    fn a_failed_order_reads_as_one_line_with_the_acme_error_and_the_next_try() {
        let status = CertificateStatus {
            host: "hello.test".into(),
            state: CertificateState::Failed {
                error: "cannot reach https://127.0.0.1:1/dir: connection refused".into(),
                attempts: 1,
                retry_at: SystemTime::UNIX_EPOCH + Duration::from_secs(60),
                expires: None,
            },
        };
        assert_eq!(
            line(&status),
            "certificate hello.test: failed (1 attempts): cannot reach https://127.0.0.1:1/dir: connection refused; next try 1970-01-01T00:01:00Z"
        );
    }
}
