//! `launch_aws_security_group`: the per-service security group the
//! `launch-service` module puts in front of an AWS host (80/443 open when the
//! service is public, nothing else unless asked). It is its own resource,
//! rather than the hashicorp/aws provider's, so the module needs only this
//! provider. Ingress rules are TCP ports from CIDR blocks; egress stays EC2's
//! default (all). Drift in the rules shows in the plan and apply puts them
//! back; delete waits out `DependencyViolation` while an instance using the
//! group terminates.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, ResourceType, Tag, TagSpecification};
use serde::{Deserialize, Serialize};
use tf_provider::schema::{AttributeConstraint, AttributeType, Block, Description, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, Resource};
use tokio::time::Instant;

use crate::ec2::{Ec2, Ec2Error};
use crate::provider::{Clients, SharedClients, attribute};

type Text = Value<String>;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct SgState {
    pub id: Text,
    pub name: Text,
    pub description: Text,
    pub vpc_id: Text,
    pub subnet_id: Text,
    pub ingress_tcp_ports: Value<BTreeSet<Value<i64>>>,
    pub ingress_cidr_blocks: Value<BTreeSet<Value<String>>>,
    pub tags: Value<BTreeMap<String, Value<String>>>,
}

const DEFAULT_DESCRIPTION: &str = "Managed by Launch";
const DEFAULT_CIDR: &str = "0.0.0.0/0";
/// How long delete waits for instances that still use the group to go.
const DELETE_WAIT: Duration = Duration::from_secs(300);

pub struct SecurityGroupResource {
    clients: SharedClients,
}

impl SecurityGroupResource {
    pub fn new(clients: SharedClients) -> Self {
        SecurityGroupResource { clients }
    }

    async fn ec2(&self, diags: &mut Diagnostics) -> Option<(Arc<Clients>, Ec2)> {
        let clients = self.clients.read().expect("provider clients lock").clone();
        let Some(clients) = clients else {
            diags.root_error_short(
                "the launch provider is not configured: add a provider \"launch\" block",
            );
            return None;
        };
        match clients.ec2().await {
            Ok(ec2) => {
                let ec2 = ec2.clone();
                Some((clients, ec2))
            }
            Err(e) => {
                diags.root_error("cannot reach EC2", e.to_string());
                None
            }
        }
    }
}

fn ports(state: &SgState) -> BTreeSet<i32> {
    state
        .ingress_tcp_ports
        .as_ref_option()
        .map(|p| {
            p.iter()
                .filter_map(|v| v.as_ref_option().map(|n| *n as i32))
                .collect()
        })
        .unwrap_or_default()
}

fn cidrs(state: &SgState) -> BTreeSet<String> {
    state
        .ingress_cidr_blocks
        .as_ref_option()
        .map(|c| {
            c.iter()
                .filter_map(|v| v.as_ref_option().cloned())
                .collect()
        })
        .unwrap_or_default()
}

fn tags(state: &SgState) -> BTreeMap<String, String> {
    let mut tags: BTreeMap<String, String> = state
        .tags
        .as_ref_option()
        .map(|t| {
            t.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_ref_option()?.clone())))
                .collect()
        })
        .unwrap_or_default();
    tags.insert(
        "launch:managed-by".into(),
        "terraform-provider-launch".into(),
    );
    if let Value::Value(name) = &state.name {
        tags.insert("Name".into(), name.clone());
    }
    tags
}

fn permissions(ports: &BTreeSet<i32>, cidrs: &BTreeSet<String>) -> Vec<IpPermission> {
    ports
        .iter()
        .map(|port| {
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(*port)
                .to_port(*port)
                .set_ip_ranges(Some(
                    cidrs
                        .iter()
                        .map(|c| IpRange::builder().cidr_ip(c).build())
                        .collect(),
                ))
                .build()
        })
        .collect()
}

/// The group as EC2 has it: vpc, single-port TCP rules and their CIDRs, tags.
struct Observed {
    vpc_id: Option<String>,
    ports: BTreeSet<i32>,
    cidrs: BTreeSet<String>,
    tags: BTreeMap<String, String>,
}

