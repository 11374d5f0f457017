//! The `launch_service` schema and its state, and everything decided from
//! configuration alone that is the same for every target: defaults,
//! plan-time validation, the DNS record a public service wants. Each
//! target's block, checks and shapes live in its module under `target`.
//! No I/O here.

use std::collections::BTreeMap;

use launch_core::labels::Labels;
use launch_core::names::{EnvironmentName, ServiceName};
use serde::{Deserialize, Serialize};
use tf_provider::schema::{
    AttributeConstraint, AttributeType, Block, Description, NestedBlock, Schema,
};
use tf_provider::value::Value;
use tf_provider::{AttributePath, Diagnostics};

use super::target::{AwsArgs, DockerArgs, Kind, ProxmoxArgs, Size};
use crate::provider::attribute;
use crate::timeouts::{self, Timeouts};

pub type Text = Value<String>;
pub type TextMap = Value<BTreeMap<String, Value<String>>>;

pub const DEFAULT_ENVIRONMENT: &str = "prod";

/// The schema only ever gains attributes (terraform reads a state without
/// them as null), so its version stays 1: tf-provider 0.2.2 cannot serve
/// UpgradeResourceState for another (its `RawValue` is not exported). What
/// moved between attributes is moved by `Target::migrate` on read and plan.
pub const SCHEMA_VERSION: i64 = 1;
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
    pub docker: Value<Vec<DockerArgs>>,
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
    #[serde(default)]
    pub previews: Value<bool>,
    #[serde(default)]
    pub preview_record_id: Text,
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

