//! The control plane's check of an uploaded bundle's compose file, the same
//! one `launch deploy` runs before uploading (`launch_core::compose::check`),
//! so a hand-made bundle (`--bundle`, or a client that skips the CLI) is
//! refused here, before a release or mission is recorded. The variables are
//! those the host will have: the bundle's `.env` if it carries one,
//! `launch.toml [env]`, and the names of the secrets in the request and in
//! the store. When the service's agent has said which compose it runs (in its
//! Hello, to any replica: the store keeps it), keys that compose lacks are
//! refused too.

use std::collections::BTreeSet;

use launch_core::bundle::Summary;
use launch_core::compose::{self, features::HostCompose};
use launch_core::service_config::ServiceConfig;
use tonic::Status;

use super::state::{State, internal};

/// Checks the compose file of a bundle for `service`/`environment`.
pub async fn check(
    state: &State,
    service: &str,
    environment: &str,
    summary: &Summary,
    config: &ServiceConfig,
    request_secrets: impl Iterator<Item = &String>,
) -> Result<(), Status> {
    let Some((file, text)) = summary.compose() else {
        return Err(Status::invalid_argument(format!(
            "bundle rejected: no compose file at its root: add one of {}",
            launch_core::bundle::COMPOSE_FILES.join(", ")
        )));
    };
    // Independent reads, made at once.
    let (stored, host) = tokio::try_join!(
        state.store.secrets(service, environment),
        state.store.host_compose(service, environment),
    )
    .map_err(internal)?;
    let mut secret_names: BTreeSet<String> = request_secrets.cloned().collect();
    secret_names.extend(stored.into_iter().map(|row| row.key));
    let vars = compose::host_variables(
        summary.dotenv.as_deref(),
        &config.env,
        secret_names.iter().map(String::as_str),
    );
    let host = host.and_then(|text| HostCompose::parse(&text));
    compose::check(file, text, &vars, host)
        .map(|_| ())
        .map_err(|e| Status::invalid_argument(e.to_string()))
}
