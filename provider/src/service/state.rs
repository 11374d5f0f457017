//! The `launch_service` schema and its state, and everything decided from
//! configuration alone: defaults, plan-time validation, the instance type a
//! size means, the tags every instance carries and the DNS record a public
//! service wants. No I/O here.

use std::collections::BTreeMap;

use launch_core::labels::Labels;
use launch_core::names::{EnvironmentName, ServiceName};
use serde::{Deserialize, Serialize};
use tf_provider::schema::{
    AttributeConstraint, AttributeType, Block, Description, NestedBlock, Schema,
};
use tf_provider::value::Value;
use tf_provider::{AttributePath, Diagnostics};

use crate::provider::attribute;
use crate::timeouts::{self, Timeouts};

pub type Text = Value<String>;
pub type TextMap = Value<BTreeMap<String, Value<String>>>;

pub const DEFAULT_ENVIRONMENT: &str = "prod";
pub const DEFAULT_SIZE: &str = "small";
/// Targets this provider version can create. `docker` is in the design but
/// not built yet, so the validator refuses it.
pub const TARGETS: &[&str] = &["aws", "proxmox"];
pub const SIZES: &[(&str, &str)] = &[
    ("small", "t3.small"),
    ("medium", "t3.medium"),
    ("large", "t3.large"),
];
/// What a size means on Proxmox: (size, cores, memory MiB, rootfs GiB).
pub const PROXMOX_SIZES: &[(&str, i64, i64, u64)] = &[
    ("small", 1, 1024, 8),
    ("medium", 2, 2048, 16),
    ("large", 4, 4096, 32),
];
pub const DEFAULT_PROXMOX_STORAGE: &str = "local-lvm";
pub const DEFAULT_PROXMOX_BRIDGE: &str = "vmbr0";
pub const DEFAULT_PROXMOX_IP: &str = "dhcp";
/// Tags the provider owns on every instance; users cannot set these.
pub const TAG_SERVICE: &str = "launch:service";
pub const TAG_ENVIRONMENT: &str = "launch:environment";
pub const TAG_MANAGED_BY: &str = "launch:managed-by";
pub const MANAGED_BY: &str = "terraform-provider-launch";

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct State {
    pub id: Text,
    pub name: Text,
    pub environment: Text,
    pub target: Text,
    pub size: Text,
    pub public: Value<bool>,
    pub secrets: TextMap,
    pub tags: TextMap,
    pub tags_all: TextMap,
    pub wait_for_agent: Value<bool>,
    // Blocks are `Value<Vec<_>>` without `serde_as_vec`: tf-provider 0.2.2
    // cannot decode a whole block sent as unknown otherwise.
    pub aws: Value<Vec<AwsArgs>>,
    pub proxmox: Value<Vec<ProxmoxArgs>>,
    pub timeouts: Value<Vec<Timeouts>>,
    pub dns: Value<Vec<DnsArgs>>,
    pub instance_id: Text,
    pub instance_type: Text,
    pub image_id: Text,
    pub private_ip: Text,
    pub public_ip: Text,
    pub fqdn: Text,
    pub url: Text,
    pub agent_id: Text,
    pub dns_record_id: Text,
    pub dns_content: Text,
    pub join_token_id: Text,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct DnsArgs {
    pub proxied: Value<bool>,
    pub allow_overwrite: Value<bool>,
    pub ttl: Value<i64>,
}

/// The `dns` block with its defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct DnsSettings {
    pub proxied: bool,
    pub allow_overwrite: bool,
    pub ttl: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct AwsArgs {
    pub ami: Text,
    pub subnet_id: Text,
    pub security_group_ids: Value<Vec<Value<String>>>,
    pub key_name: Text,
    pub instance_type: Text,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ProxmoxArgs {
    pub node: Text,
    pub template: Text,
    pub storage: Text,
    pub bridge: Text,
    pub vmid: Value<i64>,
    pub ip: Text,
    pub gateway: Text,
}

/// Cores, memory and rootfs size of a Proxmox container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub cores: i64,
    pub memory_mib: i64,
    pub disk_gib: u64,
}

impl Shape {
    pub fn for_size(size: &str) -> Option<Shape> {
        PROXMOX_SIZES
            .iter()
            .find(|(s, ..)| *s == size)
            .map(|&(_, cores, memory_mib, disk_gib)| Shape {
                cores,
                memory_mib,
                disk_gib,
            })
    }

    /// The size whose cores and memory these are, if any.
    pub fn size(&self) -> Option<&'static str> {
        PROXMOX_SIZES
            .iter()
            .find(|(_, c, m, _)| *c == self.cores && *m == self.memory_mib)
            .map(|(s, ..)| *s)
    }

    /// Reads back what [`Shape::label`] wrote.
    pub fn parse_label(label: &str) -> Option<Shape> {
        let mut numbers = label
            .split(',')
            .map(|part| part.split_whitespace().next().unwrap_or_default());
        Some(Shape {
            cores: numbers.next()?.parse().ok()?,
            memory_mib: numbers.next()?.parse().ok()?,
            disk_gib: numbers.next()?.parse().ok()?,
        })
    }

    /// How `instance_type` spells it for a container, e.g. `1 cores, 1024 MiB, 8 GiB`.
    pub fn label(&self) -> String {
        format!(
            "{} cores, {} MiB, {} GiB",
            self.cores, self.memory_mib, self.disk_gib
        )
    }
}