pub fn schema() -> Schema {
    use AttributeConstraint::{Computed, Optional, OptionalComputed, Required};
    use AttributeType::{Bool, Map, String};
    let s = || String;
    let attr = attribute;
    let mut secrets = attr(
        Map(Box::new(s())),
        Optional,
        "Environment variables for the service's containers, stored encrypted by the control plane and written to the release's `.env` (0600) on the host. Sensitive: shown as `(sensitive value)` in plans. Keys must be valid environment variable names. Changing them updates the control plane only; the next deploy picks them up.",
    );
    secrets.sensitive = true;
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
        ("target", attr(s(), Required, "Where the host runs: `aws` (an EC2 instance), `proxmox` (an unprivileged LXC with nesting, bootstrapped over SSH) or `docker` (a container running systemd on a Docker engine, bootstrapped through `docker exec`). Changing it replaces the service.")),
        ("size", attr(s(), OptionalComputed, "`small`, `medium` or `large`. On AWS `t3.small`, `t3.medium`, `t3.large`; on Proxmox 1 core / 1024 MiB / 8 GiB, 2 / 2048 MiB / 16 GiB, 4 / 4096 MiB / 32 GiB; on Docker limits of 1 CPU / 1024 MiB, 2 / 2048 MiB, 4 / 4096 MiB. Default `small`. Updated in place: an EC2 instance is stopped, resized and started; a Proxmox container gets its cores and memory changed live and its disk grown (never shrunk); a Docker host gets new limits live.")),
        ("public", attr(Bool, OptionalComputed, "Whether the service gets a DNS record in Cloudflare: an A record `<name>.<domain>` (environment `prod`) or `<name>-<environment>.<domain>`, pointing at `public_ip`, or at `private_ip` when the host has no public address (e.g. a homelab). Needs the provider's `cloudflare` block. The name is registered with the control plane, and the host agent's front door serves it over HTTPS with a certificate from ACME (open 80 and 443 to the host). Default `false`; switching it off deletes the record in place.")),
        ("secrets", secrets),
        ("tags", attr(Map(Box::new(s())), Optional, "Tags of the service, stored by the control plane (`launch services --tag`, the dashboard's search) and, on AWS, extra tags for the instance. A key is 1 to 63 letters, digits, `-`, `_`, `.` and `/`; a value 1 to 128 letters, digits and `-_./:@+`. Keys `Name`, `launch:*` and `aws:*` are reserved. The keys set here are this resource's: each apply makes them exactly these, and `launch services tag` cannot change them.")),
        ("tags_all", attr(Map(Box::new(s())), Computed, "Every tag on the instance: `tags` plus `Name`, `launch:service`, `launch:environment` and `launch:managed-by`.")),
        ("wait_for_agent", attr(Bool, OptionalComputed, "Default `true`: create returns once the host's agent has registered with the control plane, within `timeouts.create`.")),
        ("instance_id", attr(s(), Computed, "EC2 instance ID, `<node>/<vmid>` of a Proxmox container, or the ID of a Docker host container.")),
        ("instance_type", attr(s(), Computed, "The EC2 instance type in use; for a Docker host its limits, e.g. `1 cpus, 1024 MiB`; null for a Proxmox container (its block's `cores`, `memory_mib` and `disk_gib` say its shape).")),
        ("image_id", attr(s(), Computed, "The AMI the instance booted from, the Proxmox container's template, or the Docker host's image.")),
        ("private_ip", attr(s(), Computed, "Private IPv4 address.")),
        ("public_ip", attr(s(), Computed, "Public IPv4 address, if the subnet gives one.")),
        ("fqdn", attr(s(), Computed, "The DNS record's name, when `public`, e.g. `hello.example.com`.")),
        ("url", attr(s(), Computed, "`https://<fqdn>`, when `public`: served by the host agent's front door on 443 with a certificate it obtains from ACME.")),
        ("agent_id", attr(s(), Computed, "ID of the host's agent in the control plane, once it has registered.")),
        ("dns_record_id", attr(s(), Computed, "ID of the Cloudflare DNS record, when `public`.")),
        ("dns_content", attr(s(), Computed, "The address the DNS record points at, as Cloudflare has it, when `public`. A change made in Cloudflare shows here as drift and the next apply puts it back.")),
        ("previews", attr(Bool, Optional, "Pull-request previews (`launch deploy --preview pr-123`) answer at `<preview>.<fqdn>`: with `public = true`, also keep a DNS-only wildcard record `*.<fqdn>` pointing at the host, so every preview resolves without a record of its own. A wildcard covers exactly one label, which is why a preview's name is one label under the service's. Default `false`; switching it updates in place. A wildcard someone else made is refused unless `dns.allow_overwrite`.")),
        ("preview_record_id", attr(s(), Computed, "ID of the wildcard record `*.<fqdn>`, when `previews` and `public`. A wildcard deleted or changed in Cloudflare shows here as drift and the next apply puts it back.")),
        ("join_token_id", attr(s(), Computed, "ID of the single-use join token in the host's user-data (the token itself is never stored in state).")),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .into();
    Schema {
        version: SCHEMA_VERSION,
        block: Block {
            attributes,
            blocks: Kind::ALL
                .iter()
                .map(|k| {
                    (
                        k.target().name().to_owned(),
                        NestedBlock::Optional(k.target().block()),
                    )
                })
                .chain([
                    ("timeouts".to_owned(), NestedBlock::Optional(timeouts)),
                    ("dns".to_owned(), NestedBlock::Optional(dns)),
                ])
                .collect(),
            description: Description::markdown(
                "A host for one compose service in one environment (an EC2 instance, a Proxmox LXC or a container on a Docker engine) that installs `launch-agent` and registers with the control plane with labels `service-name` and `environment`, ready for `launch deploy`.",
            ),
            ..Default::default()
        },
    }
}

impl State {
    pub fn timeouts(&self) -> Timeouts {
        timeouts::block(&self.timeouts)
    }

    /// The labels, when name and environment are known and valid.
    pub fn labels(&self) -> Option<Labels> {
        let service = ServiceName::parse(self.name.as_ref_option()?).ok()?;
        let environment = EnvironmentName::parse(self.environment.as_ref_option()?).ok()?;
        Some(Labels::new(service, environment))
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
        default_to(
            &mut self.size,
            &config.size,
            Size::DEFAULT.name().to_owned(),
        );
        default_to(&mut self.public, &config.public, false);
        default_to(&mut self.wait_for_agent, &config.wait_for_agent, true);
        self.fill_empty_blocks();
    }

