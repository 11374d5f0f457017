//! The control plane's side of GitHub, both directions, off by default.
//!
//! In: `POST /v1/github/webhook` (`webhook`) checks the HMAC of the raw body
//! against `--github-webhook-secret-file`, handles each delivery once and acts
//! on `pull_request` `closed`. Out: with `--github-token-file`, the
//! `Reporter` turns the state changes of releases deployed with
//! `--repo`/`--pr` into one comment per pull request (created once, then
//! edited), a commit status per service and a GitHub Deployment with its
//! statuses (`report`, over the small REST client in `rest`). Reporting runs
//! in its own task behind a queue: a slow or failing GitHub delays only the
//! report, never a deploy.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::store::Store;

mod report;
pub mod rest;
pub mod webhook;

/// The public API; `--github-api-url` points elsewhere (GitHub Enterprise, tests).
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// Flags of `launch server` for GitHub.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct GithubFlags {
    /// File holding the secret GitHub signs webhook deliveries with; turns on
    /// POST /v1/github/webhook
    #[arg(long, env = "LAUNCH_GITHUB_WEBHOOK_SECRET_FILE", value_name = "FILE")]
    pub github_webhook_secret_file: Option<PathBuf>,
    /// File holding a GitHub token (pull_requests, statuses and deployments
    /// write) to report deploys with --repo on pull requests and commits
    #[arg(long, env = "LAUNCH_GITHUB_TOKEN_FILE", value_name = "FILE")]
    pub github_token_file: Option<PathBuf>,
    /// The GitHub REST API base URL
    #[arg(long, env = "LAUNCH_GITHUB_API_URL", default_value = DEFAULT_API_URL)]
    pub github_api_url: String,
}

/// Validated GitHub settings. Secrets are kept out of `Debug`.
#[derive(Clone, Default)]
pub struct GithubConfig {
    pub webhook_secret: Option<Vec<u8>>,
    pub token: Option<String>,
    pub api_url: String,
}

impl std::fmt::Debug for GithubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubConfig")
            .field("webhook", &self.webhook_secret.is_some())
            .field("reporting", &self.token.is_some())
            .field("api_url", &self.api_url)
            .finish()
    }
}

impl GithubConfig {
    /// Reads the secret files, pushing one message per problem onto `errors`.
    pub fn from_flags(flags: &GithubFlags, errors: &mut Vec<String>) -> GithubConfig {
        let webhook_secret = flags
            .github_webhook_secret_file
            .as_deref()
            .and_then(|path| read_secret(path, "--github-webhook-secret-file", errors))
            .map(String::into_bytes);
        let token = flags
            .github_token_file
            .as_deref()
            .and_then(|path| read_secret(path, "--github-token-file", errors));
        let api_url = flags.github_api_url.trim_end_matches('/').to_owned();
        if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
            errors.push(format!(
                "--github-api-url {api_url:?} is not an http(s) URL: give e.g. {DEFAULT_API_URL}"
            ));
        }
        GithubConfig {
            webhook_secret,
            token,
            api_url,
        }
    }
}

/// The file's contents without surrounding whitespace; empty is an error.
fn read_secret(path: &Path, flag: &str, errors: &mut Vec<String>) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
        Ok(_) => {
            errors.push(format!(
                "{flag} {} is empty: write the value into it",
                path.display()
            ));
            None
        }
        Err(err) => {
            errors.push(format!(
                "{flag} {}: {err}: point it at a readable file",
                path.display()
            ));
            None
        }
    }
}

/// Something the reporter should bring GitHub up to date with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportEvent {
    /// A deploy mission was queued or changed state.
    Mission(String),
    /// A pull request was closed (from the webhook).
    PullRequestClosed { repo: String, pr: u64 },
}

/// The handle handlers use; a no-op when reporting is off.
#[derive(Clone, Debug, Default)]
pub struct Reporter {
    queue: Option<mpsc::UnboundedSender<ReportEvent>>,
}

impl Reporter {
    /// Starts the reporting task when a token is configured.
    pub fn start(
        config: &GithubConfig,
        store: Store,
        shutdown: CancellationToken,
    ) -> anyhow::Result<(Reporter, Option<tokio::task::JoinHandle<()>>)> {
        let Some(token) = config.token.clone() else {
            return Ok((Reporter::default(), None));
        };
        let client = Arc::new(rest::Client::new(&config.api_url, token)?);
        let (queue, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(report::run(client, store, events, shutdown));
        Ok((Reporter { queue: Some(queue) }, Some(task)))
    }

    pub fn send(&self, event: ReportEvent) {
        if let Some(queue) = &self.queue
            && queue.send(event).is_err()
        {
            warn!("the GitHub reporter has stopped: a report was not sent");
        }
    }
}
