//! The `launch_service` resource: one host for one service in one
//! environment. Create registers the service with the control plane, mints a
//! join token bound to its labels, stores its secrets, boots an EC2 instance
//! whose user-data installs `launch-agent`, and (by default) waits for that
//! agent to register. With `public = true` it also keeps one Cloudflare A
//! record pointing at the host (see `cloudflare`). Read, update, delete and
//! import follow Terraform's contract; `state` holds the schema and
//! everything decided without I/O.
//!
//! Failure rules: before the instance exists, whatever create did in the
//! control plane is undone; once it exists, it is returned in the state even
//! when a later step fails, so Terraform records it (tainted) and the next
//! apply or destroy removes it. Nothing is orphaned. A name conflict in DNS is
//! found before the instance is launched; destroy deletes the record before
//! the instance, so a name never points at an address AWS may hand to someone
//! else. Secret values, join tokens and the Cloudflare token are never logged
//! nor put in a diagnostic.

mod state;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use launch_core::labels::Labels;
use tf_provider::schema::Schema;
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, Resource};
use tokio::time::Instant;
use tracing::{Instrument, info, info_span};

use crate::bootstrap::Bootstrap;
use crate::cloudflare::{Cloudflare, RecordSpec};
use crate::ec2::{InstanceView, Launch};
use crate::provider::{Clients, SharedClients};
use crate::timeouts;
pub use state::State;
use state::{AwsArgs, known_map, managed_tags, to_text_map};

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

    /// Plans `fqdn`, `url`, `dns_record_id` and `dns_content` from `public`.
    /// `prior` is the state being updated in place, `None` for a new host.
    fn plan_dns(&self, diags: &mut Diagnostics, planned: &mut State, prior: Option<&State>) {
        let dns_fields = |p: &mut State, v: Value<String>| {
            p.fqdn = v.clone();
            p.url = v.clone();
            p.dns_record_id = v.clone();
            p.dns_content = v;
        };
        match planned.public {
            Value::Value(true) => {}
            Value::Unknown => return dns_fields(planned, Value::Unknown),
            _ => return dns_fields(planned, Value::Null),
        }
        let domain = match self.clients_quiet().map(|c| c.dns_domain()) {
            Some(Ok(domain)) => domain,
            Some(Err(missing)) => {
                diags.error(
                    "public = true needs Cloudflare DNS",
                    format!("{missing}, or set public = false."),
                    AttributePath::new("public"),
                );
                return;
            }
            None => return dns_fields(planned, Value::Unknown),
        };
        planned.fqdn = planned.wanted_fqdn(&domain);
        planned.url = match &planned.fqdn {
            Value::Value(fqdn) => Value::Value(format!("https://{fqdn}")),
            other => other.clone(),
        };
        planned.dns_content = planned.wanted_dns_content();
        planned.dns_record_id = match prior {
            Some(prior) if prior.dns_record_id.is_value() && prior.fqdn == planned.fqdn => {
                prior.dns_record_id.clone()
            }
            _ => Value::Unknown,
        };
    }
}

/// The record a public service wants, once its name and address are known.
fn record_spec(state: &State) -> Result<RecordSpec, String> {
    let Value::Value(name) = state.fqdn.clone() else {
        return Err("the DNS name is not known: configure cloudflare.domain".to_owned());
    };
    let Value::Value(content) = state.wanted_dns_content() else {
        return Err("the instance has neither a public nor a private IPv4 address to point the DNS record at: use a subnet that assigns one".to_owned());
    };
    let dns = state.dns_settings().unwrap_or(state::DnsSettings {
        proxied: false,
        allow_overwrite: false,
        ttl: 1,
    });
    Ok(RecordSpec {
        name,
        record_type: "A".to_owned(),
        content,
        proxied: dns.proxied,
        ttl: if dns.proxied { 1 } else { dns.ttl },
    })
}

/// Copies a record into the state's DNS fields.
fn observe_record(state: &mut State, record: &crate::cloudflare::DnsRecord) {
    let fqdn = record.name.to_ascii_lowercase();
    state.url = Value::Value(format!("https://{fqdn}"));
    state.fqdn = Value::Value(fqdn);
    state.dns_record_id = Value::Value(record.id.clone());
    state.dns_content = Value::Value(record.content.clone());
}

