//! The `launch_service` resource: one host for one service in one
//! environment. Create registers the service with the control plane, mints a
//! join token bound to its labels, stores its secrets, has the target make a
//! host that installs `launch-agent`, and (by default) waits for that agent
//! to register. With `public = true` it also keeps one Cloudflare A record
//! pointing at the host (`dns`). Read, update, delete and import follow
//! Terraform's contract. This file orders the steps and knows no kind of
//! host: `target` holds what differs between them, `create` the order of a
//! create and its never-orphan rule, `state` the schema and everything
//! decided without I/O.
//!
//! Failure rules: before the host exists, whatever create did in the
//! control plane is undone; once it exists, it is returned in the state even
//! when a later step fails, so Terraform records it (tainted) and the next
//! apply or destroy removes it. Nothing is orphaned. A name conflict in DNS is
//! found before the host is made; destroy deletes the record before the
//! host, so a name never points at an address someone else may be handed.
//! Secret values, join tokens and API tokens are never logged nor put in a
//! diagnostic.

mod create;
mod dns;
mod state;
mod target;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use launch_core::labels::Labels;
use tf_provider::schema::Schema;
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, Resource};
use tokio::time::Instant;
use tracing::{Instrument, info, info_span};

use crate::provider::{Clients, SharedClients};
use crate::timeouts;
use state::known_map;
pub use state::{State, schema};
use target::{Imported, Kind, Target};

pub struct ServiceResource {
    clients: SharedClients,
}

impl ServiceResource {
    pub fn new(clients: SharedClients) -> Self {
        ServiceResource { clients }
    }

    fn clients(&self, diags: &mut Diagnostics) -> Option<Arc<Clients>> {
        let clients = self.clients.read().expect("provider clients lock").clone();
        if clients.is_none() {
            diags.root_error_short("the launch provider is not configured: add a provider \"launch\" block or set LAUNCH_ADDR and LAUNCH_TOKEN");
        }
        clients
    }

    /// The clients, if configured, without complaining when they are not.
    fn clients_quiet(&self) -> Option<Arc<Clients>> {
        self.clients.read().expect("provider clients lock").clone()
    }
}

fn deadline(value: &Value<String>, default: Duration) -> (Instant, Duration) {
    let limit = timeouts::parse(value).ok().flatten().unwrap_or(default);
    (Instant::now() + limit, limit)
}

fn span(labels: &Labels, op: &'static str) -> tracing::Span {
    info_span!("launch_service", op, service = %labels.service.as_str(), environment = %labels.environment.as_str())
}

fn labels_or_error(state: &State, diags: &mut Diagnostics) -> Option<Labels> {
    let labels = state.labels();
    if labels.is_none() {
        diags.root_error_short("name and environment must be known, valid DNS labels");
    }
    labels
}

/// The target a state names; an error when it names none this version knows.
fn target_or_error(state: &State, diags: &mut Diagnostics) -> Option<&'static dyn Target> {
    let found = target::of(state);
    if found.is_none() {
        diags.root_error(
            format!("target {:?} is not one this provider knows", state.target),
            format!("Use target = one of {}.", Kind::names().join(", ")),
        );
    }
    found
}

/// Registers the service's public name and its host's address with the
/// control plane: what the agent's front door routes, and the URL deploys
/// report.
async fn register(clients: &Clients, labels: &Labels, state: &State) -> Result<(), String> {
    let fqdn = state.fqdn.as_ref_option().map(String::as_str).unwrap_or("");
    let address = state.host_address();
    clients
        .control
        .ensure_service(labels, fqdn, &address, &known_map(&state.tags))
        .await
        .map_err(|e| e.to_string())?;
    info!(fqdn, host_address = %address, "name and address registered");
    Ok(())
}

const NOT_REGISTERED: &str =
    "cannot register the service's name and address with the control plane";

/// A state an older provider wrote, in today's attributes.
fn migrate(state: &mut State) {
    if let Some(target) = target::of(state) {
        target.migrate(state);
    }
}

/// A new host: everything computed is unknown until apply.
fn plan_new_host(planned: &mut State) {
    for unknown in [
        &mut planned.instance_id,
        &mut planned.private_ip,
        &mut planned.public_ip,
        &mut planned.join_token_id,
    ] {
        *unknown = Value::Unknown;
    }
    planned.agent_id = if planned.wait_for_agent == Value::Value(false) {
        Value::Null
    } else {
        Value::Unknown
    };
}

/// What the target plans for the host; all unknown when the target is.
fn plan_host(planned: &mut State, prior: Option<&State>) {
    match target::of(planned) {
        Some(target) => target.plan(planned, prior),
        None => {
            for unknown in [&mut planned.instance_type, &mut planned.image_id] {
                *unknown = Value::Unknown;
            }
            planned.tags_all = Value::Unknown;
        }
    }
}