pub fn schema() -> Schema {
    use AttributeConstraint::{Computed, Optional, OptionalComputed, Required};
    use AttributeType::{Bool, List, Map, String};
    let s = || String;
    let attr = attribute;
    let mut secrets = attr(
        Map(Box::new(s())),
        Optional,
        "Environment variables for the service's containers, stored encrypted by the control plane and written to the release's `.env` (0600) on the host. Sensitive: shown as `(sensitive value)` in plans. Keys must be valid environment variable names. Changing them updates the control plane only; the next deploy picks them up.",
    );
    secrets.sensitive = true;
    let aws = Block {
        attributes: [
            ("ami", attr(s(), Optional, "AMI to boot. Default: the newest official Debian 12 AMI, else the newest Ubuntu LTS, for x86_64. Changing it replaces the instance.")),
            ("subnet_id", attr(s(), Optional, "Subnet to launch into. Default: the default VPC's default subnet. Changing it replaces the instance.")),
            ("security_group_ids", attr(List(Box::new(s())), Optional, "Security groups. Default: the VPC's default group. Updated in place.")),
            ("key_name", attr(s(), Optional, "EC2 key pair for SSH. Changing it replaces the instance (EC2 cannot change the key of a running instance).")),
            ("instance_type", attr(s(), Optional, "Instance type, overriding what `size` means (`t3.small`, `t3.medium`, `t3.large`). Updated in place (stop, modify, start).")),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .into(),
        description: Description::markdown("Overrides for `target = \"aws\"`."),
        ..Default::default()
    };
    let proxmox = Block {
        attributes: [
            ("node", attr(s(), Optional, "Proxmox node to create the container on, e.g. `pve1`. Required with `target = \"proxmox\"`. Changing it replaces the container.")),
            ("template", attr(s(), Optional, "OS template volume, e.g. `local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst`: a Debian or Ubuntu template with sshd (the standard ones have it). Required with `target = \"proxmox\"`. Changing it replaces the container.")),
            ("storage", attr(s(), Optional, "Storage for the root filesystem. Default `local-lvm`. Changing it replaces the container.")),
            ("bridge", attr(s(), Optional, "Bridge for `eth0`. Default `vmbr0`. Changing it replaces the container.")),
            ("vmid", attr(AttributeType::Number, Optional, "VMID to use. Default: the cluster's next free one (`/cluster/nextid`). Changing it replaces the container.")),
            ("ip", attr(s(), Optional, "`dhcp` (the default) or a static IPv4 address with prefix, e.g. `192.168.1.50/24`. Changing it replaces the container.")),
            ("gateway", attr(s(), Optional, "IPv4 gateway for a static `ip`. Changing it replaces the container.")),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .into(),
        description: Description::markdown("Where and how to create the LXC for `target = \"proxmox\"`."),
        ..Default::default()
    };
    let timeouts = Block {
        attributes: [
            ("create", "How long create may take, including waiting for the agent: a duration such as `\"20m\"` or `\"1h30m\"`. Default `20m`."),
            ("update", "How long an update (e.g. a resize) may take. Default `20m`."),
            ("delete", "How long terminating the instance may take. Default `20m`."),
        ]
        .map(|(k, d)| (k.to_owned(), attr(s(), Optional, d)))
        .into(),
        description: Description::markdown("Operation timeouts."),
        ..Default::default()
    };
    let dns = Block {
        attributes: [
            ("proxied", attr(Bool, Optional, "Whether Cloudflare proxies traffic to the host (orange cloud). Default `false`. A proxied record needs a public address: Cloudflare refuses to proxy a private one.")),
            ("allow_overwrite", attr(Bool, Optional, "Default `false`: if a record of the same name and type already exists and this resource did not create it, apply fails. `true` adopts it (keeping its comment and tags), points it at this host, and deletes further same-name A records.")),
            ("ttl", attr(AttributeType::Number, Optional, "Record TTL in seconds: `1` (automatic, the default) or 30 to 86400. Proxied records always use `1`.")),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .into(),
        description: Description::markdown("Settings of the Cloudflare DNS record made when `public = true`."),
        ..Default::default()
    };
    let attributes = [
        ("id", attr(s(), Computed, "`<environment>/<name>`: also the import ID.")),
        ("name", attr(s(), Required, "Service name: a DNS label (lower-case letters, digits and `-`, at most 63, starting with a letter). The agent's `service-name` label. Changing it replaces the service.")),
        ("environment", attr(s(), OptionalComputed, "Environment, a DNS label like `name`. The agent's `environment` label. Default `prod`. Changing it replaces the service.")),
        ("target", attr(s(), Required, "Where the host runs: `aws` (an EC2 instance) or `proxmox` (an unprivileged LXC with nesting, bootstrapped over SSH). Changing it replaces the service.")),
        ("size", attr(s(), OptionalComputed, "`small`, `medium` or `large`. On AWS `t3.small`, `t3.medium`, `t3.large`; on Proxmox 1 core / 1024 MiB / 8 GiB, 2 / 2048 MiB / 16 GiB, 4 / 4096 MiB / 32 GiB. Default `small`. Updated in place: an EC2 instance is stopped, resized and started; a container gets its cores and memory changed live and its disk grown (never shrunk).")),
        ("public", attr(Bool, OptionalComputed, "Whether the service gets a DNS record in Cloudflare: an A record `<name>.<domain>` (environment `prod`) or `<name>-<environment>.<domain>`, pointing at `public_ip`, or at `private_ip` when the host has no public address (e.g. a homelab). Needs the provider's `cloudflare` block. Default `false`; switching it off deletes the record in place.")),
        ("secrets", secrets),
        ("tags", attr(Map(Box::new(s())), Optional, "Extra tags for the instance. Keys `Name`, `launch:*` and `aws:*` are reserved.")),
        ("tags_all", attr(Map(Box::new(s())), Computed, "Every tag on the instance: `tags` plus `Name`, `launch:service`, `launch:environment` and `launch:managed-by`.")),
        ("wait_for_agent", attr(Bool, OptionalComputed, "Default `true`: create returns once the host's agent has registered with the control plane, within `timeouts.create`.")),
        ("instance_id", attr(s(), Computed, "EC2 instance ID, or `<node>/<vmid>` of a Proxmox container.")),
        ("instance_type", attr(s(), Computed, "The instance type in use; for a container its cores, memory and disk, e.g. `1 cores, 1024 MiB, 8 GiB`.")),
        ("image_id", attr(s(), Computed, "The AMI the instance booted from, or the container's template.")),
        ("private_ip", attr(s(), Computed, "Private IPv4 address.")),
        ("public_ip", attr(s(), Computed, "Public IPv4 address, if the subnet gives one.")),
        ("fqdn", attr(s(), Computed, "The DNS record's name, when `public`, e.g. `hello.example.com`.")),
        ("url", attr(s(), Computed, "`https://<fqdn>`, when `public`.")),
        ("agent_id", attr(s(), Computed, "ID of the host's agent in the control plane, once it has registered.")),
        ("dns_record_id", attr(s(), Computed, "ID of the Cloudflare DNS record, when `public`.")),
        ("dns_content", attr(s(), Computed, "The address the DNS record points at, as Cloudflare has it, when `public`. A change made in Cloudflare shows here as drift and the next apply puts it back.")),
        ("join_token_id", attr(s(), Computed, "ID of the single-use join token in the host's user-data (the token itself is never stored in state).")),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .into();
    Schema {
        version: 1,
        block: Block {
            attributes,
            blocks: [
                ("aws".to_owned(), NestedBlock::Optional(aws)),
                ("proxmox".to_owned(), NestedBlock::Optional(proxmox)),
                ("timeouts".to_owned(), NestedBlock::Optional(timeouts)),
                ("dns".to_owned(), NestedBlock::Optional(dns)),
            ]
            .into(),
            description: Description::markdown(
                "A host for one compose service in one environment: an EC2 instance that boots, installs Docker and `launch-agent`, and registers with the control plane with labels `service-name` and `environment`, ready for `launch deploy`.",
            ),
            ..Default::default()
        },
    }
}

impl State {
    pub fn aws_args(&self) -> AwsArgs {
        self.aws
            .as_ref_option()
            .and_then(|b| b.first())
            .cloned()
            .unwrap_or_default()
    }

    pub fn proxmox_args(&self) -> ProxmoxArgs {
        self.proxmox
            .as_ref_option()
            .and_then(|b| b.first())
            .cloned()
            .unwrap_or_default()
    }

    pub fn is_proxmox(&self) -> bool {
        self.target.as_ref_option().map(String::as_str) == Some("proxmox")
    }

    /// The container shape `size` asks for.
    pub fn wanted_shape(&self) -> Option<Shape> {
        match &self.size {
            Value::Value(size) => Shape::for_size(size),
            Value::Null => Shape::for_size(DEFAULT_SIZE),
            Value::Unknown => None,
        }
    }

    pub fn timeouts(&self) -> Timeouts {
        timeouts::block(&self.timeouts)
    }

    /// The labels, when name and environment are known and valid.
    pub fn labels(&self) -> Option<Labels> {
        let service = ServiceName::parse(self.name.as_ref_option()?).ok()?;
        let environment = EnvironmentName::parse(self.environment.as_ref_option()?).ok()?;
        Some(Labels::new(service, environment))
    }

    /// Known user tags, without nulls.
    pub fn user_tags(&self) -> BTreeMap<String, String> {
        known_map(&self.tags)
    }

    pub fn secret_values(&self) -> BTreeMap<String, String> {
        known_map(&self.secrets)
    }

    /// Fills the optional arguments a configuration left out with their
    /// defaults, from `config` (so removing `size` goes back to `small`
    /// rather than keeping the prior value).
    pub fn apply_defaults(&mut self, config: &State) {
        fn default_to<T: Clone>(slot: &mut Value<T>, config: &Value<T>, default: T) {
            if config.is_null() {
                *slot = Value::Value(default);
            }
        }
        default_to(
            &mut self.environment,
            &config.environment,
            DEFAULT_ENVIRONMENT.to_owned(),
        );
        default_to(&mut self.size, &config.size, DEFAULT_SIZE.to_owned());
        default_to(&mut self.public, &config.public, false);
        default_to(&mut self.wait_for_agent, &config.wait_for_agent, true);
        if self.aws.is_null() {
            self.aws = Value::Value(Vec::new());
        }
        if self.proxmox.is_null() {
            self.proxmox = Value::Value(Vec::new());
        }
        if self.timeouts.is_null() {
            self.timeouts = Value::Value(Vec::new());
        }
        if self.dns.is_null() {
            self.dns = Value::Value(Vec::new());
        }
    }

    /// The `dns` block with defaults; `None` while part of it is unknown.
    pub fn dns_settings(&self) -> Option<DnsSettings> {
        let args = match &self.dns {
            Value::Unknown => return None,
            Value::Null => DnsArgs::default(),
            Value::Value(blocks) => blocks.first().cloned().unwrap_or_default(),
        };
        fn known<T: Clone>(v: &Value<T>, default: T) -> Option<T> {
            match v {
                Value::Unknown => None,
                Value::Null => Some(default),
                Value::Value(v) => Some(v.clone()),
            }
        }
        Some(DnsSettings {
            proxied: known(&args.proxied, false)?,
            allow_overwrite: known(&args.allow_overwrite, false)?,
            ttl: u32::try_from(known(&args.ttl, 1)?).unwrap_or(1),
        })
    }

    /// The DNS name for `domain`, once name and environment are known.
    pub fn wanted_fqdn(&self, domain: &str) -> Text {
        match (&self.name, &self.environment) {
            (Value::Value(name), Value::Value(env)) => {
                Value::Value(crate::cloudflare::record_name(name, env, domain))
            }
            _ => Value::Unknown,
        }
    }

    /// What the A record points at: the public address, else the private
    /// one (a host with no public address, e.g. in a homelab).
    pub fn wanted_dns_content(&self) -> Text {
        match (&self.public_ip, &self.private_ip) {
            (Value::Value(ip), _) => Value::Value(ip.clone()),
            (Value::Unknown, _) => Value::Unknown,
            (Value::Null, ip) => ip.clone(),
        }
    }

    /// `<environment>/<name>` when both are known.
    pub fn computed_id(&self) -> Text {
        match (&self.environment, &self.name) {
            (Value::Value(env), Value::Value(name)) => Value::Value(format!("{env}/{name}")),
            _ => Value::Unknown,
        }
    }

    /// The instance type the configuration asks for.
    pub fn wanted_instance_type(&self) -> Text {
        let args = self.aws_args();
        match (&args.instance_type, &self.size) {
            (Value::Value(t), _) => Value::Value(t.clone()),
            (Value::Unknown, _) | (_, Value::Unknown) => Value::Unknown,
            (Value::Null, Value::Value(size)) => {
                Value::Value(instance_type_for(size).unwrap_or(size).to_owned())
            }
            (Value::Null, Value::Null) => Value::Value(
                instance_type_for(DEFAULT_SIZE)
                    .unwrap_or_default()
                    .to_owned(),
            ),
        }
    }

    /// The tags the instance should carry: the user's plus the managed ones.
    pub fn wanted_tags(&self) -> TextMap {
        if self.tags.is_unknown()
            || self
                .tags
                .as_ref_option()
                .is_some_and(|t| t.values().any(Value::is_unknown))
        {
            return Value::Unknown;
        }
        let (Value::Value(name), Value::Value(env)) = (&self.name, &self.environment) else {
            return Value::Unknown;
        };
        let mut all: BTreeMap<String, Value<String>> = self
            .user_tags()
            .into_iter()
            .map(|(k, v)| (k, Value::Value(v)))
            .collect();
        for (k, v) in managed_tags(name, env) {
            all.insert(k, Value::Value(v));
        }
        Value::Value(all)
    }
}

pub fn managed_tags(service: &str, environment: &str) -> BTreeMap<String, String> {
    [
        ("Name".to_owned(), format!("{service}-{environment}")),
        (TAG_SERVICE.to_owned(), service.to_owned()),
        (TAG_ENVIRONMENT.to_owned(), environment.to_owned()),
        (TAG_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
    ]
    .into()
}

pub fn known_map(map: &TextMap) -> BTreeMap<String, String> {
    map.as_ref_option()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_ref_option()?.clone())))
                .collect()
        })
        .unwrap_or_default()
}