async fn describe(ec2: &Ec2, id: &str) -> Result<Option<Observed>, Ec2Error> {
    match ec2
        .client()
        .describe_security_groups()
        .group_ids(id)
        .send()
        .await
    {
        Ok(reply) => Ok(reply.security_groups().first().map(|g| {
            let mut ports = BTreeSet::new();
            let mut cidrs = BTreeSet::new();
            for p in g.ip_permissions() {
                if p.ip_protocol() == Some("tcp")
                    && p.from_port().is_some()
                    && p.from_port() == p.to_port()
                {
                    ports.insert(p.from_port().unwrap_or_default());
                    cidrs.extend(
                        p.ip_ranges()
                            .iter()
                            .filter_map(|r| r.cidr_ip().map(str::to_owned)),
                    );
                }
            }
            Observed {
                vpc_id: g.vpc_id().map(str::to_owned),
                ports,
                cidrs,
                tags: g
                    .tags()
                    .iter()
                    .filter_map(|t| {
                        Some((
                            t.key()?.to_owned(),
                            t.value().unwrap_or_default().to_owned(),
                        ))
                    })
                    .collect(),
            }
        })),
        Err(e) if e.code().is_some_and(|c| c.starts_with("InvalidGroup")) => Ok(None),
        Err(e) => Err(Ec2Error::call("DescribeSecurityGroups", e)),
    }
}

/// The VPC the group belongs in: as given, the subnet's, or the default VPC.
async fn vpc_for(ec2: &Ec2, state: &SgState) -> Result<String, String> {
    if let Value::Value(vpc) = &state.vpc_id {
        return Ok(vpc.clone());
    }
    if let Value::Value(subnet) = &state.subnet_id {
        let reply = ec2
            .client()
            .describe_subnets()
            .subnet_ids(subnet)
            .send()
            .await
            .map_err(|e| Ec2Error::call("DescribeSubnets", e).to_string())?;
        return reply
            .subnets()
            .first()
            .and_then(|s| s.vpc_id().map(str::to_owned))
            .ok_or_else(|| format!("subnet {subnet} not found: check subnet_id"));
    }
    let reply = ec2
        .client()
        .describe_vpcs()
        .filters(Filter::builder().name("isDefault").values("true").build())
        .send()
        .await
        .map_err(|e| Ec2Error::call("DescribeVpcs", e).to_string())?;
    reply
        .vpcs()
        .first()
        .and_then(|v| v.vpc_id().map(str::to_owned))
        .ok_or_else(|| "this region has no default VPC: set vpc_id or subnet_id".to_owned())
}

async fn set_rules(
    ec2: &Ec2,
    id: &str,
    old: &Observed,
    ports: &BTreeSet<i32>,
    cidrs: &BTreeSet<String>,
) -> Result<(), Ec2Error> {
    if !old.ports.is_empty() {
        ec2.client()
            .revoke_security_group_ingress()
            .group_id(id)
            .set_ip_permissions(Some(permissions(&old.ports, &old.cidrs)))
            .send()
            .await
            .map_err(|e| Ec2Error::call("RevokeSecurityGroupIngress", e))?;
    }
    if !ports.is_empty() && !cidrs.is_empty() {
        ec2.client()
            .authorize_security_group_ingress()
            .group_id(id)
            .set_ip_permissions(Some(permissions(ports, cidrs)))
            .send()
            .await
            .map_err(|e| Ec2Error::call("AuthorizeSecurityGroupIngress", e))?;
    }
    Ok(())
}

fn fill_defaults(planned: &mut SgState, config: &SgState) {
    if config.description.is_null() {
        planned.description = Value::Value(DEFAULT_DESCRIPTION.into());
    }
    if config.ingress_tcp_ports.is_null() {
        planned.ingress_tcp_ports = Value::Value(BTreeSet::new());
    }
    if config.ingress_cidr_blocks.is_null() {
        planned.ingress_cidr_blocks = Value::Value([Value::Value(DEFAULT_CIDR.to_owned())].into());
    }
}

