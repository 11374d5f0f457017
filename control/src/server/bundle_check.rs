//! The control plane's check of an uploaded bundle's compose file, the same
//! one `launch deploy` runs before uploading (`launch_core::compose::check`),
//! so a hand-made bundle (`--bundle`, or a client that skips the CLI) is
//! refused here, before a release or mission is recorded. The variables are
//! those the host will have: the bundle's `.env` if it carries one,
//! `launch.toml [env]`, and the names of the secrets in the request and in
//! the store. When the service's agent has said which compose it runs (in its
//! Hello, to any replica: the store keeps it), keys that compose lacks are
//! refused too. The caller reads the store (`Deploy` reads it once for the
//! check and the mission's message both).

use launch_core::bundle::Summary;
use launch_core::compose::{self, features::HostCompose};
use launch_core::service_config::ServiceConfig;
use tonic::Status;

/// Checks the compose file of a bundle, with `secret_names` every secret
/// the host will have (the request's and the stored ones) and
/// `host_compose` what the service's agent last said it runs, if it did.
pub fn check<'a>(
    summary: &Summary,
    config: &ServiceConfig,
    secret_names: impl Iterator<Item = &'a str>,
    host_compose: Option<&str>,
) -> Result<(), Status> {
    let Some((file, text)) = summary.compose() else {
        return Err(Status::invalid_argument(format!(
            "bundle rejected: no compose file at its root: add one of {}",
            launch_core::bundle::COMPOSE_FILES.join(", ")
        )));
    };
    let vars = compose::host_variables(summary.dotenv.as_deref(), &config.env, secret_names);
    let host = host_compose.and_then(HostCompose::parse);
    compose::check(file, text, &vars, host)
        .map(|_| ())
        .map_err(|e| Status::invalid_argument(e.to_string()))
}