fn clear_dns(state: &mut State) {
    state.fqdn = Value::Null;
    state.url = Value::Null;
    state.dns_record_id = Value::Null;
    state.dns_content = Value::Null;
}

fn copy_dns(to: &mut State, from: &State) {
    to.fqdn = from.fqdn.clone();
    to.url = from.url.clone();
    to.dns_record_id = from.dns_record_id.clone();
    to.dns_content = from.dns_content.clone();
}

fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn deadline(value: &Value<String>, default: Duration) -> (Instant, Duration) {
    let limit = timeouts::parse(value).ok().flatten().unwrap_or(default);
    (Instant::now() + limit, limit)
}

fn text(value: Option<String>) -> Value<String> {
    value.map(Value::Value).unwrap_or(Value::Null)
}

/// Copies what EC2 says about the instance into the state's computed fields.
fn observe(state: &mut State, view: &InstanceView) {
    state.instance_id = Value::Value(view.id.clone());
    state.instance_type = Value::Value(view.instance_type.clone());
    state.image_id = Value::Value(view.image_id.clone());
    state.private_ip = text(view.private_ip.clone());
    state.public_ip = text(view.public_ip.clone());
    state.tags_all = to_text_map(view.tags.clone());
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

#[async_trait]
impl Resource for ServiceResource {
    type State<'a> = State;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(state::schema())
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
        // State written before the dns block existed has it null; an absent
        // block is an empty list to terraform.
        if state.dns.is_null() {
            state.dns = Value::Value(Vec::new());
        }
        let Value::Value(instance_id) = state.instance_id.clone() else {
            return Some((state, private));
        };
        let clients = self.clients(diags)?;
        let labels = state.labels();
        let ec2 = match clients.ec2().await {
            Ok(ec2) => ec2,
            Err(e) => {
                diags.root_error("cannot read launch_service", e.to_string());
                return None;
            }
        };
        match ec2.describe_batched(&instance_id).await {
            Ok(Some(view)) if !view.is_gone() => observe(&mut state, &view),
            Ok(_) => {
                info!(%instance_id, "instance is gone: removing it from state so the plan re-creates it");
                return None;
            }
            Err(e) => {
                diags.root_error(format!("cannot read instance {instance_id}"), e.to_string());
                return None;
            }
        }
        // A record deleted behind Terraform's back is planned again; one
        // re-pointed or renamed shows as a diff that apply puts back.
        if let Value::Value(record_id) = state.dns_record_id.clone() {
            match clients.cloudflare().await {
                Ok(cloudflare) => match cloudflare.get(&record_id).await {
                    Ok(Some(record)) => observe_record(&mut state, &record),
                    Ok(None) => {
                        info!(%record_id, "DNS record is gone: planning it again");
                        clear_dns(&mut state);
                    }
                    Err(e) => {
                        diags.root_error(
                            format!("cannot read DNS record {record_id}"),
                            e.to_string(),
                        );
                        return None;
                    }
                },
                Err(missing) => {
                    diags.root_warning(format!("cannot check DNS record {record_id}"), missing)
                }
            }
        }
        // Secrets removed behind Terraform's back show up as a diff.
        if let (Some(labels), Value::Value(secrets)) = (&labels, &mut state.secrets)
            && !secrets.is_empty()
        {
            match clients.control.secret_keys(labels).await {
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
        planned.id = planned.computed_id();
        planned.instance_type = planned.wanted_instance_type();
        planned.tags_all = planned.wanted_tags();
        planned.image_id = match planned.aws_args().ami {
            Value::Value(ami) => Value::Value(ami),
            _ => Value::Unknown,
        };
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
        self.plan_dns(diags, &mut planned, None);
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
        let mut planned = proposed;
        planned.apply_defaults(&config);
        planned.id = planned.computed_id();
        planned.instance_type = planned.wanted_instance_type();
        planned.tags_all = planned.wanted_tags();

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
        let (before, after) = (prior.aws_args(), planned.aws_args());
        for (field, changed) in [
            ("ami", before.ami != after.ami),
            ("subnet_id", before.subnet_id != after.subnet_id),
            ("key_name", before.key_name != after.key_name),
        ] {
            if changed {
                replace.push(AttributePath::new("aws").index(0).attribute(field));
            }
        }
        if !replace.is_empty() {
            let mut planned = self.planned_replacement(planned);
            self.plan_dns(diags, &mut planned, None);
            return Some((planned, Value::Null, replace));
        }
        planned.image_id = prior.image_id.clone();
        if planned.instance_type != prior.instance_type {
            // A resize stops and starts the instance: EC2 may hand out a new public IP.
            planned.public_ip = Value::Unknown;
        }
        self.plan_dns(diags, &mut planned, Some(&prior));
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
        let span = span(&labels, "create");
        self.create_inner(diags, &clients, &labels, planned)
            .instrument(span)
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
            // DNS first: a name must never point at an address AWS may reuse.
            if let Value::Value(record_id) = &prior.dns_record_id {
                let deleted = match clients.cloudflare().await {
                    Ok(cloudflare) => cloudflare.delete(record_id).await.map_err(|e| e.to_string()),
                    Err(missing) => Err(missing),
                };
                match deleted {
                    Ok(existed) => info!(%record_id, existed, "DNS record deleted"),
                    Err(e) => {
                        diags.root_error(
                            format!("cannot delete DNS record {record_id}; nothing was destroyed"),
                            format!("{e}. Fix that and run destroy again; or delete the record in Cloudflare, then run destroy again."),
                        );
                        return None;
                    }
                }
            }
            if let Value::Value(instance_id) = &prior.instance_id {
                let ec2 = match clients.ec2().await {
                    Ok(ec2) => ec2,
                    Err(e) => {
                        diags.root_error(format!("cannot terminate instance {instance_id}"), e.to_string());
                        return None;
                    }
                };
                if let Err(e) = ec2.terminate(instance_id, deadline).await {
                    diags.root_error(format!("cannot terminate instance {instance_id}"), e.to_string());
                    return None;
                }
                info!(%instance_id, "instance terminated");
            }
            if let Err(e) = clients.control.retire(&labels).await {
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

    async fn import<'a>(&self, diags: &mut Diagnostics, id: String) -> Option<(State, ValueEmpty)> {
        let Some((environment, name)) = id.split_once('/') else {
            diags.root_error(
                format!("import ID {id:?} is not <environment>/<name>"),
                "Import with e.g. `terraform import launch_service.hello prod/hello`.",
            );
            return None;
        };
        let mut state = State {
            name: Value::Value(name.to_owned()),
            environment: Value::Value(environment.to_owned()),
            target: Value::Value("aws".to_owned()),
            ..Default::default()
        };
        let Some(labels) = state.labels() else {
            diags.root_error(
                format!("import ID {id:?} is not <environment>/<name>"),
                "Both parts must be DNS labels, e.g. prod/hello.",
            );
            return None;
        };
        let clients = self.clients(diags)?;
        let ec2 = match clients.ec2().await {
            Ok(ec2) => ec2,
            Err(e) => {
                diags.root_error("cannot import launch_service", e.to_string());
                return None;
            }
        };
        let found = match ec2.find_by_tags(name, environment).await {
            Ok(found) => found,
            Err(e) => {
                diags.root_error("cannot import launch_service", e.to_string());
                return None;
            }
        };
        let view = match found.as_slice() {
            [one] => one.clone(),
            [] => {
                diags.root_error(
                    format!("no instance to import for {id}"),
                    format!("No pending, running or stopped instance in this region has tags launch:service={name} and launch:environment={environment}."),
                );
                return None;
            }
            many => {
                let ids: Vec<&str> = many.iter().map(|v| v.id.as_str()).collect();
                diags.root_error(
                    format!("{} instances are tagged for {id}", many.len()),
                    format!(
                        "Instances {}: terminate the extra ones, then import again.",
                        ids.join(", ")
                    ),
                );
                return None;
            }
        };
        state.id = state.computed_id();
        match state::size_for(&view.instance_type) {
            Some(size) => {
                state.size = Value::Value(size.to_owned());
                state.aws = Value::Value(Vec::new());
            }
            None => {
                state.size = Value::Value(state::DEFAULT_SIZE.to_owned());
                state.aws = Value::Value(vec![AwsArgs {
                    instance_type: Value::Value(view.instance_type.clone()),
                    ..Default::default()
                }]);
            }
        }
        let managed = managed_tags(name, environment);
        let user: std::collections::BTreeMap<String, String> = view
            .tags
            .iter()
            .filter(|(k, _)| !managed.contains_key(*k) && !k.starts_with("aws:"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        state.tags = if user.is_empty() {
            Value::Null
        } else {
            to_text_map(user)
        };
        state.public = Value::Value(false);
        state.wait_for_agent = Value::Value(true);
        state.timeouts = Value::Value(Vec::new());
        state.dns = Value::Value(Vec::new());
        observe(&mut state, &view);
        // A record of the service's name pointing at this host makes it public.
        if let (Ok(domain), Ok(cloudflare)) = (clients.dns_domain(), clients.cloudflare().await) {
            let fqdn = crate::cloudflare::record_name(name, environment, &domain);
            let content = state.wanted_dns_content();
            match cloudflare.list(&fqdn, "A").await {
                Ok(records) => {
                    if let Some(record) = records
                        .iter()
                        .find(|r| Value::Value(r.content.clone()) == content)
                    {
                        state.public = Value::Value(true);
                        observe_record(&mut state, record);
                    }
                }
                Err(e) => {
                    diags.root_warning("cannot look up the service's DNS record", e.to_string())
                }
            }
        }
        state.agent_id = match clients.control.agent(&labels, 0).await {
            Ok(agent) => text(agent),
            Err(e) => {
                diags.root_warning("cannot look up the service's agent", e.to_string());
                Value::Null
            }
        };
        Some((state, Value::Null))
    }
}

impl ServiceResource {
    /// A replacement is a new instance: everything computed is unknown again.
    fn planned_replacement(&self, mut planned: State) -> State {
        for unknown in [
            &mut planned.instance_id,
            &mut planned.private_ip,
            &mut planned.public_ip,
            &mut planned.join_token_id,
        ] {
            *unknown = Value::Unknown;
        }
        planned.image_id = match planned.aws_args().ami {
            Value::Value(ami) => Value::Value(ami),
            _ => Value::Unknown,
        };
        planned.agent_id = if planned.wait_for_agent == Value::Value(false) {
            Value::Null
        } else {
            Value::Unknown
        };
        planned
    }

    async fn create_inner(
        &self,
        diags: &mut Diagnostics,
        clients: &Clients,
        labels: &Labels,
        planned: State,
    ) -> Option<State> {
        let started_ms = now_unix_ms();
        let (deadline, create_timeout) =
            deadline(&planned.timeouts().create, timeouts::DEFAULT_CREATE);
        let waited_from = Instant::now();
        let control = &clients.control;

        // 1. The control plane side, undone if no instance comes of it.
        let before_instance: Result<_, String> = async {
            let ec2 = clients.ec2().await.map_err(|e| e.to_string())?;
            control
                .ensure_service(labels)
                .await
                .map_err(|e| e.to_string())?;
            // Long enough for a slow boot even when create does not wait for it.
            let ttl = create_timeout.max(Duration::from_secs(3600));
            let join = control
                .create_join_token(labels, ttl)
                .await
                .map_err(|e| e.to_string())?;
            let image_id = match planned.aws_args().ami.as_ref_option() {
                Some(ami) => ami.clone(),
                None => ec2.default_ami().await.map_err(|e| e.to_string())?,
            };
            if planned.public == Value::Value(true) {
                let cloudflare = clients.cloudflare().await?;
                let allow_overwrite = planned.dns_settings().is_some_and(|d| d.allow_overwrite);
                if let (Value::Value(fqdn), false) = (&planned.fqdn, allow_overwrite) {
                    cloudflare
                        .check_free(fqdn, "A")
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            control
                .sync_secrets(labels, &Default::default(), &planned.secret_values())
                .await
                .map_err(|e| e.to_string())?;
            Ok((ec2, join, image_id))
        }
        .await;
        let (ec2, join, image_id) = match before_instance {
            Ok(ok) => ok,
            Err(e) => {
                diags.root_error("cannot create launch_service", e);
                self.undo_control_plane(labels, started_ms, clients).await;
                return None;
            }
        };

        let user_data = Bootstrap {
            control_url: control.url(),
            join_token: &join.token,
            labels,
        }
        .cloud_config();
        let args = planned.aws_args();
        let tags = known_map(&planned.wanted_tags());
        let instance_type = planned
            .wanted_instance_type()
            .as_ref_option()
            .cloned()
            .unwrap_or_default();
        let client_token = format!("launch-{}", ulid::Ulid::new());
        let launched = ec2
            .run_instance(Launch {
                image_id: &image_id,
                instance_type: &instance_type,
                user_data: &user_data,
                client_token: &client_token,
                tags: &tags,
                subnet_id: args.subnet_id.as_ref_option().map(String::as_str),
                security_group_ids: args
                    .security_group_ids
                    .as_ref_option()
                    .map(|ids| {
                        ids.iter()
                            .filter_map(|v| v.as_ref_option().cloned())
                            .collect()
                    })
                    .unwrap_or_default(),
                key_name: args.key_name.as_ref_option().map(String::as_str),
            })
            .await;
        let view = match launched {
            Ok(view) => view,
            Err(e) => {
                diags.root_error(
                    "cannot create launch_service: the instance was not launched",
                    e.to_string(),
                );
                self.undo_control_plane(labels, started_ms, clients).await;
                return None;
            }
        };
        info!(instance_id = %view.id, %instance_type, %image_id, "instance launched");

        // 2. From here on the instance exists: always hand it back to Terraform.
        let mut state = planned;
        state.join_token_id = Value::Value(join.id);
        observe(&mut state, &view);
        state.agent_id = Value::Null;
        let planned_fqdn = state.fqdn.clone();
        clear_dns(&mut state);
        match ec2.wait_for(&view.id, "running", deadline).await {
            Ok(view) => observe(&mut state, &view),
            Err(e) => {
                diags.root_error(
                    format!("instance {} did not start", view.id),
                    format!("{e}. It is kept in state (tainted): the next apply replaces it, destroy removes it."),
                );
                return Some(state);
            }
        }
        if state.public == Value::Value(true) {
            state.fqdn = planned_fqdn;
            let allow_overwrite = state.dns_settings().is_some_and(|d| d.allow_overwrite);
            let made = match (clients.cloudflare().await, record_spec(&state)) {
                (Ok(cloudflare), Ok(spec)) => cloudflare
                    .ensure(&spec, None, allow_overwrite)
                    .await
                    .map_err(|e| e.to_string()),
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
            match made {
                Ok(record) => {
                    info!(record_id = %record.id, fqdn = %record.name, content = %record.content, "DNS record in place");
                    observe_record(&mut state, &record);
                }
                Err(e) => {
                    clear_dns(&mut state);
                    diags.error(
                        "cannot create the service's DNS record",
                        format!("{e}. Instance {} is kept in state (tainted): the next apply replaces it, destroy removes it.", view.id),
                        AttributePath::new("public"),
                    );
                    return Some(state);
                }
            }
        }
        if state.wait_for_agent != Value::Value(false) {
            // Registered after this create began, with some leeway for clock skew.
            match control
                .wait_for_agent(labels, started_ms - 5_000, deadline, waited_from)
                .await
            {
                Ok(agent_id) => {
                    info!(%agent_id, "agent registered");
                    state.agent_id = Value::Value(agent_id);
                }
                Err(e) => {
                    diags.root_error(
                        "the host's agent did not register in time",
                        format!("{e}. Instance {} is kept in state (tainted): the next apply replaces it, destroy removes it.", view.id),
                    );
                }
            }
        }
        Some(state)
    }

    /// Before an instance exists, a failed create leaves the control plane as
    /// it found it: a service this create registered is retired (which also
    /// revokes the join token); an existing one is left alone.
    async fn undo_control_plane(&self, labels: &Labels, started_ms: i64, clients: &Clients) {
        if let Err(e) = clients
            .control
            .retire_if_created_since(labels, started_ms)
            .await
        {
            tracing::warn!(error = %e, "could not undo the control-plane side of a failed create");
        }
    }

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
        let ec2 = match clients.ec2().await {
            Ok(ec2) => ec2,
            Err(e) => {
                diags.root_error("cannot update launch_service", e.to_string());
                return Some(prior);
            }
        };
        let mut view = match ec2.describe(&instance_id).await {
            Ok(Some(view)) => view,
            Ok(None) => {
                diags.root_error(
                    format!("instance {instance_id} is gone"),
                    "Run terraform apply again to re-create it.",
                );
                return Some(prior);
            }
            Err(e) => {
                diags.root_error("cannot update launch_service", e.to_string());
                return Some(prior);
            }
        };
        let wanted_sgs: Option<Vec<String>> = state
            .aws_args()
            .security_group_ids
            .as_ref_option()
            .map(|ids| {
                ids.iter()
                    .filter_map(|v| v.as_ref_option().cloned())
                    .collect()
            });
        if let Some(groups) = wanted_sgs.filter(|g| !g.is_empty() && *g != view.security_group_ids)
            && let Err(e) = ec2.set_security_groups(&instance_id, groups).await
        {
            diags.root_error(
                "cannot change the instance's security groups",
                e.to_string(),
            );
            return Some(prior);
        }
        if let Value::Value(wanted_type) = state.instance_type.clone()
            && wanted_type != view.instance_type
        {
            info!(%instance_id, from = %view.instance_type, to = %wanted_type, "resizing: stop, modify, start");
            match ec2.resize(&instance_id, &wanted_type, deadline).await {
                Ok(after) => view = after,
                Err(e) => {
                    diags.root_error(
                        format!("cannot resize instance {instance_id} to {wanted_type}"),
                        e.to_string(),
                    );
                    // Whatever happened, record what EC2 says now.
                    let mut now = prior;
                    if let Ok(Some(v)) = ec2.describe(&instance_id).await {
                        observe(&mut now, &v);
                    }
                    return Some(now);
                }
            }
        }
        let wanted_tags = known_map(&state.tags_all);
        if !wanted_tags.is_empty() && wanted_tags != view.tags {
            if let Err(e) = ec2.sync_tags(&instance_id, &view.tags, &wanted_tags).await {
                diags.root_error("cannot update the instance's tags", e.to_string());
                return Some(prior);
            }
            view.tags = wanted_tags;
        }
        observe(&mut state, &view);
        self.sync_dns(diags, clients, &prior, &mut state).await;
        Some(state)
    }

    /// Makes Cloudflare match `state.public` after an update: creates,
    /// re-points, renames or deletes the record. On failure the state keeps
    /// what is true (the prior record, if any) and the error names `public`.
    async fn sync_dns(
        &self,
        diags: &mut Diagnostics,
        clients: &Clients,
        prior: &State,
        state: &mut State,
    ) {
        let had = prior.dns_record_id.as_ref_option().cloned();
        let cloudflare = || async { clients.cloudflare().await };
        let fail = |diags: &mut Diagnostics, state: &mut State, summary: &str, e: String| {
            copy_dns(state, prior);
            diags.error(summary.to_owned(), e, AttributePath::new("public"));
        };
        if state.public != Value::Value(true) {
            if let Some(record_id) = had {
                let deleted = match cloudflare().await {
                    Ok(cf) => cf.delete(&record_id).await.map_err(|e| e.to_string()),
                    Err(missing) => Err(missing),
                };
                if let Err(e) = deleted {
                    return fail(diags, state, "cannot delete the service's DNS record", e);
                }
                info!(%record_id, "DNS record deleted (public = false)");
            }
            clear_dns(state);
            return;
        }
        let cf: &Cloudflare = match cloudflare().await {
            Ok(cf) => cf,
            Err(missing) => {
                return fail(diags, state, "public = true needs Cloudflare DNS", missing);
            }
        };
        let spec = match record_spec(state) {
            Ok(spec) => spec,
            Err(e) => return fail(diags, state, "cannot make the service's DNS record", e),
        };
        let same_name = prior.fqdn == Value::Value(spec.name.clone());
        let known_id = had.as_deref().filter(|_| same_name);
        let allow_overwrite = state.dns_settings().is_some_and(|d| d.allow_overwrite);
        let record = match cf.ensure(&spec, known_id, allow_overwrite).await {
            Ok(record) => record,
            Err(e) => {
                return fail(
                    diags,
                    state,
                    "cannot make the service's DNS record",
                    e.to_string(),
                );
            }
        };
        observe_record(state, &record);
        if let Some(old) = had.filter(|old| *old != record.id)
            && let Err(e) = cf.delete(&old).await
        {
            diags.root_warning(
                format!(
                    "the DNS record moved to {}, but the old record {old} could not be deleted",
                    spec.name
                ),
                format!("{e}. Delete it in Cloudflare."),
            );
        }
    }
}
