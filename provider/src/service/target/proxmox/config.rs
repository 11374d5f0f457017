//! What a Proxmox container is asked to be and what its config says it is,
//! without I/O: the `proxmox` block with its defaults and plan-time checks,
//! the shape (cores, memory, disk) a size means, the `launch:` line of the
//! description that import reads back, and `<node>/<vmid>` IDs.

use std::collections::{BTreeMap, BTreeSet};

use launch_core::labels::Labels;
use serde::{Deserialize, Serialize};
use tf_provider::value::Value;
use tf_provider::{AttributePath, Diagnostics};

use crate::service::state::{State, Text};
use crate::service::target::Size;

pub const DEFAULT_STORAGE: &str = "local-lvm";
pub const DEFAULT_BRIDGE: &str = "vmbr0";
pub const DEFAULT_IP: &str = "dhcp";

pub type Config = serde_json::Map<String, serde_json::Value>;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ProxmoxArgs {
    pub node: Text,
    pub template: Text,
    pub storage: Text,
    pub bridge: Text,
    pub vmid: Value<i64>,
    pub ip: Text,
    pub gateway: Text,
    #[serde(default)]
    pub firewall: Value<bool>,
    #[serde(default)]
    pub ingress_tcp_ports: Value<BTreeSet<Value<i64>>>,
    /// Computed: the container's shape (states before schema 2 had it as
    /// a label in `instance_type`).
    #[serde(default)]
    pub cores: Value<i64>,
    #[serde(default)]
    pub memory_mib: Value<i64>,
    #[serde(default)]
    pub disk_gib: Value<i64>,
}

impl ProxmoxArgs {
    /// The computed shape, when all of it is known.
    pub fn shape(&self) -> Option<Shape> {
        Some(Shape {
            cores: *self.cores.as_ref_option()?,
            memory_mib: *self.memory_mib.as_ref_option()?,
            disk_gib: u64::try_from(*self.disk_gib.as_ref_option()?).ok()?,
        })
    }

    /// Sets the computed shape (`None`: unknown until apply).
    pub fn set_shape(&mut self, shape: Option<Shape>) {
        let known = |v: Option<i64>| v.map(Value::Value).unwrap_or(Value::Unknown);
        self.cores = known(shape.map(|s| s.cores));
        self.memory_mib = known(shape.map(|s| s.memory_mib));
        self.disk_gib = known(shape.map(|s| i64::try_from(s.disk_gib).unwrap_or(i64::MAX)));
    }
}

pub fn args(state: &State) -> ProxmoxArgs {
    state
        .proxmox
        .as_ref_option()
        .and_then(|b| b.first())
        .cloned()
        .unwrap_or_default()
}

/// Cores, memory and rootfs size of a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub cores: i64,
    pub memory_mib: i64,
    pub disk_gib: u64,
}

impl Shape {
    pub fn for_size(size: Size) -> Shape {
        let (cores, memory_mib, disk_gib) = match size {
            Size::Small => (1, 1024, 8),
            Size::Medium => (2, 2048, 16),
            Size::Large => (4, 4096, 32),
        };
        Shape {
            cores,
            memory_mib,
            disk_gib,
        }
    }

    /// The size whose cores and memory these are, if any.
    pub fn size(&self) -> Option<Size> {
        Size::ALL.into_iter().find(|s| {
            let shape = Shape::for_size(*s);
            (shape.cores, shape.memory_mib) == (self.cores, self.memory_mib)
        })
    }

    /// Reads back what [`Shape::label`] wrote into `instance_type` before
    /// schema 2.
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

    /// How `instance_type` showed it before schema 2, e.g. `1 cores, 1024 MiB, 8 GiB`.
    #[cfg(test)]
    pub fn label(&self) -> String {
        format!(
            "{} cores, {} MiB, {} GiB",
            self.cores, self.memory_mib, self.disk_gib
        )
    }

