//! `target = "aws"`: the host is an EC2 instance whose user-data installs
//! `launch-agent` (the shared bootstrap as `#cloud-config`). Sizes are
//! instance types, `aws { instance_type }` overrides them; the instance
//! carries the managed tags plus the user's `tags`, which import searches by.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{AttributeConstraint, AttributeType, Block, Description};
use tf_provider::value::Value;
use tf_provider::{AttributePath, Diagnostics};
use tokio::time::Instant;
use tracing::info;

use super::{Created, Failure, HostSpec, HostView, Imported, Size, Target};
use crate::bootstrap::Bootstrap;
use crate::ec2::{InstanceView, Launch, Spot};
use crate::provider::{Clients, attribute};
use crate::service::state::{State, Text, TextMap, known_map, to_text_map};

/// Tags the provider owns on every instance; users cannot set these.
pub const TAG_SERVICE: &str = "launch:service";
pub const TAG_ENVIRONMENT: &str = "launch:environment";
pub use crate::ec2::{MANAGED_BY, TAG_MANAGED_BY};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct AwsArgs {
    pub ami: Text,
    pub subnet_id: Text,
    pub security_group_ids: Value<Vec<Value<String>>>,
    pub key_name: Text,
    pub instance_type: Text,
    #[serde(default)]
    pub spot: Value<bool>,
    #[serde(default)]
    pub max_price: Text,
}

pub struct Aws;

/// The instance type a size means.
pub fn instance_type_for(size: Size) -> &'static str {
    match size {
        Size::Small => "t3.small",
        Size::Medium => "t3.medium",
        Size::Large => "t3.large",
    }
}

/// The size an instance type means, if any.
pub fn size_for(instance_type: &str) -> Option<Size> {
    Size::ALL
        .into_iter()
        .find(|s| instance_type_for(*s) == instance_type)
}

pub fn args(state: &State) -> AwsArgs {
    state
        .aws
        .as_ref_option()
        .and_then(|b| b.first())
        .cloned()
        .unwrap_or_default()
}

/// The instance type the configuration asks for.
pub fn wanted_instance_type(state: &State) -> Text {
    match (&args(state).instance_type, Size::wanted(&state.size)) {
        (Value::Value(t), _) => Value::Value(t.clone()),
        (Value::Unknown, _) | (_, None) => Value::Unknown,
        (Value::Null, Some(size)) => Value::Value(instance_type_for(size).to_owned()),
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

/// The tags the instance should carry: the user's plus the managed ones.
pub fn wanted_tags(state: &State) -> TextMap {
    if state.tags.is_unknown()
        || state
            .tags
            .as_ref_option()
            .is_some_and(|t| t.values().any(Value::is_unknown))
    {
        return Value::Unknown;
    }
    let (Value::Value(name), Value::Value(env)) = (&state.name, &state.environment) else {
        return Value::Unknown;
    };
    let mut all = known_map(&state.tags);
    all.extend(managed_tags(name, env));
    to_text_map(all)
}

fn security_group_ids(args: &AwsArgs) -> Option<Vec<String>> {
    args.security_group_ids.as_ref_option().map(|ids| {
        ids.iter()
            .filter_map(|v| v.as_ref_option().cloned())
            .collect()
    })
}

fn view_of(instance: &InstanceView) -> HostView {
    HostView {
        id: instance.id.clone(),
        instance_type: Some(instance.instance_type.clone()),
        container: None,
        image: Some(instance.image_id.clone()),
        private_ip: instance.private_ip.clone(),
        public_ip: instance.public_ip.clone(),
        tags: Some(instance.tags.clone()),
        firewall: None,
    }
}

fn wants_spot(args: &AwsArgs) -> bool {
    matches!(args.spot, Value::Value(true))
}

/// `max_price` is a positive price and only means something for spot.
fn validate_spot(args: &AwsArgs, diags: &mut Diagnostics) {
    let path = |field: &'static str| AttributePath::new("aws").index(0).attribute(field);
    let Value::Value(price) = &args.max_price else {
        return;
    };
    let valid = price.chars().all(|c| c.is_ascii_digit() || c == '.')
        && price.parse::<f64>().is_ok_and(|p| p > 0.0);
    if !valid {
        diags.error(
            "aws.max_price is not a price",
            format!("{price:?} is not; write the highest hourly price in USD as a decimal, e.g. \"0.0104\", or remove max_price for the on-demand price."),
            path("max_price"),
        );
    }
    if matches!(args.spot, Value::Null | Value::Value(false)) {
        diags.error(
            "aws.max_price needs spot = true",
            "A maximum price applies to spot instances only: set spot = true in the aws block, or remove max_price.",
            path("max_price"),
        );
    }
}

async fn ec2<'a>(clients: &'a Clients, summary: &str) -> Result<&'a crate::ec2::Ec2, Failure> {
    clients.ec2().await.map_err(|e| Failure::new(summary, e))
}