#[async_trait]
impl Resource for SecurityGroupResource {
    type State<'a> = SgState;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        use AttributeConstraint::{Computed, Optional, OptionalComputed, Required};
        let s = || AttributeType::String;
        let attributes = [
            ("id", attribute(s(), Computed, "Security group ID (`sg-…`); also the import ID.")),
            ("name", attribute(s(), Required, "Group name, unique in the VPC (the module uses `launch-<service>-<environment>`). Changing it replaces the group.")),
            ("description", attribute(s(), OptionalComputed, "Description. Default `Managed by Launch`. Changing it replaces the group.")),
            ("vpc_id", attribute(s(), OptionalComputed, "VPC. Default: the VPC of `subnet_id`, else the region's default VPC. Changing it replaces the group.")),
            ("subnet_id", attribute(s(), Optional, "A subnet whose VPC the group goes in, when `vpc_id` is not set. Changing it replaces the group.")),
            ("ingress_tcp_ports", attribute(AttributeType::Set(Box::new(AttributeType::Number)), OptionalComputed, "TCP ports open to `ingress_cidr_blocks`, e.g. `[80, 443]`. Default: none. Updated in place.")),
            ("ingress_cidr_blocks", attribute(AttributeType::Set(Box::new(s())), OptionalComputed, "Where ingress may come from. Default `[\"0.0.0.0/0\"]`. Updated in place.")),
            ("tags", attribute(AttributeType::Map(Box::new(s())), Optional, "Extra tags; `Name` and `launch:managed-by` are set by the provider.")),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .into();
        Some(Schema {
            version: 1,
            block: Block {
                attributes,
                description: Description::markdown(
                    "A security group for one Launch service on AWS: TCP ports open from CIDR blocks, nothing else inbound.",
                ),
                ..Default::default()
            },
        })
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: SgState) -> Option<()> {
        if let Value::Value(ports) = &config.ingress_tcp_ports {
            for port in ports.iter().filter_map(|p| p.as_ref_option()) {
                if !(1..=65535).contains(port) {
                    diags.error(
                        "ingress_tcp_ports must be TCP ports",
                        format!("{port} is not between 1 and 65535."),
                        AttributePath::new("ingress_tcp_ports"),
                    );
                }
            }
        }
        Some(())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        mut state: SgState,
        private: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(SgState, ValueEmpty)> {
        let Value::Value(id) = state.id.clone() else {
            return Some((state, private));
        };
        let (_, ec2) = self.ec2(diags).await?;
        match describe(&ec2, &id).await {
            Ok(Some(found)) => {
                state.vpc_id = found.vpc_id.map(Value::Value).unwrap_or(Value::Null);
                state.ingress_tcp_ports = Value::Value(
                    found
                        .ports
                        .iter()
                        .map(|p| Value::Value(*p as i64))
                        .collect(),
                );
                if !found.ports.is_empty() {
                    state.ingress_cidr_blocks =
                        Value::Value(found.cidrs.into_iter().map(Value::Value).collect());
                }
                let user: BTreeMap<String, Value<String>> = found
                    .tags
                    .into_iter()
                    .filter(|(k, _)| {
                        k != "Name" && k != "launch:managed-by" && !k.starts_with("aws:")
                    })
                    .map(|(k, v)| (k, Value::Value(v)))
                    .collect();
                state.tags = if user.is_empty() && state.tags.is_null() {
                    Value::Null
                } else {
                    Value::Value(user)
                };
                Some((state, private))
            }
            Ok(None) => None,
            Err(e) => {
                diags.root_error(format!("cannot read security group {id}"), e.to_string());
                None
            }
        }
    }

    async fn plan_create<'a>(
        &self,
        _diags: &mut Diagnostics,
        proposed: SgState,
        config: SgState,
        _meta: ValueEmpty,
    ) -> Option<(SgState, ValueEmpty)> {
        let mut planned = proposed;
        fill_defaults(&mut planned, &config);
        planned.id = Value::Unknown;
        if planned.vpc_id.is_null() {
            planned.vpc_id = Value::Unknown;
        }
        Some((planned, Value::Null))
    }

    async fn plan_update<'a>(
        &self,
        _diags: &mut Diagnostics,
        prior: SgState,
        proposed: SgState,
        config: SgState,
        _private: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(SgState, ValueEmpty, Vec<AttributePath>)> {
        let mut planned = proposed;
        fill_defaults(&mut planned, &config);
        let mut replace = Vec::new();
        if prior.name != planned.name {
            replace.push(AttributePath::new("name"));
        }
        if prior.description != planned.description {
            replace.push(AttributePath::new("description"));
        }
        if prior.subnet_id != planned.subnet_id {
            replace.push(AttributePath::new("subnet_id"));
        }
        if config.vpc_id.is_value() && prior.vpc_id != planned.vpc_id {
            replace.push(AttributePath::new("vpc_id"));
        }
        if !replace.is_empty() {
            planned.id = Value::Unknown;
            if config.vpc_id.is_null() {
                planned.vpc_id = Value::Unknown;
            }
        }
        Some((planned, Value::Null, replace))
    }