    /// The container's shape from its config.
    pub fn of(config: &Config) -> Shape {
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
}

/// The shape `size` asks for; `None` while it is unknown.
pub fn wanted_shape(state: &State) -> Option<Shape> {
    Size::wanted(&state.size).map(Shape::for_size)
}

/// `<node>/<vmid>` of a container.
pub fn parse_container_id(id: &str) -> Option<(String, i64)> {
    let (node, vmid) = id.split_once('/')?;
    Some((node.to_owned(), vmid.parse().ok()?))
}

/// A number PVE may send as a number or a string.
fn json_i64(value: &serde_json::Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
}

/// The first line of every container's description: what import reads back.
pub fn description(labels: &Labels, template: &str) -> String {
    format!(
        "launch: service={} environment={} template={template}\nManaged by terraform-provider-launch: destroy it with terraform, not here.",
        labels.service.as_str(),
        labels.environment.as_str()
    )
}

/// `key=value` pairs from the `launch:` line of a description.
pub fn description_fields(config: &Config) -> BTreeMap<String, String> {
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

/// `value`, or `default` when unset.
pub fn or_default(value: &Value<String>, default: &str) -> Value<String> {
    match value {
        Value::Null => Value::Value(default.to_owned()),
        other => other.clone(),
    }
}

/// The `proxmox` block with `target = "proxmox"`: node and template
/// required, the rest well-formed; `tags` refused.
pub fn validate(config: &State, diags: &mut Diagnostics) {
    if config.tags.as_ref_option().is_some_and(|t| !t.is_empty()) {
        diags.error(
            "tags are not supported with target = \"proxmox\"",
            "Proxmox tags are plain words, not key = value pairs; the container is tagged launch, <name> and <environment>. Remove tags.",
            AttributePath::new("tags"),
        );
    }
    let blocks = match &config.proxmox {
        Value::Value(blocks) => blocks.as_slice(),
        Value::Null => &[][..],
        Value::Unknown => return,
    };
    let Some(args) = blocks.first() else {
        diags.error(
            "target = \"proxmox\" needs a proxmox block",
            "Add proxmox { node = \"pve1\" template = \"local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst\" } to the resource.",
            AttributePath::new("proxmox"),
        );
        return;
    };
    super::firewall::validate(args, diags);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(f: impl FnOnce(&mut State)) -> Vec<String> {
        let mut state = State {
            name: Value::Value("hello".into()),
            target: Value::Value("proxmox".into()),
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
    fn proxmox_needs_its_block_with_node_and_template_and_names_each_attribute() {
        let none = errors(|_| {});
        assert!(
            none[0].starts_with("target = \"proxmox\" needs a proxmox block"),
            "{none:?}"
        );
        let empty = errors(|s| s.proxmox = Value::Value(vec![ProxmoxArgs::default()]));
        assert_eq!(empty.len(), 2, "{empty:?}");
        assert!(
            empty[0].starts_with("proxmox.node is required"),
            "{empty:?}"
        );
        assert!(
            empty[1].starts_with("proxmox.template is required"),
            "{empty:?}"
        );
        let bad = errors(|s| {
            s.proxmox = Value::Value(vec![ProxmoxArgs {
                node: Value::Value("pve1".into()),
                template: Value::Value("debian.tar.zst".into()),
                ip: Value::Value("10.0.0.5".into()),
                vmid: Value::Value(5),
                ..Default::default()
            }]);
        });
        assert_eq!(bad.len(), 3, "{bad:?}");
        let good = errors(|s| {
            s.proxmox = Value::Value(vec![ProxmoxArgs {
                node: Value::Value("pve1".into()),
                template: Value::Value("local:vztmpl/debian-12.tar.zst".into()),
                ip: Value::Value("10.0.0.5/24".into()),
                gateway: Value::Value("10.0.0.1".into()),
                ..Default::default()
            }]);
        });
        assert!(good.is_empty(), "{good:?}");
    }

    #[test]
    fn sizes_map_to_container_shapes() {
        let small = Shape::for_size(Size::Small);
        assert_eq!(
            (small.cores, small.memory_mib, small.disk_gib),
            (1, 1024, 8)
        );
        assert_eq!(Shape::for_size(Size::Large).size(), Some(Size::Large));
        assert_eq!(small.label(), "1 cores, 1024 MiB, 8 GiB");
        assert_eq!(Shape::parse_label(&small.label()), Some(small));
    }

    #[test]
    fn the_description_line_reads_back() {
        let labels = State {
            name: Value::Value("web".into()),
            environment: Value::Value("prod".into()),
            ..Default::default()
        }
        .labels()
        .unwrap();
        let mut config = Config::new();
        config.insert(
            "description".into(),
            description(&labels, "local:vztmpl/d.tar.zst").into(),
        );
        let fields = description_fields(&config);
        assert_eq!(fields["service"], "web");
        assert_eq!(fields["template"], "local:vztmpl/d.tar.zst");
    }

    /// A Proxmox service's state with `size` and a `proxmox` block.
    fn container_state(size: &str, block: ProxmoxArgs) -> State {
        State {
            name: Value::Value("web".into()),
            target: Value::Value("proxmox".into()),
            size: Value::Value(size.into()),
            proxmox: Value::Value(vec![block]),
            ..Default::default()
        }
    }

    #[test]
    fn an_older_state_s_shape_label_moves_from_instance_type_to_the_block() {
        use crate::service::target::{Target, proxmox::ProxmoxTarget};
        let mut old = container_state("medium", ProxmoxArgs::default());
        old.instance_type = Value::Value("2 cores, 2048 MiB, 24 GiB".into());
        ProxmoxTarget.migrate(&mut old);
        assert_eq!(old.instance_type, Value::Null);
        assert_eq!(
            args(&old).shape(),
            Some(Shape {
                cores: 2,
                memory_mib: 2048,
                disk_gib: 24
            })
        );
        // A state already moved is left as it is.
        let moved = old.clone();
        ProxmoxTarget.migrate(&mut old);
        assert_eq!(old, moved);
    }

    #[test]
    fn the_plan_puts_the_shape_in_the_block_and_never_shrinks_the_disk() {
        use crate::service::target::{Target, proxmox::ProxmoxTarget};
        let mut prior = container_state("large", ProxmoxArgs::default());
        prior.proxmox = Value::Value(vec![{
            let mut block = ProxmoxArgs::default();
            block.set_shape(Some(Shape::for_size(Size::Large)));
            block
        }]);
        let mut planned = container_state("small", args(&prior));
        ProxmoxTarget.plan(&mut planned, Some(&prior));
        assert_eq!(planned.instance_type, Value::Null, "instance_type is EC2's");
        let shape = args(&planned).shape().expect("a known shape");
        assert_eq!(
            (shape.cores, shape.memory_mib, shape.disk_gib),
            (1, 1024, 32)
        );

        let mut new = container_state("medium", ProxmoxArgs::default());
        ProxmoxTarget.plan(&mut new, None);
        assert_eq!(args(&new).shape(), Some(Shape::for_size(Size::Medium)));
        let mut unknown = container_state("small", ProxmoxArgs::default());
        unknown.size = Value::Unknown;
        ProxmoxTarget.plan(&mut unknown, None);
        assert_eq!(args(&unknown).disk_gib, Value::Unknown);
    }
}
