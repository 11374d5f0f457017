//! The `provider "launch"` block: where the control plane is, the token to
//! use with it, and how to reach AWS. `configure` turns that into `Clients`
//! that every `launch_service` operation shares. The EC2 client is built on
//! first use, so a plan with nothing to read never waits for AWS's region or
//! credential discovery.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{
    Attribute, AttributeConstraint, AttributeType, Block, Description, NestedBlock, Schema,
};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, DynamicResource, Provider};
use tokio::sync::OnceCell;

use crate::control::ControlPlane;
use crate::ec2::{Ec2, Ec2Settings};
use crate::service::ServiceResource;

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Config {
    pub control_url: Value<String>,
    pub token: Value<String>,
    pub aws: Value<Vec<AwsConfig>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct AwsConfig {
    pub region: Value<String>,
    pub profile: Value<String>,
}

/// What `configure` produced, shared by every resource instance.
pub struct Clients {
    pub control: ControlPlane,
    ec2_settings: Ec2Settings,
    ec2: OnceCell<Ec2>,
}

impl Clients {
    pub async fn ec2(&self) -> Result<&Ec2, crate::ec2::Ec2Error> {
        self.ec2
            .get_or_try_init(|| Ec2::connect(&self.ec2_settings))
            .await
    }
}

pub type SharedClients = Arc<RwLock<Option<Arc<Clients>>>>;

#[derive(Default)]
pub struct LaunchProvider {
    clients: SharedClients,
}

pub(crate) fn attribute(
    attr_type: AttributeType,
    constraint: AttributeConstraint,
    description: &str,
) -> Attribute {
    Attribute {
        attr_type,
        description: Description::markdown(description.to_owned()),
        constraint,
        sensitive: false,
        deprecated: false,
    }
}

/// A configured string, falling back to an environment variable.
fn setting(value: &Value<String>, env: &str) -> Option<String> {
    value
        .as_ref_option()
        .cloned()
        .or_else(|| std::env::var(env).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

#[async_trait]
impl Provider for LaunchProvider {
    type Config<'a> = Config;
    type MetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        use AttributeConstraint::Optional;
        let aws = Block {
            attributes: [
                (
                    "region".to_owned(),
                    attribute(AttributeType::String, Optional, "AWS region for instances. Default: `AWS_REGION`, `AWS_DEFAULT_REGION`, then the profile's region."),
                ),
                (
                    "profile".to_owned(),
                    attribute(AttributeType::String, Optional, "Named profile from the shared AWS config and credentials files. Default: `AWS_PROFILE`, then `default`. Credentials otherwise follow the standard chain (env, shared profile, web identity, container or instance role; IAM Identity Center (SSO) profiles are not supported: export credentials first); `AWS_ENDPOINT_URL_EC2` points EC2 calls elsewhere."),
                ),
            ]
            .into(),
            description: Description::markdown("How to reach AWS for `target = \"aws\"` services."),
            ..Default::default()
        };
        let mut token = attribute(
            AttributeType::String,
            Optional,
            "Control-plane token (the admin token from `<data-dir>/admin.token`). Default: `LAUNCH_TOKEN`.",
        );
        token.sensitive = true;
        Some(Schema {
            version: 1,
            block: Block {
                attributes: [
                    (
                        "control_url".to_owned(),
                        attribute(AttributeType::String, Optional, "Address of the Launch control plane, e.g. `http://10.0.0.5:7400`. Hosts download `launch-agent` from it and register with it, so it must be reachable from them. Default: `LAUNCH_ADDR`."),
                    ),
                    ("token".to_owned(), token),
                ]
                .into(),
                blocks: [("aws".to_owned(), NestedBlock::Optional(aws))].into(),
                description: Description::markdown("Launch: hosts for compose services, registered with a Launch control plane."),
                ..Default::default()
            },
        })
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Config) -> Option<()> {
        if let Some(url) = config.control_url.as_ref_option()
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            diags.error(
                    "control_url must be an http:// or https:// URL",
                    format!("{url:?} is not; give the address `launch server` listens on, e.g. \"http://10.0.0.5:7400\"."),
                    AttributePath::new("control_url"),
                );
        }
        Some(())
    }

    async fn configure<'a>(
        &self,
        diags: &mut Diagnostics,
        terraform_version: String,
        config: Config,
    ) -> Option<()> {
        tracing::debug!(%terraform_version, "configuring");
        if config.control_url.is_unknown() || config.token.is_unknown() {
            diags.root_error(
                "provider \"launch\" is configured from values known only after apply",
                "control_url and token must be known at plan time: set them from variables or LAUNCH_ADDR / LAUNCH_TOKEN, not from another resource's attributes.",
            );
            return None;
        }
        let Some(control_url) = setting(&config.control_url, "LAUNCH_ADDR") else {
            diags.error(
                "control_url is not set",
                "Set control_url in the provider \"launch\" block or LAUNCH_ADDR, e.g. http://10.0.0.5:7400.",
                AttributePath::new("control_url"),
            );
            return None;
        };
        let Some(token) = setting(&config.token, "LAUNCH_TOKEN") else {
            diags.error(
                "token is not set",
                "Set token in the provider \"launch\" block or LAUNCH_TOKEN to a control-plane token (the admin token is in <data-dir>/admin.token of the server).",
                AttributePath::new("token"),
            );
            return None;
        };
        let control = match ControlPlane::new(&control_url, &token) {
            Ok(control) => control,
            Err(e) => {
                diags.error(
                    "control_url is not usable",
                    e.to_string(),
                    AttributePath::new("control_url"),
                );
                return None;
            }
        };
        let aws = config
            .aws
            .as_ref_option()
            .and_then(|b| b.first())
            .cloned()
            .unwrap_or_default();
        let ec2_settings = Ec2Settings {
            region: aws
                .region
                .as_ref_option()
                .cloned()
                .filter(|s| !s.is_empty()),
            profile: aws
                .profile
                .as_ref_option()
                .cloned()
                .filter(|s| !s.is_empty()),
        };
        let clients = Arc::new(Clients {
            control,
            ec2_settings,
            ec2: OnceCell::new(),
        });
        *self.clients.write().expect("provider clients lock") = Some(clients);
        Some(())
    }

    fn get_resources(
        &self,
        _diags: &mut Diagnostics,
    ) -> Option<std::collections::HashMap<String, Box<dyn DynamicResource>>> {
        Some(
            [(
                "service".to_owned(),
                Box::new(ServiceResource::new(self.clients.clone())) as Box<dyn DynamicResource>,
            )]
            .into(),
        )
    }
}