    async fn plan_destroy<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: SgState,
        _private: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<ValueEmpty> {
        Some(Value::Null)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        planned: SgState,
        _config: SgState,
        _private: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(SgState, ValueEmpty)> {
        let (_, ec2) = self.ec2(diags).await?;
        let vpc = match vpc_for(&ec2, &planned).await {
            Ok(vpc) => vpc,
            Err(e) => {
                diags.root_error("cannot create the security group", e);
                return None;
            }
        };
        let tag_list: Vec<Tag> = tags(&planned)
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        let created = ec2
            .client()
            .create_security_group()
            .group_name(planned.name.as_ref_option().cloned().unwrap_or_default())
            .description(
                planned
                    .description
                    .as_ref_option()
                    .cloned()
                    .unwrap_or_default(),
            )
            .vpc_id(&vpc)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::SecurityGroup)
                    .set_tags(Some(tag_list))
                    .build(),
            )
            .send()
            .await;
        let id = match created {
            Ok(reply) => reply.group_id().unwrap_or_default().to_owned(),
            Err(e) => {
                let hint = if e.code() == Some("InvalidGroup.Duplicate") {
                    " A group with this name exists in the VPC: import it (`terraform import … sg-…`) or pick another name."
                } else {
                    ""
                };
                diags.root_error(
                    "cannot create the security group",
                    format!("{}{hint}", Ec2Error::call("CreateSecurityGroup", e)),
                );
                return None;
            }
        };
        let mut state = planned;
        state.id = Value::Value(id.clone());
        state.vpc_id = Value::Value(vpc);
        let empty = Observed {
            vpc_id: None,
            ports: BTreeSet::new(),
            cidrs: BTreeSet::new(),
            tags: BTreeMap::new(),
        };
        if let Err(e) = set_rules(&ec2, &id, &empty, &ports(&state), &cidrs(&state)).await {
            diags.root_error(
                format!("security group {id} was created but its rules were not"),
                format!("{e}. It is kept in state (tainted): the next apply replaces it."),
            );
        }
        Some((state, Value::Null))
    }

    async fn update<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: SgState,
        planned: SgState,
        _config: SgState,
        _private: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(SgState, ValueEmpty)> {
        let (_, ec2) = self.ec2(diags).await?;
        let Value::Value(id) = prior.id.clone() else {
            return Some((planned, Value::Null));
        };
        let observed = match describe(&ec2, &id).await {
            Ok(Some(o)) => o,
            Ok(None) => {
                diags.root_error(
                    format!("security group {id} is gone"),
                    "Run terraform apply again to re-create it.",
                );
                return Some((prior, Value::Null));
            }
            Err(e) => {
                diags.root_error("cannot update the security group", e.to_string());
                return Some((prior, Value::Null));
            }
        };
        let (want_ports, want_cidrs) = (ports(&planned), cidrs(&planned));
        if (observed.ports != want_ports
            || (!want_ports.is_empty() && observed.cidrs != want_cidrs))
            && let Err(e) = set_rules(&ec2, &id, &observed, &want_ports, &want_cidrs).await
        {
            diags.root_error("cannot update the security group's rules", e.to_string());
            return Some((prior, Value::Null));
        }
        let wanted_tags = tags(&planned);
        if let Err(e) = ec2.sync_tags(&id, &observed.tags, &wanted_tags).await {
            diags.root_error("cannot update the security group's tags", e.to_string());
            return Some((prior, Value::Null));
        }
        Some((planned, Value::Null))
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: SgState,
        _private: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<()> {
        let Value::Value(id) = prior.id.clone() else {
            return Some(());
        };
        let (_, ec2) = self.ec2(diags).await?;
        let deadline = Instant::now() + DELETE_WAIT;
        loop {
            match ec2
                .client()
                .delete_security_group()
                .group_id(&id)
                .send()
                .await
            {
                Ok(_) => return Some(()),
                Err(e) if e.code().is_some_and(|c| c.starts_with("InvalidGroup")) => {
                    return Some(());
                }
                Err(e) if e.code() == Some("DependencyViolation") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(e) => {
                    diags.root_error(
                        format!("cannot delete security group {id}"),
                        format!("{}. If an instance outside Terraform still uses it, detach it and run destroy again.", Ec2Error::call("DeleteSecurityGroup", e)),
                    );
                    return None;
                }
            }
        }
    }

    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        id: String,
    ) -> Option<(SgState, ValueEmpty)> {
        let state = SgState {
            id: Value::Value(id.clone()),
            ..Default::default()
        };
        let (_, ec2) = self.ec2(diags).await?;
        let group = match ec2
            .client()
            .describe_security_groups()
            .group_ids(&id)
            .send()
            .await
        {
            Ok(reply) => reply.security_groups().first().cloned(),
            Err(e) => {
                diags.root_error(
                    format!("cannot import security group {id}"),
                    Ec2Error::call("DescribeSecurityGroups", e).to_string(),
                );
                return None;
            }
        };
        let Some(group) = group else {
            diags.root_error(
                format!("no security group {id}"),
                "Import with the group's ID, e.g. sg-0123456789abcdef0.",
            );
            return None;
        };
        let mut state = state;
        state.name = group
            .group_name()
            .map(|s| Value::Value(s.to_owned()))
            .unwrap_or(Value::Null);
        state.description = group
            .description()
            .map(|s| Value::Value(s.to_owned()))
            .unwrap_or(Value::Null);
        state.ingress_cidr_blocks = Value::Value([Value::Value(DEFAULT_CIDR.to_owned())].into());
        self.read(diags, state, Value::Null, Value::Null).await
    }
}
