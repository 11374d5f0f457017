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
use std::time::Duration;

use async_trait::async_trait;
use launch_core::labels::Labels;
use tf_provider::schema::Schema;
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, Resource};
use tokio::time::Instant;
use tracing::{Instrument, info, info_span};

use crate::bootstrap::Bootstrap;
use crate::cloudflare::{Cloudflare, RecordSpec};
use crate::control::JoinToken;
use crate::ec2::{InstanceView, Launch};
use crate::provider::{Clients, SharedClients};
use crate::proxmox::{Proxmox, first_ipv4, split_tags};
use crate::ssh::{self, KeyPair};
use crate::timeouts;
pub use state::State;
use state::{
    AwsArgs, DEFAULT_PROXMOX_BRIDGE, DEFAULT_PROXMOX_IP, DEFAULT_PROXMOX_STORAGE, ProxmoxArgs,
    Shape, known_map, managed_tags, to_text_map,
};

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

impl ServiceResource {
    /// What read checks for every target: the DNS record and the secrets.
    async fn read_rest(
        &self,
        diags: &mut Diagnostics,
        clients: &Clients,
        labels: Option<Labels>,
        mut state: State,
        private: ValueEmpty,
    ) -> Option<(State, ValueEmpty)> {
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
}

/// Observes an EC2 instance into `state`; `Some(false)` when it is gone.
async fn read_ec2(
    diags: &mut Diagnostics,
    ec2: &crate::ec2::Ec2,
    instance_id: &str,
    state: &mut State,
) -> Option<bool> {
    match ec2.describe_batched(instance_id).await {
        Ok(Some(view)) if !view.is_gone() => {
            observe(state, &view);
            Some(true)
        }
        Ok(_) => {
            info!(%instance_id, "instance is gone: removing it from state so the plan re-creates it");
            Some(false)
        }
        Err(e) => {
            diags.root_error(format!("cannot read instance {instance_id}"), e.to_string());
            None
        }
    }
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
        if state.proxmox.is_null() {
            state.proxmox = Value::Value(Vec::new());
        }
        let Value::Value(instance_id) = state.instance_id.clone() else {
            return Some((state, private));
        };
        let clients = self.clients(diags)?;
        let labels = state.labels();
        if state.is_proxmox() {
            if !self
                .read_proxmox(diags, &clients, &instance_id, &mut state)
                .await?
            {
                return None;
            }
        } else {
            let ec2 = match clients.ec2().await {
                Ok(ec2) => ec2,
                Err(e) => {
                    diags.root_error("cannot read launch_service", e.to_string());
                    return None;
                }
            };
            if !read_ec2(diags, ec2, &instance_id, &mut state).await? {
                return None;
            }
        }
        self.read_rest(diags, &clients, labels, state, private)
            .await
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
        // Like public = true without Cloudflare: say it now, not after the
        // control plane has been touched at apply.
        if planned.target == Value::Value("proxmox".to_owned())
            && let Some(missing) = self
                .clients_quiet()
                .and_then(|c| c.proxmox_missing().map(str::to_owned))
        {
            diags.error(
                "target = \"proxmox\" needs the provider's Proxmox settings",
                format!("{missing}."),
                AttributePath::new("target"),
            );
            return None;
        }
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
        if planned.is_proxmox() {
            plan_proxmox(&mut planned, None);
        }
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
        if planned.is_proxmox() {
            replace.extend(proxmox_replacements(&prior, &planned));
        }
        if !replace.is_empty() {
            let mut planned = self.planned_replacement(planned);
            if planned.is_proxmox() {
                plan_proxmox(&mut planned, None);
            }
            self.plan_dns(diags, &mut planned, None);
            return Some((planned, Value::Null, replace));
        }
        planned.image_id = prior.image_id.clone();
        if planned.is_proxmox() {
            plan_proxmox(&mut planned, Some(&prior));
            self.plan_dns(diags, &mut planned, Some(&prior));
            return Some((planned, Value::Null, replace));
        }
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
            if let (true, Value::Value(instance_id)) = (prior.is_proxmox(), &prior.instance_id) {
                if let Err(e) = destroy_container(&clients, instance_id, deadline).await {
                    diags.root_error(format!("cannot destroy container {instance_id}"), e);
                    return None;
                }
                info!(%instance_id, "container destroyed");
            } else if let Value::Value(instance_id) = &prior.instance_id {
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

    async fn import<'a>(&self, diags: &mut Diagnostics, id: String) -> Option<(State, ValueEmpty)> {
        if let Some((node, vmid)) = id.split_once('/')
            && let Ok(vmid) = vmid.parse::<i64>()
        {
            let clients = self.clients(diags)?;
            return self
                .import_proxmox(diags, &clients, ContainerRef::Id(node.to_owned(), vmid))
                .await;
        }
        if let Some((environment, name)) = id.split_once('/')
            && let Some(clients) = self.clients_quiet()
            && clients.proxmox_configured()
        {
            let wanted = ContainerRef::Labels(environment.to_owned(), name.to_owned());
            match clients.proxmox().await {
                Ok(proxmox) => match find_container(proxmox, &wanted).await {
                    Ok(Some(_)) => {
                        return self.import_proxmox(diags, &clients, wanted).await;
                    }
                    Ok(None) => {}
                    Err(e) => diags.root_warning(
                        "cannot look for the service's container on Proxmox",
                        format!("{e}. Looking on AWS instead."),
                    ),
                },
                Err(e) => {
                    diags.root_warning("cannot look for the service's container on Proxmox", e)
                }
            }
        }
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
        state.proxmox = Value::Value(Vec::new());
        observe(&mut state, &view);
        import_rest(diags, &clients, &labels, state).await
    }
}

/// What import finds for every target: a DNS record of the service's name
/// pointing at the host (which makes it public) and the service's agent.
async fn import_rest(
    diags: &mut Diagnostics,
    clients: &Clients,
    labels: &Labels,
    mut state: State,
) -> Option<(State, ValueEmpty)> {
    let (name, environment) = (labels.service.as_str(), labels.environment.as_str());
    {
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
        state.agent_id = match clients.control.newest_agent(labels).await {
            Ok(agent) => text(agent),
            Err(e) => {
                diags.root_warning("cannot look up the service's agent", e.to_string());
                Value::Null
            }
        };
    }
    Some((state, Value::Null))
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
        let (deadline, create_timeout) =
            deadline(&planned.timeouts().create, timeouts::DEFAULT_CREATE);
        let waited_from = Instant::now();
        let control = &clients.control;
        if planned.is_proxmox() {
            return self
                .create_proxmox(
                    diags,
                    clients,
                    labels,
                    planned,
                    (deadline, waited_from),
                    create_timeout,
                )
                .await;
        }

        // 1. The control plane side, undone if no instance comes of it.
        let before_instance: Result<_, String> = async {
            let ec2 = clients.ec2().await.map_err(|e| e.to_string())?;
            let join = self
                .prepare_control_plane(clients, labels, &planned, create_timeout)
                .await?;
            let image_id = match planned.aws_args().ami.as_ref_option() {
                Some(ami) => ami.clone(),
                None => ec2.default_ami().await.map_err(|e| e.to_string())?,
            };
            Ok((ec2, join, image_id))
        }
        .await;
        let (ec2, join, image_id) = match before_instance {
            Ok(ok) => ok,
            Err(e) => {
                diags.root_error("cannot create launch_service", e);
                self.undo_control_plane(labels, clients).await;
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
                self.undo_control_plane(labels, clients).await;
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
        let what = format!("Instance {}", view.id);
        let timing = (deadline, waited_from);
        self.finish_create(diags, clients, labels, state, planned_fqdn, timing, &what)
            .await
    }

    /// The control-plane side of a create, the same for every target: the
    /// service registered, a join token bound to its labels (long enough
    /// for a slow boot even when create does not wait for it), a public
    /// name checked free, the secrets stored. On failure the caller undoes
    /// it with [`ServiceResource::undo_control_plane`].
    async fn prepare_control_plane(
        &self,
        clients: &Clients,
        labels: &Labels,
        planned: &State,
        create_timeout: Duration,
    ) -> Result<JoinToken, String> {
        let control = &clients.control;
        let fqdn = match &planned.fqdn {
            Value::Value(fqdn) => fqdn.as_str(),
            _ => "",
        };
        control
            .ensure_service(labels, fqdn)
            .await
            .map_err(|e| e.to_string())?;
        let ttl = create_timeout.max(Duration::from_secs(3600));
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
        }
        control
            .sync_secrets(labels, &Default::default(), &planned.secret_values())
            .await
            .map_err(|e| e.to_string())?;
        Ok(join)
    }

    /// Once the host exists and runs: its DNS record, then (with
    /// `wait_for_agent`) its agent. The state goes back to Terraform either
    /// way; an error in `diags` makes it tainted.
    #[allow(clippy::too_many_arguments)]
    async fn finish_create(
        &self,
        diags: &mut Diagnostics,
        clients: &Clients,
        labels: &Labels,
        mut state: State,
        planned_fqdn: Value<String>,
        timing: (Instant, Instant),
        what: &str,
    ) -> Option<State> {
        // The host exists: a later failure taints it, nothing is undone.
        clients.control.keep_made(labels);
        if self
            .create_dns(diags, clients, &mut state, planned_fqdn, what)
            .await
        {
            self.await_agent(diags, clients, labels, &mut state, timing, what)
                .await;
        }
        Some(state)
    }

    /// The DNS record of a public service, once its host exists. `false`
    /// (with an error) when it could not be made.
    async fn create_dns(
        &self,
        diags: &mut Diagnostics,
        clients: &Clients,
        state: &mut State,
        planned_fqdn: Value<String>,
        what: &str,
    ) -> bool {
        if state.public != Value::Value(true) {
            return true;
        }
        state.fqdn = planned_fqdn;
        let allow_overwrite = state.dns_settings().is_some_and(|d| d.allow_overwrite);
        let made = match (clients.cloudflare().await, record_spec(state)) {
            (Ok(cloudflare), Ok(spec)) => cloudflare
                .ensure(&spec, None, allow_overwrite)
                .await
                .map_err(|e| e.to_string()),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        match made {
            Ok(record) => {
                info!(record_id = %record.id, fqdn = %record.name, content = %record.content, "DNS record in place");
                observe_record(state, &record);
                true
            }
            Err(e) => {
                clear_dns(state);
                diags.error(
                    "cannot create the service's DNS record",
                    format!("{e}. {what} is kept in state (tainted): the next apply replaces it, destroy removes it."),
                    AttributePath::new("public"),
                );
                false
            }
        }
    }

    /// With `wait_for_agent`, waits for the agent that registered with this
    /// create's join token.
    async fn await_agent(
        &self,
        diags: &mut Diagnostics,
        clients: &Clients,
        labels: &Labels,
        state: &mut State,
        (deadline, waited_from): (Instant, Instant),
        what: &str,
    ) {
        if state.wait_for_agent == Value::Value(false) {
            return;
        }
        let join_token_id = state
            .join_token_id
            .as_ref_option()
            .cloned()
            .unwrap_or_default();
        match clients
            .control
            .wait_for_agent(labels, &join_token_id, deadline, waited_from)
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

    /// Before an instance exists, a failed create leaves the control plane as
    /// it found it: a service this create registered is retired (which also
    /// revokes the join token); an existing one is left alone.
    async fn undo_control_plane(&self, labels: &Labels, clients: &Clients) {
        if let Err(e) = clients.control.undo_create(labels).await {
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
        if state.is_proxmox() {
            return self
                .update_proxmox(diags, clients, &instance_id, prior, state, deadline)
                .await;
        }
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

// ---------------------------------------------------------------- Proxmox

/// `<node>/<vmid>` of a container.
fn parse_container_id(id: &str) -> Option<(String, i64)> {
    let (node, vmid) = id.split_once('/')?;
    Some((node.to_owned(), vmid.parse().ok()?))
}

/// A number PVE may send as a number or a string.
fn json_i64(value: &serde_json::Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
}

/// The container's cores, memory and rootfs size from its config.
fn shape_of(config: &serde_json::Map<String, serde_json::Value>) -> Shape {
    let null = serde_json::Value::Null;
    let rootfs = config.get("rootfs").and_then(|v| v.as_str()).unwrap_or("");
    let (_, props) = crate::proxmox::split_props(rootfs);
    Shape {
        cores: json_i64(config.get("cores").unwrap_or(&null)).unwrap_or(1),
        memory_mib: json_i64(config.get("memory").unwrap_or(&null)).unwrap_or(512),
        disk_gib: props
            .get("size")
            .and_then(|s| crate::proxmox::size_gib(s))
            .unwrap_or(0),
    }
}

/// The first line of every container's description: what import reads back.
fn description(labels: &Labels, template: &str) -> String {
    format!(
        "launch: service={} environment={} template={template}\nManaged by terraform-provider-launch: destroy it with terraform, not here.",
        labels.service.as_str(),
        labels.environment.as_str()
    )
}

/// `key=value` pairs from the `launch:` line of a description.
fn description_fields(
    config: &serde_json::Map<String, serde_json::Value>,
) -> std::collections::BTreeMap<String, String> {
    let text = config
        .get("description")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    text.lines()
        .find_map(|l| l.trim().strip_prefix("launch:"))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Copies what the container's config says into the computed fields.
fn observe_container(state: &mut State, config: &serde_json::Map<String, serde_json::Value>) {
    state.instance_type = Value::Value(shape_of(config).label());
    if let Some(template) = description_fields(config).remove("template") {
        state.image_id = Value::Value(template);
    }
    state.public_ip = Value::Null;
    state.tags_all = Value::Null;
}

/// `value`, or `default` when unset.
fn or_default(value: &Value<String>, default: &str) -> Value<String> {
    match value {
        Value::Null => Value::Value(default.to_owned()),
        other => other.clone(),
    }
}

/// The computed fields a Proxmox plan knows: the shape (a disk never
/// shrinks), the template, no public address and no AWS tags.
fn plan_proxmox(planned: &mut State, prior: Option<&State>) {
    planned.tags_all = Value::Null;
    planned.public_ip = Value::Null;
    if prior.is_none() {
        planned.image_id = planned.proxmox_args().template;
        if planned.image_id.is_null() {
            planned.image_id = Value::Unknown;
        }
    }
    planned.instance_type = match planned.wanted_shape() {
        Some(mut shape) => {
            if let Some(before) = prior
                .and_then(|p| p.instance_type.as_ref_option())
                .and_then(|t| Shape::parse_label(t))
            {
                shape.disk_gib = shape.disk_gib.max(before.disk_gib);
            }
            Value::Value(shape.label())
        }
        None => Value::Unknown,
    };
}

/// Which `proxmox` settings changed in a way only a new container can
/// honour. A setting unknown to the prior state (after an import) is adopted.
fn proxmox_replacements(prior: &State, planned: &State) -> Vec<AttributePath> {
    let (before, after) = (prior.proxmox_args(), planned.proxmox_args());
    let mut replace = Vec::new();
    let path = |field: &'static str| AttributePath::new("proxmox").index(0).attribute(field);
    for (field, b, a) in [
        ("node", before.node.clone(), after.node.clone()),
        ("template", before.template.clone(), after.template.clone()),
        (
            "storage",
            or_default(&before.storage, DEFAULT_PROXMOX_STORAGE),
            or_default(&after.storage, DEFAULT_PROXMOX_STORAGE),
        ),
        (
            "bridge",
            or_default(&before.bridge, DEFAULT_PROXMOX_BRIDGE),
            or_default(&after.bridge, DEFAULT_PROXMOX_BRIDGE),
        ),
        (
            "ip",
            or_default(&before.ip, DEFAULT_PROXMOX_IP),
            or_default(&after.ip, DEFAULT_PROXMOX_IP),
        ),
        ("gateway", before.gateway.clone(), after.gateway.clone()),
    ] {
        if b != a && !(field == "template" && b.is_null()) {
            replace.push(path(field));
        }
    }
    let actual = prior
        .instance_id
        .as_ref_option()
        .and_then(|id| parse_container_id(id))
        .map(|(_, vmid)| vmid);
    match after.vmid {
        Value::Value(v) if Some(v) != actual => replace.push(path("vmid")),
        Value::Unknown => replace.push(path("vmid")),
        _ => {}
    }
    replace
}

/// How an import names a container.
enum ContainerRef {
    /// `<node>/<vmid>`.
    Id(String, i64),
    /// `<environment>/<name>`: by the tags and host name create gives it.
    Labels(String, String),
}

/// The containers an import ID names, as `(node, vmid)`.
async fn find_containers(
    proxmox: &Proxmox,
    wanted: &ContainerRef,
) -> Result<Vec<(String, i64)>, crate::proxmox::ProxmoxError> {
    match wanted {
        ContainerRef::Id(node, vmid) => Ok(proxmox
            .status(node, *vmid)
            .await?
            .map(|_| vec![(node.clone(), *vmid)])
            .unwrap_or_default()),
        ContainerRef::Labels(environment, name) => {
            let hostname = format!("{name}-{environment}");
            Ok(proxmox
                .containers()
                .await?
                .into_iter()
                .filter(|r| {
                    let tags = split_tags(r.tags.as_deref().unwrap_or(""));
                    ["launch", name.as_str(), environment.as_str()]
                        .iter()
                        .all(|t| tags.iter().any(|have| have == t))
                        && r.name.as_deref() == Some(hostname.as_str())
                })
                .filter_map(|r| Some((r.node, r.vmid?)))
                .collect())
        }
    }
}

async fn find_container(
    proxmox: &Proxmox,
    wanted: &ContainerRef,
) -> Result<Option<(String, i64)>, crate::proxmox::ProxmoxError> {
    Ok(find_containers(proxmox, wanted).await?.into_iter().next())
}

/// Waits for the container's first IPv4 address, as PVE reports it.
async fn wait_for_ip(
    proxmox: &Proxmox,
    node: &str,
    vmid: i64,
    deadline: Instant,
) -> Result<String, String> {
    let started = Instant::now();
    let mut last: String;
    loop {
        match proxmox.interfaces(node, vmid).await {
            Ok(interfaces) => {
                if let Some(ip) = first_ipv4(&interfaces) {
                    return Ok(ip);
                }
                last = format!("interfaces: {interfaces}");
            }
            Err(e) => last = e.to_string(),
        }
        if Instant::now() + Duration::from_secs(1) > deadline {
            return Err(format!(
                "container {node}/{vmid} had no IPv4 address after {}s (last seen: {last}). With ip = \"dhcp\" check the bridge's DHCP server, or set a static ip",
                started.elapsed().as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Stops (if running) and destroys a container with its disks; one that is
/// already gone is fine.
async fn destroy_container(
    clients: &Clients,
    instance_id: &str,
    deadline: Instant,
) -> Result<(), String> {
    let proxmox = clients.proxmox().await?;
    let (node, vmid) = parse_container_id(instance_id)
        .ok_or_else(|| format!("{instance_id:?} is not <node>/<vmid>"))?;
    let status = match proxmox.status(&node, vmid).await {
        Ok(Some(status)) => status,
        Ok(None) => {
            info!(%instance_id, "container is already gone");
            return Ok(());
        }
        Err(e) => return Err(e.to_string()),
    };
    if status["status"] == "running" {
        let upid = proxmox
            .power(&node, vmid, "stop")
            .await
            .map_err(|e| e.to_string())?;
        proxmox
            .wait_task("stopping the container", &upid, deadline)
            .await
            .map_err(|e| e.to_string())?;
    }
    let upid = proxmox
        .destroy(&node, vmid)
        .await
        .map_err(|e| e.to_string())?;
    proxmox
        .wait_task("destroying the container", &upid, deadline)
        .await
        .map_err(|e| e.to_string())
}

impl ServiceResource {
    /// Create for `target = "proxmox"`: the control-plane side as for EC2,
    /// then an unprivileged LXC with nesting and keyctl (for Docker) and a
    /// fresh SSH key, started, its address awaited, and the bootstrap run
    /// over SSH. Once the container exists it is always returned.
    async fn create_proxmox(
        &self,
        diags: &mut Diagnostics,
        clients: &Clients,
        labels: &Labels,
        planned: State,
        (deadline, waited_from): (Instant, Instant),
        create_timeout: Duration,
    ) -> Option<State> {
        let control = &clients.control;
        let args = planned.proxmox_args();
        let node = args.node.as_ref_option().cloned().unwrap_or_default();
        let template = args.template.as_ref_option().cloned().unwrap_or_default();
        let text_or = |v: &Value<String>, default: &str| {
            v.as_ref_option()
                .cloned()
                .unwrap_or_else(|| default.to_owned())
        };
        let storage = text_or(&args.storage, DEFAULT_PROXMOX_STORAGE);
        let bridge = text_or(&args.bridge, DEFAULT_PROXMOX_BRIDGE);
        let ip = text_or(&args.ip, DEFAULT_PROXMOX_IP);
        let shape = planned
            .wanted_shape()
            .or_else(|| Shape::for_size(state::DEFAULT_SIZE))
            .expect("the default size has a shape");
        let (service, environment) = (labels.service.as_str(), labels.environment.as_str());

        // 1. The control plane side and the key, undone if no container comes of it.
        let before: Result<_, String> = async {
            let proxmox = clients.proxmox().await?;
            let join = self
                .prepare_control_plane(clients, labels, &planned, create_timeout)
                .await?;
            let keys = KeyPair::generate(&format!("launch-{service}-{environment}"))
                .await
                .map_err(|e| e.to_string())?;
            let vmid = match args.vmid.as_ref_option() {
                Some(vmid) => *vmid,
                None => proxmox.next_id().await.map_err(|e| e.to_string())?,
            };
            Ok((proxmox, join, keys, vmid))
        }
        .await;
        let (proxmox, join, keys, vmid) = match before {
            Ok(ok) => ok,
            Err(e) => {
                diags.root_error("cannot create launch_service", e);
                self.undo_control_plane(labels, clients).await;
                return None;
            }
        };
        let mut net0 = format!("name=eth0,bridge={bridge},ip={ip}");
        if let Some(gateway) = args.gateway.as_ref_option() {
            net0.push_str(&format!(",gw={gateway}"));
        }
        let params = |vmid: i64| -> Vec<(&str, String)> {
            vec![
                ("vmid", vmid.to_string()),
                ("ostemplate", template.clone()),
                ("hostname", format!("{service}-{environment}")),
                ("cores", shape.cores.to_string()),
                ("memory", shape.memory_mib.to_string()),
                ("swap", "512".to_owned()),
                ("rootfs", format!("{storage}:{}", shape.disk_gib)),
                ("net0", net0.clone()),
                ("features", "nesting=1,keyctl=1".to_owned()),
                ("unprivileged", "1".to_owned()),
                ("onboot", "1".to_owned()),
                ("tags", format!("launch;{service};{environment}")),
                ("description", description(labels, &template)),
                ("ssh-public-keys", keys.public.clone()),
            ]
        };
        // Terraform creates in parallel: a VMID from nextid can be taken by
        // another create before ours arrives. Then take the next free one.
        let mut vmid = vmid;
        let mut attempt = 1;
        let upid = loop {
            match proxmox.create_lxc(&node, &params(vmid)).await {
                Err(e)
                    if args.vmid.is_null()
                        && attempt < 5
                        && e.to_string().contains("already exists") =>
                {
                    info!(vmid, "VMID taken meanwhile: taking the next free one");
                    attempt += 1;
                    match proxmox.next_id().await {
                        Ok(next) => vmid = next.max(vmid + 1),
                        Err(e) => break Err(e),
                    }
                }
                other => break other,
            }
        };
        let instance_id = format!("{node}/{vmid}");
        let created = match upid {
            Ok(upid) => {
                proxmox
                    .wait_task("creating the container", &upid, deadline)
                    .await
            }
            Err(e) => {
                diags.root_error(
                    format!(
                        "cannot create launch_service: container {instance_id} was not created"
                    ),
                    e.to_string(),
                );
                self.undo_control_plane(labels, clients).await;
                return None;
            }
        };
        info!(%instance_id, %template, "container created");

        // 2. From here on the container may exist: hand it back to Terraform.
        let mut state = planned;
        state.join_token_id = Value::Value(join.id);
        state.instance_id = Value::Value(instance_id.clone());
        state.instance_type = Value::Value(shape.label());
        state.image_id = Value::Value(template.clone());
        state.private_ip = Value::Null;
        state.public_ip = Value::Null;
        state.tags_all = Value::Null;
        state.agent_id = Value::Null;
        let planned_fqdn = state.fqdn.clone();
        clear_dns(&mut state);
        let kept = "It is kept in state (tainted): the next apply replaces it, destroy removes it.";
        if let Err(e) = created {
            // PVE removes a container whose create task failed.
            if let Ok(None) = proxmox.status(&node, vmid).await {
                diags.root_error(
                    format!("cannot create launch_service: the Proxmox task creating container {instance_id} failed"),
                    e.to_string(),
                );
                self.undo_control_plane(labels, clients).await;
                return None;
            }
            diags.root_error(
                format!("the Proxmox task creating container {instance_id} did not succeed"),
                format!("{e}\n{kept}"),
            );
            return Some(state);
        }
        let started = match proxmox.power(&node, vmid, "start").await {
            Ok(upid) => {
                proxmox
                    .wait_task("starting the container", &upid, deadline)
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = started {
            diags.root_error(
                format!("container {instance_id} did not start"),
                format!("{e}\n{kept}"),
            );
            return Some(state);
        }
        if let Ok(config) = proxmox.config(&node, vmid).await {
            observe_container(&mut state, &config);
        }
        let address = match wait_for_ip(proxmox, &node, vmid, deadline).await {
            Ok(address) => address,
            Err(e) => {
                diags.root_error(
                    format!("container {instance_id} got no address"),
                    format!("{e}. {kept}"),
                );
                return Some(state);
            }
        };
        state.private_ip = Value::Value(address.clone());
        info!(%instance_id, %address, "container is up: bootstrapping over SSH");
        let script = Bootstrap {
            control_url: control.url(),
            join_token: &join.token,
            labels,
        }
        .script();
        if let Err(e) = ssh::run_script(&keys, &proxmox.ssh_user, &address, &script, deadline).await
        {
            diags.root_error(
                format!("the bootstrap did not complete on container {instance_id}"),
                format!("{e}\n{kept}"),
            );
            return Some(state);
        }
        drop(keys);
        let what = format!("Container {instance_id}");
        let timing = (deadline, waited_from);
        self.finish_create(diags, clients, labels, state, planned_fqdn, timing, &what)
            .await
    }

    /// Read for a container: `Some(false)` when it is gone (so the plan
    /// re-creates it); a stopped one is reported as a warning.
    async fn read_proxmox(
        &self,
        diags: &mut Diagnostics,
        clients: &Clients,
        instance_id: &str,
        state: &mut State,
    ) -> Option<bool> {
        let Some((node, vmid)) = parse_container_id(instance_id) else {
            diags.root_error(
                format!("instance_id {instance_id:?} is not <node>/<vmid>"),
                "Remove the resource from state (terraform state rm) and import it again.",
            );
            return None;
        };
        let proxmox = match clients.proxmox().await {
            Ok(proxmox) => proxmox,
            Err(e) => {
                diags.root_error("cannot read launch_service", e);
                return None;
            }
        };
        let status = match proxmox.status(&node, vmid).await {
            Ok(Some(status)) => status,
            Ok(None) => {
                info!(%instance_id, "container is gone: removing it from state so the plan re-creates it");
                return Some(false);
            }
            Err(e) => {
                diags.root_error(
                    format!("cannot read container {instance_id}"),
                    e.to_string(),
                );
                return None;
            }
        };
        match proxmox.config(&node, vmid).await {
            Ok(config) => observe_container(state, &config),
            Err(e) => {
                diags.root_error(
                    format!("cannot read container {instance_id}"),
                    e.to_string(),
                );
                return None;
            }
        }
        let running = status["status"] == "running";
        if running {
            if let Ok(interfaces) = proxmox.interfaces(&node, vmid).await
                && let Some(ip) = first_ipv4(&interfaces)
            {
                state.private_ip = Value::Value(ip);
            }
        } else {
            let now = status["status"].as_str().unwrap_or("unknown").to_owned();
            diags.root_warning(
                format!("container {instance_id} is {now}"),
                format!("Its service is down until it runs again: start it (pct start {vmid} on {node}, or Start in the Proxmox UI). Terraform does not start it."),
            );
        }
        Some(true)
    }

    /// Update for a container: cores and memory in place, the disk grown
    /// (never shrunk), then DNS as for every target.
    async fn update_proxmox(
        &self,
        diags: &mut Diagnostics,
        clients: &Clients,
        instance_id: &str,
        prior: State,
        mut state: State,
        deadline: Instant,
    ) -> Option<State> {
        let Some((node, vmid)) = parse_container_id(instance_id) else {
            diags.root_error(
                format!("instance_id {instance_id:?} is not <node>/<vmid>"),
                "Remove the resource from state (terraform state rm) and import it again.",
            );
            return Some(prior);
        };
        let proxmox = match clients.proxmox().await {
            Ok(proxmox) => proxmox,
            Err(e) => {
                diags.root_error("cannot update launch_service", e);
                return Some(prior);
            }
        };
        let current = match proxmox.config(&node, vmid).await {
            Ok(config) => shape_of(&config),
            Err(e) => {
                diags.root_error(
                    format!("cannot read container {instance_id}"),
                    e.to_string(),
                );
                return Some(prior);
            }
        };
        let Some(wanted) = state.wanted_shape() else {
            diags.root_error("size is not known", "Give size a value known at plan time.");
            return Some(prior);
        };
        let changed: Result<(), String> = async {
            if (wanted.cores, wanted.memory_mib) != (current.cores, current.memory_mib) {
                info!(%instance_id, cores = wanted.cores, memory_mib = wanted.memory_mib, "resizing the container");
                proxmox
                    .set_config(
                        &node,
                        vmid,
                        &[
                            ("cores", wanted.cores.to_string()),
                            ("memory", wanted.memory_mib.to_string()),
                        ],
                    )
                    .await
                    .map_err(|e| e.to_string())?;
            }
            if wanted.disk_gib > current.disk_gib {
                info!(%instance_id, disk_gib = wanted.disk_gib, "growing the container's disk");
                if let Some(upid) = proxmox
                    .grow_rootfs(&node, vmid, wanted.disk_gib)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    proxmox
                        .wait_task("growing the disk", &upid, deadline)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            Ok(())
        }
        .await;
        // Whatever happened, record what Proxmox says now.
        let observed = proxmox.config(&node, vmid).await;
        if let Err(e) = changed {
            diags.root_error(format!("cannot resize container {instance_id}"), e);
            let mut now = prior;
            if let Ok(config) = observed {
                observe_container(&mut now, &config);
            }
            return Some(now);
        }
        match observed {
            Ok(config) => observe_container(&mut state, &config),
            Err(e) => {
                diags.root_error(
                    format!("cannot read container {instance_id}"),
                    e.to_string(),
                );
                return Some(prior);
            }
        }
        self.sync_dns(diags, clients, &prior, &mut state).await;
        Some(state)
    }

    /// Import of a container by `<node>/<vmid>` or `<environment>/<name>`.
    async fn import_proxmox(
        &self,
        diags: &mut Diagnostics,
        clients: &Clients,
        wanted: ContainerRef,
    ) -> Option<(State, ValueEmpty)> {
        let proxmox = match clients.proxmox().await {
            Ok(proxmox) => proxmox,
            Err(e) => {
                diags.root_error("cannot import launch_service", e);
                return None;
            }
        };
        let id = match &wanted {
            ContainerRef::Id(node, vmid) => format!("{node}/{vmid}"),
            ContainerRef::Labels(environment, name) => format!("{environment}/{name}"),
        };
        let found = match find_containers(proxmox, &wanted).await {
            Ok(found) => found,
            Err(e) => {
                diags.root_error("cannot import launch_service", e.to_string());
                return None;
            }
        };
        let (node, vmid) = match found.as_slice() {
            [one] => one.clone(),
            [] => {
                diags.root_error(
                    format!("no container to import for {id}"),
                    "No Proxmox container has that node/vmid, or tags launch, <name>, <environment> and host name <name>-<environment>.",
                );
                return None;
            }
            many => {
                let ids: Vec<String> = many.iter().map(|(n, v)| format!("{n}/{v}")).collect();
                diags.root_error(
                    format!("{} containers are tagged for {id}", many.len()),
                    format!(
                        "Containers {}: import one by <node>/<vmid>, or destroy the extra ones.",
                        ids.join(", ")
                    ),
                );
                return None;
            }
        };
        let config = match proxmox.config(&node, vmid).await {
            Ok(config) => config,
            Err(e) => {
                diags.root_error("cannot import launch_service", e.to_string());
                return None;
            }
        };
        let fields = description_fields(&config);
        let (environment, name) = match wanted {
            ContainerRef::Labels(environment, name) => (environment, name),
            ContainerRef::Id(..) => match (fields.get("environment"), fields.get("service")) {
                (Some(e), Some(n)) => (e.clone(), n.clone()),
                _ => {
                    diags.root_error(
                        format!("container {id} was not made by launch_service"),
                        "Its description has no line `launch: service=<name> environment=<environment>`: only containers this provider created can be imported.",
                    );
                    return None;
                }
            },
        };
        let mut state = State {
            name: Value::Value(name),
            environment: Value::Value(environment),
            target: Value::Value("proxmox".to_owned()),
            ..Default::default()
        };
        let Some(labels) = state.labels() else {
            diags.root_error(
                format!("import ID {id:?} does not name a service"),
                "Use <environment>/<name> with DNS labels, e.g. prod/hello, or <node>/<vmid>.",
            );
            return None;
        };
        let shape = shape_of(&config);
        let net0 = config.get("net0").and_then(|v| v.as_str()).unwrap_or("");
        let (_, net) = crate::proxmox::split_props(net0);
        let rootfs = config.get("rootfs").and_then(|v| v.as_str()).unwrap_or("");
        let storage = crate::proxmox::split_props(rootfs)
            .0
            .and_then(|volume| volume.split(':').next().map(str::to_owned));
        let unless_default = |value: Option<String>, default: &str| match value {
            Some(v) if v != default => Value::Value(v),
            _ => Value::Null,
        };
        state.id = state.computed_id();
        state.size = Value::Value(shape.size().unwrap_or(state::DEFAULT_SIZE).to_owned());
        state.proxmox = Value::Value(vec![ProxmoxArgs {
            node: Value::Value(node.clone()),
            template: text(fields.get("template").cloned()),
            storage: unless_default(storage, DEFAULT_PROXMOX_STORAGE),
            bridge: unless_default(net.get("bridge").cloned(), DEFAULT_PROXMOX_BRIDGE),
            vmid: Value::Null,
            ip: unless_default(net.get("ip").cloned(), DEFAULT_PROXMOX_IP),
            gateway: text(net.get("gw").cloned()),
        }]);
        state.aws = Value::Value(Vec::new());
        state.public = Value::Value(false);
        state.wait_for_agent = Value::Value(true);
        state.timeouts = Value::Value(Vec::new());
        state.dns = Value::Value(Vec::new());
        state.instance_id = Value::Value(format!("{node}/{vmid}"));
        observe_container(&mut state, &config);
        state.private_ip = match proxmox.interfaces(&node, vmid).await {
            Ok(interfaces) => text(first_ipv4(&interfaces)),
            Err(_) => Value::Null,
        };
        import_rest(diags, clients, &labels, state).await
    }
}