#[async_trait]
impl Resource for ServiceResource {
    type State<'a> = State;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(schema())
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: State) -> Option<()> {
        state::validate(&config, diags);
        Some(())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        mut state: State,
        private: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(State, ValueEmpty)> {
        state.fill_empty_blocks();
        migrate(&mut state);
        let Value::Value(instance_id) = state.instance_id.clone() else {
            return Some((state, private));
        };
        let clients = self.clients(diags)?;
        let target = target_or_error(&state, diags)?;
        match target.read(diags, &clients, &instance_id, &state).await {
            Ok(Some(view)) => view.observe(&mut state),
            Ok(None) => return None,
            Err(f) => {
                f.report(diags);
                return None;
            }
        }
        if !dns::read(diags, &clients, &mut state).await {
            return None;
        }
        // Secrets removed behind Terraform's back show up as a diff.
        if let (Some(labels), Value::Value(secrets)) = (state.labels(), &mut state.secrets)
            && !secrets.is_empty()
        {
            match clients.control.secret_keys(&labels).await {
                Ok(keys) => secrets.retain(|k, _| keys.contains(k)),
                Err(e) => diags.root_warning("cannot check the service's secrets", e.to_string()),
            }
        }
        Some((state, private))
    }

    async fn plan_create<'a>(
        &self,
        diags: &mut Diagnostics,
        proposed: State,
        config: State,
        _meta: ValueEmpty,
    ) -> Option<(State, ValueEmpty)> {
        let mut planned = proposed;
        planned.apply_defaults(&config);
        let clients = self.clients_quiet();
        // Like public = true without Cloudflare: say it now, not after the
        // control plane has been touched at apply.
        if let (Some(target), Some(clients)) = (target::of(&planned), &clients)
            && let Some(missing) = target.missing_settings(clients).await
        {
            diags.error(
                missing.summary,
                missing.detail,
                AttributePath::new("target"),
            );
            return None;
        }
        planned.id = planned.computed_id();
        plan_new_host(&mut planned);
        plan_host(&mut planned, None);
        dns::plan(diags, clients.as_deref(), &mut planned, None);
        Some((planned, Value::Null))
    }

    async fn plan_update<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: State,
        proposed: State,
        config: State,
        _prior_private: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(State, ValueEmpty, Vec<AttributePath>)> {
        let mut prior = prior;
        migrate(&mut prior);
        let mut planned = proposed;
        planned.apply_defaults(&config);
        planned.id = planned.computed_id();
        let clients = self.clients_quiet();

        let mut replace = Vec::new();
        for (path, before, after) in [
            ("name", &prior.name, &planned.name),
            ("environment", &prior.environment, &planned.environment),
            ("target", &prior.target, &planned.target),
        ] {
            if before != after {
                replace.push(AttributePath::new(path));
            }
        }
        if prior.target == planned.target
            && let Some(target) = target::of(&planned)
        {
            replace.extend(target.replacements(&prior, &planned));
        }
        if !replace.is_empty() {
            plan_new_host(&mut planned);
            plan_host(&mut planned, None);
            dns::plan(diags, clients.as_deref(), &mut planned, None);
            return Some((planned, Value::Null, replace));
        }
        planned.image_id = prior.image_id.clone();
        plan_host(&mut planned, Some(&prior));
        dns::plan(diags, clients.as_deref(), &mut planned, Some(&prior));
        Some((planned, Value::Null, replace))
    }

    async fn plan_destroy<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: State,
        _prior_private: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<ValueEmpty> {
        Some(Value::Null)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        planned: State,
        _config: State,
        _private: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(State, ValueEmpty)> {
        let clients = self.clients(diags)?;
        let labels = labels_or_error(&planned, diags)?;
        let target = target_or_error(&planned, diags)?;
        let (deadline, create_timeout) =
            deadline(&planned.timeouts().create, timeouts::DEFAULT_CREATE);
        let control = create::Live {
            clients: &clients,
            labels: &labels,
            create_timeout,
            deadline,
            waited_from: Instant::now(),
        };
        create::run(
            diags, &control, target, &clients, &labels, planned, deadline,
        )
        .instrument(span(&labels, "create"))
        .await
        .map(|s| (s, Value::Null))
    }

    async fn update<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: State,
        planned: State,
        _config: State,
        _private: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(State, ValueEmpty)> {
        let clients = self.clients(diags)?;
        let labels = labels_or_error(&planned, diags)?;
        let span = span(&labels, "update");
        self.update_inner(diags, &clients, &labels, prior, planned)
            .instrument(span)
            .await
            .map(|s| (s, Value::Null))
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: State,
        _private: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<()> {
        let clients = self.clients(diags)?;
        let labels = labels_or_error(&prior, diags)?;
        let (deadline, _) = deadline(&prior.timeouts().delete, timeouts::DEFAULT_DELETE);
        async {
            // DNS first: a name must never point at an address someone may reuse.
            if !dns::delete(diags, &clients, &prior).await {
                return None;
            }
            if let Value::Value(instance_id) = &prior.instance_id {
                let target = target_or_error(&prior, diags)?;
                if let Err(f) = target.destroy(&clients, instance_id, deadline).await {
                    f.report(diags);
                    return None;
                }
            }
            let own_agent = prior.agent_id.as_ref_option().map(String::as_str);
            let own_join_token = prior.join_token_id.as_ref_option().map(String::as_str);
            if let Err(e) = clients
                .control
                .retire_host(&labels, own_agent, own_join_token)
                .await
            {
                diags.root_error(
                    "the instance is terminated, but the service could not be retired in the control plane",
                    format!("{e}. Run destroy again, or `launch` to revoke the service's tokens."),
                );
                return None;
            }
            Some(())
        }
        .instrument(span(&labels, "delete"))
        .await
    }

    /// Each target in turn looks for the host `id` names; AWS, asked last,
    /// answers every `<environment>/<name>`.
    async fn import<'a>(&self, diags: &mut Diagnostics, id: String) -> Option<(State, ValueEmpty)> {
        let clients = self.clients(diags)?;
        for kind in Kind::ALL {
            match kind.target().import(diags, &clients, &id).await {
                Imported::NotMine => continue,
                Imported::Failed => return None,
                Imported::Found(state) => return import_rest(diags, &clients, *state).await,
            }
        }
        diags.root_error(
            format!("no host to import for {id}"),
            "Import with <environment>/<name>, e.g. `terraform import launch_service.hello prod/hello`.",
        );
        None
    }
}