#[async_trait]
impl Target for Aws {
    fn name(&self) -> &'static str {
        "aws"
    }

    fn block_in_use(&self, state: &State) -> bool {
        state.aws.as_ref_option().is_some_and(|b| !b.is_empty())
    }

    fn noun(&self) -> &'static str {
        "Instance"
    }

    fn block(&self) -> Block {
        use AttributeConstraint::Optional;
        use AttributeType::{Bool, List, String};
        let attr = attribute;
        Block {
            attributes: [
                ("ami", attr(String, Optional, "AMI to boot. Default: the newest official Debian 12 AMI, else the newest Ubuntu LTS, for x86_64. Changing it replaces the instance.")),
                ("subnet_id", attr(String, Optional, "Subnet to launch into. Default: the default VPC's default subnet. Changing it replaces the instance.")),
                ("security_group_ids", attr(List(Box::new(String)), Optional, "Security groups. Default: the VPC's default group. Updated in place.")),
                ("key_name", attr(String, Optional, "EC2 key pair for SSH. Changing it replaces the instance (EC2 cannot change the key of a running instance).")),
                ("instance_type", attr(String, Optional, "Instance type, overriding what `size` means (`t3.small`, `t3.medium`, `t3.large`). Updated in place (stop, modify, start).")),
                ("spot", attr(Bool, Optional, "Run a spot instance (a one-time request, terminated on interruption) instead of an on-demand one. An interrupted instance reads as gone, so the next plan re-creates it: the service is down until then. Changing it replaces the instance.")),
                ("max_price", attr(String, Optional, "Highest hourly price in USD for a spot instance, e.g. `\"0.0104\"`. Default: the on-demand price. Needs `spot = true`. Changing it replaces the instance.")),
            ]
            .map(|(k, v)| (k.to_owned(), v))
            .into(),
            description: Description::markdown("Overrides for `target = \"aws\"`."),
            ..Default::default()
        }
    }

    fn validate(&self, config: &State, diags: &mut Diagnostics) {
        validate_spot(&args(config), diags);
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
    }

    fn plan(&self, planned: &mut State, prior: Option<&State>) {
        planned.instance_type = wanted_instance_type(planned);
        planned.tags_all = wanted_tags(planned);
        match prior {
            None => {
                planned.image_id = match args(planned).ami {
                    Value::Value(ami) => Value::Value(ami),
                    _ => Value::Unknown,
                };
            }
            // A resize stops and starts the instance: EC2 may hand out a new public IP.
            Some(prior) if planned.instance_type != prior.instance_type => {
                planned.public_ip = Value::Unknown;
            }
            Some(_) => {}
        }
    }

    fn replacements(&self, prior: &State, planned: &State) -> Vec<AttributePath> {
        let (before, after) = (args(prior), args(planned));
        [
            ("ami", before.ami != after.ami),
            ("subnet_id", before.subnet_id != after.subnet_id),
            ("key_name", before.key_name != after.key_name),
            ("spot", wants_spot(&before) != wants_spot(&after)),
            ("max_price", before.max_price != after.max_price),
        ]
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(field, _)| AttributePath::new("aws").index(0).attribute(field))
        .collect()
    }

    async fn connect(&self, clients: &Clients) -> Result<(), Failure> {
        ec2(clients, "cannot create launch_service").await.map(drop)
    }

    async fn create(&self, clients: &Clients, spec: &HostSpec<'_>, planned: &State) -> Created {
        let ec2 = match ec2(clients, "cannot create launch_service").await {
            Ok(ec2) => ec2,
            Err(f) => return Created::Nothing(f),
        };
        let args = args(planned);
        let image_id = match args.ami.as_ref_option() {
            Some(ami) => ami.clone(),
            None => match ec2.default_ami().await {
                Ok(ami) => ami,
                Err(e) => return Created::Nothing(Failure::new("cannot create launch_service", e)),
            },
        };
        let user_data = Bootstrap {
            control_url: spec.control_url,
            join_token: &spec.join.token,
            labels: spec.labels,
        }
        .cloud_config();
        let tags = known_map(&wanted_tags(planned));
        let instance_type = wanted_instance_type(planned)
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
                security_group_ids: security_group_ids(&args).unwrap_or_default(),
                key_name: args.key_name.as_ref_option().map(String::as_str),
                spot: wants_spot(&args).then(|| Spot {
                    max_price: args.max_price.as_ref_option().map(String::as_str),
                }),
            })
            .await;
        let instance = match launched {
            Ok(instance) => instance,
            Err(e) => {
                return Created::Nothing(Failure::new(
                    "cannot create launch_service: the instance was not launched",
                    e,
                ));
            }
        };
        info!(instance_id = %instance.id, %instance_type, %image_id, "instance launched");
        match ec2.wait_for(&instance.id, "running", spec.deadline).await {
            Ok(running) => Created::Host {
                view: view_of(&running),
                failed: None,
            },
            Err(e) => Created::Host {
                view: view_of(&instance),
                failed: Some(Failure::new(
                    format!("instance {} did not start", instance.id),
                    e,
                )),
            },
        }
    }

    async fn read(
        &self,
        _diags: &mut Diagnostics,
        clients: &Clients,
        instance_id: &str,
        _prior: &State,
    ) -> Result<Option<HostView>, Failure> {
        let ec2 = ec2(clients, "cannot read launch_service").await?;
        match ec2.read(instance_id).await {
            Ok(Some(instance)) if !instance.is_gone() => Ok(Some(view_of(&instance))),
            Ok(_) => {
                info!(%instance_id, "instance is gone: removing it from state so the plan re-creates it");
                Ok(None)
            }
            Err(e) => Err(Failure::new(
                format!("cannot read instance {instance_id}"),
                e,
            )),
        }
    }

    async fn update(
        &self,
        clients: &Clients,
        instance_id: &str,
        _prior: &State,
        planned: &State,
        deadline: Instant,
    ) -> Result<HostView, (Failure, Option<HostView>)> {
        let plain = |f: Failure| (f, None);
        let ec2 = ec2(clients, "cannot update launch_service")
            .await
            .map_err(plain)?;
        let mut instance = match ec2.describe(instance_id).await {
            Ok(Some(instance)) => instance,
            Ok(None) => {
                return Err(plain(Failure::new(
                    format!("instance {instance_id} is gone"),
                    "Run terraform apply again to re-create it.",
                )));
            }
            Err(e) => return Err(plain(Failure::new("cannot update launch_service", e))),
        };
        if let Some(groups) = security_group_ids(&args(planned))
            .filter(|g| !g.is_empty() && *g != instance.security_group_ids)
            && let Err(e) = ec2.set_security_groups(instance_id, groups).await
        {
            return Err(plain(Failure::new(
                "cannot change the instance's security groups",
                e,
            )));
        }
        if let Value::Value(wanted_type) = planned.instance_type.clone()
            && wanted_type != instance.instance_type
        {
            info!(%instance_id, from = %instance.instance_type, to = %wanted_type, "resizing: stop, modify, start");
            match ec2.resize(instance_id, &wanted_type, deadline).await {
                Ok(after) => instance = after,
                Err(e) => {
                    // Whatever happened, record what EC2 says now.
                    let now = ec2.describe(instance_id).await.ok().flatten();
                    return Err((
                        Failure::new(
                            format!("cannot resize instance {instance_id} to {wanted_type}"),
                            e,
                        ),
                        now.as_ref().map(view_of),
                    ));
                }
            }
        }
        let wanted_tags = known_map(&planned.tags_all);
        if !wanted_tags.is_empty() && wanted_tags != instance.tags {
            if let Err(e) = ec2
                .sync_tags(instance_id, &instance.tags, &wanted_tags)
                .await
            {
                return Err(plain(Failure::new("cannot update the instance's tags", e)));
            }
            instance.tags = wanted_tags;
        }
        Ok(view_of(&instance))
    }

    async fn destroy(
        &self,
        clients: &Clients,
        instance_id: &str,
        deadline: Instant,
    ) -> Result<(), Failure> {
        let summary = format!("cannot terminate instance {instance_id}");
        let ec2 = ec2(clients, &summary).await?;
        ec2.terminate(instance_id, deadline)
            .await
            .map_err(|e| Failure::new(summary, e))?;
        info!(%instance_id, "instance terminated");
        Ok(())
    }

    /// The last target asked: every `<environment>/<name>` it cannot find
    /// is an error.
    async fn import(&self, diags: &mut Diagnostics, clients: &Clients, id: &str) -> Imported {
        let Some((environment, name)) = id.split_once('/') else {
            diags.root_error(
                format!("import ID {id:?} is not <environment>/<name>"),
                "Import with e.g. `terraform import launch_service.hello prod/hello`.",
            );
            return Imported::Failed;
        };
        let mut state = State {
            name: Value::Value(name.to_owned()),
            environment: Value::Value(environment.to_owned()),
            target: Value::Value(self.name().to_owned()),
            ..Default::default()
        };
        if state.labels().is_none() {
            diags.root_error(
                format!("import ID {id:?} is not <environment>/<name>"),
                "Both parts must be DNS labels, e.g. prod/hello.",
            );
            return Imported::Failed;
        }
        let found = match ec2(clients, "cannot import launch_service").await {
            Ok(ec2) => ec2
                .find_by_tags(name, environment)
                .await
                .map_err(|e| Failure::new("cannot import launch_service", e)),
            Err(f) => Err(f),
        };
        let found = match found {
            Ok(found) => found,
            Err(f) => {
                f.report(diags);
                return Imported::Failed;
            }
        };
        let instance = match found.as_slice() {
            [one] => one.clone(),
            [] => {
                diags.root_error(
                    format!("no instance to import for {id}"),
                    format!("No pending, running or stopped instance in this region has tags launch:service={name} and launch:environment={environment}."),
                );
                return Imported::Failed;
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
                return Imported::Failed;
            }
        };
        let size = size_for(&instance.instance_type);
        state.size = Value::Value(size.unwrap_or(Size::DEFAULT).name().to_owned());
        let overrides = AwsArgs {
            instance_type: match size {
                Some(_) => Value::Null,
                None => Value::Value(instance.instance_type.clone()),
            },
            spot: match instance.is_spot() {
                true => Value::Value(true),
                false => Value::Null,
            },
            ..Default::default()
        };
        state.aws = Value::Value(match overrides == AwsArgs::default() {
            true => Vec::new(),
            false => vec![overrides],
        });
        let managed = managed_tags(name, environment);
        let user: BTreeMap<String, String> = instance
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
        view_of(&instance).observe(&mut state);
        Imported::Found(Box::new(state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_maps_to_an_instance_type_unless_overridden() {
        let mut state = State {
            size: Value::Value("medium".into()),
            ..Default::default()
        };
        assert_eq!(
            wanted_instance_type(&state),
            Value::Value("t3.medium".into())
        );
        state.aws = Value::Value(vec![AwsArgs {
            instance_type: Value::Value("m7i.large".into()),
            ..Default::default()
        }]);
        assert_eq!(
            wanted_instance_type(&state),
            Value::Value("m7i.large".into())
        );
        assert_eq!(size_for("t3.large"), Some(Size::Large));
        assert_eq!(size_for("m7i.large"), None);
    }

    #[test]
    fn max_price_must_be_a_price_for_a_spot_instance() {
        let errors = |spot: Value<bool>, price: &str| {
            let mut diags = Diagnostics::default();
            validate_spot(
                &AwsArgs {
                    spot,
                    max_price: Value::Value(price.into()),
                    ..Default::default()
                },
                &mut diags,
            );
            diags
                .errors
                .into_iter()
                .map(|d| d.summary)
                .collect::<Vec<_>>()
        };
        assert!(errors(Value::Value(true), "0.0104").is_empty());
        assert_eq!(
            errors(Value::Value(true), "cheap"),
            ["aws.max_price is not a price"]
        );
        assert_eq!(
            errors(Value::Value(true), "-1"),
            ["aws.max_price is not a price"]
        );
        assert_eq!(
            errors(Value::Null, "0.01"),
            ["aws.max_price needs spot = true"]
        );
    }

    #[test]
    fn a_spot_request_is_one_time_and_terminates_on_interruption() {
        let options = Spot {
            max_price: Some("0.0104"),
        }
        .market_options();
        assert_eq!(options.market_type().map(|m| m.as_str()), Some("spot"));
        let spot = options.spot_options().expect("spot options");
        assert_eq!(
            spot.spot_instance_type().map(|t| t.as_str()),
            Some("one-time")
        );
        assert_eq!(
            spot.instance_interruption_behavior().map(|b| b.as_str()),
            Some("terminate")
        );
        assert_eq!(spot.max_price(), Some("0.0104"));
        assert_eq!(
            Spot { max_price: None }
                .market_options()
                .spot_options()
                .and_then(|s| s.max_price()),
            None
        );
    }

    #[test]
    fn reserved_tags_are_refused() {
        let state = State {
            tags: to_text_map([("launch:service".into(), "x".into())].into()),
            ..Default::default()
        };
        let mut diags = Diagnostics::default();
        Aws.validate(&state, &mut diags);
        assert_eq!(diags.errors.len(), 1);
        assert!(diags.errors[0].summary.starts_with("reserved tag"));
    }
}