pub fn to_text_map(map: BTreeMap<String, String>) -> TextMap {
    Value::Value(map.into_iter().map(|(k, v)| (k, Value::Value(v))).collect())
}

pub fn instance_type_for(size: &str) -> Option<&'static str> {
    SIZES.iter().find(|(s, _)| *s == size).map(|(_, t)| *t)
}

pub fn size_for(instance_type: &str) -> Option<&'static str> {
    SIZES
        .iter()
        .find(|(_, t)| *t == instance_type)
        .map(|(s, _)| *s)
}

/// Plan-time checks: each error names the attribute and says what to write.
pub fn validate(config: &State, diags: &mut Diagnostics) {
    if let Value::Value(name) = &config.name
        && let Err(e) = ServiceName::parse(name)
    {
        diags.error(
            "name is not a valid service name",
            format!("{e}. Use a DNS label such as \"hello\" or \"api-v2\"."),
            AttributePath::new("name"),
        );
    }
    if let Value::Value(env) = &config.environment
        && let Err(e) = EnvironmentName::parse(env)
    {
        diags.error(
            "environment is not a valid environment name",
            format!("{e}. Use a DNS label such as \"prod\" or \"staging\"."),
            AttributePath::new("environment"),
        );
    }
    if let Value::Value(target) = &config.target
        && !TARGETS.contains(&target.as_str())
    {
        diags.error(
            format!("target must be one of {}", TARGETS.join(", ")),
            format!(
                "{target:?} is not available in this provider version{}. Use target = \"aws\" or \"proxmox\".",
                if target == "docker" { " yet" } else { "" }
            ),
            AttributePath::new("target"),
        );
    }
    validate_proxmox(config, diags);
    if let Value::Value(size) = &config.size
        && instance_type_for(size).is_none()
    {
        let names: Vec<&str> = SIZES.iter().map(|(s, _)| *s).collect();
        diags.error(
                format!("size must be one of {}", names.join(", ")),
                format!("{size:?} is not a size. For another instance type, keep a size and set aws {{ instance_type = \"…\" }}."),
                AttributePath::new("size"),
            );
    }
    if let Value::Value(blocks) = &config.dns
        && let Some(dns) = blocks.first()
    {
        let ttl_path = AttributePath::new("dns").index(0).attribute("ttl");
        if let Value::Value(ttl) = dns.ttl
            && ttl != 1
            && !(30..=86400).contains(&ttl)
        {
            diags.error(
                "dns.ttl must be 1 (automatic) or between 30 and 86400 seconds",
                format!("{ttl} is not; remove ttl for automatic or write e.g. ttl = 300."),
                ttl_path.clone(),
            );
        }
        if dns.proxied == Value::Value(true)
            && let Value::Value(ttl) = dns.ttl
            && ttl != 1
        {
            diags.error(
                "dns.ttl cannot be set on a proxied record",
                "Cloudflare always uses an automatic TTL for proxied records: remove ttl or set proxied = false.",
                ttl_path,
            );
        }
        if config.public == Value::Value(false) || config.public.is_null() {
            diags.warning(
                "dns has no effect unless public = true",
                "The dns block configures the Cloudflare record a public service gets: set public = true, or remove the block.",
                AttributePath::new("dns"),
            );
        }
    }
    if let Value::Value(secrets) = &config.secrets {
        for key in secrets.keys() {
            if !is_env_name(key) {
                diags.error(
                    "secret names must be environment variable names",
                    format!("{key:?} is not: use letters, digits and _, not starting with a digit (e.g. DATABASE_URL)."),
                    AttributePath::new("secrets").key(key.clone()),
                );
            }
        }
    }
    if let Value::Value(tags) = &config.tags {
        for key in tags.keys() {
            if key == "Name" || key.starts_with("launch:") || key.starts_with("aws:") {
                diags.error(
                    "reserved tag in tags",
                    format!("{key:?} is set by the provider (Name, launch:*) or by AWS (aws:*): remove it from tags."),
                    AttributePath::new("tags").key(key.clone()),
                );
            }
        }
    }
    let t = config.timeouts();
    for (field, value) in [
        ("create", &t.create),
        ("update", &t.update),
        ("delete", &t.delete),
    ] {
        if let Err(e) = timeouts::parse(value) {
            diags.error(
                format!("timeouts.{field} is not a duration"),
                e,
                AttributePath::new("timeouts").index(0).attribute(field),
            );
        }
    }
}