/// What import finds for every target: the settings it cannot see (left at
/// their defaults), a DNS record of the service's name pointing at the host
/// (which makes it public) and the service's agent.
async fn import_rest(
    diags: &mut Diagnostics,
    clients: &Clients,
    mut state: State,
) -> Option<(State, ValueEmpty)> {
    let labels = labels_or_error(&state, diags)?;
    state.id = state.computed_id();
    state.public = Value::Value(false);
    state.wait_for_agent = Value::Value(true);
    state.fill_empty_blocks();
    dns::import(diags, clients, &mut state).await;
    state.agent_id = match clients.control.newest_agent(&labels).await {
        Ok(agent) => agent.map(Value::Value).unwrap_or(Value::Null),
        Err(e) => {
            diags.root_warning("cannot look up the service's agent", e.to_string());
            Value::Null
        }
    };
    Some((state, Value::Null))
}

impl ServiceResource {
    async fn update_inner(
        &self,
        diags: &mut Diagnostics,
        clients: &Clients,
        labels: &Labels,
        prior: State,
        planned: State,
    ) -> Option<State> {
        let (deadline, _) = deadline(&planned.timeouts().update, timeouts::DEFAULT_UPDATE);
        let mut state = planned;
        if prior.secret_values() != state.secret_values() {
            if let Err(e) = clients
                .control
                .sync_secrets(labels, &prior.secret_values(), &state.secret_values())
                .await
            {
                diags.root_error("cannot update the service's secrets", e.to_string());
                return Some(prior);
            }
            info!("secrets updated in the control plane");
        }
        let Value::Value(instance_id) = prior.instance_id.clone() else {
            return Some(state);
        };
        let target = match target_or_error(&state, diags) {
            Some(target) => target,
            None => return Some(prior),
        };
        match target
            .update(clients, &instance_id, &prior, &state, deadline)
            .await
        {
            Ok(view) => {
                view.observe(&mut state);
                // A name made, renamed or dropped, or a new address: the front
                // door routes it and deploys report it from the next mission on.
                // Before the record changes, so a failure leaves the previous
                // state for the next apply to try again.
                if (prior.fqdn != state.fqdn
                    || prior.host_address() != state.host_address()
                    || known_map(&prior.tags) != known_map(&state.tags))
                    && let Err(e) = register(clients, labels, &state).await
                {
                    diags.root_error(NOT_REGISTERED, format!("{e}. The next apply tries again."));
                    let mut now = prior;
                    view.observe(&mut now);
                    return Some(now);
                }
            }
            Err((failure, observed)) => {
                failure.report(diags);
                let mut now = prior;
                if let Some(view) = observed {
                    view.observe(&mut now);
                }
                return Some(now);
            }
        }
        dns::sync(diags, clients, &prior, &mut state).await;
        Some(state)
    }
}