    /// An absent block is an empty list to terraform (state written before
    /// a block existed has it null).
    pub fn fill_empty_blocks(&mut self) {
        for block in [
            &mut self.aws as &mut dyn EmptyBlock,
            &mut self.proxmox,
            &mut self.docker,
        ] {
            block.fill_empty();
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

    /// The address the host is reached at, as the DNS record would point
    /// (`""` while unknown): registered with the control plane.
    pub fn host_address(&self) -> String {
        match self.wanted_dns_content() {
            Value::Value(address) => address,
            _ => String::new(),
        }
    }

    /// `<environment>/<name>` when both are known.
    pub fn computed_id(&self) -> Text {
        match (&self.environment, &self.name) {
            (Value::Value(env), Value::Value(name)) => Value::Value(format!("{env}/{name}")),
            _ => Value::Unknown,
        }
    }
}

/// A target block, `[]` when absent.
trait EmptyBlock {
    fn fill_empty(&mut self);
}

impl<T> EmptyBlock for Value<Vec<T>> {
    fn fill_empty(&mut self) {
        if self.is_null() {
            *self = Value::Value(Vec::new());
        }
    }
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
    validate_target(config, diags);
    for (key, value) in known_map(&config.tags) {
        if let Err(e) = launch_core::tags::check_tag(&key, &value) {
            diags.error(
                "tags holds a tag the control plane refuses",
                format!("{e}. The control plane stores these tags with the service (`launch services --tag`)."),
                AttributePath::new("tags").key(key),
            );
        }
    }
    if let Value::Value(size) = &config.size
        && Size::parse(size).is_none()
    {
        let names: Vec<&str> = Size::ALL.iter().map(|s| s.name()).collect();
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

/// `target` names a known target, whose own checks run; the blocks of
/// other targets are refused.
fn validate_target(config: &State, diags: &mut Diagnostics) {
    let Value::Value(target) = &config.target else {
        return;
    };
    let Some(kind) = Kind::parse(target) else {
        let names = Kind::names();
        diags.error(
            format!("target must be one of {}", names.join(", ")),
            format!(
                "{target:?} is not a kind of host this provider knows. Use target = {}.",
                names
                    .iter()
                    .map(|n| format!("{n:?}"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            AttributePath::new("target"),
        );
        return;
    };
    for other in Kind::ALL.into_iter().filter(|k| *k != kind) {
        let name = other.target().name();
        if other.target().block_in_use(config) {
            let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            };
            diags.error(
                format!("{article} {name} block needs target = \"{name}\""),
                format!("This service has target = {target:?}: remove the {name} block or set target = \"{name}\"."),
                AttributePath::new(name),
            );
        }
    }
    kind.target().validate(config, diags);
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
        let target = config(|s| s.target = Value::Value("gcp".into()));
        assert!(
            target[0].starts_with("target must be one of aws, docker, proxmox")
                && target[0].contains("Use target = \"aws\" or \"docker\" or \"proxmox\""),
            "{target:?}"
        );
    }

    #[test]
    fn a_block_of_another_target_is_refused() {
        let stray = config(|s| {
            s.proxmox = Value::Value(vec![ProxmoxArgs::default()]);
        });
        assert!(
            stray[0].starts_with("a proxmox block needs target = \"proxmox\""),
            "{stray:?}"
        );
        let aws = config(|s| {
            s.target = Value::Value("proxmox".into());
            s.aws = Value::Value(vec![AwsArgs::default()]);
        });
        assert!(
            aws.iter()
                .any(|e| e.starts_with("an aws block needs target = \"aws\"")),
            "{aws:?}"
        );
    }

    #[test]
    fn reserved_tags_and_bad_secret_names_are_refused() {
        let errors = config(|s| {
            s.tags = to_text_map([("launch:service".into(), "x".into())].into());
            s.secrets = to_text_map([("1BAD".into(), "x".into())].into());
        });
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors.iter().any(
                |e| e.starts_with("tags holds a tag the control plane refuses")
                    && e.contains("':' is not allowed in a key")
            ),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.starts_with("reserved tag")),
            "{errors:?}"
        );
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
}
