//! The order of a create, the same for every target, and the rule that
//! nothing is orphaned: the target is reached, the control plane prepared
//! (service, join token, public name checked free, secrets), the host
//! created, then its DNS record, its name and address registered with the
//! control plane, and (with `wait_for_agent`) its agent.
//! Before a host exists, a failure undoes the control-plane side; once it
//! exists, the state is always handed back so terraform records it,
//! tainted when a later step failed. [`ControlSide`] is what the steps
//! around the host need, so a test can run the order with fakes.

use std::time::Duration;

use async_trait::async_trait;
use launch_core::labels::Labels;
use tf_provider::Diagnostics;
use tf_provider::value::Value;
use tokio::time::Instant;
use tracing::info;

use super::dns;
use super::state::{State, known_map};
use super::target::{Created, HostSpec, Target};
use crate::control::JoinToken;
use crate::provider::Clients;

/// What every failure after the host exists says about it.
pub const KEPT: &str =
    "It is kept in state (tainted): the next apply replaces it, destroy removes it.";

/// The steps of a create that are not the target's.
#[async_trait]
pub trait ControlSide: Send + Sync {
    fn control_url(&self) -> &str;

    /// Registers the service, mints its join token, checks a public name
    /// is free and stores the secrets.
    async fn prepare(&self, planned: &State) -> Result<JoinToken, String>;

    /// Leaves the control plane as the create found it.
    async fn undo(&self);

    /// The host exists: what the create made on the control plane stays,
    /// whatever fails next (the host is tainted, not undone).
    fn keep(&self) {}

    /// Makes the host reachable: the DNS record of a public service, then
    /// its name and address registered with the control plane (the URL
    /// deploys report); `false` (with an error) when either failed.
    async fn dns(
        &self,
        diags: &mut Diagnostics,
        state: &mut State,
        planned_fqdn: Value<String>,
        what: &str,
    ) -> bool;

    /// With `wait_for_agent`, waits for the host's agent to register.
    async fn wait_for_agent(&self, diags: &mut Diagnostics, state: &mut State, what: &str);
}

/// Runs a create in order; `None` only when no host exists.
pub async fn run(
    diags: &mut Diagnostics,
    control: &dyn ControlSide,
    target: &dyn Target,
    clients: &Clients,
    labels: &Labels,
    planned: State,
    deadline: Instant,
) -> Option<State> {
    // 1. Nothing exists yet: any failure undoes the control-plane side.
    if let Err(f) = target.connect(clients).await {
        f.report(diags);
        control.undo().await;
        return None;
    }
    let join = match control.prepare(&planned).await {
        Ok(join) => join,
        Err(e) => {
            diags.root_error("cannot create launch_service", e);
            control.undo().await;
            return None;
        }
    };
    let spec = HostSpec {
        labels,
        control_url: control.control_url(),
        join: &join,
        deadline,
    };
    let (view, failed) = match target.create(clients, &spec, &planned).await {
        Created::Nothing(f) => {
            f.report(diags);
            control.undo().await;
            return None;
        }
        Created::Host { view, failed } => (view, failed),
    };
    control.keep();
    info!(instance_id = %view.id, "host created");

    // 2. From here on the host exists: always hand it back to terraform.
    let mut state = planned;
    state.join_token_id = Value::Value(join.id);
    view.observe(&mut state);
    state.agent_id = Value::Null;
    let planned_fqdn = state.fqdn.clone();
    dns::clear(&mut state);
    if let Some(f) = failed {
        diags.root_error(f.summary, format!("{}\n{KEPT}", f.detail));
        return Some(state);
    }
    let what = format!("{} {}", target.noun(), view.id);
    if control.dns(diags, &mut state, planned_fqdn, &what).await {
        control.wait_for_agent(diags, &mut state, &what).await;
    }
    Some(state)
}

/// The control plane and Cloudflare, as a real create uses them.
pub struct Live<'a> {
    pub clients: &'a Clients,
    pub labels: &'a Labels,
    pub create_timeout: Duration,
    pub deadline: Instant,
    pub waited_from: Instant,
}

#[async_trait]
impl ControlSide for Live<'_> {
    fn control_url(&self) -> &str {
        self.clients.control.url()
    }

    /// The join token lives long enough for a slow boot even when create
    /// does not wait for it.
    async fn prepare(&self, planned: &State) -> Result<JoinToken, String> {
        let (clients, labels) = (self.clients, self.labels);
        let control = &clients.control;
        let fqdn = match &planned.fqdn {
            Value::Value(fqdn) => fqdn.as_str(),
            _ => "",
        };
        control
            .ensure_service(labels, fqdn, "", &known_map(&planned.tags))
            .await
            .map_err(|e| e.to_string())?;
        let ttl = self.create_timeout.max(Duration::from_secs(3600));
        let join = control
            .create_join_token(labels, ttl)
            .await
            .map_err(|e| e.to_string())?;
        if planned.public == Value::Value(true) {
            let cloudflare = clients.cloudflare().await?;
            let allow_overwrite = planned.dns_settings().is_some_and(|d| d.allow_overwrite);
            if let (Value::Value(fqdn), false) = (&planned.fqdn, allow_overwrite) {
                cloudflare
                    .check_free(fqdn, "A")
                    .await
                    .map_err(|e| e.to_string())?;
            }
            dns::wildcard::check_free(clients, planned).await?;
        }
        control
            .sync_secrets(labels, &Default::default(), &planned.secret_values())
            .await
            .map_err(|e| e.to_string())?;
        Ok(join)
    }

    /// A service this create registered (`EnsureService` said `created`) is
    /// retired; otherwise only the join tokens it minted are revoked.
    async fn undo(&self) {
        if let Err(e) = self.clients.control.undo_create(self.labels).await {
            tracing::warn!(error = %e, "could not undo the control-plane side of a failed create");
        }
    }

    fn keep(&self) {
        self.clients.control.keep_made(self.labels);
    }

    async fn dns(
        &self,
        diags: &mut Diagnostics,
        state: &mut State,
        planned_fqdn: Value<String>,
        what: &str,
    ) -> bool {
        if !dns::create(diags, self.clients, state, planned_fqdn, what).await {
            return false;
        }
        match super::register(self.clients, self.labels, state).await {
            Ok(()) => true,
            Err(e) => {
                diags.root_error(super::NOT_REGISTERED, format!("{e}. {what} {KEPT}"));
                false
            }
        }
    }

    /// The agent that registered with this create's join token: no clocks
    /// are compared.
    async fn wait_for_agent(&self, diags: &mut Diagnostics, state: &mut State, what: &str) {
        if state.wait_for_agent == Value::Value(false) {
            return;
        }
        let join_token_id = state
            .join_token_id
            .as_ref_option()
            .cloned()
            .unwrap_or_default();
        match self
            .clients
            .control
            .wait_for_agent(self.labels, &join_token_id, self.deadline, self.waited_from)
            .await
        {
            Ok(agent_id) => {
                info!(%agent_id, "agent registered");
                state.agent_id = Value::Value(agent_id);
            }
            Err(e) => {
                diags.root_error(
                    "the host's agent did not register in time",
                    format!("{e}. {what} is kept in state (tainted): the next apply replaces it, destroy removes it."),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
