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
/// Targets this provider version can create. `proxmox` and `docker` are in
/// the design but not built yet, so the validator refuses them.
pub const TARGETS: &[&str] = &["aws"];
pub const SIZES: &[(&str, &str)] = &[
    ("small", "t3.small"),
    ("medium", "t3.medium"),
    ("large", "t3.large"),
];
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
        ("target", attr(s(), Required, "Where the host runs: `aws` (an EC2 instance). Changing it replaces the service.")),
        ("size", attr(s(), OptionalComputed, "`small`, `medium` or `large` (on AWS `t3.small`, `t3.medium`, `t3.large`). Default `small`. Updated in place: the instance is stopped, resized and started.")),
        ("public", attr(Bool, OptionalComputed, "Whether the service gets a DNS record in Cloudflare: an A record `<name>.<domain>` (environment `prod`) or `<name>-<environment>.<domain>`, pointing at `public_ip`, or at `private_ip` when the host has no public address (e.g. a homelab). Needs the provider's `cloudflare` block. Default `false`; switching it off deletes the record in place.")),
        ("secrets", secrets),
        ("tags", attr(Map(Box::new(s())), Optional, "Extra tags for the instance. Keys `Name`, `launch:*` and `aws:*` are reserved.")),
        ("tags_all", attr(Map(Box::new(s())), Computed, "Every tag on the instance: `tags` plus `Name`, `launch:service`, `launch:environment` and `launch:managed-by`.")),
        ("wait_for_agent", attr(Bool, OptionalComputed, "Default `true`: create returns once the host's agent has registered with the control plane, within `timeouts.create`.")),
        ("instance_id", attr(s(), Computed, "EC2 instance ID.")),
        ("instance_type", attr(s(), Computed, "The instance type in use.")),
        ("image_id", attr(s(), Computed, "The AMI the instance booted from.")),
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
                "{target:?} is not available in this provider version{}. Use target = \"aws\".",
                if ["proxmox", "docker"].contains(&target.as_str()) {
                    " yet"
                } else {
                    ""
                }
            ),
            AttributePath::new("target"),
        );
    }
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
        let target = config(|s| s.target = Value::Value("proxmox".into()));
        assert!(
            target[0].contains("not available in this provider version yet"),
            "{target:?}"
        );
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