/// The `proxmox` block: required (node, template) with `target = "proxmox"`,
/// refused with another target; `aws` and `tags` are refused on Proxmox.
fn validate_proxmox(config: &State, diags: &mut Diagnostics) {
    let blocks = match &config.proxmox {
        Value::Value(blocks) => Some(blocks.as_slice()),
        Value::Null => Some(&[][..]),
        Value::Unknown => None,
    };
    let target = match &config.target {
        Value::Value(t) => t.as_str(),
        _ => return,
    };
    if target != "proxmox" {
        if blocks.is_some_and(|b| !b.is_empty()) {
            diags.error(
                "a proxmox block needs target = \"proxmox\"",
                format!("This service has target = {target:?}: remove the proxmox block or set target = \"proxmox\"."),
                AttributePath::new("proxmox"),
            );
        }
        return;
    }
    if config.aws.as_ref_option().is_some_and(|b| !b.is_empty()) {
        diags.error(
            "an aws block needs target = \"aws\"",
            "This service has target = \"proxmox\": remove the aws block.",
            AttributePath::new("aws"),
        );
    }
    if config.tags.as_ref_option().is_some_and(|t| !t.is_empty()) {
        diags.error(
            "tags are not supported with target = \"proxmox\"",
            "Proxmox tags are plain words, not key = value pairs; the container is tagged launch, <name> and <environment>. Remove tags.",
            AttributePath::new("tags"),
        );
    }
    let Some(blocks) = blocks else { return };
    let Some(args) = blocks.first() else {
        diags.error(
            "target = \"proxmox\" needs a proxmox block",
            "Add proxmox { node = \"pve1\" template = \"local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst\" } to the resource.",
            AttributePath::new("proxmox"),
        );
        return;
    };
    let path = |field: &'static str| AttributePath::new("proxmox").index(0).attribute(field);
    for (field, value, example) in [
        ("node", &args.node, "\"pve1\""),
        (
            "template",
            &args.template,
            "\"local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst\"",
        ),
    ] {
        if value.is_null() || value.as_ref_option().is_some_and(|v| v.trim().is_empty()) {
            diags.error(
                format!("proxmox.{field} is required with target = \"proxmox\""),
                format!("Set {field} in the proxmox block, e.g. {field} = {example}."),
                path(field),
            );
        }
    }
    if let Value::Value(template) = &args.template
        && !template.trim().is_empty()
        && !template.contains(":vztmpl/")
    {
        diags.error(
            "proxmox.template must be a container template volume",
            format!("{template:?} is not; write <storage>:vztmpl/<file>, e.g. \"local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst\" (pveam list local shows them)."),
            path("template"),
        );
    }
    if let Value::Value(vmid) = args.vmid
        && !(100..=999_999_999).contains(&vmid)
    {
        diags.error(
            "proxmox.vmid must be between 100 and 999999999",
            format!("{vmid} is not; remove vmid to take the next free one."),
            path("vmid"),
        );
    }
    if let Value::Value(ip) = &args.ip
        && ip != "dhcp"
        && !is_ipv4_cidr(ip)
    {
        diags.error(
            "proxmox.ip must be \"dhcp\" or an IPv4 address with prefix",
            format!("{ip:?} is not; write e.g. \"192.168.1.50/24\", or remove ip for DHCP."),
            path("ip"),
        );
    }
    if let Value::Value(gateway) = &args.gateway {
        if gateway.parse::<std::net::Ipv4Addr>().is_err() {
            diags.error(
                "proxmox.gateway must be an IPv4 address",
                format!("{gateway:?} is not; write e.g. \"192.168.1.1\"."),
                path("gateway"),
            );
        }
        if args.ip.is_null() || args.ip == Value::Value("dhcp".to_owned()) {
            diags.error(
                "proxmox.gateway needs a static ip",
                "With DHCP the gateway comes from the DHCP server: remove gateway, or set ip = \"192.168.1.50/24\".",
                path("gateway"),
            );
        }
    }
}

fn is_ipv4_cidr(text: &str) -> bool {
    match text.split_once('/') {
        Some((ip, prefix)) => {
            ip.parse::<std::net::Ipv4Addr>().is_ok()
                && prefix.parse::<u8>().is_ok_and(|p| (1..=32).contains(&p))
        }
        None => false,
    }
}

fn is_env_name(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(f: impl FnOnce(&mut State)) -> Vec<String> {
        let mut state = State {
            name: Value::Value("hello".into()),
            target: Value::Value("aws".into()),
            ..Default::default()
        };
        f(&mut state);
        let mut diags = Diagnostics::default();
        validate(&state, &mut diags);
        diags
            .errors
            .iter()
            .map(|d| format!("{} | {}", d.summary, d.detail))
            .collect()
    }

    #[test]
    fn a_minimal_configuration_is_valid() {
        assert!(config(|_| {}).is_empty());
    }

    #[test]
    fn bad_size_name_and_target_are_refused_with_what_to_write() {
        let size = config(|s| s.size = Value::Value("huge".into()));
        assert!(
            size[0].starts_with("size must be one of small, medium, large"),
            "{size:?}"
        );
        let name = config(|s| s.name = Value::Value("Hello_World".into()));
        assert!(
            name[0].starts_with("name is not a valid service name"),
            "{name:?}"
        );
        let target = config(|s| s.target = Value::Value("docker".into()));
        assert!(
            target[0].starts_with("target must be one of aws, proxmox")
                && target[0].contains("not available in this provider version yet"),
            "{target:?}"
        );
    }

    #[test]
    fn proxmox_needs_its_block_with_node_and_template_and_names_each_attribute() {
        let none = config(|s| s.target = Value::Value("proxmox".into()));
        assert!(
            none[0].starts_with("target = \"proxmox\" needs a proxmox block"),
            "{none:?}"
        );
        let empty = config(|s| {
            s.target = Value::Value("proxmox".into());
            s.proxmox = Value::Value(vec![ProxmoxArgs::default()]);
        });
        assert_eq!(empty.len(), 2, "{empty:?}");
        assert!(
            empty[0].starts_with("proxmox.node is required"),
            "{empty:?}"
        );
        assert!(
            empty[1].starts_with("proxmox.template is required"),
            "{empty:?}"
        );
        let bad = config(|s| {
            s.target = Value::Value("proxmox".into());
            s.proxmox = Value::Value(vec![ProxmoxArgs {
                node: Value::Value("pve1".into()),
                template: Value::Value("debian.tar.zst".into()),
                ip: Value::Value("10.0.0.5".into()),
                vmid: Value::Value(5),
                ..Default::default()
            }]);
        });
        assert_eq!(bad.len(), 3, "{bad:?}");
        let good = config(|s| {
            s.target = Value::Value("proxmox".into());
            s.proxmox = Value::Value(vec![ProxmoxArgs {
                node: Value::Value("pve1".into()),
                template: Value::Value("local:vztmpl/debian-12.tar.zst".into()),
                ip: Value::Value("10.0.0.5/24".into()),
                gateway: Value::Value("10.0.0.1".into()),
                ..Default::default()
            }]);
        });
        assert!(good.is_empty(), "{good:?}");
        let stray = config(|s| {
            s.proxmox = Value::Value(vec![ProxmoxArgs::default()]);
        });
        assert!(
            stray[0].starts_with("a proxmox block needs target"),
            "{stray:?}"
        );
    }

    #[test]
    fn sizes_map_to_container_shapes() {
        let small = Shape::for_size("small").unwrap();
        assert_eq!(
            (small.cores, small.memory_mib, small.disk_gib),
            (1, 1024, 8)
        );
        assert_eq!(Shape::for_size("large").unwrap().size(), Some("large"));
        assert_eq!(small.label(), "1 cores, 1024 MiB, 8 GiB");
        assert_eq!(Shape::parse_label(&small.label()), Some(small));
    }

    #[test]
    fn reserved_tags_and_bad_secret_names_are_refused() {
        let errors = config(|s| {
            s.tags = to_text_map([("launch:service".into(), "x".into())].into());
            s.secrets = to_text_map([("1BAD".into(), "x".into())].into());
        });
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            !errors.iter().any(|e| e.contains("\"x\"")),
            "a secret value leaked into {errors:?}"
        );
    }

    #[test]
    fn dns_ttl_must_be_automatic_or_in_range_and_not_set_when_proxied() {
        let dns = |proxied, ttl| {
            config(move |s| {
                s.public = Value::Value(true);
                s.dns = Value::Value(vec![DnsArgs {
                    proxied: Value::Value(proxied),
                    allow_overwrite: Value::Null,
                    ttl: Value::Value(ttl),
                }]);
            })
        };
        assert!(dns(false, 1).is_empty());
        assert!(dns(false, 300).is_empty());
        assert!(dns(false, 5)[0].starts_with("dns.ttl must be 1"));
        assert!(dns(true, 300)[0].starts_with("dns.ttl cannot be set on a proxied record"));
    }

    #[test]
    fn dns_points_at_the_public_address_else_the_private_one() {
        let mut state = State {
            name: Value::Value("web".into()),
            environment: Value::Value("staging".into()),
            private_ip: Value::Value("10.0.0.4".into()),
            public_ip: Value::Null,
            ..Default::default()
        };
        assert_eq!(state.wanted_dns_content(), Value::Value("10.0.0.4".into()));
        assert_eq!(
            state.wanted_fqdn("example.com"),
            Value::Value("web-staging.example.com".into())
        );
        state.public_ip = Value::Value("203.0.113.7".into());
        assert_eq!(
            state.wanted_dns_content(),
            Value::Value("203.0.113.7".into())
        );
        assert_eq!(
            State::default().dns_settings(),
            Some(DnsSettings {
                proxied: false,
                allow_overwrite: false,
                ttl: 1
            })
        );
    }

    #[test]
    fn size_maps_to_an_instance_type_unless_overridden() {
        let mut state = State {
            size: Value::Value("medium".into()),
            ..Default::default()
        };
        assert_eq!(
            state.wanted_instance_type(),
            Value::Value("t3.medium".into())
        );
        state.aws = Value::Value(vec![AwsArgs {
            instance_type: Value::Value("m7i.large".into()),
            ..Default::default()
        }]);
        assert_eq!(
            state.wanted_instance_type(),
            Value::Value("m7i.large".into())
        );
    }
}
